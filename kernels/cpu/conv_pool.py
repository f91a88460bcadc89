"""A grayscale image's first convolution and the 2x2 max pooling after it,
as one kernel each way (channels_last).

The convolution is 3x3 over one channel with stride and dilation 1, a relu
or no activation, and padding of 0 or 1 before the first row and column
(Keras's "valid" and "same"); the pooling is 2x2 with stride 2, "valid".
The four outputs under a pooling window read a 4x4 patch of the image: the
forward loads it once, computes the four outputs of every filter in
registers, and writes only their maximum and where it was. The
convolution's output is never stored, and the backward needs neither it
nor an im2col matrix: each window's gradient goes to the output that was
its maximum, whose taps are the same patch, reloaded.

Against the two layers run apart (im2col rows written in the forward,
then the pooling, then one pass over the rows for the kernel gradient), it
skips writing and rereading the convolution's output and its gradient:
8.6 MB each way for the MNIST convnet's batch of 128.

As in ``max_pool_forward``, ``argmax`` holds the window position of the
first maximum (``2 * row + col``) in the layer's float dtype, and the relu
is applied to the maximum (``relu(max(z)) == max(relu(z))``; where they
pick a different first maximum, all four are <= 0 and the gradient is zero
either way).

Shapes: ``x`` (batch, height, width, 1); ``w`` (3, 3, 1, filters); ``y`` and
``argmax`` (batch, out_h // 2, out_w // 2, filters) for the convolution's
(out_h, out_w); ``padding`` the (rows, cols) zeros before, each 0 or 1.
"""

from numba import njit



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


@njit(cache=True, error_model="numpy")
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
    for image in range(x.shape[0]):
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
def conv2d_max_pool_backward(x, y, dy, argmax, padding, rectify, dw, db):
    """Kernel and bias gradients of ``conv2d_max_pool_forward``: ``dw``
    (3, 3, 1, filters) and ``db`` (filters,), written fully; ``y`` and
    ``argmax`` are the forward's outputs."""
    _, out_rows, out_cols, filters = y.shape
    taps = dw.reshape(9, filters)
    taps[:, :] = 0.0
    db[:] = 0.0
    d0, d1, d2, d3, d4, d5, d6, d7, d8 = taps[0], taps[1], taps[2], taps[3], taps[4], taps[5], taps[6], taps[7], taps[8]
    top, left = padding
    zero = x.dtype.type(0.0)
    for image in range(x.shape[0]):
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
                    db[f] += g
                    d0[f] += r0[0] * g0 + r0[1] * g1 + r1[0] * g2 + r1[1] * g3
                    d1[f] += r0[1] * g0 + r0[2] * g1 + r1[1] * g2 + r1[2] * g3
                    d2[f] += r0[2] * g0 + r0[3] * g1 + r1[2] * g2 + r1[3] * g3
                    d3[f] += r1[0] * g0 + r1[1] * g1 + r2[0] * g2 + r2[1] * g3
                    d4[f] += r1[1] * g0 + r1[2] * g1 + r2[1] * g2 + r2[2] * g3
                    d5[f] += r1[2] * g0 + r1[3] * g1 + r2[2] * g2 + r2[3] * g3
                    d6[f] += r2[0] * g0 + r2[1] * g1 + r3[0] * g2 + r3[1] * g3
                    d7[f] += r2[1] * g0 + r2[2] * g1 + r3[1] * g2 + r3[2] * g3
                    d8[f] += r2[2] * g0 + r2[3] * g1 + r3[2] * g2 + r3[3] * g3
