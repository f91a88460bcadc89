"""DepthwiseConv2D and SeparableConv2D (channels_last)."""

import numpy as np

from nkeras import activations
from nkeras.layers import conv_utils
from nkeras.layers.core import _as_2d, _reject_unsupported, _serialize_initializer
from nkeras.layers.layer import Layer

_LINEAR, _ = activations.activation_code("linear")


def _is_positive_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


class _BaseDepthwiseConv(Layer):
    """What both layers share: the depthwise step's arguments, checks and
    geometry. Subclasses create the weights and run the kernels."""

    def __init__(
        self, kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation, use_bias,
        depthwise_initializer, bias_initializer, **kwargs,
    ):
        super().__init__(**kwargs)
        kind = type(self).__name__
        if not _is_positive_int(depth_multiplier):
            raise ValueError(
                f"{kind} '{self.name}': depth_multiplier must be a positive integer, got {depth_multiplier!r}"
            )
        self.kernel_size = conv_utils.normalize_tuple(kernel_size, 2, "kernel_size", self.name)
        self.strides = conv_utils.normalize_tuple(strides, 2, "strides", self.name)
        self.dilation_rate = conv_utils.normalize_tuple(dilation_rate, 2, "dilation_rate", self.name)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"{kind} '{self.name}': strides > 1 cannot be combined with dilation_rate > 1, "
                f"got strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        self.padding = conv_utils.normalize_padding(padding, ("valid", "same"), self.name)
        self.data_format = conv_utils.check_data_format(data_format, self.name)
        self.depth_multiplier = int(depth_multiplier)
        self.activation = activations.get(activation)
        self._code, self._alpha = activations.activation_code(activation)
        self.use_bias = use_bias
        self.depthwise_initializer = depthwise_initializer
        self.bias_initializer = bias_initializer

    def _check_input(self, input_shape, channels=None):
        conv_utils.check_spatial_input(self.name, input_shape, 2, channels)
        conv_utils.check_kernel_fits(self.name, input_shape[1:3], self.kernel_size, self.padding, self.dilation_rate)

    def check_input_shape(self, input_shape):
        self._check_input(input_shape, self._input_channels)

    def _output_spatial(self, input_shape):
        return tuple(
            conv_utils.conv_output_length(length, size, self.padding, stride, rate)
            for length, size, stride, rate in zip(input_shape[1:3], self.kernel_size, self.strides, self.dilation_rate)
        )

    def _padding_before(self, input_shape):
        return tuple(
            conv_utils.padding_before(length, size, self.padding, stride, rate)
            for length, size, stride, rate in zip(input_shape[1:3], self.kernel_size, self.strides, self.dilation_rate)
        )

    def _depthwise_forward(self, ctx, x, kernel, bias, code, alpha, z, y):
        ctx.ops.depthwise_conv2d_forward(
            x, kernel, bias, self.strides, self.dilation_rate, self._padding_before(x.shape), code, alpha, z, y
        )

    def _depthwise_backward(self, ctx, x, kernel, z, y, dy, code, alpha, kernel_grad, bias_grad, dx):
        ctx.ops.depthwise_conv2d_backward(
            x, kernel, z, y, dy, self.strides, self.dilation_rate, self._padding_before(x.shape), code, alpha,
            dy, kernel_grad, bias_grad, dy if dx is None else dx, dx is not None,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "depth_multiplier": self.depth_multiplier,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "depthwise_initializer": _serialize_initializer(self.depthwise_initializer),
            "bias_initializer": _serialize_initializer(self.bias_initializer),
        }


class DepthwiseConv2D(_BaseDepthwiseConv):
    """A 2-D depthwise convolution: each input channel is convolved with its
    own ``depth_multiplier`` filters; output channel ``c * depth_multiplier
    + m`` comes from input channel ``c`` and filter ``m``. Bias and
    activation are fused into the kernel.

    Args:
        kernel_size: an int or a pair of ints, the window's (rows, cols).
        strides: an int or a pair, the step of the window (1).
        padding: "valid" (no padding) or "same" (output size
            ``ceil(input / strides)``).
        depth_multiplier: filters per input channel (1).
        data_format: "channels_last" (or None) only.
        dilation_rate: an int or a pair, the spacing of the taps (1);
            cannot exceed 1 together with strides.
        activation: activation name (None means linear).
        use_bias: whether to add a bias per output channel.
        depthwise_initializer: initializer of the kernel ("glorot_uniform").
        bias_initializer: initializer of the bias ("zeros").
    """

    def __init__(
        self,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        depth_multiplier=1,
        data_format=None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation, use_bias,
            depthwise_initializer, bias_initializer, **kwargs,
        )
        _reject_unsupported(
            self.name,
            depthwise_regularizer=depthwise_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            depthwise_constraint=depthwise_constraint,
            bias_constraint=bias_constraint,
        )

    @property
    def _input_channels(self):
        return self.kernel.shape[2]

    def build(self, input_shape):
        self._check_input(input_shape)
        channels = input_shape[-1]
        self.kernel = self.add_weight(
            self.kernel_size + (channels, self.depth_multiplier), self.depthwise_initializer, "kernel"
        )
        out_channels = channels * self.depth_multiplier
        self.bias = self.add_weight((out_channels,), self.bias_initializer, "bias") if self.use_bias else None
        self.built = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._output_spatial(input_shape) + (input_shape[-1] * self.depth_multiplier,)

    def state_shapes(self, input_shapes, training):
        output_shape = self.compute_output_shape(input_shapes[0])
        state = {}
        if training and self._code != _LINEAR:
            state["z"] = output_shape
        if not self.use_bias:
            state["zero_bias"] = output_shape[-1:]
            state["bias_grad"] = output_shape[-1:]
        return state

    def forward(self, ctx, inputs, outputs, state):
        y = outputs[0]
        bias = self.bias.value if self.use_bias else state["zero_bias"]
        self._depthwise_forward(ctx, inputs[0], self.kernel.value, bias, self._code, self._alpha, state.get("z", y), y)

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        y = outputs[0]
        bias_grad = self.bias.grad if self.use_bias else state["bias_grad"]
        self._depthwise_backward(
            ctx, inputs[0], self.kernel.value, state.get("z", y), y, output_grads[0], self._code, self._alpha,
            self.kernel.grad, bias_grad, input_grads[0],
        )


class SeparableConv2D(_BaseDepthwiseConv):
    """A depthwise 2-D convolution (no bias) followed by a pointwise 1 x 1
    convolution to ``filters`` channels, which adds the bias and applies the
    activation (it runs as a GEMM over the pixels).

    Args:
        filters: positive integer, the number of output channels.
        kernel_size: an int or a pair of ints, the depthwise window.
        strides: an int or a pair, the step of the window (1).
        padding: "valid" or "same".
        data_format: "channels_last" (or None) only.
        dilation_rate: an int or a pair, the spacing of the taps (1).
        depth_multiplier: depthwise filters per input channel (1).
        activation: activation name (None means linear).
        use_bias: whether to add a bias per output channel.
        depthwise_initializer: initializer of the depthwise kernel.
        pointwise_initializer: initializer of the pointwise kernel.
        bias_initializer: initializer of the bias ("zeros").
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        depth_multiplier=1,
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        pointwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        pointwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        pointwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation, use_bias,
            depthwise_initializer, bias_initializer, **kwargs,
        )
        if not _is_positive_int(filters):
            raise ValueError(f"SeparableConv2D '{self.name}': filters must be a positive integer, got {filters!r}")
        _reject_unsupported(
            self.name,
            depthwise_regularizer=depthwise_regularizer,
            pointwise_regularizer=pointwise_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            depthwise_constraint=depthwise_constraint,
            pointwise_constraint=pointwise_constraint,
            bias_constraint=bias_constraint,
        )
        self.filters = int(filters)
        self.pointwise_initializer = pointwise_initializer

    @property
    def _input_channels(self):
        return self.depthwise_kernel.shape[2]

    def build(self, input_shape):
        self._check_input(input_shape)
        channels = input_shape[-1]
        self.depthwise_kernel = self.add_weight(
            self.kernel_size + (channels, self.depth_multiplier), self.depthwise_initializer, "depthwise_kernel"
        )
        self.pointwise_kernel = self.add_weight(
            (1, 1, channels * self.depth_multiplier, self.filters), self.pointwise_initializer, "pointwise_kernel"
        )
        self.bias = self.add_weight((self.filters,), self.bias_initializer, "bias") if self.use_bias else None
        self.built = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._output_spatial(input_shape) + (self.filters,)

    def state_shapes(self, input_shapes, training):
        input_shape = input_shapes[0]
        depthwise_shape = (input_shape[0],) + self._output_spatial(input_shape) + (
            input_shape[-1] * self.depth_multiplier,
        )
        state = {"depthwise": depthwise_shape, "depthwise_zero_bias": depthwise_shape[-1:]}
        if training:
            state["depthwise_grad"] = depthwise_shape
            state["depthwise_bias_grad"] = depthwise_shape[-1:]
            if self._code != _LINEAR:
                state["z"] = (int(np.prod(depthwise_shape[:-1])), self.filters)
        if not self.use_bias:
            state["zero_bias"] = (self.filters,)
            state["bias_grad"] = (self.filters,)
        return state

    def _pointwise(self, variable):
        return variable.reshape(self.pointwise_kernel.shape[2], self.filters)

    def forward(self, ctx, inputs, outputs, state):
        depthwise = state["depthwise"]
        no_bias = state["depthwise_zero_bias"]
        self._depthwise_forward(ctx, inputs[0], self.depthwise_kernel.value, no_bias, _LINEAR, 0.0, depthwise, depthwise)
        y = _as_2d(outputs[0])
        bias = self.bias.value if self.use_bias else state["zero_bias"]
        ctx.ops.dense_forward(
            _as_2d(depthwise), self._pointwise(self.pointwise_kernel.value), bias, self._code, self._alpha,
            state.get("z", y), y,
        )

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        depthwise, depthwise_grad = state["depthwise"], state["depthwise_grad"]
        y = _as_2d(outputs[0])
        dy = _as_2d(output_grads[0])
        bias_grad = self.bias.grad if self.use_bias else state["bias_grad"]
        ctx.ops.dense_backward(
            _as_2d(depthwise), self._pointwise(self.pointwise_kernel.value), state.get("z", y), y, dy, self._code,
            self._alpha, dy, self._pointwise(self.pointwise_kernel.grad), bias_grad, _as_2d(depthwise_grad), True,
        )
        self._depthwise_backward(
            ctx, inputs[0], self.depthwise_kernel.value, depthwise, depthwise, depthwise_grad, _LINEAR, 0.0,
            self.depthwise_kernel.grad, state["depthwise_bias_grad"], input_grads[0],
        )

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "pointwise_initializer": _serialize_initializer(self.pointwise_initializer),
        }
