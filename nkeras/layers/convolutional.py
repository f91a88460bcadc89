"""Conv1D, Conv2D and Conv2DTranspose (channels_last).

Every convolution runs as a 2-D one, by im2col and a GEMM whose epilogue adds
the bias and applies the activation, or for 3x3 kernels between enough
channels by Winograd F(4x4, 3x3) (docs/convolution.md). A Conv1D's (batch,
steps, channels) tensors are viewed as (batch, 1, steps, channels) images
and its kernel as a 1-row one.
"""

import numpy as np

from nkeras import activations
from nkeras.layers.conv_utils import (
    check_data_format,
    check_kernel_fits,
    check_spatial_input,
    conv_output_length,
    normalize_padding,
    normalize_tuple,
    padding_before,
)
from nkeras.layers.core import _reject_unsupported, _serialize_initializer
from nkeras.layers.layer import Layer

# Activations whose gradient reads only the output: their pre-activation
# needs no buffer of its own.
_OUTPUT_ONLY_GRADIENTS = ("linear", "relu", "sigmoid", "tanh", "softmax")
# With fewer input or output channels Winograd's tile transforms cost about
# what its smaller GEMMs save, and im2col is as fast or faster (measured in
# docs/convolution.md).
_WINOGRAD_MIN_CHANNELS = 8


def _check_filters(filters, layer_name):
    if not isinstance(filters, (int, np.integer)) or isinstance(filters, bool) or filters <= 0:
        raise ValueError(f"Layer '{layer_name}': filters must be a positive integer, got {filters!r}")
    return int(filters)


def _check_strides_with_dilation(strides, dilation_rate, layer_name):
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise ValueError(
            f"Layer '{layer_name}': strides > 1 is not supported together with dilation_rate > 1, "
            f"got strides={strides} and dilation_rate={dilation_rate}"
        )


def _as_image(array, rank):
    """A rank-1 layer's (batch, steps, channels) array as (batch, 1, steps, channels)."""
    return array if rank == 2 else array.reshape((array.shape[0], 1) + tuple(array.shape[1:]))


def _as_image_kernel(array, rank):
    return array if rank == 2 else array.reshape((1,) + tuple(array.shape))


def _as_pair(values, rank, fill):
    return tuple(values) if rank == 2 else (fill,) + tuple(values)


class _ConvBase(Layer):
    """What convolutions and transposed convolutions share: arguments,
    weights, the activation and the bias buffers. Subclasses give the
    kernel's shape, the output shape and the kernels' scratch and calls."""

    def __init__(
        self,
        rank,
        filters,
        kernel_size,
        strides,
        padding,
        data_format,
        dilation_rate,
        activation,
        use_bias,
        kernel_initializer,
        bias_initializer,
        kernel_regularizer,
        bias_regularizer,
        activity_regularizer,
        kernel_constraint,
        bias_constraint,
        allowed_padding,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _reject_unsupported(
            self.name,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
        )
        self.rank = rank
        self.filters = _check_filters(filters, self.name)
        self.kernel_size = normalize_tuple(kernel_size, rank, "kernel_size", self.name)
        self.strides = normalize_tuple(strides, rank, "strides", self.name)
        self.padding = normalize_padding(padding, allowed_padding, self.name)
        self.data_format = check_data_format(data_format, self.name)
        self.dilation_rate = normalize_tuple(dilation_rate, rank, "dilation_rate", self.name)
        _check_strides_with_dilation(self.strides, self.dilation_rate, self.name)
        self.activation = activations.get(activation)
        self._code, self._alpha = activations.activation_code(activation)
        self._needs_pre_activation = activations.serialize(self.activation) not in _OUTPUT_ONLY_GRADIENTS
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def build(self, input_shape):
        check_spatial_input(self.name, input_shape, self.rank)
        self._check_spatial(input_shape)
        self.kernel = self.add_weight(self._kernel_shape(input_shape[-1]), self.kernel_initializer, "kernel")
        self.bias = self.add_weight((self.filters,), self.bias_initializer, "bias") if self.use_bias else None
        self.built = True

    def check_input_shape(self, input_shape):
        check_spatial_input(self.name, input_shape, self.rank, self._input_channels())
        self._check_spatial(input_shape)

    def state_shapes(self, input_shapes, training):
        input_shape = input_shapes[0]
        output_shape = (input_shape[0],) + tuple(self.compute_output_shape(input_shape)[1:])
        state = self._scratch_shapes(input_shape, output_shape, training)
        if training and self._needs_pre_activation:
            state["z"] = output_shape
        if not self.use_bias:
            state["zero_bias"] = (self.filters,)
            state["bias_grad"] = (self.filters,)
        return state

    def _arrays(self, state, inputs, outputs):
        """The input, output and pre-activation as images, and the bias."""
        y = _as_image(outputs[0], self.rank)
        z = _as_image(state["z"], self.rank) if "z" in state else y
        bias = self.bias.value if self.use_bias else state["zero_bias"]
        return _as_image(inputs[0], self.rank), y, z, bias

    def _gradients(self, state, output_grads, input_grads, x):
        """The output gradient (also the kernels' dz), the kernel and bias
        gradients, the input gradient (``x`` as a placeholder when none is
        needed) and whether it is needed."""
        need_dx = input_grads[0] is not None
        bias_grad = self.bias.grad if self.use_bias else state["bias_grad"]
        dx = _as_image(input_grads[0], self.rank) if need_dx else x
        kernel_grad = _as_image_kernel(self.kernel.grad, self.rank)
        return _as_image(output_grads[0], self.rank), kernel_grad, bias_grad, dx, need_dx

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
        }

    def _activation_config(self):
        return {
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": _serialize_initializer(self.kernel_initializer),
            "bias_initializer": _serialize_initializer(self.bias_initializer),
        }


class BaseConv(_ConvBase):
    """A 1-D or 2-D convolution: ``activation(conv(inputs, kernel) + bias)``.

    3x3 kernels with stride and dilation 1 and at least
    ``_WINOGRAD_MIN_CHANNELS`` input and output channels run by Winograd
    F(4x4, 3x3), the others by im2col (docs/convolution.md).
    """

    def __init__(
        self,
        rank,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            rank, filters, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, activity_regularizer,
            kernel_constraint, bias_constraint, ("valid", "same", "causal") if rank == 1 else ("valid", "same"),
            **kwargs,
        )
        if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups <= 0:
            raise ValueError(f"Layer '{self.name}': groups must be a positive integer, got {groups!r}")
        if groups != 1:
            raise NotImplementedError(f"Layer '{self.name}': groups={groups} not supported yet in nkeras (only 1)")
        self.groups = 1

    def _kernel_shape(self, channels):
        return self.kernel_size + (channels, self.filters)

    def _input_channels(self):
        return self.kernel.shape[-2]

    def _check_spatial(self, input_shape):
        # Causal padding adds the dilated kernel's length minus one before the input.
        check_kernel_fits(self.name, input_shape[1:-1], self.kernel_size, self.padding, self.dilation_rate)

    def compute_output_shape(self, input_shape):
        spatial = tuple(
            conv_output_length(length, size, self.padding, stride, rate)
            for length, size, stride, rate in zip(input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate)
        )
        return (input_shape[0],) + spatial + (self.filters,)

    def parallel_kernels(self, input_shapes):
        """The Winograd CPU kernels split the batch over Numba's threads."""
        return self._uses_winograd()

    def _uses_winograd(self):
        return (
            self.kernel_size == (3, 3)
            and self.strides == (1, 1)
            and self.dilation_rate == (1, 1)
            and min(self._input_channels(), self.filters) >= _WINOGRAD_MIN_CHANNELS
        )

    def _scratch_shapes(self, input_shape, output_shape, training):
        channels = input_shape[-1]
        if not self._uses_winograd():
            return {"cols": (int(np.prod(output_shape[:-1])), int(np.prod(self.kernel_size)) * channels)}
        batch, out_h, out_w, filters = output_shape
        tiles_h, tiles_w = -(-out_h // 4), -(-out_w // 4)
        tiles = batch * tiles_h * tiles_w
        scratch = {
            "padded": (batch, 4 * tiles_h + 2, 4 * tiles_w + 2, channels),
            "v": (36, tiles, channels),
            "u": (36, channels, filters),
            "m": (36, tiles, filters),
        }
        if training:
            scratch["du"] = (36, channels, filters)
        return scratch

    def _padding(self, input_shape):
        return tuple(
            padding_before(length, size, self.padding, stride, rate)
            for length, size, stride, rate in zip(input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate)
        )

    def _geometry(self, input_shape):
        """The im2col kernels' (strides, dilation, padding) pairs."""
        rank = self.rank
        return (
            _as_pair(self.strides, rank, 1), _as_pair(self.dilation_rate, rank, 1),
            _as_pair(self._padding(input_shape), rank, 0),
        )

    def forward(self, ctx, inputs, outputs, state):
        x, y, z, bias = self._arrays(state, inputs, outputs)
        kernel = _as_image_kernel(self.kernel.value, self.rank)
        if "v" in state:
            ctx.ops.conv2d_winograd_forward(
                x, kernel, bias, self._padding(tuple(inputs[0].shape)), self._code, self._alpha,
                state["padded"], state["v"], state["u"], state["m"], z, y,
            )
        else:
            ctx.ops.conv2d_forward(
                x, kernel, bias, *self._geometry(tuple(inputs[0].shape)), self._code, self._alpha, state["cols"], z, y
            )

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        x, y, z, _ = self._arrays(state, inputs, outputs)
        dy, kernel_grad, bias_grad, dx, need_dx = self._gradients(state, output_grads, input_grads, x)
        if "v" in state:
            ctx.ops.conv2d_winograd_backward(
                z, y, dy, self._padding(tuple(inputs[0].shape)), self._code, self._alpha, state["padded"],
                state["v"], state["u"], state["m"], state["du"], dy, kernel_grad, bias_grad, dx, need_dx,
            )
        else:
            ctx.ops.conv2d_backward(
                x, _as_image_kernel(self.kernel.value, self.rank), z, y, dy, *self._geometry(tuple(inputs[0].shape)),
                self._code, self._alpha, state["cols"], dy, kernel_grad, bias_grad, dx, need_dx,
            )

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, **self._activation_config()}


class Conv1D(BaseConv):
    """1-D convolution over (batch, steps, channels) inputs.

    Args:
        filters: the number of output channels.
        kernel_size: the window's length (an int or a 1-tuple).
        strides: the step between windows.
        padding: "valid", "same" (zeros around, the odd one after) or
            "causal" (all the zeros before, so ``output[t]`` sees no input
            after ``t``).
        data_format: "channels_last" (or None) only.
        dilation_rate: the spacing between the window's taps.
        groups: 1 only.
        activation: activation name (None means linear).
        use_bias: whether to add a bias vector.
        kernel_initializer: initializer of the (kernel_size, channels,
            filters) kernel ("glorot_uniform").
        bias_initializer: initializer of the bias ("zeros").
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1, **kwargs):
        super().__init__(1, filters, kernel_size, strides, padding, data_format, dilation_rate, **kwargs)


class Conv2D(BaseConv):
    """2-D convolution over (batch, rows, cols, channels) inputs.

    Args:
        filters: the number of output channels.
        kernel_size: the window's (rows, cols), or one int for both.
        strides: the step between windows, (rows, cols) or one int.
        padding: "valid" or "same" (zeros around, the odd one after).
        data_format: "channels_last" (or None) only.
        dilation_rate: the spacing between the window's taps.
        groups: 1 only.
        activation: activation name (None means linear).
        use_bias: whether to add a bias vector.
        kernel_initializer: initializer of the (rows, cols, channels,
            filters) kernel ("glorot_uniform").
        bias_initializer: initializer of the bias ("zeros").
    """

    def __init__(
        self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None, dilation_rate=(1, 1), **kwargs
    ):
        super().__init__(2, filters, kernel_size, strides, padding, data_format, dilation_rate, **kwargs)


def _transpose_left_padding(kernel, stride, dilation, padding, output_padding):
    """The zeros Keras's JAX backend puts before the stride-dilated input
    (``_convert_conv_transpose_padding_args_from_keras_to_jax``)."""
    effective = (kernel - 1) * dilation + 1
    if padding == "valid":
        return effective - 1
    total = stride + effective - 2 if output_padding is None else effective + effective % 2 - 2 + output_padding
    return min(total // 2 + total % 2, effective - 1)


def _transpose_output_length(length, kernel, stride, dilation, padding, output_padding):
    """Keras 3's output length of a transposed convolution along one axis."""
    effective = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(effective, stride) - effective if output_padding is None else output_padding
        return (length - 1) * stride + effective + extra
    if output_padding is None:
        return length * stride
    return (length - 1) * stride + effective % 2 + output_padding


class Conv2DTranspose(_ConvBase):
    """Transposed 2-D convolution (the gradient of a convolution with
    respect to its input), over (batch, rows, cols, channels) inputs.

    Args:
        filters: the number of output channels.
        kernel_size: the window's (rows, cols), or one int for both.
        strides: the upsampling step, (rows, cols) or one int.
        padding: "valid" or "same".
        output_padding: extra rows/cols added after the output (each less
            than its stride), or None to let Keras's rule choose.
        data_format: "channels_last" (or None) only.
        dilation_rate: the spacing between the window's taps.
        activation: activation name (None means linear).
        use_bias: whether to add a bias vector.
        kernel_initializer: initializer of the (rows, cols, filters,
            channels) kernel ("glorot_uniform").
        bias_initializer: initializer of the bias ("zeros").
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            2, filters, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, activity_regularizer,
            kernel_constraint, bias_constraint, ("valid", "same"), **kwargs,
        )
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = normalize_tuple(output_padding, 2, "output_padding", self.name, allow_zero=True)
            if any(extra >= stride for extra, stride in zip(self.output_padding, self.strides)):
                raise ValueError(
                    f"Layer '{self.name}': output_padding must be less than strides in every dimension, "
                    f"got output_padding={self.output_padding} and strides={self.strides}"
                )

    def _kernel_shape(self, channels):
        return self.kernel_size + (self.filters, channels)

    def _input_channels(self):
        return self.kernel.shape[-1]

    def _output_paddings(self):
        return self.output_padding or (None, None)

    def _check_spatial(self, input_shape):
        spatial = self.compute_output_shape(input_shape)[1:-1]
        if min(spatial) <= 0:
            raise ValueError(
                f"Layer '{self.name}': input {tuple(input_shape[1:-1])} gives an empty output {spatial} with "
                f"kernel_size={self.kernel_size}, padding='{self.padding}' and output_padding={self.output_padding}"
            )

    def compute_output_shape(self, input_shape):
        spatial = tuple(
            _transpose_output_length(length, size, stride, rate, self.padding, extra)
            for length, size, stride, rate, extra in zip(
                input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate, self._output_paddings()
            )
        )
        return (input_shape[0],) + spatial + (self.filters,)

    def _scratch_shapes(self, input_shape, output_shape, training):
        return {"cols": (int(np.prod(input_shape[:-1])), int(np.prod(self.kernel_size)) * self.filters)}

    def _geometry(self, input_shape):
        # The output is the input gradient of a convolution from the output's
        # shape to the input's; that convolution pads this much before.
        padding = tuple(
            (size - 1) * rate - _transpose_left_padding(size, stride, rate, self.padding, extra)
            for size, stride, rate, extra in zip(
                self.kernel_size, self.strides, self.dilation_rate, self._output_paddings()
            )
        )
        return self.strides, self.dilation_rate, padding

    def forward(self, ctx, inputs, outputs, state):
        x, y, z, bias = self._arrays(state, inputs, outputs)
        ctx.ops.conv2d_transpose_forward(
            x, self.kernel.value, bias, *self._geometry(tuple(inputs[0].shape)), self._code, self._alpha,
            state["cols"], z, y,
        )

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        x, y, z, _ = self._arrays(state, inputs, outputs)
        dy, kernel_grad, bias_grad, dx, need_dx = self._gradients(state, output_grads, input_grads, x)
        ctx.ops.conv2d_transpose_backward(
            x, self.kernel.value, z, y, dy, *self._geometry(tuple(inputs[0].shape)), self._code, self._alpha,
            state["cols"], dy, kernel_grad, bias_grad, dx, need_dx,
        )

    def get_config(self):
        config = super().get_config()
        config["output_padding"] = self.output_padding
        return {**config, **self._activation_config()}
