"""Metric kernels on the GPU, twins of ``kernels/cpu/metric.py``.

Each op launches one block of ``THREADS`` threads: thread ``t`` takes rows
``t, t + THREADS, ...``, runs the CPU module's row helper on each and keeps
float64 partial sums of the weighted values and of the weights; tree
reductions in shared memory then add them up and thread 0 adds the totals to
``acc[0]`` and ``acc[1]``. A single block sums in a fixed order, so the
totals are deterministic and need no atomics.
"""

import numba
import numpy as np
from numba import cuda

from nkeras.kernels.cpu import metric as cpu
from nkeras.kernels.cuda.launch import THREADS
from nkeras.kernels.cuda.loss import _block_sums, _row_helper


@cuda.jit(device=True, inline="always")
def _add_block_sums(total, weights, acc):
    """Add the sums over the block's threads of ``total`` to ``acc[0]`` and
    of ``weights`` to ``acc[1]``."""
    partial = cuda.shared.array((2, THREADS), numba.float64)
    partial[0, cuda.threadIdx.x] = total
    partial[1, cuda.threadIdx.x] = weights
    _block_sums(partial)
    if cuda.threadIdx.x == 0:
        acc[0] += partial[0, 0]
        acc[1] += partial[1, 0]


_accuracy_row = _row_helper(cpu._accuracy_row)
_binary_accuracy_row = _row_helper(cpu._binary_accuracy_row)
_categorical_accuracy_row = _row_helper(cpu._categorical_accuracy_row)
_sparse_categorical_accuracy_row = _row_helper(cpu._sparse_categorical_accuracy_row)
_top_k_categorical_accuracy_row = _row_helper(cpu._top_k_categorical_accuracy_row)
_sparse_top_k_categorical_accuracy_row = _row_helper(cpu._sparse_top_k_categorical_accuracy_row)
_mean_squared_error_row = _row_helper(cpu._mean_squared_error_row)
_mean_absolute_error_row = _row_helper(cpu._mean_absolute_error_row)


@cuda.jit(cache=True)
def _accuracy(y_true, y_pred, sample_weight, acc):
    total = 0.0
    weights = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _accuracy_row(y_true, y_pred, sample_weight, i)
        weights += np.float64(sample_weight[i])
    _add_block_sums(total, weights, acc)


@cuda.jit(cache=True)
def _binary_accuracy(y_true, y_pred, sample_weight, threshold, acc):
    total = 0.0
    weights = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _binary_accuracy_row(y_true, y_pred, sample_weight, i, threshold)
        weights += np.float64(sample_weight[i])
    _add_block_sums(total, weights, acc)


@cuda.jit(cache=True)
def _categorical_accuracy(y_true, y_pred, sample_weight, acc):
    total = 0.0
    weights = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _categorical_accuracy_row(y_true, y_pred, sample_weight, i)
        weights += np.float64(sample_weight[i])
    _add_block_sums(total, weights, acc)


@cuda.jit(cache=True)
def _sparse_categorical_accuracy(y_true, y_pred, sample_weight, acc):
    total = 0.0
    weights = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _sparse_categorical_accuracy_row(y_true, y_pred, sample_weight, i)
        weights += np.float64(sample_weight[i])
    _add_block_sums(total, weights, acc)


@cuda.jit(cache=True)
def _top_k_categorical_accuracy(y_true, y_pred, sample_weight, k, acc):
    total = 0.0
    weights = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _top_k_categorical_accuracy_row(y_true, y_pred, sample_weight, i, k)
        weights += np.float64(sample_weight[i])
    _add_block_sums(total, weights, acc)


@cuda.jit(cache=True)
def _sparse_top_k_categorical_accuracy(y_true, y_pred, sample_weight, k, acc):
    total = 0.0
    weights = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _sparse_top_k_categorical_accuracy_row(y_true, y_pred, sample_weight, i, k)
        weights += np.float64(sample_weight[i])
    _add_block_sums(total, weights, acc)


@cuda.jit(cache=True)
def _mean_squared_error_metric(y_true, y_pred, sample_weight, acc):
    total = 0.0
    weights = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _mean_squared_error_row(y_true, y_pred, sample_weight, i)
        weights += np.float64(sample_weight[i])
    _add_block_sums(total, weights, acc)


@cuda.jit(cache=True)
def _mean_absolute_error_metric(y_true, y_pred, sample_weight, acc):
    total = 0.0
    weights = 0.0
    for i in range(cuda.threadIdx.x, y_pred.shape[0], THREADS):
        total += _mean_absolute_error_row(y_true, y_pred, sample_weight, i)
        weights += np.float64(sample_weight[i])
    _add_block_sums(total, weights, acc)


def accuracy(y_true, y_pred, sample_weight, acc):
    """As the CPU twin: ``value_i = mean_j [y_true == y_pred]``."""
    _accuracy[1, THREADS](y_true, y_pred, sample_weight, acc)


def binary_accuracy(y_true, y_pred, sample_weight, threshold, acc):
    """As the CPU twin: ``value_i = mean_j [y_true == (y_pred > threshold)]``."""
    _binary_accuracy[1, THREADS](y_true, y_pred, sample_weight, threshold, acc)


def categorical_accuracy(y_true, y_pred, sample_weight, acc):
    """As the CPU twin: ``value_i = [argmax y_true[i] == argmax y_pred[i]]``."""
    _categorical_accuracy[1, THREADS](y_true, y_pred, sample_weight, acc)


def sparse_categorical_accuracy(y_true, y_pred, sample_weight, acc):
    """As the CPU twin: ``value_i = [y_true[i] == argmax y_pred[i]]``."""
    _sparse_categorical_accuracy[1, THREADS](y_true, y_pred, sample_weight, acc)


def top_k_categorical_accuracy(y_true, y_pred, sample_weight, k, acc):
    """As the CPU twin: whether ``argmax y_true[i]`` is among the ``k`` top scores."""
    _top_k_categorical_accuracy[1, THREADS](y_true, y_pred, sample_weight, k, acc)


def sparse_top_k_categorical_accuracy(y_true, y_pred, sample_weight, k, acc):
    """As the CPU twin: whether ``int(y_true[i])`` is among the ``k`` top scores."""
    _sparse_top_k_categorical_accuracy[1, THREADS](y_true, y_pred, sample_weight, k, acc)


def mean_squared_error_metric(y_true, y_pred, sample_weight, acc):
    """As the CPU twin: ``value_i = mean_j (y_pred - y_true)^2``."""
    _mean_squared_error_metric[1, THREADS](y_true, y_pred, sample_weight, acc)


def mean_absolute_error_metric(y_true, y_pred, sample_weight, acc):
    """As the CPU twin: ``value_i = mean_j |y_pred - y_true|``."""
    _mean_absolute_error_metric[1, THREADS](y_true, y_pred, sample_weight, acc)


@cuda.jit(cache=True)
def _accumulate_mean(value, scale, count, acc):
    if cuda.grid(1) == 0:
        acc[0] += value[0] * scale
        acc[1] += count


def accumulate_mean(value, scale, count, acc):
    """As the CPU twin: ``acc[0] += value[0] * scale``, ``acc[1] += count``."""
    _accumulate_mean[1, 1](value, float(scale), float(count), acc)
