"""Batch and layer normalisation on the GPU, twins of ``kernels/cpu/norm.py``.

Per-channel sums (batch statistics, gradient sums over the rows) run with a
block per tile of ``COLUMN_TILE`` channels: ``ROW_LANES`` threads walk down
the rows of each channel, so a warp reads consecutive channels of a row, and
their float64 partial sums meet in shared memory in a fixed tree order
(deterministic, no atomics). Layer normalisation reduces each row with
``ROW_THREADS`` threads, ``ROWS_PER_BLOCK`` rows per block. The
normalisation itself runs one thread per element.
"""

import math

import numba
from numba import cuda

from nkeras.kernels.cpu.norm import _inverse_std, _moving_average, _normalize, _normalized_input_grad
from nkeras.kernels.cuda.launch import THREADS, blocks

COLUMN_TILE = 32
ROW_LANES = 8
ROW_THREADS = 32
ROWS_PER_BLOCK = 8
# The lane sums add FAN partial sums per step: one barrier for ROW_LANES,
# two for ROW_THREADS, where a binary tree takes three and five (barriers are
# what makes the CUDA simulator slow).
FAN = 8


@cuda.jit(device=True)
def _sum_lanes(partial, lane, slot, lanes):
    """Add ``partial[:, slot]`` (shared, one entry per lane, filled by the
    caller) into ``partial[0, slot]``, ``FAN`` entries per step in a fixed
    order; every thread of the block calls it and all see the sum."""
    stride = 1
    while stride < lanes:
        cuda.syncthreads()
        if lane % (stride * FAN) == 0:
            total = partial[lane, slot]
            for other in range(lane + stride, min(lane + stride * FAN, lanes), stride):
                total += partial[other, slot]
            partial[lane, slot] = total
        stride *= FAN
    cuda.syncthreads()


@cuda.jit(cache=True)
def _batch_statistics(x, momentum, epsilon, moving_mean, moving_variance, mean, inv_std):
    partial = cuda.shared.array((ROW_LANES, COLUMN_TILE), numba.float64)
    column = cuda.threadIdx.x
    lane = cuda.threadIdx.y
    j = cuda.blockIdx.x * COLUMN_TILE + column
    rows, channels = x.shape
    total = 0.0
    if j < channels:
        for i in range(lane, rows, ROW_LANES):
            total += x[i, j]
    partial[lane, column] = total
    _sum_lanes(partial, lane, column, ROW_LANES)
    average = partial[0, column] / rows
    cuda.syncthreads()
    squares = 0.0
    if j < channels:
        for i in range(lane, rows, ROW_LANES):
            deviation = x[i, j] - average
            squares += deviation * deviation
    partial[lane, column] = squares
    _sum_lanes(partial, lane, column, ROW_LANES)
    if lane == 0 and j < channels:
        variance = partial[0, column] / rows
        mean[j] = average
        inv_std[j] = _inverse_std(variance, epsilon)
        moving_mean[j] = _moving_average(moving_mean[j], average, momentum)
        moving_variance[j] = _moving_average(moving_variance[j], variance, momentum)


@cuda.jit(cache=True)
def _moving_statistics(epsilon, moving_mean, moving_variance, mean, inv_std):
    for j in range(cuda.grid(1), mean.size, cuda.gridsize(1)):
        mean[j] = moving_mean[j]
        inv_std[j] = _inverse_std(moving_variance[j], epsilon)


@cuda.jit(cache=True)
def _normalize_columns(x, gamma, beta, scale, center, mean, inv_std, y):
    channels = x.shape[1]
    for k in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        i = k // channels
        j = k - i * channels
        g = gamma[j] if scale else 1.0
        b = beta[j] if center else 0.0
        y[i, j] = _normalize(x[i, j], mean[j], inv_std[j], g, b)


@cuda.jit(cache=True)
def _batch_norm_backward(x, dy, gamma, scale, center, training, mean, inv_std, dgamma, dbeta, dx, need_dx):
    """The gradient sums of a tile of channels, then (when ``need_dx``) its ``dx``."""
    sums = cuda.shared.array((ROW_LANES, COLUMN_TILE), numba.float64)
    sums_x_hat = cuda.shared.array((ROW_LANES, COLUMN_TILE), numba.float64)
    column = cuda.threadIdx.x
    lane = cuda.threadIdx.y
    j = cuda.blockIdx.x * COLUMN_TILE + column
    rows, channels = x.shape
    total = 0.0
    total_x_hat = 0.0
    if j < channels:
        for i in range(lane, rows, ROW_LANES):
            g = dy[i, j]
            total += g
            total_x_hat += g * (x[i, j] - mean[j]) * inv_std[j]
    sums[lane, column] = total
    sums_x_hat[lane, column] = total_x_hat
    _sum_lanes(sums, lane, column, ROW_LANES)
    _sum_lanes(sums_x_hat, lane, column, ROW_LANES)
    if j >= channels:
        return
    total = sums[0, column]
    total_x_hat = sums_x_hat[0, column]
    if lane == 0:
        if scale:
            dgamma[j] = total_x_hat
        if center:
            dbeta[j] = total
    if not need_dx:
        return
    g = gamma[j] if scale else 1.0
    for i in range(lane, rows, ROW_LANES):
        if training:
            x_hat = (x[i, j] - mean[j]) * inv_std[j]
            dx[i, j] = _normalized_input_grad(dy[i, j] * g, x_hat, inv_std[j], g * total / rows, g * total_x_hat / rows)
        else:
            dx[i, j] = dy[i, j] * g * inv_std[j]


def batch_norm_forward(x, gamma, beta, scale, center, training, momentum, epsilon,
                       moving_mean, moving_variance, mean, inv_std, y):
    """``y = (x - mean) * inv_std * gamma + beta`` per channel, as the CPU twin:
    batch statistics (and the moving averages' update) in training, the
    moving statistics otherwise; ``mean`` and ``inv_std`` receive those used."""
    channels = x.shape[1]
    if training:
        _batch_statistics[math.ceil(channels / COLUMN_TILE), (COLUMN_TILE, ROW_LANES)](
            x, float(momentum), float(epsilon), moving_mean, moving_variance, mean, inv_std
        )
    else:
        _moving_statistics[blocks(channels), THREADS](float(epsilon), moving_mean, moving_variance, mean, inv_std)
    _normalize_columns[blocks(x.size), THREADS](x, gamma, beta, bool(scale), bool(center), mean, inv_std, y)


def batch_norm_backward(x, dy, gamma, scale, center, training, mean, inv_std, dgamma, dbeta, dx, need_dx):
    """Gradients of ``batch_norm_forward``, as the CPU twin."""
    _batch_norm_backward[math.ceil(x.shape[1] / COLUMN_TILE), (COLUMN_TILE, ROW_LANES)](
        x, dy, gamma, bool(scale), bool(center), bool(training), mean, inv_std, dgamma, dbeta, dx, bool(need_dx)
    )


@cuda.jit(cache=True)
def _layer_norm_forward(x, gamma, beta, scale, center, epsilon, mean, inv_std, y):
    partial = cuda.shared.array((ROW_THREADS, ROWS_PER_BLOCK), numba.float64)
    lane = cuda.threadIdx.x
    slot = cuda.threadIdx.y
    i = cuda.blockIdx.x * ROWS_PER_BLOCK + slot
    rows, cols = x.shape
    total = 0.0
    if i < rows:
        for j in range(lane, cols, ROW_THREADS):
            total += x[i, j]
    partial[lane, slot] = total
    _sum_lanes(partial, lane, slot, ROW_THREADS)
    row_mean = partial[0, slot] / cols
    cuda.syncthreads()
    squares = 0.0
    if i < rows:
        for j in range(lane, cols, ROW_THREADS):
            deviation = x[i, j] - row_mean
            squares += deviation * deviation
    partial[lane, slot] = squares
    _sum_lanes(partial, lane, slot, ROW_THREADS)
    if lane == 0 and i < rows:
        mean[i] = row_mean
        inv_std[i] = _inverse_std(partial[0, slot] / cols, epsilon)
    # Normalise with the stored (rounded) statistics, as the CPU twin does.
    cuda.syncthreads()
    if i >= rows:
        return
    for j in range(lane, cols, ROW_THREADS):
        g = gamma[j] if scale else 1.0
        b = beta[j] if center else 0.0
        y[i, j] = _normalize(x[i, j], mean[i], inv_std[i], g, b)


@cuda.jit(cache=True)
def _layer_norm_weight_grads(x, dy, scale, center, mean, inv_std, dgamma, dbeta):
    sums = cuda.shared.array((ROW_LANES, COLUMN_TILE), numba.float64)
    sums_x_hat = cuda.shared.array((ROW_LANES, COLUMN_TILE), numba.float64)
    column = cuda.threadIdx.x
    lane = cuda.threadIdx.y
    j = cuda.blockIdx.x * COLUMN_TILE + column
    rows, cols = x.shape
    total = 0.0
    total_x_hat = 0.0
    if j < cols:
        for i in range(lane, rows, ROW_LANES):
            g = dy[i, j]
            total += g
            total_x_hat += g * (x[i, j] - mean[i]) * inv_std[i]
    sums[lane, column] = total
    sums_x_hat[lane, column] = total_x_hat
    _sum_lanes(sums, lane, column, ROW_LANES)
    _sum_lanes(sums_x_hat, lane, column, ROW_LANES)
    if lane == 0 and j < cols:
        if scale:
            dgamma[j] = sums_x_hat[0, column]
        if center:
            dbeta[j] = sums[0, column]


@cuda.jit(cache=True)
def _layer_norm_input_grad(x, dy, gamma, scale, mean, inv_std, dx):
    sums = cuda.shared.array((ROW_THREADS, ROWS_PER_BLOCK), numba.float64)
    sums_x_hat = cuda.shared.array((ROW_THREADS, ROWS_PER_BLOCK), numba.float64)
    lane = cuda.threadIdx.x
    slot = cuda.threadIdx.y
    i = cuda.blockIdx.x * ROWS_PER_BLOCK + slot
    rows, cols = x.shape
    total = 0.0
    total_x_hat = 0.0
    if i < rows:
        for j in range(lane, cols, ROW_THREADS):
            dy_gamma = dy[i, j] * (gamma[j] if scale else 1.0)
            total += dy_gamma
            total_x_hat += dy_gamma * (x[i, j] - mean[i]) * inv_std[i]
    sums[lane, slot] = total
    sums_x_hat[lane, slot] = total_x_hat
    _sum_lanes(sums, lane, slot, ROW_THREADS)
    _sum_lanes(sums_x_hat, lane, slot, ROW_THREADS)
    if i >= rows:
        return
    mean_dy_gamma = sums[0, slot] / cols
    mean_dy_gamma_x_hat = sums_x_hat[0, slot] / cols
    for j in range(lane, cols, ROW_THREADS):
        x_hat = (x[i, j] - mean[i]) * inv_std[i]
        dy_gamma = dy[i, j] * (gamma[j] if scale else 1.0)
        dx[i, j] = _normalized_input_grad(dy_gamma, x_hat, inv_std[i], mean_dy_gamma, mean_dy_gamma_x_hat)


def layer_norm_forward(x, gamma, beta, scale, center, epsilon, mean, inv_std, y):
    """Each row normalised by its own mean and biased variance, as the CPU twin."""
    _layer_norm_forward[math.ceil(x.shape[0] / ROWS_PER_BLOCK), (ROW_THREADS, ROWS_PER_BLOCK)](
        x, gamma, beta, bool(scale), bool(center), float(epsilon), mean, inv_std, y
    )


def layer_norm_backward(x, dy, gamma, scale, center, mean, inv_std, dgamma, dbeta, dx, need_dx):
    """Gradients of ``layer_norm_forward``, as the CPU twin."""
    rows, cols = x.shape
    if scale or center:
        _layer_norm_weight_grads[math.ceil(cols / COLUMN_TILE), (COLUMN_TILE, ROW_LANES)](
            x, dy, bool(scale), bool(center), mean, inv_std, dgamma, dbeta
        )
    if need_dx:
        _layer_norm_input_grad[math.ceil(rows / ROWS_PER_BLOCK), (ROW_THREADS, ROWS_PER_BLOCK)](
            x, dy, gamma, bool(scale), mean, inv_std, dx
        )
