"""Metric kernels: one op per metric, each adding to a running total.

Every op is shaped ``name(y_true, y_pred, sample_weight, <params>, acc)``:
``y_pred`` is (rows, cols); ``y_true`` has the same shape, or (rows,) class
ids (as floats) for the sparse metrics; ``sample_weight`` is (rows,).
Each adds ``sum_i w_i * value_i`` to ``acc[0]`` and ``sum_i w_i`` to
``acc[1]`` (``acc``: float64, length 2), where ``value_i`` is row ``i``'s
value as Keras 3 computes it (averaged over the last axis for accuracy,
binary accuracy, mse and mae).
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


@njit(cache=True, error_model="numpy")
def accuracy(y_true, y_pred, sample_weight, acc):
    """``value_i = mean_j [y_true == y_pred]`` (exact equality)."""
    rows, cols = y_pred.shape
    total = 0.0
    weights = 0.0
    for i in range(rows):
        hits = 0
        for j in range(cols):
            if y_true[i, j] == y_pred[i, j]:
                hits += 1
        weight = np.float64(sample_weight[i])
        total += weight * hits / cols
        weights += weight
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy")
def binary_accuracy(y_true, y_pred, sample_weight, threshold, acc):
    """``value_i = mean_j [y_true == (y_pred > threshold)]``."""
    rows, cols = y_pred.shape
    total = 0.0
    weights = 0.0
    for i in range(rows):
        hits = 0
        for j in range(cols):
            predicted = 1.0 if y_pred[i, j] > threshold else 0.0
            if y_true[i, j] == predicted:
                hits += 1
        weight = np.float64(sample_weight[i])
        total += weight * hits / cols
        weights += weight
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy")
def categorical_accuracy(y_true, y_pred, sample_weight, acc):
    """``value_i = [argmax y_true[i] == argmax y_pred[i]]``."""
    total = 0.0
    weights = 0.0
    for i in range(y_pred.shape[0]):
        weight = np.float64(sample_weight[i])
        if _argmax_row(y_true, i) == _argmax_row(y_pred, i):
            total += weight
        weights += weight
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy")
def sparse_categorical_accuracy(y_true, y_pred, sample_weight, acc):
    """``value_i = [y_true[i] == argmax y_pred[i]]``."""
    total = 0.0
    weights = 0.0
    for i in range(y_pred.shape[0]):
        weight = np.float64(sample_weight[i])
        if y_true[i] == _argmax_row(y_pred, i):
            total += weight
        weights += weight
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy")
def top_k_categorical_accuracy(y_true, y_pred, sample_weight, k, acc):
    """``value_i = [argmax y_true[i] is among the k top scores of y_pred[i]]``."""
    total = 0.0
    weights = 0.0
    for i in range(y_pred.shape[0]):
        weight = np.float64(sample_weight[i])
        if _in_top_k(y_pred, i, _argmax_row(y_true, i), k):
            total += weight
        weights += weight
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy")
def sparse_top_k_categorical_accuracy(y_true, y_pred, sample_weight, k, acc):
    """``value_i = [int(y_true[i]) is among the k top scores of y_pred[i]]``."""
    total = 0.0
    weights = 0.0
    for i in range(y_pred.shape[0]):
        weight = np.float64(sample_weight[i])
        if _in_top_k(y_pred, i, int(y_true[i]), k):
            total += weight
        weights += weight
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy")
def mean_squared_error_metric(y_true, y_pred, sample_weight, acc):
    """``value_i = mean_j (y_pred - y_true)^2``."""
    rows, cols = y_pred.shape
    total = 0.0
    weights = 0.0
    for i in range(rows):
        row = 0.0
        for j in range(cols):
            error = np.float64(y_pred[i, j]) - np.float64(y_true[i, j])
            row += error * error
        weight = np.float64(sample_weight[i])
        total += weight * row / cols
        weights += weight
    acc[0] += total
    acc[1] += weights


@njit(cache=True, error_model="numpy")
def mean_absolute_error_metric(y_true, y_pred, sample_weight, acc):
    """``value_i = mean_j |y_pred - y_true|``."""
    rows, cols = y_pred.shape
    total = 0.0
    weights = 0.0
    for i in range(rows):
        row = 0.0
        for j in range(cols):
            row += abs(np.float64(y_pred[i, j]) - np.float64(y_true[i, j]))
        weight = np.float64(sample_weight[i])
        total += weight * row / cols
        weights += weight
    acc[0] += total
    acc[1] += weights
