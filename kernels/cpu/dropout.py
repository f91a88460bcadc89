"""Dropout with counter-based random numbers: each element's draw is a hash
of (seed, step, element index), so a run is reproducible whatever the
threading, and the CUDA twin draws the same numbers. Spatial dropout draws
one number per (sample, channel) and drops that channel at every position."""

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, error_model="numpy", inline="always")
def _splitmix64(value):
    z = value + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, error_model="numpy", inline="always")
def _uniform(key, index):
    """A float in [0, 1) with 24 random bits."""
    bits = _splitmix64(key + np.uint64(index))
    return np.float64(bits >> np.uint64(40)) * (1.0 / 16777216.0)


@njit(cache=True, error_model="numpy", inline="always")
def _dropout_constants(rate, seed, step):
    """The hash key of (seed, step) and the scale of kept elements (the CUDA
    launcher calls it on the host)."""
    key = _splitmix64(_splitmix64(np.uint64(seed)) ^ np.uint64(step))
    return key, 1.0 / (1.0 - rate)


@njit(cache=True, error_model="numpy")
def dropout_forward(x, rate, seed, step, mask, y):
    """Zero each element with probability ``rate``, scale the rest by
    ``1 / (1 - rate)``; ``mask`` keeps the factor applied to each element.

    x, mask, y: 2-D arrays of the same shape; seed, step: integers.
    """
    key, keep_scale = _dropout_constants(rate, seed, step)
    rows, cols = x.shape
    for i in range(rows):
        for j in range(cols):
            if _uniform(key, i * cols + j) < rate:
                mask[i, j] = 0.0
            else:
                mask[i, j] = keep_scale
            y[i, j] = x[i, j] * mask[i, j]


@njit(cache=True, error_model="numpy")
def dropout_backward(dy, mask, dx):
    """``dx = dy * mask``."""
    rows, cols = dy.shape
    for i in range(rows):
        for j in range(cols):
            dx[i, j] = dy[i, j] * mask[i, j]


@njit(cache=True, error_model="numpy")
def spatial_dropout_forward(x, rate, seed, step, mask, y):
    """Zero whole channels of each sample with probability ``rate``, scale
    the rest by ``1 / (1 - rate)``; ``mask`` keeps the factor applied to each
    (sample, channel).

    x, y: (samples, positions, channels); mask: (samples, channels). The
    draw for (sample ``s``, channel ``c``) is element ``s * channels + c`` of
    the (seed, step) stream.
    """
    key, keep_scale = _dropout_constants(rate, seed, step)
    samples, positions, channels = x.shape
    for s in range(samples):
        for c in range(channels):
            mask[s, c] = 0.0 if _uniform(key, s * channels + c) < rate else keep_scale
        for p in range(positions):
            for c in range(channels):
                y[s, p, c] = x[s, p, c] * mask[s, c]


@njit(cache=True, error_model="numpy")
def spatial_dropout_backward(dy, mask, dx):
    """``dx = dy * mask`` with the (sample, channel) mask broadcast over positions."""
    samples, positions, channels = dy.shape
    for s in range(samples):
        for p in range(positions):
            for c in range(channels):
                dx[s, p, c] = dy[s, p, c] * mask[s, c]
