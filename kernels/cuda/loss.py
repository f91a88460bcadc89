"""Loss kernels on the GPU, twins of ``kernels/cpu/loss.py``.

Each op launches one block of ``THREADS`` threads: thread ``t`` takes rows
``t, t + THREADS, ...``, runs the CPU module's row helper on each (writing
that row's gradient) and keeps a float64 partial sum; a tree reduction in
shared memory then adds the partial sums and thread 0 writes ``loss_sum[0]``.
A single block sums in a fixed order, so the loss is deterministic and needs
neither atomics nor a zeroed output.
"""

import numba
import numpy as np
from numba import config, cuda

from nkeras.kernels.cpu import loss as cpu
from nkeras.kernels.cuda.launch import THREADS

# The block sums add FAN partial sums per step: two barriers for 256 threads
# instead of a binary tree's eight. The GPU barely notices; on the CUDA
# simulator, where barriers are slow, a launch takes about half as long.
FAN = 16


def _row_helper(helper):
    """``helper``, an ``@njit`` row body, as the kernels call it. The
    simulator hands kernels Python wrappers of arrays that compiled code
    cannot take, so there it gets their NumPy views instead."""
    if not config.ENABLE_CUDASIM:
        return helper

    def call(*args):
        return helper(*[np.asarray(arg) if getattr(arg, "ndim", 0) else arg for arg in args])

    return call


@cuda.jit(device=True, inline="always")
def _block_sums(partial):
    """Sum each row of ``partial`` (shared float64, ``(n, THREADS)``, one
    column per thread, filled by the caller) into its column 0, in a fixed
    tree order; the sums are ready in thread 0 only."""
    thread = cuda.threadIdx.x
    stride = 1
    while stride < THREADS:
        cuda.syncthreads()
        if thread % (stride * FAN) == 0:
            stop = min(thread + stride * FAN, THREADS)
            for r in range(partial.shape[0]):
                total = partial[r, thread]
                for k in range(thread + stride, stop, stride):
                    total += partial[r, k]
                partial[r, thread] = total
        stride *= FAN


@cuda.jit(device=True, inline="always")
def _write_block_sum(value, loss_sum):
    """``loss_sum[0] =`` the sum of ``value`` over the block's threads."""
    partial = cuda.shared.array((1, THREADS), numba.float64)
    partial[0, cuda.threadIdx.x] = value
    _block_sums(partial)
    if cuda.threadIdx.x == 0:
        loss_sum[0] = partial[0, 0]


_mse_row = _row_helper(cpu._mse_row)
_mae_row = _row_helper(cpu._mae_row)
_huber_row = _row_helper(cpu._huber_row)
_bce_row = _row_helper(cpu._bce_row)
_cce_row = _row_helper(cpu._cce_row)
_scce_row = _row_helper(cpu._scce_row)
_kld_row = _row_helper(cpu._kld_row)


@cuda.jit(cache=True)
def _mean_squared_error(y_true, y_pred, sample_weight, scale, grad, loss_sum):
    total = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _mse_row(y_true, y_pred, sample_weight, i, scale, grad)
    _write_block_sum(total, loss_sum)


@cuda.jit(cache=True)
def _mean_absolute_error(y_true, y_pred, sample_weight, scale, grad, loss_sum):
    total = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _mae_row(y_true, y_pred, sample_weight, i, scale, grad)
    _write_block_sum(total, loss_sum)


@cuda.jit(cache=True)
def _huber(y_true, y_pred, sample_weight, delta, scale, grad, loss_sum):
    total = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _huber_row(y_true, y_pred, sample_weight, i, delta, scale, grad)
    _write_block_sum(total, loss_sum)


@cuda.jit(cache=True)
def _binary_crossentropy(
    y_true, y_pred, sample_weight, from_logits, label_smoothing, epsilon, scale, grad, loss_sum
):
    total = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _bce_row(
            y_true, y_pred, sample_weight, i, from_logits, label_smoothing, epsilon, scale, grad
        )
    _write_block_sum(total, loss_sum)


@cuda.jit(cache=True)
def _categorical_crossentropy(
    y_true, y_pred, sample_weight, from_logits, label_smoothing, epsilon, scale, grad, loss_sum
):
    total = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _cce_row(
            y_true, y_pred, sample_weight, i, from_logits, label_smoothing, epsilon, scale, grad
        )
    _write_block_sum(total, loss_sum)


@cuda.jit(cache=True)
def _sparse_categorical_crossentropy(y_true, y_pred, sample_weight, from_logits, epsilon, scale, grad, loss_sum):
    total = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _scce_row(y_true, y_pred, sample_weight, i, from_logits, epsilon, scale, grad)
    _write_block_sum(total, loss_sum)


@cuda.jit(cache=True)
def _kl_divergence(y_true, y_pred, sample_weight, epsilon, scale, grad, loss_sum):
    total = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _kld_row(y_true, y_pred, sample_weight, i, epsilon, scale, grad)
    _write_block_sum(total, loss_sum)


def mean_squared_error(y_true, y_pred, sample_weight, scale, grad, loss_sum):
    """As the CPU twin: ``loss_i = mean_j (y_pred - y_true)^2``."""
    _mean_squared_error[1, THREADS](y_true, y_pred, sample_weight, scale, grad, loss_sum)


def mean_absolute_error(y_true, y_pred, sample_weight, scale, grad, loss_sum):
    """As the CPU twin: ``loss_i = mean_j |y_pred - y_true|``."""
    _mean_absolute_error[1, THREADS](y_true, y_pred, sample_weight, scale, grad, loss_sum)


def huber(y_true, y_pred, sample_weight, delta, scale, grad, loss_sum):
    """As the CPU twin: the Huber loss with threshold ``delta``."""
    _huber[1, THREADS](y_true, y_pred, sample_weight, delta, scale, grad, loss_sum)


def binary_crossentropy(
    y_true, y_pred, sample_weight, from_logits, label_smoothing, epsilon, scale, grad, loss_sum
):
    """As the CPU twin: binary cross-entropy, averaged over the last axis."""
    _binary_crossentropy[1, THREADS](
        y_true, y_pred, sample_weight, from_logits, label_smoothing, epsilon, scale, grad, loss_sum
    )


def categorical_crossentropy(
    y_true, y_pred, sample_weight, from_logits, label_smoothing, epsilon, scale, grad, loss_sum
):
    """As the CPU twin: categorical cross-entropy, summed over the last axis."""
    _categorical_crossentropy[1, THREADS](
        y_true, y_pred, sample_weight, from_logits, label_smoothing, epsilon, scale, grad, loss_sum
    )


def sparse_categorical_crossentropy(y_true, y_pred, sample_weight, from_logits, epsilon, scale, grad, loss_sum):
    """As the CPU twin: categorical cross-entropy against class ids."""
    _sparse_categorical_crossentropy[1, THREADS](
        y_true, y_pred, sample_weight, from_logits, epsilon, scale, grad, loss_sum
    )


def kl_divergence(y_true, y_pred, sample_weight, epsilon, scale, grad, loss_sum):
    """As the CPU twin: ``loss_i = sum_j t log(t / p)``."""
    _kl_divergence[1, THREADS](y_true, y_pred, sample_weight, epsilon, scale, grad, loss_sum)


@cuda.jit(cache=True)
def _masked_row_weights(mask, weights, epsilon, out):
    partial = cuda.shared.array((1, THREADS), numba.float64)
    thread = cuda.threadIdx.x
    rows = mask.shape[0]
    valid = 0.0
    for i in range(thread, rows, THREADS):
        valid += mask[i]
    partial[0, thread] = valid
    _block_sums(partial)
    cuda.syncthreads()
    factor = rows / (partial[0, 0] + epsilon)
    for i in range(thread, rows, THREADS):
        out[i] = weights[i] * mask[i] * factor


def masked_row_weights(mask, weights, epsilon, out):
    _masked_row_weights[1, THREADS](mask, weights, epsilon, out)
