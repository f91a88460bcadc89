"""Spatial reshaping kernels over NHWC tensors: a shifted window copy (zero
padding, cropping and the gradients of both) and nearest-neighbour
upsampling.

Arrays are ``(batch, rows, cols, channels)``, C-contiguous; 1-D layers run
through these on ``(batch, 1, steps, channels)`` views.
"""

from numba import njit


@njit(cache=True, error_model="numpy", inline="always")
def _overlap(offset, source_length, target_length):
    """The ``[first, stop)`` target positions ``t`` whose source ``t + offset``
    lies in ``[0, source_length)`` (empty when none does)."""
    first = min(max(-offset, 0), target_length)
    return first, max(min(source_length - offset, target_length), first)


@njit(cache=True, error_model="numpy")
def copy_window(x, row_offset, col_offset, y):
    """``y[b, i, j] = x[b, i + row_offset, j + col_offset]``, zero where that
    falls outside ``x``.

    A negative offset pads (ZeroPadding2D, the gradient of Cropping2D), a
    positive one crops (Cropping2D, the gradient of ZeroPadding2D).
    x: (batch, rows, cols, channels); y: (batch, out_rows, out_cols,
    channels) output, written fully.
    """
    batch, rows, cols, channels = x.shape
    out_rows, out_cols = y.shape[1], y.shape[2]
    i_first, i_stop = _overlap(row_offset, rows, out_rows)
    j_first, j_stop = _overlap(col_offset, cols, out_cols)
    for b in range(batch):
        for i in range(out_rows):
            row_inside = i_first <= i < i_stop
            for j in range(out_cols):
                if row_inside and j_first <= j < j_stop:
                    for c in range(channels):
                        y[b, i, j, c] = x[b, i + row_offset, j + col_offset, c]
                else:
                    for c in range(channels):
                        y[b, i, j, c] = 0.0


@njit(cache=True, error_model="numpy")
def upsample_nearest_forward(x, row_factor, col_factor, y):
    """``y[b, i, j] = x[b, i // row_factor, j // col_factor]``.

    x: (batch, rows, cols, channels); y: (batch, rows * row_factor,
    cols * col_factor, channels) output.
    """
    batch, out_rows, out_cols, channels = y.shape
    for b in range(batch):
        for i in range(out_rows):
            h = i // row_factor
            for j in range(out_cols):
                w = j // col_factor
                for c in range(channels):
                    y[b, i, j, c] = x[b, h, w, c]


@njit(cache=True, error_model="numpy")
def upsample_nearest_backward(dy, row_factor, col_factor, dx):
    """``dx[b, h, w]`` = the sum of ``dy`` over the ``row_factor x
    col_factor`` block that copied it.

    dy: (batch, rows * row_factor, cols * col_factor, channels); dx: (batch,
    rows, cols, channels) output, written fully.
    """
    batch, rows, cols, channels = dx.shape
    for b in range(batch):
        for h in range(rows):
            for w in range(cols):
                for c in range(channels):
                    dx[b, h, w, c] = dy[b, h * row_factor, w * col_factor, c]
                for di in range(row_factor):
                    for dj in range(1 if di == 0 else 0, col_factor):
                        for c in range(channels):
                            dx[b, h, w, c] += dy[b, h * row_factor + di, w * col_factor + dj, c]
