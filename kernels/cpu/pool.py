"""Pooling kernels over NHWC tensors: max and average pooling, forward and
backward, for any pool size, stride and leading padding, and global max
pooling.

Arrays are ``(batch, rows, cols, channels)``, C-contiguous; 1-D and global
average pooling run through these on reshaped views. A window starts at
``out * stride - pad`` and is clipped to the input, so padding never takes
part: max pooling ignores it and average pooling divides by the number of
real elements in the window, as Keras does for padding="same".

Max pooling records, per output, the position of the window's first
maximum (``row * pool_cols + col`` inside the window, in the layer's float
dtype: exact for any window below 2**24 elements). Both backward passes are
gathers, one input element at a time over the windows that contain it, so
overlapping windows sum without atomics and in the same order on both
devices.

Global max pooling has kernels of its own: the gradient of a max reduction
in Keras is shared by all the tied maxima, while a pooling window's goes to
the first one (XLA's select-and-scatter).
"""

from numba import njit


@njit(cache=True, error_model="numpy", inline="always")
def _window(out_index, pool, stride, pad, length):
    """Start of window ``out_index`` (may be negative) and its clipped
    ``[first, stop)`` range over the input."""
    start = out_index * stride - pad
    return start, max(start, 0), min(start + pool, length)


@njit(cache=True, error_model="numpy", inline="always")
def _covering_windows(position, pool, stride, pad, out_length):
    """The ``[first, stop)`` outputs whose windows contain input ``position``."""
    shifted = position + pad
    lowest = shifted - pool + 1
    first = 0 if lowest <= 0 else (lowest + stride - 1) // stride
    return first, min(shifted // stride + 1, out_length)


@njit(cache=True, error_model="numpy", inline="always")
def _advance_windows(position, first, stop, pool, stride, pad, out_length):
    """``[first, stop)``, the windows that contain ``position - 1``, moved on to
    those that contain ``position``: ``_covering_windows`` without its
    divisions, for loops that walk the positions in order (~2x faster)."""
    while stop < out_length and stop * stride - pad <= position:
        stop += 1
    while first < stop and first * stride - pad + pool <= position:
        first += 1
    return first, stop


@njit(cache=True, error_model="numpy", inline="always")
def _max_of_2x2(x, b, row, col, y, argmax, i, j):
    """The common 2 x 2 window inside the input, reduced in registers (the
    general loop below keeps its running maximum in ``y``: ~2x slower)."""
    for c in range(x.shape[3]):
        best = x[b, row, col, c]
        where = 0.0
        value = x[b, row, col + 1, c]
        if value > best:
            best, where = value, 1.0
        value = x[b, row + 1, col, c]
        if value > best:
            best, where = value, 2.0
        value = x[b, row + 1, col + 1, c]
        if value > best:
            best, where = value, 3.0
        y[b, i, j, c] = best
        argmax[b, i, j, c] = where


@njit(cache=True, error_model="numpy")
def max_pool_forward(x, pool_rows, pool_cols, stride_rows, stride_cols, pad_top, pad_left, y, argmax):
    """``y`` = the maximum of each window; ``argmax`` = where it is.

    x: (batch, rows, cols, channels); y, argmax: (batch, out_rows, out_cols,
    channels) outputs. Ties go to the first maximum in row-major window order.
    """
    batch, rows, cols, channels = x.shape
    out_rows, out_cols = y.shape[1], y.shape[2]
    for b in range(batch):
        for i in range(out_rows):
            row_start, row_first, row_stop = _window(i, pool_rows, stride_rows, pad_top, rows)
            whole_rows = pool_rows == 2 and row_first == row_start and row_stop - row_start == 2
            for j in range(out_cols):
                col_start, col_first, col_stop = _window(j, pool_cols, stride_cols, pad_left, cols)
                if whole_rows and pool_cols == 2 and col_first == col_start and col_stop - col_start == 2:
                    _max_of_2x2(x, b, row_start, col_start, y, argmax, i, j)
                    continue
                first = (row_first - row_start) * pool_cols + col_first - col_start
                for c in range(channels):
                    y[b, i, j, c] = x[b, row_first, col_first, c]
                    argmax[b, i, j, c] = first
                for h in range(row_first, row_stop):
                    for w in range(col_first + 1 if h == row_first else col_first, col_stop):
                        position = (h - row_start) * pool_cols + w - col_start
                        for c in range(channels):
                            value = x[b, h, w, c]
                            best = y[b, i, j, c]
                            # Unconditional stores (selects) let the channel loop vectorise.
                            y[b, i, j, c] = max(best, value)
                            argmax[b, i, j, c] = position if value > best else argmax[b, i, j, c]


@njit(cache=True, error_model="numpy")
def max_pool_backward(dy, argmax, pool_rows, pool_cols, stride_rows, stride_cols, pad_top, pad_left, dx):
    """``dx`` = the sum of ``dy`` over the windows whose maximum each input
    element is.

    dy, argmax: (batch, out_rows, out_cols, channels); dx: (batch, rows,
    cols, channels) output, written fully.
    """
    batch, rows, cols, channels = dx.shape
    out_rows, out_cols = dy.shape[1], dy.shape[2]
    for b in range(batch):
        for h in range(rows):
            i_first, i_stop = _covering_windows(h, pool_rows, stride_rows, pad_top, out_rows)
            j_first = j_stop = 0
            for w in range(cols):
                j_first, j_stop = _advance_windows(w, j_first, j_stop, pool_cols, stride_cols, pad_left, out_cols)
                if i_first >= i_stop or j_first >= j_stop:
                    for c in range(channels):
                        dx[b, h, w, c] = 0.0
                    continue
                # The first window assigns, so that the common single window is one pass.
                position = (h + pad_top - i_first * stride_rows) * pool_cols + w + pad_left - j_first * stride_cols
                for c in range(channels):
                    dx[b, h, w, c] = dy[b, i_first, j_first, c] if argmax[b, i_first, j_first, c] == position else 0.0
                if i_stop - i_first == 1 and j_stop - j_first == 1:
                    continue
                for i in range(i_first, i_stop):
                    for j in range(j_first, j_stop):
                        if i == i_first and j == j_first:
                            continue
                        position = (h + pad_top - i * stride_rows) * pool_cols + w + pad_left - j * stride_cols
                        for c in range(channels):
                            dx[b, h, w, c] += dy[b, i, j, c] if argmax[b, i, j, c] == position else 0.0


@njit(cache=True, error_model="numpy")
def average_pool_forward(x, pool_rows, pool_cols, stride_rows, stride_cols, pad_top, pad_left, y):
    """``y`` = the mean of each window's real (unpadded) elements, summed in
    float64.

    x: (batch, rows, cols, channels); y: (batch, out_rows, out_cols, channels).
    """
    batch, rows, cols, channels = x.shape
    out_rows, out_cols = y.shape[1], y.shape[2]
    for b in range(batch):
        for i in range(out_rows):
            _, row_first, row_stop = _window(i, pool_rows, stride_rows, pad_top, rows)
            for j in range(out_cols):
                _, col_first, col_stop = _window(j, pool_cols, stride_cols, pad_left, cols)
                count = (row_stop - row_first) * (col_stop - col_first)
                for c in range(channels):
                    total = 0.0
                    for h in range(row_first, row_stop):
                        for w in range(col_first, col_stop):
                            total += x[b, h, w, c]
                    y[b, i, j, c] = total / count


@njit(cache=True, error_model="numpy")
def average_pool_backward(dy, pool_rows, pool_cols, stride_rows, stride_cols, pad_top, pad_left, dx):
    """``dx`` = the sum, over the windows containing each input element, of
    the window's ``dy`` divided by its number of real elements.

    dy: (batch, out_rows, out_cols, channels); dx: (batch, rows, cols,
    channels) output, written fully.
    """
    batch, rows, cols, channels = dx.shape
    out_rows, out_cols = dy.shape[1], dy.shape[2]
    for b in range(batch):
        for h in range(rows):
            i_first, i_stop = _covering_windows(h, pool_rows, stride_rows, pad_top, out_rows)
            j_first = j_stop = 0
            for w in range(cols):
                j_first, j_stop = _advance_windows(w, j_first, j_stop, pool_cols, stride_cols, pad_left, out_cols)
                if i_first >= i_stop or j_first >= j_stop:
                    for c in range(channels):
                        dx[b, h, w, c] = 0.0
                    continue
                for i in range(i_first, i_stop):
                    _, row_first, row_stop = _window(i, pool_rows, stride_rows, pad_top, rows)
                    for j in range(j_first, j_stop):
                        _, col_first, col_stop = _window(j, pool_cols, stride_cols, pad_left, cols)
                        count = dx.dtype.type((row_stop - row_first) * (col_stop - col_first))
                        if i == i_first and j == j_first:
                            for c in range(channels):
                                dx[b, h, w, c] = dy[b, i, j, c] / count
                        else:
                            for c in range(channels):
                                dx[b, h, w, c] += dy[b, i, j, c] / count


@njit(cache=True, error_model="numpy")
def global_max_pool_forward(x, y, ties):
    """``y[b, c]`` = the maximum over positions, ``ties[b, c]`` = how many
    positions hold it.

    x: (batch, positions, channels); y, ties: (batch, channels) outputs.
    """
    batch, positions, channels = x.shape
    for b in range(batch):
        for c in range(channels):
            y[b, c] = x[b, 0, c]
            ties[b, c] = 1.0
        for s in range(1, positions):
            for c in range(channels):
                value = x[b, s, c]
                best = y[b, c]
                count = ties[b, c]
                y[b, c] = max(best, value)
                ties[b, c] = 1.0 if value > best else (count + 1.0 if value == best else count)


@njit(cache=True, error_model="numpy")
def global_max_pool_backward(x, y, ties, dy, dx):
    """``dx`` = ``dy`` shared equally by the positions that hold the maximum
    (the gradient of a max reduction in Keras, JAX and TensorFlow).

    x, dx: (batch, positions, channels); y, ties, dy: (batch, channels).
    """
    batch, positions, channels = x.shape
    for b in range(batch):
        for s in range(positions):
            for c in range(channels):
                dx[b, s, c] = dy[b, c] / ties[b, c] if x[b, s, c] == y[b, c] else 0.0


@njit(cache=True, error_model="numpy")
def masked_average_pool_forward(x, mask, y):
    """``y[b, c]`` = the mean of ``x[b, s, c]`` over the steps ``s`` with
    ``mask[b, s] = 1`` (Keras's masked GlobalAveragePooling1D: a sequence with
    no unmasked step gives NaN, as there).

    x: (batch, steps, channels); mask: (batch, steps); y: (batch, channels).
    """
    batch, steps, channels = x.shape
    for b in range(batch):
        count = 0.0
        for c in range(channels):
            y[b, c] = 0.0
        for s in range(steps):
            weight = mask[b, s]
            count += weight
            for c in range(channels):
                y[b, c] += x[b, s, c] * weight
        for c in range(channels):
            y[b, c] /= count


@njit(cache=True, error_model="numpy")
def masked_average_pool_backward(dy, mask, dx):
    """``dx[b, s, c] = dy[b, c] * mask[b, s] / (unmasked steps of b)``.

    dy: (batch, channels); mask: (batch, steps); dx: (batch, steps, channels).
    """
    batch, steps, channels = dx.shape
    for b in range(batch):
        count = 0.0
        for s in range(steps):
            count += mask[b, s]
        for s in range(steps):
            share = mask[b, s] / count
            for c in range(channels):
                dx[b, s, c] = dy[b, c] * share
