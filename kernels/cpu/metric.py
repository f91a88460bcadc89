"""Metric kernels: one op per metric, each adding to a running total.

Every op is shaped ``name(y_true, y_pred, sample_weight, <params>, acc)``:
``y_pred`` is (rows, cols); ``y_true`` has the same shape, or (rows,) class
ids (as floats) for the sparse metrics; ``sample_weight`` is (rows,).
Each adds ``sum_i w_i * value_i`` to ``acc[0]`` and ``sum_i w_i`` to
``acc[1]`` (``acc``: float64, length 2), where ``value_i`` is row ``i``'s
value as Keras 3 computes it (averaged over the last axis for accuracy,
binary accuracy, mse and mae).

Each metric's work on one row is an inline ``_<metric>_row(y_true, y_pred,
sample_weight, i, <params>)`` helper returning ``w_i * value_i``; the CUDA
twins (``kernels/cuda/metric.py``) call the same helpers, one GPU thread per
row.
"""

import math

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy", inline="always")
def _argmax_row(a, i):
    """Index of the first maximum of row ``i`` (a NaN counts as the
    maximum), as ``numpy.argmax``."""
    best = a[i, 0]
    index = 0
    if math.isnan(best):
        return 0
    for j in range(1, a.shape[1]):
        value = a[i, j]
        if math.isnan(value):
            return j
        if value > best:
            best = value
            index = j
    return index


@njit(cache=True, error_model="numpy", inline="always")
def _in_top_k(y_pred, i, label, k):
    """Whether class ``label`` is among the ``k`` largest scores of row ``i``
    (ties count in its favour, a NaN score never does), as Keras' in_top_k."""
    cols = y_pred.shape[1]
    if label < 0 or label >= cols:
        return False
    score = y_pred[i, label]
    if math.isnan(score):
        score = -math.inf
    above = 0
    for j in range(cols):
        if y_pred[i, j] > score:
            above += 1
    return above < k


@njit(cache=True, error_model="numpy", inline="always")
def _accuracy_row(y_true, y_pred, sample_weight, i):
    cols = y_pred.shape[1]
    hits = 0
    for j in range(cols):
        if y_true[i, j] == y_pred[i, j]:
            hits += 1
    return np.float64(sample_weight[i]) * hits / cols


@njit(cache=True, error_model="numpy")
def accuracy(y_true, y_pred, sample_weight, acc):
    """``value_i = mean_j [y_true == y_pred]`` (exact equality)."""
    total = 0.0
    weights = 0.0
    for i in range(y_pred.shape[0]):
        total += _accuracy_row(y_true, y_pred, sample_weight, i)
        weights += np.float64(sample_weight[i])
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy", inline="always")
def _binary_accuracy_row(y_true, y_pred, sample_weight, i, threshold):
    cols = y_pred.shape[1]
    hits = 0
    for j in range(cols):
        predicted = 1.0 if y_pred[i, j] > threshold else 0.0
        if y_true[i, j] == predicted:
            hits += 1
    return np.float64(sample_weight[i]) * hits / cols


@njit(cache=True, error_model="numpy")
def binary_accuracy(y_true, y_pred, sample_weight, threshold, acc):
    """``value_i = mean_j [y_true == (y_pred > threshold)]``."""
    total = 0.0
    weights = 0.0
    for i in range(y_pred.shape[0]):
        total += _binary_accuracy_row(y_true, y_pred, sample_weight, i, threshold)
        weights += np.float64(sample_weight[i])
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy", inline="always")
def _categorical_accuracy_row(y_true, y_pred, sample_weight, i):
    hit = _argmax_row(y_true, i) == _argmax_row(y_pred, i)
    return np.float64(sample_weight[i]) if hit else 0.0


@njit(cache=True, error_model="numpy")
def categorical_accuracy(y_true, y_pred, sample_weight, acc):
    """``value_i = [argmax y_true[i] == argmax y_pred[i]]``."""
    total = 0.0
    weights = 0.0
    for i in range(y_pred.shape[0]):
        total += _categorical_accuracy_row(y_true, y_pred, sample_weight, i)
        weights += np.float64(sample_weight[i])
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy", inline="always")
def _sparse_categorical_accuracy_row(y_true, y_pred, sample_weight, i):
    hit = y_true[i] == _argmax_row(y_pred, i)
    return np.float64(sample_weight[i]) if hit else 0.0


@njit(cache=True, error_model="numpy")
def sparse_categorical_accuracy(y_true, y_pred, sample_weight, acc):
    """``value_i = [y_true[i] == argmax y_pred[i]]``."""
    total = 0.0
    weights = 0.0
    for i in range(y_pred.shape[0]):
        total += _sparse_categorical_accuracy_row(y_true, y_pred, sample_weight, i)
        weights += np.float64(sample_weight[i])
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy", inline="always")
def _top_k_categorical_accuracy_row(y_true, y_pred, sample_weight, i, k):
    hit = _in_top_k(y_pred, i, _argmax_row(y_true, i), k)
    return np.float64(sample_weight[i]) if hit else 0.0


@njit(cache=True, error_model="numpy")
def top_k_categorical_accuracy(y_true, y_pred, sample_weight, k, acc):
    """``value_i = [argmax y_true[i] is among the k top scores of y_pred[i]]``."""
    total = 0.0
    weights = 0.0
    for i in range(y_pred.shape[0]):
        total += _top_k_categorical_accuracy_row(y_true, y_pred, sample_weight, i, k)
        weights += np.float64(sample_weight[i])
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy", inline="always")
def _sparse_top_k_categorical_accuracy_row(y_true, y_pred, sample_weight, i, k):
    hit = _in_top_k(y_pred, i, int(y_true[i]), k)
    return np.float64(sample_weight[i]) if hit else 0.0


@njit(cache=True, error_model="numpy")
def sparse_top_k_categorical_accuracy(y_true, y_pred, sample_weight, k, acc):
    """``value_i = [int(y_true[i]) is among the k top scores of y_pred[i]]``."""
    total = 0.0
    weights = 0.0
    for i in range(y_pred.shape[0]):
        total += _sparse_top_k_categorical_accuracy_row(y_true, y_pred, sample_weight, i, k)
        weights += np.float64(sample_weight[i])
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy", inline="always")
def _mean_squared_error_row(y_true, y_pred, sample_weight, i):
    cols = y_pred.shape[1]
    row = 0.0
    for j in range(cols):
        error = np.float64(y_pred[i, j]) - np.float64(y_true[i, j])
        row += error * error
    return np.float64(sample_weight[i]) * row / cols


@njit(cache=True, error_model="numpy")
def mean_squared_error_metric(y_true, y_pred, sample_weight, acc):
    """``value_i = mean_j (y_pred - y_true)^2``."""
    total = 0.0
    weights = 0.0
    for i in range(y_pred.shape[0]):
        total += _mean_squared_error_row(y_true, y_pred, sample_weight, i)
        weights += np.float64(sample_weight[i])
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy", inline="always")
def _mean_absolute_error_row(y_true, y_pred, sample_weight, i):
    cols = y_pred.shape[1]
    row = 0.0
    for j in range(cols):
        row += abs(np.float64(y_pred[i, j]) - np.float64(y_true[i, j]))
    return np.float64(sample_weight[i]) * row / cols


@njit(cache=True, error_model="numpy")
def mean_absolute_error_metric(y_true, y_pred, sample_weight, acc):
    """``value_i = mean_j |y_pred - y_true|``."""
    total = 0.0
    weights = 0.0
    for i in range(y_pred.shape[0]):
        total += _mean_absolute_error_row(y_true, y_pred, sample_weight, i)
        weights += np.float64(sample_weight[i])
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy")
def accumulate_mean(value, scale, count, acc):
    """Add ``value[0] * scale`` to ``acc[0]`` and ``count`` to ``acc[1]``: a
    loss sum into a running mean (value, acc: float64 arrays)."""
    acc[0] += value[0] * scale
    acc[1] += count
