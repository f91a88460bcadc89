"""A convolution and the 2x2 max pooling after it as one kernel each way on
the GPU, twins of ``nkeras.kernels.cpu.conv_pool`` (shapes and arguments as
there).

A grayscale image's first convolution: forward, one thread per pooled
output, computing its window's four convolution outputs; backward, one
block per filter, whose threads stride over the pooled outputs and add, for
each of the nine taps and the bias, the gradient of the window's maximum
times the input under that tap; float64 tree sums in shared memory write
them, so there are no atomics.

Winograd with the pooling: the convolution kernels' launches, with one
thread per (tile, filter) to pool the inverse transform's 4x4 tile and,
backward, to build and transform the tile's output gradient from the
pooled one.
"""

import math

import numba
from numba import cuda

from nkeras.kernels.codes import LINEAR, RELU
from nkeras.kernels.cpu.conv import _winograd_out, _winograd_out_adjoint
from nkeras.kernels.cuda.conv import _output_rows, _tile_of, _winograd_gradients, _winograd_products
from nkeras.kernels.cuda.dense import COLUMN_TILE, ROW_LANES, _grad_and_bias
from nkeras.kernels.cuda.launch import THREADS, blocks
from nkeras.kernels.cuda.loss import _block_sums
from nkeras.kernels.cuda.pool import _nhwc_index


@cuda.jit(device=True, inline=True)
def _image_value(x, image, iy, ix):
    if 0 <= iy < x.shape[1] and 0 <= ix < x.shape[2]:
        return x[image, iy, ix, 0]
    return 0.0


@cuda.jit(device=True, inline=True)
def _window_output(x, w, bias, image, top, left, f):
    """One convolution output: the 3x3 taps from (top, left)."""
    total = bias[f]
    for ky in range(3):
        for kx in range(3):
            total += _image_value(x, image, top + ky, left + kx) * w[ky, kx, 0, f]
    return total


@cuda.jit(cache=True)
def _forward(x, w, b, top, left, rectify, y, argmax):
    _, out_rows, out_cols, filters = y.shape
    for k in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        image, i, j, f = _nhwc_index(k, out_rows, out_cols, filters)
        best = _window_output(x, w, b, image, 2 * i - top, 2 * j - left, f)
        where = 0
        for q in range(1, 4):
            value = _window_output(x, w, b, image, 2 * i - top + q // 2, 2 * j - left + q % 2, f)
            if value > best:
                best, where = value, q
        y[image, i, j, f] = max(best, 0.0) if rectify else best
        argmax[image, i, j, f] = where


@cuda.jit(cache=True)
def _backward(x, y, dy, argmax, top, left, rectify, dw, db):
    _, out_rows, out_cols, filters = y.shape
    f = cuda.blockIdx.x
    thread = cuda.threadIdx.x
    # Rows 0-8: the kernel taps' partial sums; row 9: the bias's.
    partial = cuda.shared.array((10, THREADS), numba.float64)
    for tap in range(10):
        partial[tap, thread] = 0.0
    for p in range(thread, y.size // filters, THREADS):
        image, i, j, _ = _nhwc_index(p * filters + f, out_rows, out_cols, filters)
        g = dy[image, i, j, f]
        if rectify and not y[image, i, j, f] > 0.0:
            g = 0.0
        where = int(argmax[image, i, j, f])
        top_row = 2 * i - top + where // 2
        left_col = 2 * j - left + where % 2
        for tap in range(9):
            partial[tap, thread] += g * _image_value(x, image, top_row + tap // 3, left_col + tap % 3)
        partial[9, thread] += g
    _block_sums(partial)
    if thread == 0:
        for tap in range(9):
            dw[tap // 3, tap % 3, 0, f] = partial[tap, 0]
        db[f] = partial[9, 0]


def conv2d_max_pool_forward(x, w, b, padding, rectify, y, argmax):
    """``y = max_pool_2x2(act(conv3x3(x, w) + b))``, as the CPU twin."""
    _forward[blocks(y.size), THREADS](x, w, b, padding[0], padding[1], bool(rectify), y, argmax)


def conv2d_max_pool_backward(x, y, dy, argmax, padding, rectify, dw, db):
    """Kernel and bias gradients of ``conv2d_max_pool_forward``, as the CPU twin."""
    _backward[y.shape[3], THREADS](x, y, dy, argmax, padding[0], padding[1], bool(rectify), dw, db)


@cuda.jit(cache=True)
def _pooled_output_tiles(m, bias, tiles_h, tiles_w, rectify, y, argmax):
    _, rows, cols, filters = y.shape
    for k in range(cuda.grid(1), m.shape[1] * filters, cuda.gridsize(1)):
        t, f = k // filters, k % filters
        b, ty, tx = _tile_of(t, tiles_h, tiles_w)
        r0, r1, r2, r3, r4, r5 = _output_rows(m, t, f)
        for pj in range(2):
            j = 2 * tx + pj
            if j >= cols:
                continue
            left = _winograd_out(r0[2 * pj], r1[2 * pj], r2[2 * pj], r3[2 * pj], r4[2 * pj], r5[2 * pj])
            right = _winograd_out(r0[2 * pj + 1], r1[2 * pj + 1], r2[2 * pj + 1], r3[2 * pj + 1], r4[2 * pj + 1],
                                  r5[2 * pj + 1])
            for pi in range(2):
                i = 2 * ty + pi
                if i >= rows:
                    continue
                best, where = left[2 * pi] + bias[f], 0
                value = right[2 * pi] + bias[f]
                if value > best:
                    best, where = value, 1
                value = left[2 * pi + 1] + bias[f]
                if value > best:
                    best, where = value, 2
                value = right[2 * pi + 1] + bias[f]
                if value > best:
                    best, where = value, 3
                y[b, i, j, f] = max(best, 0.0) if rectify else best
                argmax[b, i, j, f] = where


@cuda.jit(cache=True)
def _pooled_gradient_tiles(dz, argmax, tiles_h, tiles_w, m):
    _, rows, cols, filters = dz.shape
    for k in range(cuda.grid(1), m.shape[1] * filters, cuda.gridsize(1)):
        t, f = k // filters, k % filters
        b, ty, tx = _tile_of(t, tiles_h, tiles_w)
        for row in range(4):
            i = 2 * ty + row // 2
            g0 = g1 = g2 = g3 = 0.0
            for pj in range(2):
                j = 2 * tx + pj
                if i < rows and j < cols:
                    g = dz[b, i, j, f]
                    where = argmax[b, i, j, f]
                    first = 2 * (row % 2)
                    if pj == 0:
                        g0 = g if where == first else 0.0
                        g1 = g if where == first + 1 else 0.0
                    else:
                        g2 = g if where == first else 0.0
                        g3 = g if where == first + 1 else 0.0
            values = _winograd_out_adjoint(g0, g1, g2, g3)
            for e in range(6):
                m[6 * row + e, t, f] = values[e]
        for e in range(6):
            column = _winograd_out_adjoint(m[e, t, f], m[6 + e, t, f], m[12 + e, t, f], m[18 + e, t, f])
            for i in range(6):
                m[6 * i + e, t, f] = column[i]


def conv2d_winograd_max_pool_forward(x, w, b, padding, rectify, padded, v, u, m, y, argmax):
    """The 3x3 Winograd convolution and 2x2 max pooling, as the CPU twin."""
    tiles_h, tiles_w = (padded.shape[1] - 2) // 4, (padded.shape[2] - 2) // 4
    _winograd_products(x, w, padding, tiles_h, tiles_w, padded, v, u, m)
    _pooled_output_tiles[blocks(m.shape[1] * y.shape[3]), THREADS](m, b, tiles_h, tiles_w, bool(rectify), y, argmax)


def conv2d_winograd_max_pool_backward(y, dy, argmax, padding, rectify, padded, v, u, m, du, dw, db, dx, need_dx):
    """Gradients of ``conv2d_winograd_max_pool_forward``, as the CPU twin
    (``dy`` becomes ``dy * act'`` in place)."""
    tiles_h, tiles_w = (padded.shape[1] - 2) // 4, (padded.shape[2] - 2) // 4
    filters = y.shape[3]
    y2, dy2 = y.reshape(y.size // filters, filters), dy.reshape(y.size // filters, filters)
    _grad_and_bias[math.ceil(filters / COLUMN_TILE) or 1, (COLUMN_TILE, ROW_LANES)](
        y2, y2, dy2, RELU if rectify else LINEAR, dy.dtype.type(0.0), dy2, db
    )
    _pooled_gradient_tiles[blocks(m.shape[1] * filters), THREADS](dy, argmax, tiles_h, tiles_w, m)
    _winograd_gradients(padding, tiles_h, tiles_w, v, u, m, du, dw, dx, need_dx)
