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
