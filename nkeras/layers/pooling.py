"""Pooling layers: max and average pooling over windows, and global pooling,
1-D and 2-D, channels_last.

The windowed layers run the 2-D NHWC kernels, 1-D inputs ``(batch, steps,
channels)`` as ``(batch, 1, steps, channels)`` views; global pooling works
on ``(batch, positions, channels)`` views.
"""

import math

from nkeras.layers.conv_utils import (
    check_data_format,
    check_kernel_fits,
    check_spatial_input,
    conv_output_length,
    normalize_padding,
    normalize_tuple,
    padding_before,
)
from nkeras.layers.layer import Layer


def as_nhwc_shape(shape):
    """A ``(batch, steps, channels)`` shape as ``(batch, 1, steps, channels)``."""
    shape = tuple(shape)
    return shape if len(shape) == 4 else (shape[0], 1, shape[1], shape[2])


def as_nhwc(array):
    """A ``(batch, steps, channels)`` array as a ``(batch, 1, steps, channels)``
    view, so that 1-D layers run the 2-D kernels (also used in reshaping.py)."""
    return array if len(array.shape) == 4 else array.reshape(as_nhwc_shape(array.shape))


class _Pooling(Layer):
    """Max or average pooling over ``_rank`` spatial axes.

    Args:
        pool_size: int or tuple of ``_rank`` ints, the window size.
        strides: int or tuple of ``_rank`` ints; None means ``pool_size``.
        padding: "valid" (windows inside the input only) or "same" (the
            output has ``ceil(length / stride)`` positions; padding never
            takes part in a maximum or an average).
        data_format: "channels_last" (or None) only.
    """

    _rank = 2

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = normalize_tuple(pool_size, self._rank, "pool_size", self.name)
        strides = pool_size if strides is None else strides
        self.strides = normalize_tuple(strides, self._rank, "strides", self.name)
        self.padding = normalize_padding(padding, ("valid", "same"), self.name)
        self.data_format = check_data_format(data_format, self.name)

    def check_input_shape(self, input_shape):
        check_spatial_input(self.name, input_shape, self._rank)
        check_kernel_fits(self.name, input_shape[1:-1], self.pool_size, self.padding, what="pool_size")

    def compute_output_shape(self, input_shape):
        spatial = tuple(
            conv_output_length(length, pool, self.padding, stride)
            for length, pool, stride in zip(input_shape[1:-1], self.pool_size, self.strides)
        )
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def _window_arguments(self, input_shape):
        """pool_rows, pool_cols, stride_rows, stride_cols, pad_top, pad_left of the NHWC view."""
        single_row = (1,) * (2 - self._rank)
        pool, strides = single_row + self.pool_size, single_row + self.strides
        spatial = single_row + tuple(input_shape[1:-1])
        pads = tuple(
            padding_before(length, size, self.padding, stride) for length, size, stride in zip(spatial, pool, strides)
        )
        return pool + strides + pads

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "padding": self.padding,
            "strides": self.strides,
            "data_format": self.data_format,
        }


class _MaxPooling(_Pooling):
    def state_shapes(self, input_shapes, training):
        # Where each window's maximum is, for the backward pass.
        return {"argmax": as_nhwc_shape(self.compute_output_shape(input_shapes[0]))}

    def forward(self, ctx, inputs, outputs, state):
        x = inputs[0]
        ctx.ops.max_pool_forward(as_nhwc(x), *self._window_arguments(x.shape), as_nhwc(outputs[0]), state["argmax"])

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dx = input_grads[0]
        if dx is not None:
            ctx.ops.max_pool_backward(
                as_nhwc(output_grads[0]), state["argmax"], *self._window_arguments(dx.shape), as_nhwc(dx)
            )


class _AveragePooling(_Pooling):
    def forward(self, ctx, inputs, outputs, state):
        x = inputs[0]
        ctx.ops.average_pool_forward(as_nhwc(x), *self._window_arguments(x.shape), as_nhwc(outputs[0]))

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dx = input_grads[0]
        if dx is not None:
            ctx.ops.average_pool_backward(as_nhwc(output_grads[0]), *self._window_arguments(dx.shape), as_nhwc(dx))


class MaxPooling1D(_MaxPooling):
    """Max pooling over the steps of ``(batch, steps, channels)`` inputs.

    Args:
        pool_size: int, the window length (2).
        strides: int or None (``pool_size``).
        padding: "valid" or "same".
        data_format: "channels_last" (or None) only.
    """

    _rank = 1

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling2D(_MaxPooling):
    """Max pooling over the rows and columns of ``(batch, rows, cols,
    channels)`` inputs. In a window with several maxima the gradient goes to
    the first in row-major order, as in Keras (JAX/XLA).

    Args:
        pool_size: int or (rows, cols), the window size ((2, 2)).
        strides: int, (rows, cols) or None (``pool_size``).
        padding: "valid" or "same".
        data_format: "channels_last" (or None) only.
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling1D(_AveragePooling):
    """Average pooling over the steps of ``(batch, steps, channels)`` inputs;
    with padding="same" a window averages its real elements only.

    Args:
        pool_size: int, the window length.
        strides: int or None (``pool_size``).
        padding: "valid" or "same".
        data_format: "channels_last" (or None) only.
    """

    _rank = 1


class AveragePooling2D(_AveragePooling):
    """Average pooling over the rows and columns of ``(batch, rows, cols,
    channels)`` inputs; with padding="same" a window averages its real
    elements only.

    Args:
        pool_size: int or (rows, cols), the window size.
        strides: int, (rows, cols) or None (``pool_size``).
        padding: "valid" or "same".
        data_format: "channels_last" (or None) only.
    """


class _GlobalPooling(Layer):
    """Pooling over every spatial position, one value per channel.

    Args:
        data_format: "channels_last" (or None) only.
        keepdims: keep the spatial axes with length 1.
    """

    _rank = 2

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, self.name)
        self.keepdims = keepdims

    def check_input_shape(self, input_shape):
        check_spatial_input(self.name, input_shape, self._rank)

    def compute_output_shape(self, input_shape):
        if self.keepdims:
            return (input_shape[0],) + (1,) * self._rank + (input_shape[-1],)
        return (input_shape[0], input_shape[-1])

    @staticmethod
    def _positions(array):
        """``(batch, ..., channels)`` as ``(batch, positions, channels)``."""
        shape = tuple(array.shape)
        return array.reshape(shape[0], math.prod(shape[1:-1]), shape[-1])

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class _GlobalMaxPooling(_GlobalPooling):
    def state_shapes(self, input_shapes, training):
        # How many positions hold each maximum: they share its gradient, as in Keras.
        shape = input_shapes[0]
        return {"ties": (shape[0], shape[-1])}

    def forward(self, ctx, inputs, outputs, state):
        ties = state["ties"]
        ctx.ops.global_max_pool_forward(self._positions(inputs[0]), outputs[0].reshape(ties.shape), ties)

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dx = input_grads[0]
        if dx is not None:
            ties = state["ties"]
            ctx.ops.global_max_pool_backward(
                self._positions(inputs[0]), outputs[0].reshape(ties.shape), ties, output_grads[0].reshape(ties.shape),
                self._positions(dx),
            )


class _GlobalAveragePooling(_GlobalPooling):
    """The mean as one average-pooling window over all ``positions`` of a
    ``(batch, 1, positions, channels)`` view."""

    @staticmethod
    def _as_window(array):
        """The view and the window arguments (pool, strides, pads) of one window."""
        shape = tuple(array.shape)
        positions = math.prod(shape[1:-1])
        return array.reshape(shape[0], 1, positions, shape[-1]), (1, positions, 1, positions, 0, 0)

    @staticmethod
    def _as_pooled(array):
        """The output, ``(batch, channels)`` or with kept dims, as ``(batch, 1, 1, channels)``."""
        shape = tuple(array.shape)
        return array.reshape(shape[0], 1, 1, shape[-1])

    def forward(self, ctx, inputs, outputs, state):
        x, window = self._as_window(inputs[0])
        ctx.ops.average_pool_forward(x, *window, self._as_pooled(outputs[0]))

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            dx, window = self._as_window(input_grads[0])
            ctx.ops.average_pool_backward(self._as_pooled(output_grads[0]), *window, dx)


class GlobalMaxPooling1D(_GlobalMaxPooling):
    """The maximum over the steps of ``(batch, steps, channels)`` inputs.

    Args:
        data_format: "channels_last" (or None) only.
        keepdims: keep the steps axis with length 1.
    """

    _rank = 1


class GlobalMaxPooling2D(_GlobalMaxPooling):
    """The maximum over the rows and columns of ``(batch, rows, cols,
    channels)`` inputs.

    Args:
        data_format: "channels_last" (or None) only.
        keepdims: keep the spatial axes with length 1.
    """


class GlobalAveragePooling1D(_GlobalAveragePooling):
    """The mean over the steps of ``(batch, steps, channels)`` inputs; with
    a mask of padded steps (from ``Embedding(mask_zero=True)`` or
    ``Masking``), the mean over the unmasked steps.

    Args:
        data_format: "channels_last" (or None) only.
        keepdims: keep the steps axis with length 1.
    """

    _rank = 1
    reads_mask = True

    def forward(self, ctx, inputs, outputs, state):
        mask = state.get("mask")
        if mask is None:
            super().forward(ctx, inputs, outputs, state)
        else:
            ctx.ops.masked_average_pool_forward(inputs[0], mask, self._as_pooled(outputs[0]).reshape(mask.shape[0], -1))

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        mask = state.get("mask")
        if mask is None:
            super().backward(ctx, inputs, outputs, state, output_grads, input_grads)
        elif input_grads[0] is not None:
            ctx.ops.masked_average_pool_backward(output_grads[0].reshape(mask.shape[0], -1), mask, input_grads[0])


class GlobalAveragePooling2D(_GlobalAveragePooling):
    """The mean over the rows and columns of ``(batch, rows, cols,
    channels)`` inputs.

    Args:
        data_format: "channels_last" (or None) only.
        keepdims: keep the spatial axes with length 1.
    """


# Keras's aliases.
MaxPool1D = MaxPooling1D
MaxPool2D = MaxPooling2D
AvgPool1D = AveragePooling1D
AvgPool2D = AveragePooling2D
GlobalMaxPool1D = GlobalMaxPooling1D
GlobalMaxPool2D = GlobalMaxPooling2D
GlobalAvgPool1D = GlobalAveragePooling1D
GlobalAvgPool2D = GlobalAveragePooling2D
