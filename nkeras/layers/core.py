"""Dense, Activation and Dropout."""

import numpy as np

from nkeras import activations
from nkeras.layers.layer import Layer
from nkeras.random import draw_seed


def _as_2d(array):
    return array if array.ndim == 2 else array.reshape(-1, tuple(array.shape)[-1])


def _reject_unsupported(layer_name, **options):
    given = sorted(name for name, value in options.items() if value is not None)
    if given:
        raise NotImplementedError(f"Layer '{layer_name}': {', '.join(given)} not supported yet in nkeras")


class Dense(Layer):
    """A densely connected layer: ``activation(inputs @ kernel + bias)``.

    On inputs of rank > 2 it works over the last axis, as in Keras. The bias
    and activation run in the GEMM's epilogue.

    Args:
        units: positive integer, the size of the output's last axis.
        activation: activation name (None means linear).
        use_bias: whether to add a bias vector.
        kernel_initializer: initializer of the kernel ("glorot_uniform").
        bias_initializer: initializer of the bias ("zeros").
    """

    supports_masking = True

    def __init__(
        self,
        units,
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
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units <= 0:
            raise ValueError(f"Dense '{self.name}': units must be a positive integer, got {units!r}")
        _reject_unsupported(
            self.name,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
        )
        self.units = int(units)
        self.activation = activations.get(activation)
        self._code, self._alpha = activations.activation_code(activation)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"Dense '{self.name}': expected an input of rank >= 2, got shape {input_shape}")
        self.kernel = self.add_weight((input_shape[-1], self.units), self.kernel_initializer, "kernel")
        self.bias = self.add_weight((self.units,), self.bias_initializer, "bias") if self.use_bias else None
        self.built = True

    def check_input_shape(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] != self.kernel.shape[0]:
            raise ValueError(
                f"Dense '{self.name}': expected input with last dimension {self.kernel.shape[0]}, "
                f"got shape {input_shape}"
            )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def state_shapes(self, input_shapes, training):
        rows = int(np.prod(input_shapes[0][:-1]))
        state = {}
        if training and self._code != 0:
            state["z"] = (rows, self.units)
        if not self.use_bias:
            state["zero_bias"] = (self.units,)
            state["bias_grad"] = (self.units,)
        return state

    def forward(self, ctx, inputs, outputs, state):
        y = _as_2d(outputs[0])
        bias = self.bias.value if self.use_bias else state["zero_bias"]
        ctx.ops.dense_forward(_as_2d(inputs[0]), self.kernel.value, bias, self._code, self._alpha, state.get("z", y), y)

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dy = _as_2d(output_grads[0])
        y = _as_2d(outputs[0])
        dx = input_grads[0]
        bias_grad = self.bias.grad if self.use_bias else state["bias_grad"]
        ctx.ops.dense_backward(
            _as_2d(inputs[0]), self.kernel.value, state.get("z", y), y, dy, self._code, self._alpha,
            dy, self.kernel.grad, bias_grad, dy if dx is None else _as_2d(dx), dx is not None,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": _serialize_initializer(self.kernel_initializer),
            "bias_initializer": _serialize_initializer(self.bias_initializer),
        }


def _serialize_initializer(initializer):
    from nkeras import initializers

    return initializer if isinstance(initializer, str) else initializers.serialize(initializers.get(initializer))


class Activation(Layer):
    """Applies an activation function.

    Args:
        activation: the activation's name, e.g. "relu".
    """

    supports_masking = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self._code, self._alpha = activations.activation_code(activation)

    def forward(self, ctx, inputs, outputs, state):
        ctx.ops.activation_forward(_as_2d(inputs[0]), self._code, self._alpha, _as_2d(outputs[0]))

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            ctx.ops.activation_backward(
                _as_2d(inputs[0]), _as_2d(outputs[0]), _as_2d(output_grads[0]), self._code, self._alpha,
                _as_2d(input_grads[0]),
            )

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class Dropout(Layer):
    """Randomly sets inputs to 0 with probability ``rate`` during training and
    scales the rest by ``1 / (1 - rate)``; does nothing at inference.

    Args:
        rate: float in [0, 1), the fraction of inputs to drop.
        seed: optional integer seed (drawn from the global stream otherwise).
    """

    supports_masking = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"Dropout '{self.name}': rate must be a float in [0, 1), got {rate!r}")
        _reject_unsupported(self.name, noise_shape=noise_shape)
        self.rate = float(rate)
        self.seed = seed
        self._seed = draw_seed() if seed is None else int(seed)

    def output_is_view(self, training):
        return not training or self.rate == 0.0

    def state_shapes(self, input_shapes, training):
        shape = input_shapes[0]
        return {"mask": (int(np.prod(shape[:-1])), shape[-1])}

    def forward(self, ctx, inputs, outputs, state):
        ctx.ops.dropout_forward(_as_2d(inputs[0]), self.rate, self._seed, ctx.step, state["mask"], _as_2d(outputs[0]))

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is None:
            return
        if self.rate == 0.0:
            # A view in training too; the plan runs this only when the input's
            # gradient is a sum over several readers and needs its own buffer.
            ctx.ops.copy_into(_as_2d(input_grads[0]), _as_2d(output_grads[0]))
        else:
            ctx.ops.dropout_backward(_as_2d(output_grads[0]), state["mask"], _as_2d(input_grads[0]))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
