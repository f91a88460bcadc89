"""Pooling kernels on the GPU: one thread per output element forward, one
thread per input element backward (a gather over the windows that contain
it, in the CPU twin's order, so overlapping windows need no atomics and both
devices add the same terms in the same order).

Window bounds come from the CPU module's scalar helpers. Threads are
numbered with the channel fastest, so a warp reads consecutive addresses.
Global max pooling: one thread per (sample, channel) forward, counting the
tied maxima as it goes, and one per input element backward.
"""

import numpy as np
from numba import cuda

from nkeras.kernels.cpu.pool import _covering_windows, _window
from nkeras.kernels.cuda.launch import THREADS, blocks


@cuda.jit(device=True, inline=True)
def _nhwc_index(k, rows, cols, channels):
    """(batch, row, col, channel) of flat index ``k`` in a C-contiguous NHWC array."""
    c = k % channels
    k //= channels
    w = k % cols
    k //= cols
    return k // rows, k % rows, w, c


@cuda.jit(cache=True)
def _max_forward(x, pool_rows, pool_cols, stride_rows, stride_cols, pad_top, pad_left, y, argmax):
    _, rows, cols, _ = x.shape
    _, out_rows, out_cols, channels = y.shape
    for k in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        b, i, j, c = _nhwc_index(k, out_rows, out_cols, channels)
        row_start, row_first, row_stop = _window(i, pool_rows, stride_rows, pad_top, rows)
        col_start, col_first, col_stop = _window(j, pool_cols, stride_cols, pad_left, cols)
        best = x[b, row_first, col_first, c]
        where = (row_first - row_start) * pool_cols + col_first - col_start
        for h in range(row_first, row_stop):
            for w in range(col_first, col_stop):
                value = x[b, h, w, c]
                if value > best:
                    best = value
                    where = (h - row_start) * pool_cols + w - col_start
        y[b, i, j, c] = best
        argmax[b, i, j, c] = where


@cuda.jit(cache=True)
def _max_backward(dy, argmax, pool_rows, pool_cols, stride_rows, stride_cols, pad_top, pad_left, dx):
    _, out_rows, out_cols, _ = dy.shape
    _, rows, cols, channels = dx.shape
    for k in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        b, h, w, c = _nhwc_index(k, rows, cols, channels)
        i_first, i_stop = _covering_windows(h, pool_rows, stride_rows, pad_top, out_rows)
        j_first, j_stop = _covering_windows(w, pool_cols, stride_cols, pad_left, out_cols)
        total = dx.dtype.type(0)
        for i in range(i_first, i_stop):
            for j in range(j_first, j_stop):
                position = (h + pad_top - i * stride_rows) * pool_cols + w + pad_left - j * stride_cols
                if argmax[b, i, j, c] == position:
                    total += dy[b, i, j, c]
        dx[b, h, w, c] = total


@cuda.jit(cache=True)
def _average_forward(x, pool_rows, pool_cols, stride_rows, stride_cols, pad_top, pad_left, y):
    _, rows, cols, _ = x.shape
    _, out_rows, out_cols, channels = y.shape
    for k in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        b, i, j, c = _nhwc_index(k, out_rows, out_cols, channels)
        _, row_first, row_stop = _window(i, pool_rows, stride_rows, pad_top, rows)
        _, col_first, col_stop = _window(j, pool_cols, stride_cols, pad_left, cols)
        total = np.float64(0)
        for h in range(row_first, row_stop):
            for w in range(col_first, col_stop):
                total += x[b, h, w, c]
        y[b, i, j, c] = total / ((row_stop - row_first) * (col_stop - col_first))


@cuda.jit(cache=True)
def _average_backward(dy, pool_rows, pool_cols, stride_rows, stride_cols, pad_top, pad_left, dx):
    _, out_rows, out_cols, _ = dy.shape
    _, rows, cols, channels = dx.shape
    for k in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        b, h, w, c = _nhwc_index(k, rows, cols, channels)
        i_first, i_stop = _covering_windows(h, pool_rows, stride_rows, pad_top, out_rows)
        j_first, j_stop = _covering_windows(w, pool_cols, stride_cols, pad_left, out_cols)
        total = dx.dtype.type(0)
        for i in range(i_first, i_stop):
            _, row_first, row_stop = _window(i, pool_rows, stride_rows, pad_top, rows)
            for j in range(j_first, j_stop):
                _, col_first, col_stop = _window(j, pool_cols, stride_cols, pad_left, cols)
                total += dy[b, i, j, c] / dx.dtype.type((row_stop - row_first) * (col_stop - col_first))
        dx[b, h, w, c] = total


def max_pool_forward(x, pool_rows, pool_cols, stride_rows, stride_cols, pad_top, pad_left, y, argmax):
    """``y`` = the maximum of each window, ``argmax`` = where it is, as the
    CPU twin (ties go to the first maximum in row-major window order)."""
    _max_forward[blocks(y.size), THREADS](
        x, int(pool_rows), int(pool_cols), int(stride_rows), int(stride_cols), int(pad_top), int(pad_left), y, argmax
    )


def max_pool_backward(dy, argmax, pool_rows, pool_cols, stride_rows, stride_cols, pad_top, pad_left, dx):
    """``dx`` = the sum of ``dy`` over the windows whose maximum each input
    element is; written fully."""
    _max_backward[blocks(dx.size), THREADS](
        dy, argmax, int(pool_rows), int(pool_cols), int(stride_rows), int(stride_cols), int(pad_top), int(pad_left), dx
    )


def average_pool_forward(x, pool_rows, pool_cols, stride_rows, stride_cols, pad_top, pad_left, y):
    """``y`` = the mean of each window's real (unpadded) elements, summed in float64."""
    _average_forward[blocks(y.size), THREADS](
        x, int(pool_rows), int(pool_cols), int(stride_rows), int(stride_cols), int(pad_top), int(pad_left), y
    )


def average_pool_backward(dy, pool_rows, pool_cols, stride_rows, stride_cols, pad_top, pad_left, dx):
    """``dx`` = the sum, over the windows containing each input element, of
    the window's ``dy`` divided by its number of real elements; written fully."""
    _average_backward[blocks(dx.size), THREADS](
        dy, int(pool_rows), int(pool_cols), int(stride_rows), int(stride_cols), int(pad_top), int(pad_left), dx
    )


@cuda.jit(cache=True)
def _global_max_forward(x, y, ties):
    positions, channels = x.shape[1], x.shape[2]
    for k in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        b = k // channels
        c = k - b * channels
        best = x[b, 0, c]
        count = 1
        for s in range(1, positions):
            value = x[b, s, c]
            if value > best:
                best = value
                count = 1
            elif value == best:
                count += 1
        y[b, c] = best
        ties[b, c] = count


@cuda.jit(cache=True)
def _global_max_backward(x, y, ties, dy, dx):
    positions, channels = x.shape[1], x.shape[2]
    for k in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        c = k % channels
        b = k // (positions * channels)
        s = k // channels - b * positions
        dx[b, s, c] = dy[b, c] / ties[b, c] if x[b, s, c] == y[b, c] else 0


def global_max_pool_forward(x, y, ties):
    """``y[b, c]`` = the maximum over positions, ``ties[b, c]`` = how many
    positions hold it. x: (batch, positions, channels); y, ties: (batch, channels)."""
    _global_max_forward[blocks(y.size), THREADS](x, y, ties)


def global_max_pool_backward(x, y, ties, dy, dx):
    """``dx`` = ``dy`` shared equally by the positions that hold the maximum."""
    _global_max_backward[blocks(dx.size), THREADS](x, y, ties, dy, dx)


@cuda.jit(cache=True)
def _masked_average_forward(x, mask, y):
    steps, channels = x.shape[1], x.shape[2]
    for k in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        b = k // channels
        c = k - b * channels
        total = 0.0
        count = 0.0
        for s in range(steps):
            total += x[b, s, c] * mask[b, s]
            count += mask[b, s]
        y[b, c] = total / count


@cuda.jit(cache=True)
def _masked_average_backward(dy, mask, dx):
    steps, channels = dx.shape[1], dx.shape[2]
    for k in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        c = k % channels
        b = k // (steps * channels)
        s = k // channels - b * steps
        count = 0.0
        for t in range(steps):
            count += mask[b, t]
        dx[b, s, c] = dy[b, c] * mask[b, s] / count


def masked_average_pool_forward(x, mask, y):
    """``y[b, c]`` = the mean of ``x[b, s, c]`` over the unmasked steps.
    x: (batch, steps, channels); mask: (batch, steps); y: (batch, channels)."""
    _masked_average_forward[blocks(y.size), THREADS](x, mask, y)


def masked_average_pool_backward(dy, mask, dx):
    """``dx[b, s, c] = dy[b, c] * mask[b, s] / (unmasked steps of b)``."""
    _masked_average_backward[blocks(dx.size), THREADS](dy, mask, dx)
