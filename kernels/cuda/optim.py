"""Optimizer updates and gradient clipping on the GPU, over the same flat
buffers as the CPU twins.

An update is one elementwise kernel, one thread per element, running the
CPU module's per-element helper. The scalars the CPU twin casts to the
buffers' dtype are cast here on the host, so the kernel computes in that
dtype as the CPU does. Norms are float64 block reductions in shared memory;
the global norm stays on the device (``norm_out``) and the scale kernel
reads it from there, so clipping needs no host round trip.
"""

import math

import numba
from numba import cuda

from nkeras.kernels.cpu.optim import (
    _TINY,
    _adagrad_element,
    _adam_alpha,
    _adam_element,
    _clip,
    _global_clip_factor,
    _rmsprop_element,
    _sgd_element,
    _square,
)
from nkeras.kernels.cuda.launch import THREADS, blocks


@cuda.jit(cache=True)
def _sgd(params, grads, momentum_buf, lr, mu, tiny, zero, decay, use_momentum, nesterov):
    for i in range(cuda.grid(1), params.size, cuda.gridsize(1)):
        velocity = momentum_buf[i] if use_momentum else zero
        w, velocity = _sgd_element(params[i], grads[i], velocity, lr, mu, tiny, zero, decay, use_momentum, nesterov)
        if use_momentum:
            momentum_buf[i] = velocity
        params[i] = w


def sgd_update(params, grads, momentum_buf, learning_rate, momentum, nesterov, weight_decay):
    """Gradient descent with optional (Nesterov) momentum, as the CPU twin."""
    cast = params.dtype.type
    _sgd[blocks(params.size), THREADS](
        params, grads, momentum_buf, cast(learning_rate), cast(momentum), cast(_TINY), cast(0.0),
        cast(weight_decay * learning_rate), momentum != 0.0, bool(nesterov),
    )


@cuda.jit(cache=True)
def _adam(params, grads, m, v, v_hat_max, alpha, keep_1, keep_2, eps, tiny, zero, decay, amsgrad):
    for i in range(cuda.grid(1), params.size, cuda.gridsize(1)):
        v_hat = v_hat_max[i] if amsgrad else zero
        w, m_i, v_i, v_hat = _adam_element(params[i], grads[i], m[i], v[i], v_hat, alpha, keep_1, keep_2, eps, tiny,
                                           zero, decay, amsgrad)
        m[i] = m_i
        v[i] = v_i
        if amsgrad:
            v_hat_max[i] = v_hat
        params[i] = w


def adam_update(params, grads, m, v, v_hat_max, learning_rate, beta_1, beta_2, epsilon, step, amsgrad, weight_decay):
    """Adam (AdamW when ``weight_decay > 0``), as the CPU twin."""
    cast = params.dtype.type
    _adam[blocks(params.size), THREADS](
        params, grads, m, v, v_hat_max, cast(_adam_alpha(learning_rate, beta_1, beta_2, step)), cast(1.0 - beta_1),
        cast(1.0 - beta_2), cast(epsilon), cast(_TINY), cast(0.0), cast(weight_decay * learning_rate), bool(amsgrad),
    )


@cuda.jit(cache=True)
def _rmsprop(params, grads, velocity, average_grad, momentum_buf, lr, decay_rate, keep, mu, eps, tiny, zero, decay,
             use_momentum, centered):
    for i in range(cuda.grid(1), params.size, cuda.gridsize(1)):
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


def rmsprop_update(params, grads, velocity, average_grad, momentum_buf, learning_rate, rho, momentum, epsilon, centered,
                   weight_decay):
    """RMSprop, as the CPU twin."""
    cast = params.dtype.type
    _rmsprop[blocks(params.size), THREADS](
        params, grads, velocity, average_grad, momentum_buf, cast(learning_rate), cast(rho), cast(1.0 - rho),
        cast(momentum), cast(epsilon), cast(_TINY), cast(0.0), cast(weight_decay * learning_rate), momentum > 0.0,
        bool(centered),
    )


@cuda.jit(cache=True)
def _adagrad(params, grads, accumulator, lr, eps, decay):
    for i in range(cuda.grid(1), params.size, cuda.gridsize(1)):
        w, acc = _adagrad_element(params[i], grads[i], accumulator[i], lr, eps, decay)
        accumulator[i] = acc
        params[i] = w


def adagrad_update(params, grads, accumulator, learning_rate, epsilon, weight_decay):
    """Adagrad, as the CPU twin."""
    cast = params.dtype.type
    _adagrad[blocks(params.size), THREADS](
        params, grads, accumulator, cast(learning_rate), cast(epsilon), cast(weight_decay * learning_rate)
    )


@cuda.jit(cache=True)
def _clip_values(grads, low, high):
    for i in range(cuda.grid(1), grads.size, cuda.gridsize(1)):
        grads[i] = _clip(grads[i], low, high)


def clip_by_value(grads, clipvalue):
    """Clip every gradient element to ``[-clipvalue, clipvalue]`` in place."""
    high = grads.dtype.type(clipvalue)
    _clip_values[blocks(grads.size), THREADS](grads, -high, high)


@cuda.jit(device=True)
def _block_squared_norm(values, start, stop, partial):
    """Sum of ``values[start:stop]**2`` in float64 over the block's threads;
    every thread gets the total. ``partial``: float64 shared (THREADS,)."""
    thread = cuda.threadIdx.x
    total = 0.0
    for i in range(start + thread, stop, THREADS):
        total += _square(values[i])
    partial[thread] = total
    cuda.syncthreads()
    half = THREADS // 2
    while half > 0:
        if thread < half:
            partial[thread] += partial[thread + half]
        cuda.syncthreads()
        half //= 2
    total = partial[0]
    # Before a later call overwrites partial[0].
    cuda.syncthreads()
    return total


@cuda.jit(cache=True)
def _clip_segments(grads, segments, clipnorm):
    partial = cuda.shared.array(THREADS, numba.float64)
    for k in range(cuda.blockIdx.x, segments.size - 1, cuda.gridDim.x):
        start = segments[k]
        stop = segments[k + 1]
        norm = math.sqrt(_block_squared_norm(grads, start, stop, partial))
        if not norm <= clipnorm:
            scale = grads.dtype.type(clipnorm / norm)
            for i in range(start + cuda.threadIdx.x, stop, THREADS):
                grads[i] *= scale


def clip_by_segment_norm(grads, segments, clipnorm):
    """Keras's ``clipnorm`` per variable, as the CPU twin: one block per
    segment reduces its squared norm and rescales it."""
    _clip_segments[blocks(segments.size - 1, 1), THREADS](grads, segments, float(clipnorm))


@cuda.jit(cache=True)
def _global_norm(grads, norm_out):
    partial = cuda.shared.array(THREADS, numba.float64)
    total = _block_squared_norm(grads, 0, grads.size, partial)
    if cuda.threadIdx.x == 0:
        norm_out[0] = math.sqrt(total)


@cuda.jit(cache=True)
def _scale_by_global_norm(grads, clipnorm, norm_out):
    norm = norm_out[0]
    if not norm <= clipnorm:
        scale = grads.dtype.type(_global_clip_factor(norm, clipnorm))
        for i in range(cuda.grid(1), grads.size, cuda.gridsize(1)):
            grads[i] *= scale


def clip_by_global_norm(grads, clipnorm, norm_out):
    """Keras's ``global_clipnorm``, as the CPU twin (a non-finite norm turns
    every gradient into NaN). norm_out: float64 device array (1,)."""
    _global_norm[1, THREADS](grads, norm_out)
    _scale_by_global_norm[blocks(grads.size), THREADS](grads, float(clipnorm), norm_out)
