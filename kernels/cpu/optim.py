"""Optimizer updates and gradient clipping over flat buffers.

Every trainable weight lives in one flat ``params`` buffer, its gradient in a
flat ``grads`` buffer of the same layout, and each optimizer slot (momentum,
velocity, ...) in one more flat buffer of that size, so one call updates the
whole model. Scalars arrive as Python floats and are cast to the buffers'
dtype, so float32 buffers are updated in float32 arithmetic, as Keras does.

The updates run on one thread: they are memory-bound, and Numba's OpenMP
workers spin after a parallel region and starve the BLAS threads of the
GEMMs that follow (see docs/architecture.md, "Threads"). The update loops
use ``error_model="numpy"``: with Python's error model every division checks
for a zero divisor, which keeps LLVM from vectorizing the loop (Adam on 670k
float32 parameters: 1.9 ms scalar, 0.38 ms vectorized); a zero divisor now
gives inf/NaN, as in Keras, instead of raising.

Slot values that decay below float32's smallest normal number are flushed
to zero: they can no longer move a weight, and arithmetic on denormal
numbers is tens of times slower on x86 (Adam's momentum of rarely active
inputs reaches them within two Fashion-MNIST epochs, and the step slows 3x).

Weight decay is Keras's decoupled form, applied before the update:
``w -= w * weight_decay * learning_rate`` (``weight_decay=0.0`` disables it).
"""

import math

import numpy as np
from numba import njit


_TINY = 1.1754943508222875e-38


@njit(cache=True, inline="always")
def _flush(value, tiny, zero):
    return value if abs(value) >= tiny else zero


@njit(cache=True, error_model="numpy")
def sgd_update(params, grads, momentum_buf, learning_rate, momentum, nesterov, weight_decay):
    """Gradient descent, with (Nesterov) momentum when ``momentum > 0``.

    ``m = momentum * m - lr * g``, then ``w += m`` or, with ``nesterov``,
    ``w += momentum * m - lr * g``; without momentum ``w -= lr * g`` and
    ``momentum_buf`` (may be empty) is not touched.
    """
    lr = params.dtype.type(learning_rate)
    mu = params.dtype.type(momentum)
    tiny = params.dtype.type(_TINY)
    zero = params.dtype.type(0.0)
    decay = params.dtype.type(weight_decay * learning_rate)
    use_momentum = momentum != 0.0
    for i in range(params.size):
        w = params[i] - params[i] * decay
        scaled_grad = grads[i] * lr
        if use_momentum:
            velocity = _flush(momentum_buf[i] * mu - scaled_grad, tiny, zero)
            momentum_buf[i] = velocity
            if nesterov:
                w += velocity * mu - scaled_grad
            else:
                w += velocity
        else:
            w -= scaled_grad
        params[i] = w


@njit(cache=True, error_model="numpy")
def adam_update(params, grads, m, v, v_hat_max, learning_rate, beta_1, beta_2, epsilon, step, amsgrad, weight_decay):
    """Adam (AdamW when ``weight_decay > 0``), Keras's formulation.

    ``m += (g - m) * (1 - beta_1)``, ``v += (g^2 - v) * (1 - beta_2)``,
    ``w -= m * alpha / (sqrt(v) + epsilon)`` with
    ``alpha = lr * sqrt(1 - beta_2^step) / (1 - beta_1^step)``; ``step`` is the
    1-based step count. With ``amsgrad``, ``v_hat_max = max(v_hat_max, v)``
    replaces ``v`` in the denominator; otherwise ``v_hat_max`` (may be
    empty) is not touched.
    """
    alpha = params.dtype.type(learning_rate * math.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step))
    keep_1 = params.dtype.type(1.0 - beta_1)
    keep_2 = params.dtype.type(1.0 - beta_2)
    eps = params.dtype.type(epsilon)
    tiny = params.dtype.type(_TINY)
    zero = params.dtype.type(0.0)
    decay = params.dtype.type(weight_decay * learning_rate)
    for i in range(params.size):
        g = grads[i]
        w = params[i] - params[i] * decay
        m_i = _flush(m[i] + (g - m[i]) * keep_1, tiny, zero)
        v_i = _flush(v[i] + (g * g - v[i]) * keep_2, tiny, zero)
        m[i] = m_i
        v[i] = v_i
        if amsgrad:
            if v_i > v_hat_max[i]:
                v_hat_max[i] = v_i
            v_i = v_hat_max[i]
        params[i] = w - m_i * alpha / (math.sqrt(v_i) + eps)


@njit(cache=True, error_model="numpy")
def rmsprop_update(params, grads, velocity, average_grad, momentum_buf, learning_rate, rho, momentum, epsilon, centered,
                   weight_decay):
    """RMSprop, Keras's formulation.

    ``velocity = rho * velocity + (1 - rho) * g^2``; with ``centered``,
    ``average_grad = rho * average_grad + (1 - rho) * g`` and the
    denominator is ``sqrt(velocity - average_grad^2 + epsilon)``, otherwise
    ``sqrt(velocity + epsilon)``. ``increment = lr * g / denominator``; with
    ``momentum > 0``, ``momentum_buf = momentum * momentum_buf + increment``
    and ``w -= momentum_buf``, otherwise ``w -= increment``. Unused slot
    buffers may be empty.
    """
    lr = params.dtype.type(learning_rate)
    decay_rate = params.dtype.type(rho)
    keep = params.dtype.type(1.0 - rho)
    mu = params.dtype.type(momentum)
    eps = params.dtype.type(epsilon)
    tiny = params.dtype.type(_TINY)
    zero = params.dtype.type(0.0)
    decay = params.dtype.type(weight_decay * learning_rate)
    use_momentum = momentum > 0.0
    for i in range(params.size):
        g = grads[i]
        w = params[i] - params[i] * decay
        v_i = _flush(decay_rate * velocity[i] + keep * (g * g), tiny, zero)
        velocity[i] = v_i
        if centered:
            a_i = _flush(decay_rate * average_grad[i] + keep * g, tiny, zero)
            average_grad[i] = a_i
            denominator = v_i - a_i * a_i + eps
        else:
            denominator = v_i + eps
        increment = lr * g / math.sqrt(denominator)
        if use_momentum:
            increment = _flush(mu * momentum_buf[i] + increment, tiny, zero)
            momentum_buf[i] = increment
        params[i] = w - increment


@njit(cache=True, error_model="numpy")
def adagrad_update(params, grads, accumulator, learning_rate, epsilon, weight_decay):
    """Adagrad: ``accumulator += g^2``, ``w -= lr * g / sqrt(accumulator + epsilon)``."""
    lr = params.dtype.type(learning_rate)
    eps = params.dtype.type(epsilon)
    decay = params.dtype.type(weight_decay * learning_rate)
    for i in range(params.size):
        g = grads[i]
        w = params[i] - params[i] * decay
        acc = accumulator[i] + g * g
        accumulator[i] = acc
        params[i] = w - lr * g / math.sqrt(acc + eps)


@njit(cache=True)
def clip_by_value(grads, clipvalue):
    """Clip every gradient element to ``[-clipvalue, clipvalue]`` in place."""
    high = grads.dtype.type(clipvalue)
    low = -high
    for i in range(grads.size):
        if grads[i] > high:
            grads[i] = high
        elif grads[i] < low:
            grads[i] = low


@njit(cache=True, fastmath={"reassoc", "contract"})
def _squared_norm(values, start, stop):
    total = 0.0
    for i in range(start, stop):
        value = np.float64(values[i])
        total += value * value
    return total


@njit(cache=True)
def _scale(values, start, stop, factor):
    scale = values.dtype.type(factor)
    for i in range(start, stop):
        values[i] *= scale


@njit(cache=True)
def clip_by_segment_norm(grads, segments, clipnorm):
    """Keras's ``clipnorm``: rescale each variable's gradient
    ``grads[segments[k]:segments[k + 1]]`` so its L2 norm is at most
    ``clipnorm`` (``g * clipnorm / max(norm, clipnorm)``)."""
    for k in range(segments.size - 1):
        start, stop = segments[k], segments[k + 1]
        norm = math.sqrt(_squared_norm(grads, start, stop))
        if not norm <= clipnorm:
            _scale(grads, start, stop, clipnorm / norm)


@njit(cache=True)
def clip_by_global_norm(grads, clipnorm, norm_out):
    """Keras's ``global_clipnorm``: rescale all gradients together so their
    joint L2 norm is at most ``clipnorm``; a non-finite norm turns every
    gradient into NaN, as in Keras.

    norm_out: float64 (1,), receives the norm before clipping.
    """
    norm = math.sqrt(_squared_norm(grads, 0, grads.size))
    norm_out[0] = norm
    if not norm <= clipnorm:
        _scale(grads, 0, grads.size, clipnorm / norm + (norm - norm))
