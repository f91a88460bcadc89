"""The ``Layer`` base class, ``InputLayer`` and ``Input``.

A layer is configured in ``__init__``, creates its weights in
``build(input_shape)`` and records a graph node when called on symbolic
tensors. It computes with kernels through the execution context it is
given, so one class serves every device:

- ``compute_output_shape(input_shape)``: the output shape (batch dim None).
- ``state_shapes(input_shapes, training)``: extra per-node buffers the plan
  allocates (a dropout mask, a pre-activation), by name.
- masks of padded timesteps: ``supports_masking`` (pass the input's mask
  on), ``reads_mask`` (the kernels get it as ``state["mask"]``, shape
  (batch, timesteps), 1.0 keep and 0.0 padded), ``compute_mask`` and
  ``output_mask_shape`` (a layer that computes a mask as an extra output).
- ``forward(ctx, inputs, outputs, state)``: fill the preallocated outputs.
- ``backward(ctx, inputs, outputs, state, output_grads, input_grads)``:
  write each ``input_grads[i]`` that is not None, and the gradients of the
  layer's trainable weights into ``variable.grad``.
- ``output_is_view(training)``: True when the output is a reshaped view of
  the input (the plan then runs no kernel for the layer).
"""

import re

import numpy as np

from nkeras import config, initializers
from nkeras.graph import KerasTensor, Node
from nkeras.variables import Variable

_NAME_COUNTS = {}
CUSTOM_LAYERS_DOC = "docs/custom_layers.md"


def reset_names():
    """Forget the names handed out so far (``keras.backend.clear_session``)."""
    _NAME_COUNTS.clear()


def unique_name(base):
    count = _NAME_COUNTS.get(base, 0)
    _NAME_COUNTS[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def _snake_case(name):
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class Layer:
    """Base class of every layer.

    Args:
        trainable: whether the layer's weights are updated by training.
        name: a unique name; derived from the class name when omitted.
        dtype: the dtype of weights and outputs (``floatx()`` by default).
        input_shape: legacy Keras way to give the first layer of a
            ``Sequential`` its input shape (without the batch dimension).
    """

    def __init__(self, trainable=True, name=None, dtype=None, input_shape=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) {sorted(kwargs)}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string, got {name!r}")
        self.name = name or unique_name(_snake_case(type(self).__name__))
        self.trainable = trainable
        self.dtype = np.dtype(dtype or config.floatx())
        self.built = False
        self._weights = []
        self._inbound_nodes = []
        self._input_shape_arg = None if input_shape is None else (None,) + tuple(input_shape)

    # ---- weights -------------------------------------------------------

    def add_weight(self, shape, initializer="glorot_uniform", name=None, trainable=True, dtype=None):
        """Create a weight of ``shape`` filled by ``initializer``; returns its Variable."""
        dtype = np.dtype(dtype or self.dtype)
        value = initializers.get(initializer)(tuple(shape), dtype)
        variable = Variable(value, name or f"variable_{len(self._weights)}", trainable=trainable)
        self._weights.append(variable)
        return variable

    @property
    def weights(self):
        return list(self._weights)

    @property
    def trainable_weights(self):
        return [w for w in self._weights if w.trainable] if self.trainable else []

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return list(self._weights)
        return [w for w in self._weights if not w.trainable]

    def get_weights(self):
        """The weights' values as NumPy arrays, in creation order."""
        return [w.numpy() for w in self._weights]

    def set_weights(self, weights):
        """Set the weights from a list of arrays in ``get_weights`` order."""
        weights = list(weights)
        if len(weights) != len(self._weights):
            raise ValueError(
                f"Layer '{self.name}' expects {len(self._weights)} weight arrays, got {len(weights)}"
            )
        for variable, value in zip(self._weights, weights):
            value = np.asarray(value)
            if value.shape != variable.shape:
                raise ValueError(
                    f"Layer '{self.name}': weight '{variable.name}' has shape {variable.shape}, "
                    f"got an array of shape {value.shape}"
                )
        for variable, value in zip(self._weights, weights):
            variable.assign(value)

    def count_params(self):
        """The number of scalars in the layer's weights."""
        if not self.built:
            raise ValueError(f"Layer '{self.name}' is not built yet, so its weights do not exist")
        return int(sum(np.prod(w.shape) for w in self._weights))

    # ---- graph -----------------------------------------------------------

    def build(self, input_shape):
        """Create the weights for inputs of ``input_shape``."""
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def __call__(self, inputs, mask=None, training=None, **kwargs):
        if kwargs:
            raise TypeError(f"Layer '{self.name}': unexpected call argument(s) {sorted(kwargs)}")
        if training is not None:
            raise NotImplementedError(
                f"Layer '{self.name}': the `training` call argument is not supported in nkeras; "
                "fit runs layers in training mode, evaluate and predict in inference mode"
            )
        tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        return self._call_layer(tensors, mask=mask, single=not isinstance(inputs, (list, tuple)))

    def _call_layer(self, tensors, mask=None, single=None):
        """Call the layer on a list of tensors: symbolic KerasTensors record a
        graph node, arrays run the forward now. ``mask`` overrides the mask
        the first tensor carries (``reads_mask`` layers); ``single`` says
        whether the layer sees one shape rather than a list (default: when
        there is one tensor)."""
        self.check_has_forward()
        single = len(tensors) == 1 if single is None else single
        if all(isinstance(t, KerasTensor) for t in tensors) and tensors:
            return self._call_symbolic(tensors, mask, single)
        if any(isinstance(t, KerasTensor) for t in tensors):
            raise TypeError(f"Layer '{self.name}': cannot mix KerasTensors and arrays in one call")
        return self._call_eager(tensors, mask, single)

    def _build_and_check(self, shapes):
        if not self.built:
            self.build(shapes)
            self.built = True
        self.check_input_shape(shapes)
        output_shape = self.compute_output_shape(shapes)
        return output_shape if isinstance(output_shape, list) else [output_shape], isinstance(output_shape, list)

    def _check_mask_shape(self, mask_shape, data_shape):
        expected = tuple(data_shape[:2])
        if len(mask_shape) != 2 or tuple(mask_shape[1:]) != expected[1:]:
            raise ValueError(
                f"Layer '{self.name}': expected a mask of shape (batch, {expected[1] if len(expected) > 1 else '?'}) "
                f"for an input of shape {tuple(data_shape)}, got a mask of shape {tuple(mask_shape)}"
            )

    def _call_symbolic(self, tensors, mask, single):
        shapes = tensors[0].shape if single else [t.shape for t in tensors]
        output_shapes, multiple = self._build_and_check(shapes)
        input_mask = tensors[0]._keras_mask if mask is None else mask
        if input_mask is not None and not (isinstance(input_mask, KerasTensor) and input_mask.is_mask):
            if isinstance(input_mask, KerasTensor):
                input_mask.is_mask = True
            else:
                raise TypeError(f"Layer '{self.name}': a symbolic call takes a KerasTensor mask, got {type(input_mask).__name__}")
        mask_input = input_mask if self.reads_mask else None
        if mask_input is not None:
            self._check_mask_shape(mask_input.shape, tensors[0].shape)
        made_mask_shape = self.output_mask_shape(shapes)
        node = Node(
            self, tensors, output_shapes + ([made_mask_shape] if made_mask_shape is not None else []),
            mask_input=mask_input, makes_mask=made_mask_shape is not None,
        )
        node.single_input = single
        outputs = node.outputs[: len(output_shapes)]
        if made_mask_shape is not None:
            outputs[0]._keras_mask = node.outputs[-1]
        else:
            output_mask = self.compute_mask(shapes, input_mask)
            for tensor, tensor_mask in zip(outputs, output_mask if isinstance(output_mask, list) else [output_mask]):
                tensor._keras_mask = tensor_mask
        return outputs if multiple else outputs[0]

    def check_input_shape(self, input_shape):
        """Raise a clear ValueError when ``input_shape`` does not fit the built layer."""

    def _call_eager(self, arrays, mask, single):
        from nkeras.backend import get_device
        from nkeras.graph import ExecutionContext

        try:
            arrays = [np.ascontiguousarray(a, dtype=self.dtype) for a in arrays]
        except (TypeError, ValueError) as error:
            raise TypeError(f"Layer '{self.name}': expected numeric arrays or KerasTensors, got {error}") from None
        shapes = [(None,) + a.shape[1:] for a in arrays]
        output_shapes, multiple = self._build_and_check(shapes[0] if single else shapes)
        batch = arrays[0].shape[0]
        made_mask_shape = self.output_mask_shape(shapes[0] if single else shapes)
        all_shapes = output_shapes + ([made_mask_shape] if made_mask_shape is not None else [])
        outputs = [np.empty((batch,) + tuple(s[1:]), self.dtype) for s in all_shapes]
        if self.output_is_view(False):
            outputs = [arrays[0].reshape(outputs[0].shape).copy()]
        else:
            # Run where the weights live (a compiled model may hold them on a GPU).
            device = next((w.device for w in self.weights if w.device is not None), None) or get_device("cpu")
            self.check_runs_on(device)
            context = ExecutionContext(device, training=False)
            placed_inputs = [device.to_device(a) for a in arrays]
            placed = [device.empty(o.shape, o.dtype) for o in outputs]
            state = self.make_state(device, placed_inputs, placed, False)
            if mask is not None and self.reads_mask:
                mask = np.ascontiguousarray(mask, dtype=self.dtype)
                self._check_mask_shape(mask.shape, arrays[0].shape)
                if mask.shape[0] != batch:
                    raise ValueError(f"Layer '{self.name}': the mask has {mask.shape[0]} rows, the input {batch}")
                state["mask"] = device.to_device(mask)
            self.forward(context, placed_inputs, placed, state)
            outputs = [device.to_host(o) for o in placed]
        outputs = outputs[: len(output_shapes)]
        return outputs if multiple else outputs[0]

    def call_arguments(self, node):
        """The positional and keyword arguments of the call that made
        ``node`` (KerasTensors and plain values), as model files record them.
        Layers whose ``__call__`` takes more than the input override it."""
        tensors = node.data_inputs
        return ([tensors[0]] if node.single_input else [list(tensors)]), {}

    # ---- masks -----------------------------------------------------------

    # True: the output carries the first input's mask unchanged.
    supports_masking = False
    # True: the layer's kernels read the mask of padded steps as state["mask"].
    reads_mask = False

    def compute_mask(self, input_shape, mask):
        """The mask of the output (a KerasTensor or None) given the input's."""
        return mask if self.supports_masking else None

    def output_mask_shape(self, input_shape):
        """The shape of the mask this layer computes as an extra output, or
        None when it computes none (Embedding with mask_zero, Masking)."""
        return None

    # ---- execution contract ------------------------------------------------

    def output_is_view(self, training):
        return False

    def state_shapes(self, input_shapes, training):
        return {}

    def parallel_kernels(self, input_shapes):
        """Whether this layer's CPU kernels split their work over Numba's
        threads at these input shapes; a plan with such a step holds BLAS to
        one thread (docs/architecture.md, "Threads")."""
        return False

    def make_state(self, device, inputs, outputs, training):
        """The per-node state the plan keeps for this layer: by default a
        zero-filled buffer per ``state_shapes`` entry."""
        return {
            name: device.zeros(shape, self.dtype)
            for name, shape in self.state_shapes([tuple(a.shape) for a in inputs], training).items()
        }

    def forward(self, ctx, inputs, outputs, state):
        raise NotImplementedError(f"{self._describe()} has no forward kernel; see {CUSTOM_LAYERS_DOC}")

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        raise NotImplementedError(f"{self._describe()} has no backward kernel; see {CUSTOM_LAYERS_DOC}")

    # ---- can it run ----------------------------------------------------------

    def _describe(self):
        return f"Layer '{self.name}' ({type(self).__name__})"

    def check_has_forward(self):
        """Raise NotImplementedError when the layer computes nothing nkeras
        can run: a subclass that defines neither ``forward`` nor a view
        (Keras's ``call`` alone does not do: it has no backward pass)."""
        cls = type(self)
        if cls.forward is not Layer.forward or cls.output_is_view is not Layer.output_is_view:
            return
        found = "defines Keras's call(), which nkeras cannot run" if callable(getattr(cls, "call", None)) else "defines no forward()"
        raise NotImplementedError(
            f"{self._describe()} {found}. An nkeras layer supplies forward(ctx, inputs, outputs, state), which fills "
            "the preallocated outputs, and backward(ctx, inputs, outputs, state, output_grads, input_grads), which "
            f"writes the input and weight gradients, in NumPy or as Numba kernels; see {CUSTOM_LAYERS_DOC}"
        )

    def check_runs_on(self, device):
        """Raise RuntimeError when this is a custom layer written for the CPU
        and ``device`` is not the CPU.

        A layer whose ``forward`` comes from nkeras calls only ``ctx.ops``
        kernels, which every device has. A custom layer's NumPy or ``@njit``
        code cannot read GPU arrays, so it runs only on the CPU unless its
        class declares ``supported_devices = ("cpu", "cuda")``.

        Args:
            device: the device its plan runs on (``device.name``: "cpu", "cuda").
        """
        owner = next(klass for klass in type(self).__mro__ if "forward" in vars(klass) or klass is Layer)
        if device.name == "cpu" or owner.__module__.split(".")[0] == "nkeras":
            return
        supported = tuple(getattr(self, "supported_devices", ("cpu",)))
        if device.name in supported:
            return
        raise RuntimeError(
            f"{self._describe()} is a custom layer that runs on {', '.join(supported)}, but the model is on device "
            f"'{device.name}', whose arrays NumPy and @njit code cannot read. Build the model on the CPU "
            "(`with keras.device('cpu'):`), or give the layer kernels for the GPU and declare them with "
            f"`supported_devices = ('cpu', 'cuda')`; see {CUSTOM_LAYERS_DOC}"
        )

    # ---- config ----------------------------------------------------------

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "dtype": self.dtype.name}

    @classmethod
    def from_config(cls, config_dict):
        return cls(**config_dict)

    @property
    def input(self):
        return self._node_tensor("inputs")

    @property
    def output(self):
        return self._node_tensor("outputs")

    def _node_tensor(self, which):
        if not self._inbound_nodes:
            raise AttributeError(f"Layer '{self.name}' has never been called, so it has no {which[:-1]}")
        tensors = [t for t in getattr(self._inbound_nodes[0], which) if not t.is_mask]
        return tensors[0] if len(tensors) == 1 else tensors

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


class InputLayer(Layer):
    """The source of a model's input tensor.

    Args:
        shape: the input shape without the batch dimension.
        batch_size: an optional fixed batch size (informational).
        dtype: the input dtype (``floatx()`` by default).
        name: the layer's name.
    """

    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, **kwargs):
        super().__init__(name=name or unique_name("input_layer"), dtype=dtype, **kwargs)
        if shape is None:
            raise ValueError("InputLayer: `shape` is required, e.g. keras.Input(shape=(28, 28))")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        for dim in shape:
            if dim is not None and (not isinstance(dim, (int, np.integer)) or dim <= 0):
                raise ValueError(f"Input '{self.name}': shape must hold positive integers, got {shape}")
        if any(dim is None for dim in shape):
            raise ValueError(
                f"Input '{self.name}': nkeras plans fixed buffers, so every dimension but the batch "
                f"must be known; got shape {shape}"
            )
        self.batch_shape = (batch_size,) + shape
        self.built = True
        Node(self, [], [(None,) + shape])

    def get_config(self):
        return {"batch_shape": self.batch_shape, "dtype": self.dtype.name, "name": self.name}

    @classmethod
    def from_config(cls, config_dict):
        batch_shape = config_dict["batch_shape"]
        return cls(shape=batch_shape[1:], batch_size=batch_shape[0], dtype=config_dict.get("dtype"), name=config_dict["name"])


def Input(shape=None, batch_size=None, dtype=None, name=None):
    """A symbolic input tensor, the start of a functional model.

    Args:
        shape: the shape of one sample, e.g. ``(28, 28)``.
        batch_size: optional fixed batch size.
        dtype: the dtype the input is cast to (``floatx()`` by default).
        name: a name for the input (used as the key for dict inputs).
    """
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name).output
