"""Spatial reshaping kernels on the GPU, one thread per output element: the
shifted window copy (zero padding, cropping and their gradients) and
nearest-neighbour upsampling, whose backward gathers each input element's
block in the CPU twin's order (no atomics)."""

from numba import cuda

from nkeras.kernels.cuda.launch import THREADS, blocks
from nkeras.kernels.cuda.pool import _nhwc_index


@cuda.jit(cache=True)
def _copy_window(x, row_offset, col_offset, y):
    _, rows, cols, _ = x.shape
    _, out_rows, out_cols, channels = y.shape
    for k in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        b, i, j, c = _nhwc_index(k, out_rows, out_cols, channels)
        h = i + row_offset
        w = j + col_offset
        if 0 <= h < rows and 0 <= w < cols:
            y[b, i, j, c] = x[b, h, w, c]
        else:
            y[b, i, j, c] = 0


@cuda.jit(cache=True)
def _upsample_forward(x, row_factor, col_factor, y):
    _, out_rows, out_cols, channels = y.shape
    for k in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        b, i, j, c = _nhwc_index(k, out_rows, out_cols, channels)
        y[b, i, j, c] = x[b, i // row_factor, j // col_factor, c]


@cuda.jit(cache=True)
def _upsample_backward(dy, row_factor, col_factor, dx):
    _, rows, cols, channels = dx.shape
    for k in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        b, h, w, c = _nhwc_index(k, rows, cols, channels)
        total = dx.dtype.type(0)
        for di in range(row_factor):
            for dj in range(col_factor):
                total += dy[b, h * row_factor + di, w * col_factor + dj, c]
        dx[b, h, w, c] = total


def copy_window(x, row_offset, col_offset, y):
    """``y[b, i, j] = x[b, i + row_offset, j + col_offset]``, zero where that
    falls outside ``x``, as the CPU twin."""
    _copy_window[blocks(y.size), THREADS](x, int(row_offset), int(col_offset), y)


def upsample_nearest_forward(x, row_factor, col_factor, y):
    """``y[b, i, j] = x[b, i // row_factor, j // col_factor]``."""
    _upsample_forward[blocks(y.size), THREADS](x, int(row_factor), int(col_factor), y)


def upsample_nearest_backward(dy, row_factor, col_factor, dx):
    """``dx[b, h, w]`` = the sum of ``dy`` over the block that copied it."""
    _upsample_backward[blocks(dx.size), THREADS](dy, int(row_factor), int(col_factor), dx)
