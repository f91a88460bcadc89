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

Each update's arithmetic for one element is an inlined helper over scalars
(``_adam_element`` ...) that the CUDA twins call too. The helpers take and
return values, not arrays: an array passed to an inlined function gets
reference-count calls inside the loop, and LLVM no longer vectorizes it
(Adam: 1.85 ms instead of 0.40 ms); nor can a kernel on numba's CUDA
simulator pass its arrays to a CPU-compiled helper.
"""

import math

import numpy as np
from numba import njit

_TINY = 1.1754943508222875e-38


@njit(cache=True, inline="always")
def _flush(value, tiny, zero):
    return value if abs(value) >= tiny else zero


@njit(cache=True, error_model="numpy", inline="always")
def _sgd_element(w, g, velocity, lr, mu, tiny, zero, decay, use_momentum, nesterov):
    """One weight's step: returns ``(w, velocity)``."""
    w = w - w * decay
    scaled_grad = g * lr
    if use_momentum:
        velocity = _flush(velocity * mu - scaled_grad, tiny, zero)
        if nesterov:
            w += velocity * mu - scaled_grad
        else:
            w += velocity
    else:
        w -= scaled_grad
    return w, velocity


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
        velocity = momentum_buf[i] if use_momentum else zero
        w, velocity = _sgd_element(params[i], grads[i], velocity, lr, mu, tiny, zero, decay, use_momentum, nesterov)
        if use_momentum:
            momentum_buf[i] = velocity
        params[i] = w


@njit(cache=True, error_model="numpy", inline="always")
def _adam_alpha(learning_rate, beta_1, beta_2, step):
    """Adam's bias-corrected step size, in float64 (the CUDA launcher calls
    it on the host)."""
    return learning_rate * math.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)


@njit(cache=True, error_model="numpy", inline="always")
def _adam_element(w, g, m, v, v_hat, alpha, keep_1, keep_2, eps, tiny, zero, decay, amsgrad):
    """One weight's step: returns ``(w, m, v, v_hat)``; ``v_hat`` is only
    used and updated with ``amsgrad``."""
    w = w - w * decay
    m = _flush(m + (g - m) * keep_1, tiny, zero)
    v = _flush(v + (g * g - v) * keep_2, tiny, zero)
    second_moment = v
    if amsgrad:
        if v > v_hat:
            v_hat = v
        second_moment = v_hat
    return w - m * alpha / (math.sqrt(second_moment) + eps), m, v, v_hat


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
    alpha = params.dtype.type(_adam_alpha(learning_rate, beta_1, beta_2, step))
    keep_1 = params.dtype.type(1.0 - beta_1)
    keep_2 = params.dtype.type(1.0 - beta_2)
    eps = params.dtype.type(epsilon)
    tiny = params.dtype.type(_TINY)
    zero = params.dtype.type(0.0)
    decay = params.dtype.type(weight_decay * learning_rate)
    for i in range(params.size):
        v_hat = v_hat_max[i] if amsgrad else zero
        w, m_i, v_i, v_hat = _adam_element(params[i], grads[i], m[i], v[i], v_hat, alpha, keep_1, keep_2, eps, tiny,
                                           zero, decay, amsgrad)
        m[i] = m_i
        v[i] = v_i
        if amsgrad:
            v_hat_max[i] = v_hat
        params[i] = w


@njit(cache=True, error_model="numpy", inline="always")
def _rmsprop_element(w, g, velocity, average_grad, momentum, lr, decay_rate, keep, mu, eps, tiny, zero, decay,
                     use_momentum, centered):
    """One weight's step: returns ``(w, velocity, average_grad, momentum)``;
    ``average_grad`` is only used with ``centered``, ``momentum`` only with
    ``use_momentum``."""
    w = w - w * decay
    velocity = _flush(decay_rate * velocity + keep * (g * g), tiny, zero)
    if centered:
        average_grad = _flush(decay_rate * average_grad + keep * g, tiny, zero)
        denominator = velocity - average_grad * average_grad + eps
    else:
        denominator = velocity + eps
    increment = lr * g / math.sqrt(denominator)
    if use_momentum:
        momentum = _flush(mu * momentum + increment, tiny, zero)
        increment = momentum
    return w - increment, velocity, average_grad, momentum


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
        a_i = average_grad[i] if centered else zero
        m_i = momentum_buf[i] if use_momentum else zero
        w, v_i, a_i, m_i = _rmsprop_element(params[i], grads[i], velocity[i], a_i, m_i, lr, decay_rate, keep, mu, eps,
                                            tiny, zero, decay, use_momentum, centered)
        velocity[i] = v_i
        if centered:
            average_grad[i] = a_i
        if use_momentum:
            momentum_buf[i] = m_i
        params[i] = w


@njit(cache=True, error_model="numpy", inline="always")
def _adagrad_element(w, g, accumulator, lr, eps, decay):
    """One weight's step: returns ``(w, accumulator)``."""
    w = w - w * decay
    accumulator = accumulator + g * g
    return w - lr * g / math.sqrt(accumulator + eps), accumulator


@njit(cache=True, error_model="numpy")
def adagrad_update(params, grads, accumulator, learning_rate, epsilon, weight_decay):
    """Adagrad: ``accumulator += g^2``, ``w -= lr * g / sqrt(accumulator + epsilon)``."""
    lr = params.dtype.type(learning_rate)
    eps = params.dtype.type(epsilon)
    decay = params.dtype.type(weight_decay * learning_rate)
    for i in range(params.size):
        w, acc = _adagrad_element(params[i], grads[i], accumulator[i], lr, eps, decay)
        accumulator[i] = acc
        params[i] = w


@njit(cache=True, inline="always")
def _clip(value, low, high):
    """``value`` clipped to ``[low, high]``; NaN stays NaN."""
    if value > high:
        return high
    if value < low:
        return low
    return value


@njit(cache=True)
def clip_by_value(grads, clipvalue):
    """Clip every gradient element to ``[-clipvalue, clipvalue]`` in place."""
    high = grads.dtype.type(clipvalue)
    low = -high
    for i in range(grads.size):
        grads[i] = _clip(grads[i], low, high)


@njit(cache=True, inline="always")
def _square(value):
    value = np.float64(value)
    return value * value


@njit(cache=True, fastmath={"reassoc", "contract"})
def _squared_norm(values, start, stop):
    total = 0.0
    for i in range(start, stop):
        total += _square(values[i])
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


@njit(cache=True, error_model="numpy", inline="always")
def _global_clip_factor(norm, clipnorm):
    # NaN (inf - inf) when the norm is not finite, as in Keras.
    return clipnorm / norm + (norm - norm)


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
        _scale(grads, 0, grads.size, _global_clip_factor(norm, clipnorm))
