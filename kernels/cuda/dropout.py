"""Dropout on the GPU, one thread per element, drawing the same counter-based
random numbers as the CPU twin: for one (seed, step) both devices drop the
same elements, and no generator state lives on the device."""

import numpy as np
from numba import cuda

from nkeras.kernels.cpu.dropout import _dropout_constants, _uniform
from nkeras.kernels.cuda.launch import THREADS, blocks


@cuda.jit(cache=True)
def _forward(x, rate, key, keep_scale, mask, y):
    cols = x.shape[1]
    for k in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        if _uniform(key, k) < rate:
            mask[i, j] = 0.0
        else:
            mask[i, j] = keep_scale
        y[i, j] = x[i, j] * mask[i, j]


@cuda.jit(cache=True)
def _backward(dy, mask, dx):
    cols = dy.shape[1]
    for k in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        dx[i, j] = dy[i, j] * mask[i, j]


def dropout_forward(x, rate, seed, step, mask, y):
    """Zero each element with probability ``rate``, scale the rest by
    ``1 / (1 - rate)``, as the CPU twin (the same mask for the same seed
    and step)."""
    key, keep_scale = _dropout_constants(rate, seed, step)
    _forward[blocks(x.size), THREADS](x, float(rate), np.uint64(key), keep_scale, mask, y)


def dropout_backward(dy, mask, dx):
    """``dx = dy * mask``."""
    _backward[blocks(dy.size), THREADS](dy, mask, dx)


@cuda.jit(cache=True)
def _spatial_mask(rate, key, keep_scale, mask):
    channels = mask.shape[1]
    for k in range(cuda.grid(1), mask.size, cuda.gridsize(1)):
        s = k // channels
        c = k - s * channels
        mask[s, c] = 0.0 if _uniform(key, k) < rate else keep_scale


@cuda.jit(cache=True)
def _scale_channels(values, mask, out):
    """``out = values * mask``, the (sample, channel) mask broadcast over positions."""
    positions, channels = values.shape[1], values.shape[2]
    per_sample = positions * channels
    for k in range(cuda.grid(1), values.size, cuda.gridsize(1)):
        s = k // per_sample
        rest = k - s * per_sample
        p = rest // channels
        c = rest - p * channels
        out[s, p, c] = values[s, p, c] * mask[s, c]


def spatial_dropout_forward(x, rate, seed, step, mask, y):
    """Zero whole channels of each sample with probability ``rate``, as the
    CPU twin (the same mask for the same seed and step).

    x, y: (samples, positions, channels); mask: (samples, channels).
    """
    key, keep_scale = _dropout_constants(rate, seed, step)
    _spatial_mask[blocks(mask.size), THREADS](float(rate), np.uint64(key), keep_scale, mask)
    _scale_channels[blocks(x.size), THREADS](x, mask, y)


def spatial_dropout_backward(dy, mask, dx):
    """``dx = dy * mask`` with the mask broadcast over positions."""
    _scale_channels[blocks(dy.size), THREADS](dy, mask, dx)
