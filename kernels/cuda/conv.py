"""Convolution kernels on the GPU (channels_last), as the CPU twins.

im2col: one thread per element of the matrix, the dense kernels' tiled GEMM
with its bias and activation epilogue, and col2im as a gather, one thread
per input element summing the taps that read it, so no atomics are needed.
Winograd F(4x4, 3x3): the CPU twins' buffers and transforms (the same
scalar helpers), below.

Shapes and arguments are those of ``nkeras.kernels.cpu.conv``.
"""

import math

from numba import cuda

from nkeras.kernels.codes import LINEAR, SOFTMAX
from nkeras.kernels.cpu.activation import _act
from nkeras.kernels.cpu.conv import (
    _input_position,
    _output_position,
    _winograd_filter,
    _winograd_filter_adjoint,
    _winograd_in,
    _winograd_in_adjoint,
    _winograd_out,
    _winograd_out_adjoint,
)
from nkeras.kernels.cuda.activation import activation_backward, activation_forward
from nkeras.kernels.cuda.dense import (
    COLUMN_TILE,
    ROW_LANES,
    _grad_and_bias,
    _launch_gemm,
    dense_backward,
    dense_forward,
)
from nkeras.kernels.cuda.launch import THREADS, blocks


@cuda.jit(cache=True)
def _im2col(x, strides, dilation, padding, kh, kw, out_h, out_w, cols):
    _, height, width, channels = x.shape
    depth = cols.shape[1]
    for k in range(cuda.grid(1), cols.size, cuda.gridsize(1)):
        row = k // depth
        col = k - row * depth
        tap = col // channels
        c = col - tap * channels
        ky = tap // kw
        kx = tap - ky * kw
        ox = row % out_w
        oy = (row // out_w) % out_h
        b = row // (out_w * out_h)
        iy = _input_position(oy, ky, strides[0], dilation[0], padding[0])
        ix = _input_position(ox, kx, strides[1], dilation[1], padding[1])
        if 0 <= iy < height and 0 <= ix < width:
            cols[row, col] = x[b, iy, ix, c]
        else:
            cols[row, col] = 0.0


@cuda.jit(cache=True)
def _col2im(cols, strides, dilation, padding, kh, kw, out_h, out_w, bias, use_bias, code, alpha, z, y):
    """``z[b, iy, ix, c] = bias[c] + sum of the taps of cols that read
    (iy, ix)``, ``y = act(z)`` (``y`` may be ``z``)."""
    _, height, width, channels = z.shape
    for k in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        c = k % channels
        ix = (k // channels) % width
        iy = (k // (channels * width)) % height
        b = k // (channels * width * height)
        total = bias[c] if use_bias else 0.0
        for ky in range(kh):
            oy = _output_position(iy, ky, strides[0], dilation[0], padding[0], out_h)
            if oy >= 0:
                for kx in range(kw):
                    ox = _output_position(ix, kx, strides[1], dilation[1], padding[1], out_w)
                    if ox >= 0:
                        total += cols[(b * out_h + oy) * out_w + ox, (ky * kw + kx) * channels + c]
        z[b, iy, ix, c] = total
        y[b, iy, ix, c] = _act(total, code, alpha) if code != LINEAR else total


def _launch_im2col(x, strides, dilation, padding, kh, kw, out_h, out_w, cols):
    _im2col[blocks(cols.size), THREADS](x, strides, dilation, padding, kh, kw, out_h, out_w, cols)


def _launch_col2im(cols, strides, dilation, padding, kh, kw, out_h, out_w, bias, use_bias, code, alpha, z, y):
    _col2im[blocks(z.size), THREADS](
        cols, strides, dilation, padding, kh, kw, out_h, out_w, bias, use_bias, code, z.dtype.type(alpha), z, y
    )


def conv2d_forward(x, w, b, strides, dilation, padding, code, alpha, cols, z, y):
    """``z = conv(x, w) + b`` and ``y = act(z)``, as the CPU twin; ``cols``
    is left holding the im2col matrix for the backward."""
    batch, out_h, out_w, filters = y.shape
    kh, kw, channels, _ = w.shape
    rows = batch * out_h * out_w
    _launch_im2col(x, strides, dilation, padding, kh, kw, out_h, out_w, cols)
    dense_forward(
        cols, w.reshape(kh * kw * channels, filters), b, code, alpha, z.reshape(rows, filters), y.reshape(rows, filters)
    )


def conv2d_backward(x, w, z, y, dy, strides, dilation, padding, code, alpha, cols, dz, dw, db, dx, need_dx):
    """Gradients of ``y = act(conv(x, w) + b)``, as the CPU twin: ``cols``
    (the forward's im2col matrix) becomes its gradient when ``need_dx``."""
    batch, out_h, out_w, filters = y.shape
    kh, kw, channels, _ = w.shape
    rows = batch * out_h * out_w
    depth = kh * kw * channels
    dense_backward(
        cols, w.reshape(depth, filters), z.reshape(rows, filters), y.reshape(rows, filters),
        dy.reshape(rows, filters), code, alpha, dz.reshape(rows, filters), dw.reshape(depth, filters), db,
        cols, need_dx,
    )
    if need_dx:
        _launch_col2im(cols, strides, dilation, padding, kh, kw, out_h, out_w, db, False, LINEAR, alpha, dx, dx)


def conv2d_transpose_forward(x, w, b, strides, dilation, padding, code, alpha, cols, z, y):
    """``z = conv_transpose(x, w) + b`` and ``y = act(z)``, as the CPU twin:
    ``cols = x @ w.T``, then col2im with the bias and activation."""
    batch, height, width, channels = x.shape
    kh, kw, filters, _ = w.shape
    w2 = w.reshape(kh * kw * filters, channels)
    _launch_gemm(x.reshape(batch * height * width, channels), w2, False, True, b, False, LINEAR, alpha, cols, cols)
    if code == SOFTMAX:
        _launch_col2im(cols, strides, dilation, padding, kh, kw, height, width, b, True, LINEAR, alpha, z, z)
        rows = batch * y.shape[1] * y.shape[2]
        activation_forward(z.reshape(rows, filters), SOFTMAX, alpha, y.reshape(rows, filters))
    else:
        _launch_col2im(cols, strides, dilation, padding, kh, kw, height, width, b, True, code, alpha, z, y)


def conv2d_transpose_backward(x, w, z, y, dy, strides, dilation, padding, code, alpha, cols, dz, dw, db, dx, need_dx):
    """Gradients of ``y = act(conv_transpose(x, w) + b)``, as the CPU twin:
    ``dz``, ``db``, ``cols = im2col(dz)``, ``dw = cols.T @ x`` and, when
    ``need_dx``, ``dx = cols @ w``."""
    batch, height, width, channels = x.shape
    kh, kw, filters, _ = w.shape
    rows = batch * y.shape[1] * y.shape[2]
    depth = kh * kw * filters
    z2, y2, dy2, dz2 = (a.reshape(rows, filters) for a in (z, y, dy, dz))
    if code == SOFTMAX:
        activation_backward(z2, y2, dy2, SOFTMAX, alpha, dz2)
    _grad_and_bias[math.ceil(filters / COLUMN_TILE) or 1, (COLUMN_TILE, ROW_LANES)](
        z2, y2, dy2, code, dz.dtype.type(alpha), dz2, db
    )
    _launch_im2col(dz, strides, dilation, padding, kh, kw, height, width, cols)
    dw2 = dw.reshape(depth, channels)
    _launch_gemm(cols, x.reshape(batch * height * width, channels), True, False, db, False, LINEAR, alpha, dw2, dw2)
    if need_dx:
        dx2 = dx.reshape(batch * height * width, channels)
        _launch_gemm(cols, w.reshape(depth, channels), False, False, db, False, LINEAR, alpha, dx2, dx2)


# ---- Winograd F(4x4, 3x3) ----------------------------------------------------
# The buffers and transforms of the CPU twins; every transform is one thread
# per tile and channel, the 36 products one batched kernel, and the input
# gradient a gather over the (at most four) tiles that cover an element.


@cuda.jit(cache=True)
def _pad(x, padding, padded):
    _, height, width, _ = x.shape
    _, rows, cols, channels = padded.shape
    for k in range(cuda.grid(1), padded.size, cuda.gridsize(1)):
        c = k % channels
        j = (k // channels) % cols
        i = (k // (channels * cols)) % rows
        b = k // (channels * cols * rows)
        iy, ix = i - padding[0], j - padding[1]
        if 0 <= iy < height and 0 <= ix < width:
            padded[b, i, j, c] = x[b, iy, ix, c]
        else:
            padded[b, i, j, c] = 0.0


@cuda.jit(cache=True)
def _filter_transform(w, u):
    _, _, channels, filters = w.shape
    for k in range(cuda.grid(1), channels * filters, cuda.gridsize(1)):
        c, f = k // filters, k % filters
        r0 = _winograd_filter(w[0, 0, c, f], w[0, 1, c, f], w[0, 2, c, f])
        r1 = _winograd_filter(w[1, 0, c, f], w[1, 1, c, f], w[1, 2, c, f])
        r2 = _winograd_filter(w[2, 0, c, f], w[2, 1, c, f], w[2, 2, c, f])
        for j in range(6):
            column = _winograd_filter(r0[j], r1[j], r2[j])
            for i in range(6):
                u[6 * i + j, c, f] = column[i]


@cuda.jit(cache=True)
def _filter_gradient(du, dw):
    _, channels, filters = du.shape
    for k in range(cuda.grid(1), channels * filters, cuda.gridsize(1)):
        c, f = k // filters, k % filters
        r0 = _winograd_filter_adjoint(du[0, c, f], du[1, c, f], du[2, c, f], du[3, c, f], du[4, c, f], du[5, c, f])
        r1 = _winograd_filter_adjoint(du[6, c, f], du[7, c, f], du[8, c, f], du[9, c, f], du[10, c, f], du[11, c, f])
        r2 = _winograd_filter_adjoint(du[12, c, f], du[13, c, f], du[14, c, f], du[15, c, f], du[16, c, f],
                                      du[17, c, f])
        r3 = _winograd_filter_adjoint(du[18, c, f], du[19, c, f], du[20, c, f], du[21, c, f], du[22, c, f],
                                      du[23, c, f])
        r4 = _winograd_filter_adjoint(du[24, c, f], du[25, c, f], du[26, c, f], du[27, c, f], du[28, c, f],
                                      du[29, c, f])
        r5 = _winograd_filter_adjoint(du[30, c, f], du[31, c, f], du[32, c, f], du[33, c, f], du[34, c, f],
                                      du[35, c, f])
        for kx in range(3):
            column = _winograd_filter_adjoint(r0[kx], r1[kx], r2[kx], r3[kx], r4[kx], r5[kx])
            for ky in range(3):
                dw[ky, kx, c, f] = column[ky]


@cuda.jit(device=True, inline=True)
def _tile_of(t, tiles_h, tiles_w):
    return t // (tiles_h * tiles_w), (t // tiles_w) % tiles_h, t % tiles_w


@cuda.jit(cache=True)
def _input_tiles(padded, tiles_h, tiles_w, v):
    channels = padded.shape[3]
    for k in range(cuda.grid(1), v.shape[1] * channels, cuda.gridsize(1)):
        t, c = k // channels, k % channels
        b, ty, tx = _tile_of(t, tiles_h, tiles_w)
        y0, x0 = 4 * ty, 4 * tx
        r0 = _winograd_in(padded[b, y0, x0, c], padded[b, y0, x0 + 1, c], padded[b, y0, x0 + 2, c],
                          padded[b, y0, x0 + 3, c], padded[b, y0, x0 + 4, c], padded[b, y0, x0 + 5, c])
        r1 = _winograd_in(padded[b, y0 + 1, x0, c], padded[b, y0 + 1, x0 + 1, c], padded[b, y0 + 1, x0 + 2, c],
                          padded[b, y0 + 1, x0 + 3, c], padded[b, y0 + 1, x0 + 4, c], padded[b, y0 + 1, x0 + 5, c])
        r2 = _winograd_in(padded[b, y0 + 2, x0, c], padded[b, y0 + 2, x0 + 1, c], padded[b, y0 + 2, x0 + 2, c],
                          padded[b, y0 + 2, x0 + 3, c], padded[b, y0 + 2, x0 + 4, c], padded[b, y0 + 2, x0 + 5, c])
        r3 = _winograd_in(padded[b, y0 + 3, x0, c], padded[b, y0 + 3, x0 + 1, c], padded[b, y0 + 3, x0 + 2, c],
                          padded[b, y0 + 3, x0 + 3, c], padded[b, y0 + 3, x0 + 4, c], padded[b, y0 + 3, x0 + 5, c])
        r4 = _winograd_in(padded[b, y0 + 4, x0, c], padded[b, y0 + 4, x0 + 1, c], padded[b, y0 + 4, x0 + 2, c],
                          padded[b, y0 + 4, x0 + 3, c], padded[b, y0 + 4, x0 + 4, c], padded[b, y0 + 4, x0 + 5, c])
        r5 = _winograd_in(padded[b, y0 + 5, x0, c], padded[b, y0 + 5, x0 + 1, c], padded[b, y0 + 5, x0 + 2, c],
                          padded[b, y0 + 5, x0 + 3, c], padded[b, y0 + 5, x0 + 4, c], padded[b, y0 + 5, x0 + 5, c])
        for j in range(6):
            column = _winograd_in(r0[j], r1[j], r2[j], r3[j], r4[j], r5[j])
            for i in range(6):
                v[6 * i + j, t, c] = column[i]


@cuda.jit(device=True, inline=True)
def _output_rows(m, t, f):
    """``A^T`` applied along each of the six rows of tile ``t``'s filter ``f``."""
    return (
        _winograd_out(m[0, t, f], m[1, t, f], m[2, t, f], m[3, t, f], m[4, t, f], m[5, t, f]),
        _winograd_out(m[6, t, f], m[7, t, f], m[8, t, f], m[9, t, f], m[10, t, f], m[11, t, f]),
        _winograd_out(m[12, t, f], m[13, t, f], m[14, t, f], m[15, t, f], m[16, t, f], m[17, t, f]),
        _winograd_out(m[18, t, f], m[19, t, f], m[20, t, f], m[21, t, f], m[22, t, f], m[23, t, f]),
        _winograd_out(m[24, t, f], m[25, t, f], m[26, t, f], m[27, t, f], m[28, t, f], m[29, t, f]),
        _winograd_out(m[30, t, f], m[31, t, f], m[32, t, f], m[33, t, f], m[34, t, f], m[35, t, f]),
    )


@cuda.jit(cache=True)
def _output_tiles(m, bias, tiles_h, tiles_w, code, alpha, z, y):
    """``z = A^T m A + bias`` cropped to ``z``, ``y = act(z)`` (``y`` may be ``z``)."""
    _, out_h, out_w, filters = z.shape
    for k in range(cuda.grid(1), m.shape[1] * filters, cuda.gridsize(1)):
        t, f = k // filters, k % filters
        b, ty, tx = _tile_of(t, tiles_h, tiles_w)
        r0, r1, r2, r3, r4, r5 = _output_rows(m, t, f)
        for j in range(4):
            ox = 4 * tx + j
            column = _winograd_out(r0[j], r1[j], r2[j], r3[j], r4[j], r5[j])
            for i in range(4):
                oy = 4 * ty + i
                if oy < out_h and ox < out_w:
                    value = column[i] + bias[f]
                    z[b, oy, ox, f] = value
                    y[b, oy, ox, f] = _act(value, code, alpha) if code != LINEAR else value


@cuda.jit(cache=True)
def _gradient_tiles(dz, tiles_h, tiles_w, m):
    _, out_h, out_w, filters = dz.shape
    for k in range(cuda.grid(1), m.shape[1] * filters, cuda.gridsize(1)):
        t, f = k // filters, k % filters
        b, ty, tx = _tile_of(t, tiles_h, tiles_w)
        for i in range(4):
            oy = 4 * ty + i
            g0 = g1 = g2 = g3 = 0.0
            if oy < out_h:
                ox = 4 * tx
                g0 = dz[b, oy, ox, f]
                if ox + 1 < out_w:
                    g1 = dz[b, oy, ox + 1, f]
                if ox + 2 < out_w:
                    g2 = dz[b, oy, ox + 2, f]
                if ox + 3 < out_w:
                    g3 = dz[b, oy, ox + 3, f]
            row = _winograd_out_adjoint(g0, g1, g2, g3)
            for j in range(6):
                m[6 * i + j, t, f] = row[j]
        for j in range(6):
            column = _winograd_out_adjoint(m[j, t, f], m[6 + j, t, f], m[12 + j, t, f], m[18 + j, t, f])
            for i in range(6):
                m[6 * i + j, t, f] = column[i]


@cuda.jit(cache=True)
def _products(a, b, trans_a, trans_b, out):
    """``out[k] = op(a[k]) @ op(b[k])`` for each of the 36 transform elements."""
    _, rows, cols = out.shape
    depth = a.shape[1] if trans_a else a.shape[2]
    for n in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        j = n % cols
        i = (n // cols) % rows
        k = n // (cols * rows)
        total = 0.0
        for p in range(depth):
            left = a[k, p, i] if trans_a else a[k, i, p]
            right = b[k, j, p] if trans_b else b[k, p, j]
            total += left * right
        out[k, i, j] = total


@cuda.jit(cache=True)
def _input_gradient(v, padding, tiles_h, tiles_w, dx):
    """``dx`` from ``B v B^T`` of the tiles that cover each element."""
    _, height, width, channels = dx.shape
    for n in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        c = n % channels
        ix = (n // channels) % width
        iy = (n // (channels * width)) % height
        b = n // (channels * width * height)
        py, px = iy + padding[0], ix + padding[1]
        total = 0.0
        for ty in range(max(0, py // 4 - 1), min(tiles_h, py // 4 + 1)):
            i = py - 4 * ty
            if i > 5:
                continue
            for tx in range(max(0, px // 4 - 1), min(tiles_w, px // 4 + 1)):
                j = px - 4 * tx
                if j > 5:
                    continue
                t = (b * tiles_h + ty) * tiles_w + tx
                r0 = _winograd_in_adjoint(v[0, t, c], v[1, t, c], v[2, t, c], v[3, t, c], v[4, t, c], v[5, t, c])
                r1 = _winograd_in_adjoint(v[6, t, c], v[7, t, c], v[8, t, c], v[9, t, c], v[10, t, c], v[11, t, c])
                r2 = _winograd_in_adjoint(v[12, t, c], v[13, t, c], v[14, t, c], v[15, t, c], v[16, t, c], v[17, t, c])
                r3 = _winograd_in_adjoint(v[18, t, c], v[19, t, c], v[20, t, c], v[21, t, c], v[22, t, c], v[23, t, c])
                r4 = _winograd_in_adjoint(v[24, t, c], v[25, t, c], v[26, t, c], v[27, t, c], v[28, t, c], v[29, t, c])
                r5 = _winograd_in_adjoint(v[30, t, c], v[31, t, c], v[32, t, c], v[33, t, c], v[34, t, c], v[35, t, c])
                column = _winograd_in_adjoint(r0[j], r1[j], r2[j], r3[j], r4[j], r5[j])
                total += column[i]
        dx[b, iy, ix, c] = total


def _launch_products(a, b, trans_a, trans_b, out):
    _products[blocks(out.size), THREADS](a, b, trans_a, trans_b, out)


def conv2d_winograd_forward(x, w, b, padding, code, alpha, padded, v, u, m, z, y):
    """``z = conv(x, w) + b`` and ``y = act(z)`` by Winograd F(4x4, 3x3), as
    the CPU twin; ``v`` and ``u`` are left holding the transforms."""
    batch, out_h, out_w, filters = y.shape
    tiles_h, tiles_w = (out_h + 3) // 4, (out_w + 3) // 4
    _winograd_products(x, w, padding, tiles_h, tiles_w, padded, v, u, m)
    alpha = z.dtype.type(alpha)
    grid = blocks(m.shape[1] * filters)
    if code == SOFTMAX:
        _output_tiles[grid, THREADS](m, b, tiles_h, tiles_w, LINEAR, alpha, z, z)
        rows = batch * out_h * out_w
        activation_forward(z.reshape(rows, filters), SOFTMAX, alpha, y.reshape(rows, filters))
    else:
        _output_tiles[grid, THREADS](m, b, tiles_h, tiles_w, code, alpha, z, y)


def conv2d_winograd_backward(z, y, dy, padding, code, alpha, padded, v, u, m, du, dz, dw, db, dx, need_dx):
    """Gradients of ``conv2d_winograd_forward``, as the CPU twin (``padded``
    is not needed here: the input gradient is gathered tile by tile)."""
    batch, out_h, out_w, filters = y.shape
    tiles_h, tiles_w = (out_h + 3) // 4, (out_w + 3) // 4
    rows = batch * out_h * out_w
    z2, y2, dy2, dz2 = (a.reshape(rows, filters) for a in (z, y, dy, dz))
    if code == SOFTMAX:
        activation_backward(z2, y2, dy2, SOFTMAX, alpha, dz2)
    _grad_and_bias[math.ceil(filters / COLUMN_TILE) or 1, (COLUMN_TILE, ROW_LANES)](
        z2, y2, dy2, code, dz.dtype.type(alpha), dz2, db
    )
    _gradient_tiles[blocks(m.shape[1] * filters), THREADS](dz, tiles_h, tiles_w, m)
    _winograd_gradients(padding, tiles_h, tiles_w, v, u, m, du, dw, dx, need_dx)


def _winograd_products(x, w, padding, tiles_h, tiles_w, padded, v, u, m):
    """The forward up to the inverse transform, as the CPU's helper."""
    channels, filters = w.shape[2], w.shape[3]
    _pad[blocks(padded.size), THREADS](x, padding, padded)
    _filter_transform[blocks(channels * filters), THREADS](w, u)
    _input_tiles[blocks(v.shape[1] * channels), THREADS](padded, tiles_h, tiles_w, v)
    _launch_products(v, u, False, False, m)


def _winograd_gradients(padding, tiles_h, tiles_w, v, u, m, du, dw, dx, need_dx):
    """``dw`` and, with ``need_dx``, ``dx`` from the transformed output
    gradient ``m``, as the CPU's helper."""
    _launch_products(v, m, True, False, du)
    _filter_gradient[blocks(du.shape[1] * dw.shape[3]), THREADS](du, dw)
    if need_dx:
        _launch_products(m, u, False, True, v)
        _input_gradient[blocks(dx.size), THREADS](v, padding, tiles_h, tiles_w, dx)
