"""Batch and layer normalisation kernels over 2-D ``(rows, channels)`` views.

Batch normalisation reduces over the rows (every axis but the channels),
layer normalisation over the columns of each row. Statistics and gradient
sums accumulate in float64: here in per-channel arrays allocated once per
call (outside the loops), in the CUDA twins in shared memory. The
normalisation and the input gradient read the stored ``mean`` and
``inv_std`` (in the arrays' dtype), so the backward differentiates exactly
what the forward computed, and both devices round the same way.

``scale`` and ``center`` say whether ``gamma`` and ``beta`` exist; when one
is off, its array (and its gradient's) is a stand-in the kernels never touch.
"""

import math

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy", inline="always")
def _inverse_std(variance, epsilon):
    return 1.0 / math.sqrt(variance + epsilon)


@njit(cache=True, error_model="numpy", inline="always")
def _moving_average(moving, value, momentum):
    """Keras's update: ``moving * momentum + value * (1 - momentum)``."""
    return moving * momentum + value * (1.0 - momentum)


@njit(cache=True, error_model="numpy", inline="always")
def _normalize(x, mean, inv_std, gamma, beta):
    return (x - mean) * inv_std * gamma + beta


@njit(cache=True, error_model="numpy", inline="always")
def _normalized_input_grad(dy_gamma, x_hat, inv_std, mean_dy_gamma, mean_dy_gamma_x_hat):
    """``dx`` of ``y = gamma * x_hat + beta`` with ``x_hat`` normalised by the
    statistics of its own group: ``dy_gamma = dy * gamma``, and the two
    means are over that group."""
    return inv_std * (dy_gamma - mean_dy_gamma - x_hat * mean_dy_gamma_x_hat)


@njit(cache=True, error_model="numpy")
def batch_norm_forward(x, gamma, beta, scale, center, training, momentum, epsilon,
                       moving_mean, moving_variance, mean, inv_std, y):
    """``y = (x - mean) * inv_std * gamma + beta`` per channel (column).

    x, y: (rows, channels); gamma, beta, moving_mean, moving_variance, mean,
    inv_std: (channels,). In training the batch's mean and biased variance
    are used and the moving statistics updated in place as Keras does;
    otherwise the moving statistics are used. Either way ``mean`` and
    ``inv_std = 1 / sqrt(variance + epsilon)`` receive the statistics used.
    """
    rows, channels = x.shape
    if training:
        sums = np.zeros(channels, np.float64)
        for i in range(rows):
            for j in range(channels):
                sums[j] += x[i, j]
        for j in range(channels):
            sums[j] /= rows
        squares = np.zeros(channels, np.float64)
        for i in range(rows):
            for j in range(channels):
                deviation = x[i, j] - sums[j]
                squares[j] += deviation * deviation
        for j in range(channels):
            variance = squares[j] / rows
            mean[j] = sums[j]
            inv_std[j] = _inverse_std(variance, epsilon)
            moving_mean[j] = _moving_average(moving_mean[j], sums[j], momentum)
            moving_variance[j] = _moving_average(moving_variance[j], variance, momentum)
    else:
        for j in range(channels):
            mean[j] = moving_mean[j]
            inv_std[j] = _inverse_std(moving_variance[j], epsilon)
    for i in range(rows):
        for j in range(channels):
            g = gamma[j] if scale else 1.0
            b = beta[j] if center else 0.0
            y[i, j] = _normalize(x[i, j], mean[j], inv_std[j], g, b)


@njit(cache=True, error_model="numpy")
def batch_norm_backward(x, dy, gamma, scale, center, training, mean, inv_std, dgamma, dbeta, dx, need_dx):
    """Gradients of ``batch_norm_forward`` given the ``mean`` and ``inv_std``
    it stored: ``dgamma = sum(dy * x_hat)`` (when ``scale``), ``dbeta =
    sum(dy)`` (when ``center``) over the rows, and, when ``need_dx``, ``dx``:
    through the batch statistics in training, ``dy * gamma * inv_std``
    otherwise."""
    rows, channels = x.shape
    sum_dy = np.zeros(channels, np.float64)
    sum_dy_x_hat = np.zeros(channels, np.float64)
    for i in range(rows):
        for j in range(channels):
            g = dy[i, j]
            sum_dy[j] += g
            sum_dy_x_hat[j] += g * (x[i, j] - mean[j]) * inv_std[j]
    for j in range(channels):
        if scale:
            dgamma[j] = sum_dy_x_hat[j]
        if center:
            dbeta[j] = sum_dy[j]
    if not need_dx:
        return
    for i in range(rows):
        for j in range(channels):
            g = gamma[j] if scale else 1.0
            if training:
                x_hat = (x[i, j] - mean[j]) * inv_std[j]
                dx[i, j] = _normalized_input_grad(
                    dy[i, j] * g, x_hat, inv_std[j], g * sum_dy[j] / rows, g * sum_dy_x_hat[j] / rows
                )
            else:
                dx[i, j] = dy[i, j] * g * inv_std[j]


@njit(cache=True, error_model="numpy")
def layer_norm_forward(x, gamma, beta, scale, center, epsilon, mean, inv_std, y):
    """Each row normalised by its own mean and biased variance:
    ``y = (x - mean) * inv_std * gamma + beta``.

    x, y: (rows, cols); gamma, beta: (cols,); mean, inv_std: (rows,) outputs.
    """
    rows, cols = x.shape
    for i in range(rows):
        total = 0.0
        for j in range(cols):
            total += x[i, j]
        row_mean = total / cols
        squares = 0.0
        for j in range(cols):
            deviation = x[i, j] - row_mean
            squares += deviation * deviation
        mean[i] = row_mean
        inv_std[i] = _inverse_std(squares / cols, epsilon)
        for j in range(cols):
            g = gamma[j] if scale else 1.0
            b = beta[j] if center else 0.0
            y[i, j] = _normalize(x[i, j], mean[i], inv_std[i], g, b)


@njit(cache=True, error_model="numpy")
def layer_norm_backward(x, dy, gamma, scale, center, mean, inv_std, dgamma, dbeta, dx, need_dx):
    """Gradients of ``layer_norm_forward`` given its ``mean`` and ``inv_std``:
    ``dgamma = sum(dy * x_hat)`` and ``dbeta = sum(dy)`` over the rows (when
    ``scale`` / ``center``) and, when ``need_dx``, ``dx`` through each row's
    statistics."""
    rows, cols = x.shape
    if scale or center:
        sum_dy = np.zeros(cols, np.float64)
        sum_dy_x_hat = np.zeros(cols, np.float64)
        for i in range(rows):
            for j in range(cols):
                g = dy[i, j]
                sum_dy[j] += g
                sum_dy_x_hat[j] += g * (x[i, j] - mean[i]) * inv_std[i]
        for j in range(cols):
            if scale:
                dgamma[j] = sum_dy_x_hat[j]
            if center:
                dbeta[j] = sum_dy[j]
    if not need_dx:
        return
    for i in range(rows):
        total = 0.0
        total_x_hat = 0.0
        for j in range(cols):
            dy_gamma = dy[i, j] * (gamma[j] if scale else 1.0)
            total += dy_gamma
            total_x_hat += dy_gamma * (x[i, j] - mean[i]) * inv_std[i]
        for j in range(cols):
            x_hat = (x[i, j] - mean[i]) * inv_std[i]
            dy_gamma = dy[i, j] * (gamma[j] if scale else 1.0)
            dx[i, j] = _normalized_input_grad(dy_gamma, x_hat, inv_std[i], total / cols, total_x_hat / cols)
