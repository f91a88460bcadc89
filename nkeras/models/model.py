"""``Model``: a graph of layers from inputs to outputs, with the training API."""

import numpy as np

from nkeras import config
from nkeras.backend import get_device
from nkeras.graph import Graph, KerasTensor, Plan
from nkeras.layers.layer import Layer, unique_name
from nkeras.models.summary import print_summary
from nkeras.models.trainer import Trainer
from nkeras.saving import saving_lib


def _rows(array):
    return array.reshape(tuple(array.shape)[0], -1)


def _tensor_list(value, what):
    tensors = list(value.values()) if isinstance(value, dict) else (list(value) if isinstance(value, (list, tuple)) else [value])
    for tensor in tensors:
        if not isinstance(tensor, KerasTensor):
            raise TypeError(f"Model: {what} must be KerasTensors from keras.Input() and layer calls, got {type(tensor).__name__}")
    return tensors


class Model(Trainer, Layer):
    """A functional model: ``Model(inputs, outputs)``.

    A model is also a layer: calling it on tensors of another graph nests it
    there (its weights train with the outer model's), and calling it on
    arrays returns its outputs.

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
        self._init_model(name, trainable)
        self._single_input = not isinstance(inputs, (list, tuple, dict))
        self._single_output = not isinstance(outputs, (list, tuple, dict))
        self._init_graph(_tensor_list(inputs, "inputs"), _tensor_list(outputs, "outputs"))

    _default_name = "functional"

    def _init_model(self, name, trainable):
        self.name = name or unique_name(self._default_name)
        self.trainable = trainable
        self.built = False
        self._inbound_nodes = []
        self._input_shape_arg = None

    def _init_graph(self, inputs, outputs):
        self.inputs = inputs
        self.outputs = outputs
        self._graph = Graph(inputs, outputs)
        self._device = get_device()
        self._dtype = np.dtype(config.floatx())
        self.dtype = self._dtype
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
    def input(self):
        """The model's input tensor (a list when it has several)."""
        return self.inputs[0] if len(self.inputs) == 1 else list(self.inputs)

    @property
    def output(self):
        """The model's output tensor (a list when it has several)."""
        return self.outputs[0] if len(self.outputs) == 1 else list(self.outputs)

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

    # ---- as a layer of another model ----------------------------------------

    def build(self, input_shape):
        """A model is built from its graph; nothing to create."""

    def check_input_shape(self, input_shape):
        shapes = [input_shape] if self._single_input else list(input_shape)
        expected = [t.shape for t in self.inputs]
        if len(shapes) != len(expected) or any(tuple(a[1:]) != tuple(b[1:]) for a, b in zip(shapes, expected)):
            raise ValueError(
                f"Model '{self.name}' expects inputs of shape {expected[0] if self._single_input else expected}, "
                f"got {input_shape}"
            )

    def compute_output_shape(self, input_shape):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if self._single_output else shapes

    def make_state(self, device, inputs, outputs, training):
        """The model's own plan, reading the caller's input buffers."""
        rows = tuple(inputs[0].shape)[0]
        plan = Plan(self._graph, rows, device, training, input_arrays=inputs, input_grads=training)
        state = {"plan": plan}
        if training:
            state["zero_grads"] = [
                device.zeros(tuple(a.shape), a.dtype) if grad is None else None
                for a, grad in zip(inputs, plan.input_grads)
            ]
        return state

    def forward(self, ctx, inputs, outputs, state):
        plan = state["plan"]
        plan.forward(ctx.step)
        for target, result in zip(outputs, plan.output_buffers):
            ctx.ops.copy_into(_rows(target), _rows(result))

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        plan = state["plan"]
        for target, grad in zip(plan.output_grads, output_grads):
            ctx.ops.copy_into(_rows(target), _rows(grad))
        plan.backward()
        for target, grad, zeros in zip(input_grads, plan.input_grads, state["zero_grads"]):
            if target is not None:
                ctx.ops.copy_into(_rows(target), _rows(zeros if grad is None else grad))

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
