"""A convolution and the 2x2 max pooling after it (stride 2, "valid") as one
kernel each way, channels_last: the convolution's output is never stored,
only the pooled one and where each window's maximum was. Two pairs
(``nkeras/fusion.py`` decides which runs):

- A grayscale image's first convolution, 3x3 over one channel with stride
  and dilation 1 and padding of 0 or 1 before the first row and column
  (Keras's "valid" and "same"). The four outputs under a pooling window
  read a 4x4 patch of the image: the forward loads it once and computes the
  four outputs of every filter in registers; the backward needs neither the
  output nor an im2col matrix, since each window's gradient goes to the
  output that was its maximum, whose taps are the same patch, reloaded. For
  the MNIST convnet's batch of 128 that skips 11 MB of output and 11 MB of
  its gradient, each written and read again, and 3 MB of im2col rows.
- Winograd F(4x4, 3x3), on ``conv2d_winograd_forward``'s buffers and
  transforms. Pooling windows never straddle two 4x4 output tiles, so the
  inverse transform's tiles are pooled as they are read, and the backward
  builds each tile's output gradient from the pooled one.

As in ``max_pool_forward``, ``argmax`` holds the window position of the
first maximum (``2 * row + col``) in the layer's float dtype. The relu is
applied to the maximum (``relu(max(z)) == max(relu(z))``; where they pick a
different first maximum, all four are <= 0 and the gradient is zero either
way). Activations other than relu and linear are not fused.

Each kernel splits the batch over Numba's threads and calls BLAS from
each, so it must run with BLAS on one thread (the plan does that, see
``nkeras.backend.blas_threads``).

Shapes: ``x`` (batch, height, width, channels); ``w`` (3, 3, channels,
filters); ``y`` and ``argmax`` (batch, out_h // 2, out_w // 2, filters) for
the convolution's (out_h, out_w); ``padding`` the (rows, cols) zeros
before, each 0 or 1.
"""

import numpy as np
from numba import njit, prange

from nkeras.kernels.codes import LINEAR, RELU
from nkeras.kernels.cpu.conv import (
    _chunk_planes,
    _chunk_samples,
    _chunks,
    _filter_transform,
    _gradient_columns,
    _inverse_transform,
    _output_gradient,
    _put_row,
    _task_products,
    _winograd_gradients,
    _winograd_out_adjoint,
)



@njit(cache=True, error_model="numpy", inline="always")
def _at(x, image, iy, ix, zero):
    """``x[image, iy, ix, 0]``, or ``zero`` in the padding."""
    return x[image, iy, ix, 0] if 0 <= iy < x.shape[1] and 0 <= ix < x.shape[2] else zero


@njit(cache=True, error_model="numpy", inline="always")
def _patch_row(x, image, iy, left, zero):
    """The four values of row ``iy`` from column ``left`` on."""
    if 0 <= iy < x.shape[1] and left >= 0 and left + 3 < x.shape[2]:
        return x[image, iy, left, 0], x[image, iy, left + 1, 0], x[image, iy, left + 2, 0], x[image, iy, left + 3, 0]
    return (_at(x, image, iy, left, zero), _at(x, image, iy, left + 1, zero), _at(x, image, iy, left + 2, zero),
            _at(x, image, iy, left + 3, zero))


@njit(cache=True, error_model="numpy", inline="always")
def _patch(x, image, top, left, zero):
    """The 4x4 patch of one-channel ``x`` at (top, left), row by row (zeros
    in the padding)."""
    return (
        _patch_row(x, image, top, left, zero), _patch_row(x, image, top + 1, left, zero),
        _patch_row(x, image, top + 2, left, zero), _patch_row(x, image, top + 3, left, zero),
    )


@njit(cache=True, error_model="numpy", parallel=True)
def conv2d_max_pool_forward(x, w, b, padding, rectify, y, argmax):
    """``y = max_pool_2x2(act(conv3x3(x, w) + b))`` with act relu when
    ``rectify`` (else linear), and ``argmax`` = each window's first maximum
    (0-3, row-major).

    ``argmax`` is written in inference too: that costs nothing measurable,
    while the same loop with the store under an ``if`` (to skip it in
    inference) ran 2-7x slower, depending on whether ``argmax``'s memory had
    been written before."""
    _, out_rows, out_cols, filters = y.shape
    taps = w.reshape(9, filters)
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = taps[0], taps[1], taps[2], taps[3], taps[4], taps[5], taps[6], taps[7], taps[8]
    top, left = padding
    zero = x.dtype.type(0.0)
    for image in prange(x.shape[0]):
        for i in range(out_rows):
            for j in range(out_cols):
                r0, r1, r2, r3 = _patch(x, image, 2 * i - top, 2 * j - left, zero)
                best_row, where_row = y[image, i, j], argmax[image, i, j]
                for f in range(filters):
                    # The four outputs of the window: (0, 0), (0, 1), (1, 0), (1, 1).
                    v0 = (b[f] + r0[0] * w0[f] + r0[1] * w1[f] + r0[2] * w2[f] + r1[0] * w3[f] + r1[1] * w4[f]
                          + r1[2] * w5[f] + r2[0] * w6[f] + r2[1] * w7[f] + r2[2] * w8[f])
                    v1 = (b[f] + r0[1] * w0[f] + r0[2] * w1[f] + r0[3] * w2[f] + r1[1] * w3[f] + r1[2] * w4[f]
                          + r1[3] * w5[f] + r2[1] * w6[f] + r2[2] * w7[f] + r2[3] * w8[f])
                    v2 = (b[f] + r1[0] * w0[f] + r1[1] * w1[f] + r1[2] * w2[f] + r2[0] * w3[f] + r2[1] * w4[f]
                          + r2[2] * w5[f] + r3[0] * w6[f] + r3[1] * w7[f] + r3[2] * w8[f])
                    v3 = (b[f] + r1[1] * w0[f] + r1[2] * w1[f] + r1[3] * w2[f] + r2[1] * w3[f] + r2[2] * w4[f]
                          + r2[3] * w5[f] + r3[1] * w6[f] + r3[2] * w7[f] + r3[3] * w8[f])
                    best, where = v0, zero
                    if v1 > best:
                        best, where = v1, zero + 1
                    if v2 > best:
                        best, where = v2, zero + 2
                    if v3 > best:
                        best, where = v3, zero + 3
                    best_row[f] = max(best, zero) if rectify else best
                    where_row[f] = where


@njit(cache=True, error_model="numpy")
def _add_patch_gradients(x, y, dy, argmax, padding, rectify, start, stop, sums):
    """Add the kernel gradient of samples ``[start, stop)`` to ``sums[:9]``
    (one row per tap) and their bias gradient to ``sums[9]``."""
    _, out_rows, out_cols, filters = y.shape
    d0, d1, d2, d3, d4, d5, d6, d7, d8 = sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], sums[6], sums[7], sums[8]
    bias = sums[9]
    top, left = padding
    zero = x.dtype.type(0.0)
    for image in range(start, stop):
        for i in range(out_rows):
            for j in range(out_cols):
                r0, r1, r2, r3 = _patch(x, image, 2 * i - top, 2 * j - left, zero)
                grad_row, out_row, where_row = dy[image, i, j], y[image, i, j], argmax[image, i, j]
                for f in range(filters):
                    g = grad_row[f]
                    if rectify:
                        g = g if out_row[f] > 0.0 else zero
                    where = where_row[f]
                    # The gradient of each of the window's four outputs (one is g).
                    g0 = g if where == 0.0 else zero
                    g1 = g if where == 1.0 else zero
                    g2 = g if where == 2.0 else zero
                    g3 = g if where == 3.0 else zero
                    bias[f] += g
                    d0[f] += r0[0] * g0 + r0[1] * g1 + r1[0] * g2 + r1[1] * g3
                    d1[f] += r0[1] * g0 + r0[2] * g1 + r1[1] * g2 + r1[2] * g3
                    d2[f] += r0[2] * g0 + r0[3] * g1 + r1[2] * g2 + r1[3] * g3
                    d3[f] += r1[0] * g0 + r1[1] * g1 + r2[0] * g2 + r2[1] * g3
                    d4[f] += r1[1] * g0 + r1[2] * g1 + r2[1] * g2 + r2[2] * g3
                    d5[f] += r1[2] * g0 + r1[3] * g1 + r2[2] * g2 + r2[3] * g3
                    d6[f] += r2[0] * g0 + r2[1] * g1 + r3[0] * g2 + r3[1] * g3
                    d7[f] += r2[1] * g0 + r2[2] * g1 + r3[1] * g2 + r3[2] * g3
                    d8[f] += r2[2] * g0 + r2[3] * g1 + r3[2] * g2 + r3[3] * g3


@njit(cache=True, error_model="numpy", parallel=True)
def conv2d_max_pool_backward(x, y, dy, argmax, padding, rectify, dw, db):
    """Kernel and bias gradients of ``conv2d_max_pool_forward``: ``dw``
    (3, 3, 1, filters) and ``db`` (filters,), written fully; ``y`` and
    ``argmax`` are the forward's outputs. Each chunk of samples sums into
    its own rows, added up in chunk order after."""
    batch, filters = y.shape[0], y.shape[3]
    chunks = _chunks(batch)
    sums = np.zeros((chunks, 10, filters), dw.dtype)
    for chunk in prange(chunks):
        start, stop = _chunk_samples(chunk, batch)
        _add_patch_gradients(x, y, dy, argmax, padding, rectify, start, stop, sums[chunk])
    taps = dw.reshape(9, filters)
    taps[:, :] = 0.0
    db[:] = 0.0
    for chunk in range(chunks):
        for k in range(9):
            taps[k] += sums[chunk, k]
        db += sums[chunk, 9]


@njit(cache=True, error_model="numpy")
def _pooled_output_tiles(m, bias, tiles_h, tiles_w, rectify, y, argmax):
    """``y`` = the 2x2 max pooling of ``act(A^T m A + bias)``, ``argmax``
    where each maximum was (``m`` is overwritten)."""
    _inverse_transform(m)
    batch, rows, cols, filters = y.shape
    zero = y.dtype.type(0.0)
    first = 0
    for b in range(batch):
        for ty in range(tiles_h):
            for pi in range(min(2, rows - 2 * ty)):
                k = 12 * pi
                for j in range(cols):
                    t, k0 = first + j // 2, k + 2 * (j % 2)
                    best_row, where_row = y[b, 2 * ty + pi, j], argmax[b, 2 * ty + pi, j]
                    for f in range(filters):
                        # The bias goes in before the comparisons, so that
                        # ties fall as in the two layers apart.
                        best, where = m[k0, t, f] + bias[f], zero
                        value = m[k0 + 1, t, f] + bias[f]
                        if value > best:
                            best, where = value, zero + 1
                        value = m[k0 + 6, t, f] + bias[f]
                        if value > best:
                            best, where = value, zero + 2
                        value = m[k0 + 7, t, f] + bias[f]
                        if value > best:
                            best, where = value, zero + 3
                        best_row[f] = max(best, zero) if rectify else best
                        where_row[f] = where
            first += tiles_w


@njit(cache=True, error_model="numpy")
def _pooled_gradient_tiles(dz, argmax, tiles_h, tiles_w, m):
    """``m = A dZ A^T`` for every 4x4 tile of the convolution's output
    gradient ``dZ``: the pooled gradient ``dz`` at each window's maximum,
    zero elsewhere (and past the pooled rows and columns)."""
    batch, rows, cols, filters = dz.shape
    zero = dz.dtype.type(0.0)
    first = 0
    for b in range(batch):
        for ty in range(tiles_h):
            for i in range(4):
                pi = 2 * ty + i // 2
                k = 6 * i
                # The window positions of the tile row's two columns in each window.
                left, right = zero + 2 * (i % 2), zero + 2 * (i % 2) + 1
                for tx in range(tiles_w):
                    t, pj = first + tx, 2 * tx
                    if pi >= rows or pj >= cols:
                        for f in range(filters):
                            for e in range(6):
                                m[k + e, t, f] = zero
                        continue
                    second = pj + 1 < cols
                    for f in range(filters):
                        g, where = dz[b, pi, pj, f], argmax[b, pi, pj, f]
                        g0 = g if where == left else zero
                        g1 = g if where == right else zero
                        g2 = g3 = zero
                        if second:
                            g, where = dz[b, pi, pj + 1, f], argmax[b, pi, pj + 1, f]
                            g2 = g if where == left else zero
                            g3 = g if where == right else zero
                        row = _winograd_out_adjoint(g0, g1, g2, g3)
                        _put_row(m, k, t, f, row)
            first += tiles_w
    _gradient_columns(m)


@njit(cache=True, error_model="numpy", parallel=True)
def conv2d_winograd_max_pool_forward(x, w, b, padding, rectify, padded, v, u, m, y, argmax):
    """``y = max_pool_2x2(act(conv3x3(x, w) + b))`` (act relu when
    ``rectify``, else linear) by Winograd F(4x4, 3x3), and ``argmax`` =
    each window's first maximum; ``padded``, ``v``, ``u`` and ``m`` are
    ``conv2d_winograd_forward``'s scratch (``v`` and ``m`` laid out chunk
    by chunk), ``v`` and ``u`` left holding the transforms the backward
    reads."""
    tiles_h, tiles_w = (padded.shape[1] - 2) // 4, (padded.shape[2] - 2) // 4
    batch = x.shape[0]
    _filter_transform(w, u)
    for chunk in prange(_chunks(batch)):
        start, stop, m_chunk = _task_products(x, padding, tiles_h, tiles_w, v, u, m, chunk)
        _pooled_output_tiles(m_chunk, b, tiles_h, tiles_w, rectify, y[start:stop], argmax[start:stop])


@njit(cache=True, error_model="numpy", parallel=True)
def conv2d_winograd_max_pool_backward(y, dy, argmax, padding, rectify, padded, v, u, m, du, dw, db, dx, need_dx):
    """Gradients of ``conv2d_winograd_max_pool_forward``: ``dy`` becomes
    ``dy * act'`` in place; writes ``db``, ``dw`` and, when ``need_dx``,
    ``dx`` (scratch as in ``conv2d_winograd_backward``)."""
    tiles_h, tiles_w = (padded.shape[1] - 2) // 4, (padded.shape[2] - 2) // 4
    tiles = tiles_h * tiles_w
    batch, filters = y.shape[0], y.shape[3]
    rows = y.size // filters
    chunks = _chunks(batch)
    _output_gradient(y.reshape(rows, filters), y.reshape(rows, filters), dy.reshape(rows, filters),
                     RELU if rectify else LINEAR, 0.0, dy.reshape(rows, filters), db)
    for chunk in prange(chunks):
        start, stop = _chunk_samples(chunk, batch)
        _pooled_gradient_tiles(dy[start:stop], argmax[start:stop], tiles_h, tiles_w,
                               _chunk_planes(m, start, stop, tiles))
    _winograd_gradients(padding, tiles_h, tiles_w, padded, v, u, m, du, dw, dx, need_dx)
