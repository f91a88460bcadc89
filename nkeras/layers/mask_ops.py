"""The two Keras operations Keras 3 model files record where a mask is
computed: ``ops.not_equal(x, value)`` (Embedding's ``mask_zero``) and
``ops.any(x, axis=-1)`` (Masking). Keras writes them as layers of module
``keras.src.ops.numpy``; nkeras rebuilds them as these layers so that such
files load. Their outputs are 0/1 floats and carry no gradient."""

import numbers

from nkeras.layers.layer import Layer


def _rows(array):
    return array.reshape(-1, tuple(array.shape)[-1]) if array.ndim != 2 else array


class _ComparisonOp(Layer):
    """What the op layers share: no weights, no gradient (a comparison is
    flat almost everywhere), written back under Keras's op module."""

    keras_module = "keras.src.ops.numpy"

    def state_shapes(self, input_shapes, training):
        return {"zeros": _rows_shape(input_shapes[0])} if training else {}

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            ctx.ops.copy_into(_rows(input_grads[0]), state["zeros"])

    def get_config(self):
        return {"name": self.name}


def _rows_shape(shape):
    cols = shape[-1]
    rows = 1
    for dim in shape[:-1]:
        rows *= dim
    return (rows, cols)


class NotEqual(_ComparisonOp):
    """``1.0 where x != value, else 0.0``, called as ``NotEqual()(x, value)``
    with a number ``value``, as Keras records ``ops.not_equal``."""

    def __call__(self, x, value=None, **kwargs):
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise NotImplementedError(
                f"NotEqual '{self.name}': nkeras compares a tensor with a number only, got {type(value).__name__}"
            )
        if getattr(self, "value", None) is not None and self.value != float(value):
            raise ValueError(f"NotEqual '{self.name}' was first called with value {self.value}, now {value}")
        self.value = float(value)
        return super().__call__(x, **kwargs)

    def call_arguments(self, node):
        return [node.data_inputs[0], self.value], {}

    def forward(self, ctx, inputs, outputs, state):
        ctx.ops.not_equal(_rows(inputs[0]), self.value, _rows(outputs[0]))


class Any(_ComparisonOp):
    """``1.0 where some value along the last axis is non-zero``: Keras's
    ``ops.any(x, axis=-1)``.

    Args:
        axis: -1 (the last axis) only.
        keepdims: False only.
    """

    def __init__(self, axis=-1, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        if axis != -1 or keepdims:
            raise NotImplementedError(f"Any '{self.name}': only axis=-1 without keepdims is supported, got axis={axis!r}")
        self.axis = axis
        self.keepdims = keepdims

    def check_input_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"Any '{self.name}': expected an input of rank >= 2, got shape {tuple(input_shape)}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def forward(self, ctx, inputs, outputs, state):
        ctx.ops.any_nonzero(_rows(inputs[0]), outputs[0].reshape(-1))

    def get_config(self):
        return {"name": self.name, "axis": self.axis, "keepdims": self.keepdims}


KERAS_OP_LAYERS = {cls.__name__: cls for cls in (NotEqual, Any)}
