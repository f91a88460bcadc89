"""Loss kernels: one op per loss, each writing the weighted loss sum and the
gradient with respect to the predictions in one pass.

Every op is shaped ``name(y_true, y_pred, sample_weight, <params>, scale,
grad, loss_sum)``:

- ``y_pred``: (rows, cols); ``y_true``: the same shape, or (rows,) class ids
  (as floats) for ``sparse_categorical_crossentropy``; ``sample_weight``:
  (rows,); all of one float dtype.
- ``loss_sum[0] = sum_i sample_weight[i] * loss_i`` (float64, written), where
  ``loss_i`` is row ``i``'s loss reduced over the last axis as Keras 3 does
  (a mean for mse, mae, huber and binary cross-entropy; a sum for the
  categorical cross-entropies and KL divergence).
- ``grad[i, j] = scale * sample_weight[i] * d loss_i / d y_pred[i, j]``
  (written, not accumulated).

Arithmetic runs in float64 whatever the arrays' dtype. Where Keras clips a
probability to ``[epsilon, 1 - epsilon]`` the gradient is zero outside the
open interval, as the clip makes it.

Each loss's work on one row is an inline ``_<loss>_row(y_true, y_pred,
sample_weight, i, <params>, scale, grad)`` helper that writes ``grad[i]`` and
returns ``sample_weight[i] * loss_i``; the CUDA twins (``kernels/cuda/loss.py``)
call the same helpers, one GPU thread per row.
"""

import math

import numpy as np
from numba import njit

from nkeras.kernels.cpu.activation import _sigmoid, _softplus


@njit(cache=True, error_model="numpy", inline="always")
def _clip(value, low, high):
    return min(max(value, low), high)


@njit(cache=True, error_model="numpy", inline="always")
def _log_softmax_norm(y_pred, i):
    """``log(sum_j exp(y_pred[i, j]))``, stably."""
    cols = y_pred.shape[1]
    peak = np.float64(y_pred[i, 0])
    for j in range(1, cols):
        peak = max(peak, np.float64(y_pred[i, j]))
    total = 0.0
    for j in range(cols):
        total += math.exp(np.float64(y_pred[i, j]) - peak)
    return peak + math.log(total)


@njit(cache=True, error_model="numpy", inline="always")
def _mse_row(y_true, y_pred, sample_weight, i, scale, grad):
    cols = y_pred.shape[1]
    inv_cols = 1.0 / cols
    weight = np.float64(sample_weight[i])
    factor = 2.0 * scale * weight * inv_cols
    row = 0.0
    for j in range(cols):
        error = np.float64(y_pred[i, j]) - np.float64(y_true[i, j])
        row += error * error
        grad[i, j] = factor * error
    return weight * row * inv_cols


@njit(cache=True, error_model="numpy")
def mean_squared_error(y_true, y_pred, sample_weight, scale, grad, loss_sum):
    """``loss_i = mean_j (y_pred - y_true)^2``."""
    total = 0.0
    for i in range(y_pred.shape[0]):
        total += _mse_row(y_true, y_pred, sample_weight, i, scale, grad)
    loss_sum[0] = total


@njit(cache=True, error_model="numpy", inline="always")
def _mae_row(y_true, y_pred, sample_weight, i, scale, grad):
    cols = y_pred.shape[1]
    inv_cols = 1.0 / cols
    weight = np.float64(sample_weight[i])
    factor = scale * weight * inv_cols
    row = 0.0
    for j in range(cols):
        error = np.float64(y_pred[i, j]) - np.float64(y_true[i, j])
        row += abs(error)
        grad[i, j] = factor if error > 0.0 else (-factor if error < 0.0 else 0.0)
    return weight * row * inv_cols


@njit(cache=True, error_model="numpy")
def mean_absolute_error(y_true, y_pred, sample_weight, scale, grad, loss_sum):
    """``loss_i = mean_j |y_pred - y_true|``."""
    total = 0.0
    for i in range(y_pred.shape[0]):
        total += _mae_row(y_true, y_pred, sample_weight, i, scale, grad)
    loss_sum[0] = total


@njit(cache=True, error_model="numpy", inline="always")
def _huber_row(y_true, y_pred, sample_weight, i, delta, scale, grad):
    cols = y_pred.shape[1]
    inv_cols = 1.0 / cols
    weight = np.float64(sample_weight[i])
    factor = scale * weight * inv_cols
    row = 0.0
    for j in range(cols):
        error = np.float64(y_pred[i, j]) - np.float64(y_true[i, j])
        size = abs(error)
        if size <= delta:
            row += 0.5 * error * error
            grad[i, j] = factor * error
        else:
            row += delta * size - 0.5 * delta * delta
            grad[i, j] = factor * (delta if error > 0.0 else -delta)
    return weight * row * inv_cols


@njit(cache=True, error_model="numpy")
def huber(y_true, y_pred, sample_weight, delta, scale, grad, loss_sum):
    """``loss_i = mean_j h(y_pred - y_true)`` with ``h(e) = e^2 / 2`` for
    ``|e| <= delta`` and ``delta * |e| - delta^2 / 2`` beyond."""
    total = 0.0
    for i in range(y_pred.shape[0]):
        total += _huber_row(y_true, y_pred, sample_weight, i, delta, scale, grad)
    loss_sum[0] = total


@njit(cache=True, error_model="numpy", inline="always")
def _bce_row(y_true, y_pred, sample_weight, i, from_logits, label_smoothing, epsilon, scale, grad):
    cols = y_pred.shape[1]
    inv_cols = 1.0 / cols
    keep = 1.0 - label_smoothing
    shift = 0.5 * label_smoothing
    high = 1.0 - epsilon
    weight = np.float64(sample_weight[i])
    factor = scale * weight * inv_cols
    row = 0.0
    for j in range(cols):
        target = np.float64(y_true[i, j]) * keep + shift
        value = np.float64(y_pred[i, j])
        if from_logits:
            row += _softplus(value) - target * value
            grad[i, j] = factor * (_sigmoid(value) - target)
        else:
            p = _clip(value, epsilon, high)
            row -= target * math.log(p) + (1.0 - target) * math.log(1.0 - p)
            if epsilon < value < high:
                grad[i, j] = factor * ((1.0 - target) / (1.0 - p) - target / p)
            else:
                grad[i, j] = 0.0
    return weight * row * inv_cols


@njit(cache=True, error_model="numpy")
def binary_crossentropy(
    y_true, y_pred, sample_weight, from_logits, label_smoothing, epsilon, scale, grad, loss_sum
):
    """``loss_i = mean_j -(t log p + (1 - t) log(1 - p))`` with the labels
    smoothed towards 0.5 (``t = y (1 - s) + s / 2``).

    from_logits: ``y_pred`` holds logits (``p = sigmoid(y_pred)``, computed
    stably); else probabilities clipped to ``[epsilon, 1 - epsilon]``.
    """
    total = 0.0
    for i in range(y_pred.shape[0]):
        total += _bce_row(
            y_true, y_pred, sample_weight, i, from_logits, label_smoothing, epsilon, scale, grad
        )
    loss_sum[0] = total


@njit(cache=True, error_model="numpy", inline="always")
def _cce_row(y_true, y_pred, sample_weight, i, from_logits, label_smoothing, epsilon, scale, grad):
    cols = y_pred.shape[1]
    keep = 1.0 - label_smoothing
    shift = label_smoothing / cols
    high = 1.0 - epsilon
    weight = np.float64(sample_weight[i])
    factor = scale * weight
    row = 0.0
    if from_logits:
        norm = _log_softmax_norm(y_pred, i)
        target_sum = 0.0
        for j in range(cols):
            target_sum += np.float64(y_true[i, j]) * keep + shift
        for j in range(cols):
            target = np.float64(y_true[i, j]) * keep + shift
            log_p = np.float64(y_pred[i, j]) - norm
            row -= target * log_p
            grad[i, j] = factor * (math.exp(log_p) * target_sum - target)
    else:
        row_sum = 0.0
        for j in range(cols):
            row_sum += np.float64(y_pred[i, j])
        inv_sum = 1.0 / row_sum
        # d loss / d q_j (zero where clipped), then through q = y / sum(y).
        dot = 0.0
        for j in range(cols):
            target = np.float64(y_true[i, j]) * keep + shift
            q = np.float64(y_pred[i, j]) * inv_sum
            p = _clip(q, epsilon, high)
            row -= target * math.log(p)
            dq = -target / p if epsilon < q < high else 0.0
            grad[i, j] = dq
            dot += dq * q
        for j in range(cols):
            grad[i, j] = factor * (grad[i, j] - dot) * inv_sum
    return weight * row


@njit(cache=True, error_model="numpy")
def categorical_crossentropy(
    y_true, y_pred, sample_weight, from_logits, label_smoothing, epsilon, scale, grad, loss_sum
):
    """``loss_i = -sum_j t_j log p_j`` with smoothed labels
    ``t = y (1 - s) + s / cols``.

    from_logits: ``p = softmax(y_pred)`` (through a stable log-softmax); else
    ``p = clip(y_pred / sum(y_pred, row), epsilon, 1 - epsilon)`` as Keras.
    """
    total = 0.0
    for i in range(y_pred.shape[0]):
        total += _cce_row(
            y_true, y_pred, sample_weight, i, from_logits, label_smoothing, epsilon, scale, grad
        )
    loss_sum[0] = total


@njit(cache=True, error_model="numpy", inline="always")
def _scce_row(y_true, y_pred, sample_weight, i, from_logits, epsilon, scale, grad):
    cols = y_pred.shape[1]
    high = 1.0 - epsilon
    weight = np.float64(sample_weight[i])
    label = int(y_true[i])
    hit = 0 <= label < cols
    # A miss reads a valid column and weighs it by zero. Array accesses under
    # a branch on the data left Numba reference-counting the arrays once per
    # row, which made the kernel 1.5x slower.
    column = min(max(label, 0), cols - 1)
    factor = scale * weight if hit else 0.0
    if from_logits:
        norm = _log_softmax_norm(y_pred, i)
        for j in range(cols):
            grad[i, j] = factor * math.exp(np.float64(y_pred[i, j]) - norm) if hit else 0.0
        grad[i, column] -= factor
        row = norm - np.float64(y_pred[i, column])
    else:
        row_sum = 0.0
        for j in range(cols):
            row_sum += np.float64(y_pred[i, j])
        inv_sum = 1.0 / row_sum
        q = np.float64(y_pred[i, column]) * inv_sum
        p = _clip(q, epsilon, high)
        row = -math.log(p)
        # d loss / d q = -1 / p (zero where clipped), then through q = y / sum(y):
        # every column gets slope * q, the label's column also -slope.
        slope = 0.0
        common = 0.0
        if hit and epsilon < q < high:
            slope = factor * inv_sum / p
            common = slope * q
        for j in range(cols):
            grad[i, j] = common
        grad[i, column] -= slope
    return weight * row if hit else 0.0


@njit(cache=True, error_model="numpy")
def sparse_categorical_crossentropy(y_true, y_pred, sample_weight, from_logits, epsilon, scale, grad, loss_sum):
    """Categorical cross-entropy against the one-hot of ``y_true[i]`` (a
    class id stored as a float). An id outside ``[0, cols)`` selects no class
    (zero loss and gradient), as a one-hot of it would."""
    total = 0.0
    for i in range(y_pred.shape[0]):
        total += _scce_row(y_true, y_pred, sample_weight, i, from_logits, epsilon, scale, grad)
    loss_sum[0] = total


@njit(cache=True, error_model="numpy", inline="always")
def _kld_row(y_true, y_pred, sample_weight, i, epsilon, scale, grad):
    weight = np.float64(sample_weight[i])
    factor = scale * weight
    row = 0.0
    for j in range(y_pred.shape[1]):
        target = _clip(np.float64(y_true[i, j]), epsilon, 1.0)
        value = np.float64(y_pred[i, j])
        p = _clip(value, epsilon, 1.0)
        row += target * math.log(target / p)
        grad[i, j] = -factor * target / p if epsilon < value < 1.0 else 0.0
    return weight * row


@njit(cache=True, error_model="numpy")
def kl_divergence(y_true, y_pred, sample_weight, epsilon, scale, grad, loss_sum):
    """``loss_i = sum_j t log(t / p)`` with ``t`` and ``p`` clipped to
    ``[epsilon, 1]``."""
    total = 0.0
    for i in range(y_pred.shape[0]):
        total += _kld_row(y_true, y_pred, sample_weight, i, epsilon, scale, grad)
    loss_sum[0] = total


@njit(cache=True, error_model="numpy")
def masked_row_weights(mask, weights, epsilon, out):
    """Keras's masked loss weights: ``out[i] = weights[i] * mask[i] * n /
    (sum(mask) + epsilon)`` over the ``n`` rows, so a weighted mean over the
    rows becomes a mean over the unmasked ones.

    mask, weights, out: (rows,).
    """
    rows = mask.shape[0]
    valid = 0.0
    for i in range(rows):
        valid += mask[i]
    factor = rows / (valid + epsilon)
    for i in range(rows):
        out[i] = weights[i] * mask[i] * factor
