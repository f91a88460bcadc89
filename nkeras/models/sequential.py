"""``Sequential``: a plain stack of layers, each feeding the next."""

import numpy as np

from nkeras.graph import KerasTensor
from nkeras.layers.layer import Input, InputLayer, Layer
from nkeras.models.model import Model


class Sequential(Model):
    """A linear stack of layers.

    Give the input shape with ``keras.Input(shape=...)`` as the first
    element; without it the model is built from the first data it sees.

    Args:
        layers: list of layers (and optionally a leading ``keras.Input``).
        name: the model's name.
    """

    _default_name = "sequential"

    def __init__(self, layers=None, trainable=True, name=None):
        self._init_model(name, trainable)
        self._single_input = self._single_output = True
        self._stack = []
        self._input = None
        self.stop_training = False
        self.history = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        """Append a layer (or set the input with a ``keras.Input`` tensor)."""
        if isinstance(layer, KerasTensor):
            if not isinstance(layer.node.layer, InputLayer):
                raise TypeError("Sequential.add: only tensors made by keras.Input() can start a Sequential model")
            layer = layer.node.layer
        if isinstance(layer, InputLayer):
            if self._stack or self._input is not None:
                raise ValueError(f"Sequential '{self.name}': an Input can only be the first element")
            self._input = layer.output
        elif isinstance(layer, Layer):
            if not self._stack and self._input is None and layer._input_shape_arg is not None:
                self._input = Input(shape=layer._input_shape_arg[1:])
            self._stack.append(layer)
        else:
            raise TypeError(f"Sequential.add: expected a Layer, got {type(layer).__name__}")
        self.built = False
        if self._input is not None and self._stack:
            self._build_from_input()

    def pop(self):
        """Remove the last layer."""
        if not self._stack:
            raise TypeError(f"Sequential '{self.name}' has no layers to pop")
        layer = self._stack.pop()
        self.built = False
        if self._stack:
            self._build_from_input()
        return layer

    def _build_from_input(self):
        tensor = self._input
        for layer in self._stack:
            tensor = layer(tensor)
        self._init_graph([self._input], [tensor])

    def _ensure_built(self, x):
        if self.built:
            return
        if not self._stack:
            raise ValueError(f"Sequential '{self.name}' has no layers")
        if x is None or isinstance(x, (list, tuple, dict)):
            raise ValueError(
                f"Sequential '{self.name}' does not know its input shape yet: start it with "
                "keras.Input(shape=...) or call it first on an array"
            )
        self._input = Input(shape=np.shape(x)[1:])
        self._build_from_input()

    def build(self, input_shape):
        """Build the model for inputs of ``input_shape`` (batch dimension first)."""
        if not self.built:
            self._input = Input(shape=tuple(input_shape)[1:])
            self._build_from_input()

    @property
    def layers(self):
        return list(self._stack)

    def _require_built(self, what):
        if not self.built:
            raise ValueError(f"Sequential '{self.name}' is not built yet; {what} needs its input shape")

    @property
    def inputs(self):
        self._require_built("inputs")
        return self.__dict__["inputs"]

    @inputs.setter
    def inputs(self, value):
        self.__dict__["inputs"] = value

    @property
    def outputs(self):
        self._require_built("outputs")
        return self.__dict__["outputs"]

    @outputs.setter
    def outputs(self, value):
        self.__dict__["outputs"] = value

    @property
    def output_names(self):
        if not self.built:
            return [self._stack[-1].name] if self._stack else []
        return super().output_names
