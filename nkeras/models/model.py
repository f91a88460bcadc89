"""``Model``: a graph of layers from inputs to outputs, with the training API."""

import numpy as np

from nkeras import config
from nkeras.backend import get_device
from nkeras.graph import Graph, KerasTensor
from nkeras.layers.layer import unique_name
from nkeras.models.summary import print_summary
from nkeras.models.trainer import Trainer
from nkeras.saving import saving_lib


def _tensor_list(value, what):
    tensors = list(value.values()) if isinstance(value, dict) else (list(value) if isinstance(value, (list, tuple)) else [value])
    for tensor in tensors:
        if not isinstance(tensor, KerasTensor):
            raise TypeError(f"Model: {what} must be KerasTensors from keras.Input() and layer calls, got {type(tensor).__name__}")
    return tensors


class Model(Trainer):
    """A functional model: ``Model(inputs, outputs)``.

    Args:
        inputs: a KerasTensor from ``keras.Input``, or a list or dict of them.
        outputs: the KerasTensor(s) computed from the inputs.
        name: the model's name.
    """

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True):
        if inputs is None or outputs is None:
            raise TypeError(
                "Model(inputs, outputs): nkeras models are built from symbolic tensors "
                "(subclassed models with a Python call() have no kernels to run)"
            )
        self.name = name or unique_name(self._default_name)
        self.trainable = trainable
        self._init_graph(_tensor_list(inputs, "inputs"), _tensor_list(outputs, "outputs"))

    _default_name = "functional"

    def _init_graph(self, inputs, outputs):
        self.inputs = inputs
        self.outputs = outputs
        self._graph = Graph(inputs, outputs)
        self._device = get_device()
        self._dtype = np.dtype(config.floatx())
        self._plans = {}
        self.built = True
        self.stop_training = False
        self.history = None
        if not self.compiled:
            self._losses = [None] * len(outputs)
            self._loss_weights = [1.0] * len(outputs)
        self._set_target_shapes()
        self._pack_weights()

    def _ensure_built(self, x):
        """Functional models are built when made; Sequential may wait for data."""

    # ---- structure -------------------------------------------------------

    @property
    def layers(self):
        return self._graph.layers

    @property
    def input_names(self):
        return [t.name for t in self.inputs]

    @property
    def output_names(self):
        return [t.node.layer.name for t in self.outputs]

    def get_layer(self, name=None, index=None):
        """The layer called ``name`` (or at position ``index`` in ``layers``)."""
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"get_layer: index {index} out of range for {len(self.layers)} layers")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name!r}. Layers: {[layer.name for layer in self.layers]}")

    def _unique_layers_weights(self, which):
        seen, result = set(), []
        for layer in self.layers:
            for variable in getattr(layer, which):
                if id(variable) not in seen:
                    seen.add(id(variable))
                    result.append(variable)
        return result

    @property
    def weights(self):
        return self._unique_layers_weights("weights")

    @property
    def trainable_weights(self):
        return self._unique_layers_weights("trainable_weights") if self.trainable else []

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return self._unique_layers_weights("non_trainable_weights")

    def count_params(self):
        return int(sum(np.prod(w.shape) for w in self.weights))

    def get_weights(self):
        """Every weight as a NumPy array, in Keras's order (layer by layer)."""
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights):
        """Set every weight from a list in ``get_weights`` order; nothing
        changes unless every array has the right shape."""
        variables = self.weights
        weights = list(weights)
        if len(weights) != len(variables):
            raise ValueError(f"Model '{self.name}' has {len(variables)} weights, got a list of {len(weights)}")
        arrays = [np.asarray(w) for w in weights]
        for variable, array in zip(variables, arrays):
            if array.shape != variable.shape:
                raise ValueError(
                    f"Model '{self.name}': weight '{variable.name}' has shape {variable.shape}, got {array.shape}"
                )
        for variable, array in zip(variables, arrays):
            variable.assign(array)

    def summary(self, line_length=None, positions=None, print_fn=None):
        """Print a Keras-style table of the layers, output shapes and parameter counts."""
        print_summary(self, line_length=line_length, print_fn=print_fn)

    # ---- saving ----------------------------------------------------------

    def save_weights(self, filepath, overwrite=True):
        """Write every weight to ``filepath`` atomically: ``.weights.h5``
        (Keras's format, with the optimizer state) or ``.weights.npz``.

        Args:
            filepath: the path, ending in ".weights.h5" or ".weights.npz".
            overwrite: when False, an existing file raises FileExistsError.
        """
        saving_lib.save_weights(self, filepath, overwrite)

    def load_weights(self, filepath, skip_mismatch=False):
        """Read weights from a ``.weights.h5``, ``.weights.npz`` or ``.keras``
        file (and the optimizer state, when the file has it and the model is
        compiled); the model is unchanged on error.

        Args:
            filepath: the file.
            skip_mismatch: skip layers whose weights do not match, with a
                warning, instead of raising.
        """
        saving_lib.load_weights(self, filepath, skip_mismatch)

    def save(self, filepath, overwrite=True):
        """Write the model (architecture, weights, compile and optimizer
        state) to a Keras 3 ``.keras`` file, atomically.

        Args:
            filepath: the path, ending in ".keras".
            overwrite: when False, an existing file raises FileExistsError.
        """
        saving_lib.save_model(self, filepath, overwrite)

    def check_save_path(self, filepath, weights_only):
        """Raise now, before any training, if ``filepath`` cannot be written
        (ModelCheckpoint calls this when training begins)."""
        saving_lib.check_save_path(self, filepath, weights_only)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable}

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"
