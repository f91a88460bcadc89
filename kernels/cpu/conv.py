"""Convolution kernels (channels_last), by three algorithms (docs/convolution.md
says which runs when and why).

im2col: ``cols`` is the im2col matrix (batch * out_h * out_w, kh * kw *
channels): row ``(b, oy, ox)`` holds the input values under the kernel at
that output position, tap by tap, each tap a contiguous run of ``channels``
values (the NHWC layout makes it one run in ``x`` too). ``cols @
kernel.reshape(-1, filters)`` is then the NHWC output itself, with no
transpose, and the dense kernels' epilogue adds the bias and activation.
The backward of a thin ``cols`` (at most ``SMALL_DEPTH`` columns: a first
layer on one or a few channels) skips BLAS: the relu gradient, the bias
gradient and the kernel gradient are one pass over the rows.

Direct: the forward of a 3x3 kernel over one channel with a relu or no
activation is one loop that gathers each output's nine taps from ``x``
(writing them as its im2col row, for the backward) and applies the kernel,
bias and activation to them at once.

A transposed convolution is the input gradient of the convolution that maps
its output's shape to its input's shape: a GEMM, then col2im; its backward
is that convolution's forward and weight gradient.

Winograd F(4x4, 3x3), for 3x3 kernels with stride and dilation 1 over
several channels: see the section below.

Shapes: ``x`` (batch, height, width, channels); a convolution's kernel
(kh, kw, channels, filters) and output (batch, out_h, out_w, filters).
``strides``, ``dilation`` and ``padding`` are (rows, cols) pairs of ints;
``padding`` is the zeros before the first row and column (the rest of the
padding follows from the output's size).
"""

import numpy as np
from numba import njit, prange

from nkeras.kernels.codes import LINEAR, RELU
from nkeras.kernels.cpu.activation import activation_backward, activation_forward
from nkeras.kernels.cpu.blas import _gemm
from nkeras.kernels.cpu.dense import dense_forward
from nkeras.kernels.cpu.tasks import _task_block

# float32 constants keep float32 data in float32 (a Python float would promote
# the arithmetic to float64); they are exact, and float64 data stays float64.
_ZERO, _TWO, _FOUR, _FIVE, _EIGHT = np.float32(0), np.float32(2), np.float32(4), np.float32(5), np.float32(8)


@njit(cache=True, error_model="numpy", inline="always")
def _input_position(out_index, tap, stride, dilation, pad):
    """The input index a kernel tap reads at an output index (negative or
    past the end inside the padding)."""
    return out_index * stride - pad + tap * dilation


@njit(cache=True, error_model="numpy", inline="always")
def _output_position(in_index, tap, stride, dilation, pad, out_length):
    """The output index at which kernel tap ``tap`` reads input index
    ``in_index``, or -1 when there is none."""
    offset = in_index + pad - tap * dilation
    if offset < 0 or offset % stride != 0:
        return -1
    position = offset // stride
    return position if position < out_length else -1


# The copies below index flat views with unsigned integers: Numba checks a
# signed index for a negative (wrap-around) value on every access, which
# keeps LLVM from vectorising them (im2col of the MNIST convnet's second
# layer: 10.4 ms with signed indices, 0.7 ms without). They are written out
# in the loops: through a helper, even an inlined one, small runs got slower.


@njit(cache=True, error_model="numpy")
def _im2col(x, strides, dilation, padding, kh, kw, out_h, out_w, cols):
    batch, height, width, channels = x.shape
    stride_h, stride_w = strides
    dilation_h, dilation_w = dilation
    pad_top, pad_left = padding
    source = x.reshape(x.size)
    target = cols.reshape(cols.size)
    run = np.uint64(kw * channels)
    run_channels = np.uint64(channels)
    offset = np.uint64(0)
    for b in range(batch):
        for oy in range(out_h):
            for ox in range(out_w):
                left = _input_position(ox, 0, stride_w, dilation_w, pad_left)
                # Undilated taps inside the row are one run of kw * channels values.
                whole_row = dilation_w == 1 and left >= 0 and left + kw <= width
                for ky in range(kh):
                    iy = _input_position(oy, ky, stride_h, dilation_h, pad_top)
                    if iy < 0 or iy >= height:
                        for k in range(run):
                            target[offset + k] = 0.0
                    elif whole_row:
                        start = np.uint64(((b * height + iy) * width + left) * channels)
                        for k in range(run):
                            target[offset + k] = source[start + k]
                    else:
                        for kx in range(kw):
                            ix = left + kx * dilation_w
                            tap = offset + np.uint64(kx * channels)
                            if ix < 0 or ix >= width:
                                for c in range(run_channels):
                                    target[tap + c] = 0.0
                            else:
                                start = np.uint64(((b * height + iy) * width + ix) * channels)
                                for c in range(run_channels):
                                    target[tap + c] = source[start + c]
                    offset += run


@njit(cache=True, error_model="numpy")
def _col2im_add(cols, strides, dilation, padding, kh, kw, out_h, out_w, x):
    """Add each tap's run of ``cols`` into the input position it was read
    from (the adjoint of ``_im2col``); ``x`` must be initialised."""
    batch, height, width, channels = x.shape
    stride_h, stride_w = strides
    dilation_h, dilation_w = dilation
    pad_top, pad_left = padding
    source = cols.reshape(cols.size)
    target = x.reshape(x.size)
    run = np.uint64(kw * channels)
    run_channels = np.uint64(channels)
    offset = np.uint64(0)
    for b in range(batch):
        for oy in range(out_h):
            for ox in range(out_w):
                left = _input_position(ox, 0, stride_w, dilation_w, pad_left)
                whole_row = dilation_w == 1 and left >= 0 and left + kw <= width
                for ky in range(kh):
                    iy = _input_position(oy, ky, stride_h, dilation_h, pad_top)
                    if 0 <= iy < height:
                        if whole_row:
                            start = np.uint64(((b * height + iy) * width + left) * channels)
                            for k in range(run):
                                target[start + k] += source[offset + k]
                        else:
                            for kx in range(kw):
                                ix = left + kx * dilation_w
                                if 0 <= ix < width:
                                    start = np.uint64(((b * height + iy) * width + ix) * channels)
                                    tap = offset + np.uint64(kx * channels)
                                    for c in range(run_channels):
                                        target[start + c] += source[tap + c]
                    offset += run


@njit(cache=True, error_model="numpy")
def _fill_channels(values, out):
    """``out[..., c] = values[c]`` for every position of the 2-D ``out``."""
    rows, channels = out.shape
    for i in range(rows):
        for c in range(channels):
            out[i, c] = values[c]


@njit(cache=True, error_model="numpy")
def _relu_gradient_in_place(y, dz):
    # One name for the array updated in place: with two (dz and dy) LLVM's
    # overlap check fails at run time and the scalar fallback, branching on
    # the sign of y, runs 2-3x slower.
    rows, filters = dz.shape
    for i in range(rows):
        for j in range(filters):
            g = dz[i, j]
            dz[i, j] = g if y[i, j] > 0.0 else 0.0


@njit(cache=True, error_model="numpy")
def _bias_gradient(dz, db):
    rows, filters = dz.shape
    for j in range(filters):
        db[j] = 0.0
    for i in range(rows):
        for j in range(filters):
            db[j] += dz[i, j]


@njit(cache=True, error_model="numpy")
def _output_gradient(z, y, dy, code, alpha, dz, db):
    """``dz = dy * act'(z)`` and ``db = sum(dz, rows)`` over 2-D views; ``dz``
    may be ``dy``."""
    if code == RELU and dz.ctypes.data == dy.ctypes.data:
        _relu_gradient_in_place(y, dz)
    else:
        activation_backward(z, y, dy, code, alpha, dz)
    _bias_gradient(dz, db)


# At this im2col depth (kh * kw * channels) and below, the weight gradient's
# GEMM (depth x rows by rows x filters) is too thin for BLAS, and the relu
# and bias gradients would each need a pass of their own over ``dz``.
SMALL_DEPTH = 16


@njit(cache=True, error_model="numpy")
def _thin_gradients(cols, y, rectify, dz, db, dw):
    """``dz *= (y > 0)`` in place when ``rectify``, ``db`` = the column sums
    of ``dz`` and ``dw = cols.T @ dz``, in one pass, four rows at a time
    (each ``dw`` row is then loaded and stored once per four rows)."""
    rows, filters = dz.shape
    depth = cols.shape[1]
    db[:] = 0.0
    dw[:, :] = 0.0
    stop = rows - rows % 4
    for i in range(0, rows, 4):
        count = 4 if i < stop else rows - i
        if rectify:
            for r in range(count):
                row, out = dz[i + r], y[i + r]
                for j in range(filters):
                    g = row[j]
                    row[j] = g if out[j] > 0.0 else 0.0
        if count == 4:
            d0, d1, d2, d3 = dz[i], dz[i + 1], dz[i + 2], dz[i + 3]
            for j in range(filters):
                db[j] += (d0[j] + d1[j]) + (d2[j] + d3[j])
            for t in range(depth):
                a0, a1, a2, a3 = cols[i, t], cols[i + 1, t], cols[i + 2, t], cols[i + 3, t]
                target = dw[t]
                for j in range(filters):
                    target[j] += (a0 * d0[j] + a1 * d1[j]) + (a2 * d2[j] + a3 * d3[j])
        else:
            for r in range(i, rows):
                row = dz[r]
                for j in range(filters):
                    db[j] += row[j]
                for t in range(depth):
                    value = cols[r, t]
                    target = dw[t]
                    for j in range(filters):
                        target[j] += value * row[j]


# A 3x3 kernel over one channel (a grayscale image's first layer) with a
# relu or no activation: im2col, a K=9 GEMM that writes every output and an
# epilogue pass that rereads them cost more than the arithmetic. One loop
# gathers the nine taps of an output (into its im2col row) and, with them
# in scalars, computes every filter's sum in registers and writes each
# output once. MNIST convnet's first layer, batch 128, alternating runs:
# 1.2-1.4 against 1.8-2.1 ms.


@njit(cache=True, error_model="numpy", inline="always")
def _is_direct(kh, kw, channels, code):
    """Whether ``conv2d_forward`` runs the direct loop."""
    return kh == 3 and kw == 3 and channels == 1 and (code == RELU or code == LINEAR)


@njit(cache=True, error_model="numpy", inline="always")
def _gather_taps(x, image, oy, ox, strides, dilation, padding, cols, r):
    """``cols[r, 3 * ky + kx]`` = the input a 3x3 one-channel kernel's tap
    reads at output (oy, ox) of ``image`` (zero in the padding)."""
    _, height, width, _ = x.shape
    dilation_h, dilation_w = dilation
    top = _input_position(oy, 0, strides[0], dilation_h, padding[0])
    left = _input_position(ox, 0, strides[1], dilation_w, padding[1])
    if top >= 0 and left >= 0 and top + 2 * dilation_h < height and left + 2 * dilation_w < width:
        for ky in range(3):
            for kx in range(3):
                cols[r, 3 * ky + kx] = x[image, top + ky * dilation_h, left + kx * dilation_w, 0]
        return
    for ky in range(3):
        iy = top + ky * dilation_h
        for kx in range(3):
            ix = left + kx * dilation_w
            inside = 0 <= iy < height and 0 <= ix < width
            cols[r, 3 * ky + kx] = x[image, iy, ix, 0] if inside else 0.0


@njit(cache=True, error_model="numpy")
def _direct_forward(x, w, b, strides, dilation, padding, rectify, out_h, out_w, cols, z):
    """``z = conv(x, w) + b`` (its relu when ``rectify``) for a 3x3
    one-channel kernel, writing the im2col matrix ``cols`` (rows, 9) row by
    row as it goes; w: (9, filters), z: (rows, filters)."""
    filters = w.shape[1]
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8]
    p = 0
    for image in range(x.shape[0]):
        for oy in range(out_h):
            for ox in range(out_w):
                _gather_taps(x, image, oy, ox, strides, dilation, padding, cols, p)
                taps = cols[p]
                a0, a1, a2, a3, a4, a5, a6, a7, a8 = (taps[0], taps[1], taps[2], taps[3], taps[4], taps[5], taps[6],
                                                      taps[7], taps[8])
                row = z[p]
                for j in range(filters):
                    v = (b[j] + a0 * w0[j] + a1 * w1[j] + a2 * w2[j] + a3 * w3[j] + a4 * w4[j] + a5 * w5[j]
                         + a6 * w6[j] + a7 * w7[j] + a8 * w8[j])
                    row[j] = max(v, _ZERO) if rectify else v
                p += 1


@njit(cache=True, error_model="numpy")
def conv2d_forward(x, w, b, strides, dilation, padding, code, alpha, cols, z, y):
    """``z = conv(x, w) + b`` and ``y = act(z)``.

    x: (batch, height, width, channels), w: (kh, kw, channels, filters),
    b: (filters,); cols: (batch * out_h * out_w, kh * kw * channels) scratch,
    left holding the im2col matrix for the backward; z, y: (batch, out_h,
    out_w, filters) outputs (``z`` may be ``y`` when the activation's
    gradient reads only its output).
    """
    batch, out_h, out_w, filters = y.shape
    kh, kw, channels, _ = w.shape
    rows = batch * out_h * out_w
    depth = kh * kw * channels
    z2, y2 = z.reshape(rows, filters), y.reshape(rows, filters)
    if not _is_direct(kh, kw, channels, code):
        _im2col(x, strides, dilation, padding, kh, kw, out_h, out_w, cols)
        dense_forward(cols, w.reshape(depth, filters), b, code, alpha, z2, y2)
        return
    same = z.ctypes.data == y.ctypes.data
    _direct_forward(x, w.reshape(depth, filters), b, strides, dilation, padding, code == RELU and same, out_h, out_w,
                    cols, z2)
    if not same:
        activation_forward(z2, code, alpha, y2)


@njit(cache=True, error_model="numpy")
def conv2d_backward(x, w, z, y, dy, strides, dilation, padding, code, alpha, cols, dz, dw, db, dx, need_dx):
    """Gradients of ``y = act(conv(x, w) + b)``.

    ``cols`` must still hold the forward's im2col matrix; with ``need_dx``
    it is overwritten by the matrix's gradient ``dz @ w.T`` once ``dw =
    cols.T @ dz`` is done, and ``dx`` is its col2im. Writes ``dz`` (may be
    ``dy``), ``dw``, ``db`` and, when ``need_dx``, ``dx``.
    """
    batch, out_h, out_w, filters = y.shape
    kh, kw, channels, _ = w.shape
    rows = batch * out_h * out_w
    depth = kh * kw * channels
    dz2 = dz.reshape(rows, filters)
    in_place = dz.ctypes.data == dy.ctypes.data
    if depth <= SMALL_DEPTH and in_place and (code == RELU or code == LINEAR):
        _thin_gradients(cols, y.reshape(rows, filters), code == RELU, dz2, db, dw.reshape(depth, filters))
    else:
        _output_gradient(
            z.reshape(rows, filters), y.reshape(rows, filters), dy.reshape(rows, filters), code, alpha, dz2, db
        )
        np.dot(cols.T, dz2, dw.reshape(depth, filters))
    if need_dx:
        np.dot(dz2, w.reshape(depth, filters).T, cols)
        dx.fill(0.0)
        _col2im_add(cols, strides, dilation, padding, kh, kw, out_h, out_w, dx)


@njit(cache=True, error_model="numpy")
def conv2d_transpose_forward(x, w, b, strides, dilation, padding, code, alpha, cols, z, y):
    """``z = conv_transpose(x, w) + b`` and ``y = act(z)``.

    x: (batch, height, width, channels), w: (kh, kw, filters, channels) as in
    Keras, b: (filters,); z, y: (batch, out_h, out_w, filters) outputs (``z``
    may be ``y`` as in ``conv2d_forward``). ``strides``, ``dilation`` and
    ``padding`` are those of the convolution from ``y``'s shape to ``x``'s.
    cols: (batch * height * width, kh * kw * filters) scratch.
    """
    batch, height, width, channels = x.shape
    kh, kw, filters, _ = w.shape
    rows = batch * y.shape[1] * y.shape[2]
    np.dot(x.reshape(batch * height * width, channels), w.reshape(kh * kw * filters, channels).T, cols)
    z2 = z.reshape(rows, filters)
    _fill_channels(b, z2)
    _col2im_add(cols, strides, dilation, padding, kh, kw, height, width, z)
    if code != LINEAR or z.ctypes.data != y.ctypes.data:
        activation_forward(z2, code, alpha, y.reshape(rows, filters))


@njit(cache=True, error_model="numpy")
def conv2d_transpose_backward(x, w, z, y, dy, strides, dilation, padding, code, alpha, cols, dz, dw, db, dx, need_dx):
    """Gradients of ``y = act(conv_transpose(x, w) + b)``: ``dz = dy *
    act'(z)`` (``dz`` may be ``dy``), ``db``, ``cols = im2col(dz)``, ``dw =
    cols.T @ x`` and, when ``need_dx``, ``dx = cols @ w`` (the convolution's
    forward)."""
    batch, height, width, channels = x.shape
    kh, kw, filters, _ = w.shape
    rows = batch * y.shape[1] * y.shape[2]
    depth = kh * kw * filters
    _output_gradient(z.reshape(rows, filters), y.reshape(rows, filters), dy.reshape(rows, filters), code, alpha,
                     dz.reshape(rows, filters), db)
    _im2col(dz, strides, dilation, padding, kh, kw, height, width, cols)
    x2 = x.reshape(batch * height * width, channels)
    np.dot(cols.T, x2, dw.reshape(depth, channels))
    if need_dx:
        np.dot(cols, w.reshape(depth, channels), dx.reshape(batch * height * width, channels))


# ---- Winograd F(4x4, 3x3) ----------------------------------------------------
#
# A 3x3 stride-1 convolution makes each 4x4 tile of its output from a 6x6
# tile of its input with 36 multiplications per pair of channels instead of
# 144 (Lavin and Gray 2015, interpolation points 0, +-1, +-2):
#     Y = A^T [(G g G^T) * (B^T d B)] A.
# Summed over channels, the 36 elementwise products are 36 GEMMs,
# ``m[k] = v[k] @ u[k]``, with ``v[k]`` (tiles, channels) and ``u[k]``
# (channels, filters). The backward runs the same algorithm transposed: with
# ``Z = A dY A^T`` in ``m``, the kernel gradient is ``G^T (v[k].T @ m[k]) G``
# and the input gradient ``B (m[k] @ u[k].T) B^T``, added tile over tile.
#
# Buffers, with tiles = batch * tiles_h * tiles_w and tiles_h = ceil(out_h / 4):
# ``padded`` (batch, 4 * tiles_h + 2, 4 * tiles_w + 2, channels), the input
# gradient inside its padding, as the backward adds it up (the CUDA forward
# also copies the input into it; the CPU forward reads the input directly); ``v`` (36, tiles, channels);
# ``u`` (36, channels, filters); ``m`` (36, tiles, filters); ``du`` (36,
# channels, filters). Element ``6 * i + j`` of a transform is its row i, col j.
# The tile transforms run in place, first along a tile's rows, then along its
# columns.
#
# On the CPU the batch is split into tasks of ``_CHUNK`` samples run over
# Numba's threads (``prange``), each calling a one-thread BLAS (the plan holds
# BLAS to one thread around these kernels: docs/architecture.md, "Threads").
# ``v`` and ``m`` are laid out task by task (``_chunk_planes``, kernels/cpu/tasks.py), so a task's
# planes are contiguous; its tiles (36 x 144 x 64 floats of products for the
# convnet's second block) then stay in the core's L2 cache between the GEMMs
# and the transforms around them: in tasks of 16 samples the fused forward
# took 1.7-1.8 ms against 2.3-2.6 ms in one task per thread. The kernel
# gradient ``du[k]`` sums over every task's tiles, so it is split over ``k``
# instead. The tasks do not depend on the thread count, so neither do the
# results. The CUDA kernels keep their own layout of these buffers.

_CHUNK = 16


@njit(cache=True, error_model="numpy", inline="always")
def _chunks(batch):
    return (batch + _CHUNK - 1) // _CHUNK


@njit(cache=True, error_model="numpy", inline="always")
def _chunk_samples(chunk, batch):
    return chunk * _CHUNK, min(batch, (chunk + 1) * _CHUNK)


@njit(cache=True, error_model="numpy", inline="always")
def _chunk_planes(scratch, start, stop, tiles):
    """The block of samples ``[start, stop)`` of a (36, batch * tiles,
    width) Winograd buffer laid out task by task, as (36, samples * tiles, width)."""
    return _task_block(scratch, start * tiles, stop * tiles)


@njit(cache=True, error_model="numpy", inline="always")
def _winograd_in(d0, d1, d2, d3, d4, d5):
    """``B^T d`` for one row or column of a 6x6 input tile."""
    return (
        _FOUR * d0 - _FIVE * d2 + d4,
        d3 + d4 - _FOUR * (d1 + d2),
        _FOUR * (d1 - d2) + d4 - d3,
        _TWO * (d3 - d1) + d4 - d2,
        _TWO * (d1 - d3) + d4 - d2,
        _FOUR * d1 - _FIVE * d3 + d5,
    )


@njit(cache=True, error_model="numpy", inline="always")
def _winograd_in_adjoint(v0, v1, v2, v3, v4, v5):
    """``B v``, the adjoint of ``_winograd_in``."""
    return (
        _FOUR * v0,
        _FOUR * (v2 - v1 + v5) + _TWO * (v4 - v3),
        -_FIVE * v0 - _FOUR * (v1 + v2) - v3 - v4,
        v1 - v2 + _TWO * (v3 - v4) - _FIVE * v5,
        v0 + v1 + v2 + v3 + v4,
        v5,
    )


@njit(cache=True, error_model="numpy", inline="always")
def _winograd_out(m0, m1, m2, m3, m4, m5):
    """``A^T m``: four outputs from one row or column of a 6x6 product tile."""
    plus, minus = m1 + m2, m1 - m2
    plus_far, minus_far = m3 + m4, m3 - m4
    return (m0 + plus + plus_far, minus + _TWO * minus_far, plus + _FOUR * plus_far, minus + _EIGHT * minus_far + m5)


@njit(cache=True, error_model="numpy", inline="always")
def _winograd_out_adjoint(y0, y1, y2, y3):
    """``A y``, the adjoint of ``_winograd_out``."""
    even, odd = y0 + y2, y1 + y3
    even_far, odd_far = y0 + _FOUR * y2, _TWO * y1 + _EIGHT * y3
    return (y0, even + odd, even - odd, even_far + odd_far, even_far - odd_far, y3)


@njit(cache=True, error_model="numpy", inline="always")
def _winograd_filter(g0, g1, g2):
    """``G g`` for one row or column of a 3x3 kernel (in float64: G has
    sixths); the CUDA kernel transform's arithmetic, ``_G`` here."""
    return (
        g0 / 4.0,
        -(g0 + g1 + g2) / 6.0,
        -(g0 - g1 + g2) / 6.0,
        g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
        g0 / 24.0 - g1 / 12.0 + g2 / 6.0,
        g2 * 1.0,
    )


@njit(cache=True, error_model="numpy", inline="always")
def _winograd_filter_adjoint(u0, u1, u2, u3, u4, u5):
    """``G^T u``, the adjoint of ``_winograd_filter`` (the CUDA kernel gradient's)."""
    return (
        u0 / 4.0 - (u1 + u2) / 6.0 + (u3 + u4) / 24.0,
        (u2 - u1) / 6.0 + (u3 - u4) / 12.0,
        (u3 + u4 - u1 - u2) / 6.0 + u5,
    )


# ``G`` as a matrix (the coefficients of ``_winograd_filter``, which the CUDA
# kernels use per filter): the kernel transform ``G g G^T`` of every
# (channel, filter) pair at once is then ``u = (G kron G) w`` over the
# flattened taps, and the kernel gradient ``G^T du G`` the transposed
# product, each a few long loops over all pairs (10x faster than a loop of
# per-pair transforms).
_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
_FILTER_POINTS = np.kron(_G, _G)  # (36, 9): [6 * i + j, 3 * ky + kx] = G[i, ky] * G[j, kx]
_FILTER_POINTS_ADJOINT = np.ascontiguousarray(_FILTER_POINTS.T)


@njit(cache=True, error_model="numpy")
def _combine_rows(points, source, target):
    """``target[k] = sum_t points[k, t] * source[t]`` for 2-D ``source`` and
    ``target``, in their dtype (``points`` holds float64 constants)."""
    rows, inner = points.shape
    for k in range(rows):
        out = target[k]
        out[:] = 0.0
        for t in range(inner):
            weight = source.dtype.type(points[k, t])
            if weight != 0.0:
                row = source[t]
                for q in range(out.size):
                    out[q] += weight * row[q]


@njit(cache=True, error_model="numpy")
def _filter_transform(w, u):
    _, _, channels, filters = w.shape
    _combine_rows(_FILTER_POINTS, w.reshape(9, channels * filters), u.reshape(36, channels * filters))


@njit(cache=True, error_model="numpy")
def _filter_gradient(du, dw):
    _, channels, filters = du.shape
    _combine_rows(_FILTER_POINTS_ADJOINT, du.reshape(36, channels * filters), dw.reshape(9, channels * filters))


# A pass along a tile's rows or columns combines six transform elements of
# each tile and channel: six (tiles * channels) planes of ``v`` or ``m``,
# elementwise, in one long loop over all tiles (tile by tile the loops ran
# over 32 channels only and the transforms took twice as long). Passes that
# read or write the images go tile by tile.


@njit(cache=True, error_model="numpy", inline="always")
def _planes(array, first, step):
    """``array[first + step * i]`` for i < 6, each flattened."""
    n = array.shape[1] * array.shape[2]
    return (
        array[first].reshape(n),
        array[first + step].reshape(n),
        array[first + 2 * step].reshape(n),
        array[first + 3 * step].reshape(n),
        array[first + 4 * step].reshape(n),
        array[first + 5 * step].reshape(n),
    )


@njit(cache=True, error_model="numpy", inline="always")
def _put_row(array, k, t, c, values):
    """``array[k + e, t, c] = values[e]`` for e < 6: one tile row of a transform."""
    array[k, t, c] = values[0]
    array[k + 1, t, c] = values[1]
    array[k + 2, t, c] = values[2]
    array[k + 3, t, c] = values[3]
    array[k + 4, t, c] = values[4]
    array[k + 5, t, c] = values[5]


@njit(cache=True, error_model="numpy", inline="always")
def _tap(index, length):
    """``(clamped index, 1 or 0)``: where to read a padded image's row or
    column ``index`` and what to weigh it by (0 in the padding), so that the
    loop over channels holds no branch."""
    if 0 <= index < length:
        return index, 1.0
    return min(max(index, 0), length - 1), 0.0


@njit(cache=True, error_model="numpy")
def _input_tiles(x, padding, tiles_h, tiles_w, v):
    """``v = B^T d B`` for every 6x6 tile ``d`` (tiles 4 apart) of ``x``
    inside ``padding`` = (rows, columns) of zeros before it and as many as
    the tiles need after, read from ``x`` itself (no padded copy)."""
    _, height, width, channels = x.shape
    top, left = padding
    one = x.dtype.type(1.0)
    first = 0
    # Row by row of tiles: consecutive tiles read and write neighbouring memory.
    for b in range(x.shape[0]):
        for ty in range(tiles_h):
            for i in range(6):
                k = 6 * i
                iy = 4 * ty + i - top
                if not 0 <= iy < height:
                    for tx in range(tiles_w):
                        for e in range(6):
                            v[k + e, first + tx, :] = 0.0
                    continue
                row = x[b, iy]
                for tx in range(tiles_w):
                    t, x0 = first + tx, 4 * tx - left
                    c0, w0 = _tap(x0, width)
                    c1, w1 = _tap(x0 + 1, width)
                    c2, w2 = _tap(x0 + 2, width)
                    c3, w3 = _tap(x0 + 3, width)
                    c4, w4 = _tap(x0 + 4, width)
                    c5, w5 = _tap(x0 + 5, width)
                    # Tiles inside the image skip the weights: 44 against 52 us
                    # per 16 samples of the convnet's second block.
                    if w0 * w1 * w2 * w3 * w4 * w5 == 1.0:
                        for c in range(channels):
                            out = _winograd_in(row[c0, c], row[c1, c], row[c2, c], row[c3, c], row[c4, c], row[c5, c])
                            _put_row(v, k, t, c, out)
                    else:
                        w0, w1, w2, w3, w4, w5 = one * w0, one * w1, one * w2, one * w3, one * w4, one * w5
                        for c in range(channels):
                            out = _winograd_in(row[c0, c] * w0, row[c1, c] * w1, row[c2, c] * w2, row[c3, c] * w3,
                                               row[c4, c] * w4, row[c5, c] * w5)
                            _put_row(v, k, t, c, out)
            first += tiles_w
    for j in range(6):
        a0, a1, a2, a3, a4, a5 = _planes(v, j, 6)
        for q in range(a0.size):
            column = _winograd_in(a0[q], a1[q], a2[q], a3[q], a4[q], a5[q])
            a0[q] = column[0]
            a1[q] = column[1]
            a2[q] = column[2]
            a3[q] = column[3]
            a4[q] = column[4]
            a5[q] = column[5]


@njit(cache=True, error_model="numpy")
def _inverse_transform(m):
    """``m = A^T m A`` for every tile, in place: ``m[6 * i + j]`` then holds
    output (i, j) of each 4x4 tile (i, j < 4)."""
    for i in range(6):
        a0, a1, a2, a3, a4, a5 = _planes(m, 6 * i, 1)
        for q in range(a0.size):
            row = _winograd_out(a0[q], a1[q], a2[q], a3[q], a4[q], a5[q])
            a0[q] = row[0]
            a1[q] = row[1]
            a2[q] = row[2]
            a3[q] = row[3]
    for j in range(4):
        a0, a1, a2, a3, a4, a5 = _planes(m, j, 6)
        for q in range(a0.size):
            column = _winograd_out(a0[q], a1[q], a2[q], a3[q], a4[q], a5[q])
            a0[q] = column[0]
            a1[q] = column[1]
            a2[q] = column[2]
            a3[q] = column[3]


@njit(cache=True, error_model="numpy")
def _output_tiles(m, bias, tiles_h, tiles_w, rectify, z):
    """``z = A^T m A + bias`` for every tile, cropped to ``z``'s size, and
    with ``rectify`` its relu (``m`` is overwritten)."""
    _inverse_transform(m)
    batch, out_h, out_w, filters = z.shape
    first = 0
    for b in range(batch):
        for ty in range(tiles_h):
            oy = 4 * ty
            for i in range(min(4, out_h - oy)):
                for ox in range(out_w):
                    t, k = first + ox // 4, 6 * i + ox % 4
                    if rectify:
                        for f in range(filters):
                            z[b, oy + i, ox, f] = max(m[k, t, f] + bias[f], _ZERO)
                    else:
                        for f in range(filters):
                            z[b, oy + i, ox, f] = m[k, t, f] + bias[f]
            first += tiles_w


@njit(cache=True, error_model="numpy")
def _gradient_tiles(dz, tiles_h, tiles_w, m):
    """``m = A dY A^T`` for every 4x4 tile ``dY`` of ``dz`` (zeros past its end)."""
    batch, out_h, out_w, filters = dz.shape
    first = 0
    for b in range(batch):
        for ty in range(tiles_h):
            for i in range(4):
                k = 6 * i
                oy = 4 * ty + i
                for tx in range(tiles_w):
                    t, x0 = first + tx, 4 * tx
                    columns = min(4, out_w - x0) if oy < out_h else 0
                    for f in range(filters):
                        g0 = dz[b, oy, x0, f] if columns > 0 else _ZERO
                        g1 = dz[b, oy, x0 + 1, f] if columns > 1 else _ZERO
                        g2 = dz[b, oy, x0 + 2, f] if columns > 2 else _ZERO
                        g3 = dz[b, oy, x0 + 3, f] if columns > 3 else _ZERO
                        row = _winograd_out_adjoint(g0, g1, g2, g3)
                        _put_row(m, k, t, f, row)
            first += tiles_w
    _gradient_columns(m)


@njit(cache=True, error_model="numpy")
def _gradient_columns(m):
    """The column pass of ``m = A dY A^T``, in place, once the row pass has
    filled ``m[6 * i + j]`` for the tiles' rows i < 4."""
    for j in range(6):
        a0, a1, a2, a3, a4, a5 = _planes(m, j, 6)
        for q in range(a0.size):
            column = _winograd_out_adjoint(a0[q], a1[q], a2[q], a3[q])
            a0[q] = column[0]
            a1[q] = column[1]
            a2[q] = column[2]
            a3[q] = column[3]
            a4[q] = column[4]
            a5[q] = column[5]


@njit(cache=True, error_model="numpy")
def _add_input_tiles(v, tiles_h, tiles_w, padded):
    """``padded += B v B^T`` tile by tile, the adjoint of ``_input_tiles``
    (``v`` is overwritten)."""
    for i in range(6):
        a0, a1, a2, a3, a4, a5 = _planes(v, 6 * i, 1)
        for q in range(a0.size):
            row = _winograd_in_adjoint(a0[q], a1[q], a2[q], a3[q], a4[q], a5[q])
            a0[q] = row[0]
            a1[q] = row[1]
            a2[q] = row[2]
            a3[q] = row[3]
            a4[q] = row[4]
            a5[q] = row[5]
    channels = padded.shape[3]
    t = 0
    for b in range(padded.shape[0]):
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                y0, x0 = 4 * ty, 4 * tx
                for j in range(6):
                    for c in range(channels):
                        column = _winograd_in_adjoint(v[j, t, c], v[6 + j, t, c], v[12 + j, t, c], v[18 + j, t, c],
                                                      v[24 + j, t, c], v[30 + j, t, c])
                        padded[b, y0, x0 + j, c] += column[0]
                        padded[b, y0 + 1, x0 + j, c] += column[1]
                        padded[b, y0 + 2, x0 + j, c] += column[2]
                        padded[b, y0 + 3, x0 + j, c] += column[3]
                        padded[b, y0 + 4, x0 + j, c] += column[4]
                        padded[b, y0 + 5, x0 + j, c] += column[5]
                t += 1


@njit(cache=True, error_model="numpy")
def _crop_into(padded, padding, dx):
    """``dx`` = ``padded`` without the ``padding`` (rows, columns) before it
    and whatever the tiles added after it."""
    top, left = padding
    height, width = dx.shape[1], dx.shape[2]
    for b in range(dx.shape[0]):
        for i in range(height):
            dx[b, i] = padded[b, top + i, left:left + width, :]


@njit(cache=True, error_model="numpy")
def _task_products(x, padding, tiles_h, tiles_w, v, u, m, chunk):
    """Task ``chunk``'s part of the forward up to the inverse transform:
    its samples' input tiles in ``v`` and ``m[k] = v[k] @ u[k]`` (``u`` the
    kernel's transform). Returns its first and last sample and its block of ``m``."""
    start, stop = _chunk_samples(chunk, x.shape[0])
    v_chunk = _chunk_planes(v, start, stop, tiles_h * tiles_w)
    m_chunk = _chunk_planes(m, start, stop, tiles_h * tiles_w)
    _input_tiles(x[start:stop], padding, tiles_h, tiles_w, v_chunk)
    for k in range(36):
        np.dot(v_chunk[k], u[k], m_chunk[k])
    return start, stop, m_chunk


@njit(cache=True, error_model="numpy", parallel=True)
def conv2d_winograd_forward(x, w, b, padding, code, alpha, padded, v, u, m, z, y):
    """``z = conv(x, w) + b`` and ``y = act(z)`` for a 3x3 kernel with stride
    and dilation 1, by Winograd F(4x4, 3x3).

    x: (batch, height, width, channels), w: (3, 3, channels, filters),
    b: (filters,); padding: the zeros before the first row and column;
    padded, v, u, m: the scratch described above, ``v`` and ``u`` left
    holding the transforms the backward reads; z, y: (batch, out_h, out_w,
    filters) outputs (``z`` may be ``y``, as in ``conv2d_forward``).
    """
    batch, out_h, out_w, filters = y.shape
    tiles_h, tiles_w = (out_h + 3) // 4, (out_w + 3) // 4
    # With z as y, a relu is applied as the tiles are written.
    rectify = code == RELU and z.ctypes.data == y.ctypes.data
    _filter_transform(w, u)
    for chunk in prange(_chunks(batch)):
        start, stop, m_chunk = _task_products(x, padding, tiles_h, tiles_w, v, u, m, chunk)
        _output_tiles(m_chunk, b, tiles_h, tiles_w, rectify, z[start:stop])
    if not rectify:
        rows = batch * out_h * out_w
        activation_forward(z.reshape(rows, filters), code, alpha, y.reshape(rows, filters))


@njit(cache=True, error_model="numpy", parallel=True)
def conv2d_winograd_backward(z, y, dy, padding, code, alpha, padded, v, u, m, du, dz, dw, db, dx, need_dx):
    """Gradients of ``conv2d_winograd_forward``, whose ``v`` and ``u`` must
    still hold the transforms of its input and kernel.

    Writes ``dz = dy * act'(z)`` (may be ``dy``), ``db``, ``dw`` (3, 3,
    channels, filters) and, when ``need_dx``, ``dx``; ``m``, ``du``,
    ``padded`` and (with ``need_dx``) ``v`` are scratch.
    """
    batch, out_h, out_w, filters = y.shape
    tiles_h, tiles_w = (out_h + 3) // 4, (out_w + 3) // 4
    rows = batch * out_h * out_w
    _output_gradient(z.reshape(rows, filters), y.reshape(rows, filters), dy.reshape(rows, filters), code, alpha,
                     dz.reshape(rows, filters), db)
    for chunk in prange(_chunks(batch)):
        start, stop = _chunk_samples(chunk, batch)
        _gradient_tiles(dz[start:stop], tiles_h, tiles_w, _chunk_planes(m, start, stop, tiles_h * tiles_w))
    _winograd_gradients(padding, tiles_h, tiles_w, padded, v, u, m, du, dw, dx, need_dx)


@njit(cache=True, error_model="numpy", parallel=True)
def _winograd_gradients(padding, tiles_h, tiles_w, padded, v, u, m, du, dw, dx, need_dx):
    """The kernel gradient ``dw`` and, with ``need_dx``, the input gradient
    ``dx`` from ``m`` = the transformed output gradient (``v`` and ``u``
    still hold the forward's transforms; ``du``, ``padded`` and, with
    ``need_dx``, ``v`` are scratch); ``v`` and ``m`` task by task."""
    batch, tiles = padded.shape[0], tiles_h * tiles_w
    chunks = _chunks(batch)
    for k in prange(36):
        for chunk in range(chunks):
            start, stop = _chunk_samples(chunk, batch)
            _gemm(_chunk_planes(v, start, stop, tiles)[k], _chunk_planes(m, start, stop, tiles)[k],
                  du[k], True, False, 0.0 if chunk == 0 else 1.0)
    _filter_gradient(du, dw)
    if not need_dx:
        return
    for chunk in prange(chunks):
        start, stop = _chunk_samples(chunk, batch)
        v_chunk = _chunk_planes(v, start, stop, tiles)
        m_chunk = _chunk_planes(m, start, stop, tiles)
        for k in range(36):
            np.dot(m_chunk[k], u[k].T, v_chunk[k])
        padded_chunk = padded[start:stop]
        padded_chunk[:] = 0.0
        _add_input_tiles(v_chunk, tiles_h, tiles_w, padded_chunk)
        _crop_into(padded_chunk, padding, dx[start:stop])
