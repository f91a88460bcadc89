"""BatchNormalization and LayerNormalization (over the last axis)."""

import numpy as np

from nkeras.layers.core import _as_2d, _reject_unsupported, _serialize_initializer
from nkeras.layers.layer import Layer


def _check_epsilon(layer, epsilon):
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
        raise ValueError(f"{type(layer).__name__} '{layer.name}': epsilon must be a positive float, got {epsilon!r}")
    return float(epsilon)


def _check_last_axis(layer, axis, input_shape):
    """nkeras normalises over the channels_last axis only."""
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    rank = len(input_shape)
    if rank < 2:
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}': expected an input of rank >= 2, got shape {tuple(input_shape)}"
        )
    if len(axes) != 1 or axes[0] not in (-1, rank - 1):
        raise NotImplementedError(
            f"{type(layer).__name__} '{layer.name}': only the last axis (axis=-1) is supported in nkeras, "
            f"got axis={axis!r} for an input of rank {rank}"
        )


def _check_channels(layer, input_shape, channels):
    if len(input_shape) < 2 or input_shape[-1] != channels:
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}': expected an input of rank >= 2 with {channels} channels "
            f"(last axis), got shape {tuple(input_shape)}"
        )


class _AffineNormalization(Layer):
    """The learned ``gamma`` and ``beta`` both normalisations share, with
    stand-ins for the kernels when ``scale`` or ``center`` is off (the
    kernels leave a stand-in alone)."""

    def _gamma_and_beta(self, stand_in):
        return (self.gamma.value if self.scale else stand_in, self.beta.value if self.center else stand_in)

    def _gamma_and_beta_grads(self, stand_in):
        return (self.gamma.grad if self.scale else stand_in, self.beta.grad if self.center else stand_in)


class BatchNormalization(_AffineNormalization):
    """Normalises each channel (the last axis) with the batch's mean and
    variance in training and with their moving averages at inference:
    ``gamma * (x - mean) / sqrt(variance + epsilon) + beta``.

    Training updates ``moving = moving * momentum + batch_statistic * (1 -
    momentum)`` (the batch variance is biased). As in Keras 3, a layer with
    ``trainable=False`` runs in inference mode and leaves its statistics alone.

    Args:
        axis: the channel axis; only -1 (the last) is supported.
        momentum: momentum of the moving averages, in [0, 1].
        epsilon: positive float added to the variance.
        center: whether to add the learned offset ``beta``.
        scale: whether to multiply by the learned ``gamma``.
        beta_initializer: initializer of ``beta`` ("zeros").
        gamma_initializer: initializer of ``gamma`` ("ones").
        moving_mean_initializer: initializer of the moving mean ("zeros").
        moving_variance_initializer: initializer of the moving variance ("ones").
    """

    supports_masking = True

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        renorm=False,
        renorm_clipping=None,
        renorm_momentum=0.99,  # only read by renorm, which nkeras rejects
        synchronized=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise NotImplementedError(
                f"BatchNormalization '{self.name}': only the last axis (axis=-1) is supported in nkeras, got {axis!r}"
            )
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
            raise ValueError(f"BatchNormalization '{self.name}': momentum must be a float in [0, 1], got {momentum!r}")
        _reject_unsupported(
            self.name,
            beta_regularizer=beta_regularizer,
            gamma_regularizer=gamma_regularizer,
            beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint,
            renorm=renorm or None,
            renorm_clipping=renorm_clipping,
            synchronized=synchronized or None,
        )
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = _check_epsilon(self, epsilon)
        self.center = center
        self.scale = scale
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer
        self.moving_mean_initializer = moving_mean_initializer
        self.moving_variance_initializer = moving_variance_initializer

    def build(self, input_shape):
        _check_last_axis(self, self.axis, input_shape)
        shape = (input_shape[-1],)
        self.gamma = self.add_weight(shape, self.gamma_initializer, "gamma") if self.scale else None
        self.beta = self.add_weight(shape, self.beta_initializer, "beta") if self.center else None
        self.moving_mean = self.add_weight(shape, self.moving_mean_initializer, "moving_mean", trainable=False)
        self.moving_variance = self.add_weight(
            shape, self.moving_variance_initializer, "moving_variance", trainable=False
        )
        self.built = True

    def check_input_shape(self, input_shape):
        _check_channels(self, input_shape, self.moving_mean.shape[0])

    def compute_output_shape(self, input_shape):
        return input_shape

    def state_shapes(self, input_shapes, training):
        channels = input_shapes[0][-1]
        return {"mean": (channels,), "inv_std": (channels,)}

    def _uses_batch_statistics(self, ctx):
        return ctx.training and self.trainable

    def forward(self, ctx, inputs, outputs, state):
        gamma, beta = self._gamma_and_beta(state["mean"])
        ctx.ops.batch_norm_forward(
            _as_2d(inputs[0]), gamma, beta, self.scale, self.center, self._uses_batch_statistics(ctx),
            self.momentum, self.epsilon, self.moving_mean.value, self.moving_variance.value,
            state["mean"], state["inv_std"], _as_2d(outputs[0]),
        )

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dy = _as_2d(output_grads[0])
        dx = input_grads[0]
        gamma, _ = self._gamma_and_beta(state["mean"])
        dgamma, dbeta = self._gamma_and_beta_grads(state["mean"])
        ctx.ops.batch_norm_backward(
            _as_2d(inputs[0]), dy, gamma, self.scale, self.center, self._uses_batch_statistics(ctx),
            state["mean"], state["inv_std"], dgamma, dbeta, dy if dx is None else _as_2d(dx), dx is not None,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": _serialize_initializer(self.beta_initializer),
            "gamma_initializer": _serialize_initializer(self.gamma_initializer),
            "moving_mean_initializer": _serialize_initializer(self.moving_mean_initializer),
            "moving_variance_initializer": _serialize_initializer(self.moving_variance_initializer),
        }


class LayerNormalization(_AffineNormalization):
    """Normalises each sample over its last axis with its own mean and
    variance: ``gamma * (x - mean) / sqrt(variance + epsilon) + beta``.

    Args:
        axis: the axis to normalise; only -1 (the last) is supported.
        epsilon: positive float added to the variance.
        center: whether to add the learned offset ``beta``.
        scale: whether to multiply by the learned ``gamma``.
        beta_initializer: initializer of ``beta`` ("zeros").
        gamma_initializer: initializer of ``gamma`` ("ones").
    """

    supports_masking = True

    def __init__(
        self,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        rms_scaling=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _reject_unsupported(
            self.name,
            beta_regularizer=beta_regularizer,
            gamma_regularizer=gamma_regularizer,
            beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint,
            rms_scaling=rms_scaling or None,
        )
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else axis
        self.epsilon = _check_epsilon(self, epsilon)
        self.center = center
        self.scale = scale
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer

    def build(self, input_shape):
        _check_last_axis(self, self.axis, input_shape)
        shape = (input_shape[-1],)
        self.gamma = self.add_weight(shape, self.gamma_initializer, "gamma") if self.scale else None
        self.beta = self.add_weight(shape, self.beta_initializer, "beta") if self.center else None
        self._channels = input_shape[-1]
        self.built = True

    def check_input_shape(self, input_shape):
        _check_channels(self, input_shape, self._channels)

    def compute_output_shape(self, input_shape):
        return input_shape

    def state_shapes(self, input_shapes, training):
        rows = int(np.prod(input_shapes[0][:-1]))
        return {"mean": (rows,), "inv_std": (rows,)}

    def forward(self, ctx, inputs, outputs, state):
        gamma, beta = self._gamma_and_beta(state["mean"])
        ctx.ops.layer_norm_forward(
            _as_2d(inputs[0]), gamma, beta, self.scale, self.center, self.epsilon,
            state["mean"], state["inv_std"], _as_2d(outputs[0]),
        )

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dy = _as_2d(output_grads[0])
        dx = input_grads[0]
        gamma, _ = self._gamma_and_beta(state["mean"])
        dgamma, dbeta = self._gamma_and_beta_grads(state["mean"])
        ctx.ops.layer_norm_backward(
            _as_2d(inputs[0]), dy, gamma, self.scale, self.center, state["mean"], state["inv_std"],
            dgamma, dbeta, dy if dx is None else _as_2d(dx), dx is not None,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": _serialize_initializer(self.beta_initializer),
            "gamma_initializer": _serialize_initializer(self.gamma_initializer),
        }
