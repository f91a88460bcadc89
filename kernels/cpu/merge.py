"""Merging tensors (the merge layers), repeating and permuting them.

Elementwise merges take 2-D ``(rows, cols)`` views of same-shape tensors
and fold the inputs in pairs: ``merge_pair(out, x_k, ...)`` with ``out``
aliasing its first operand, so a merge of ``n`` inputs is ``n - 1`` calls
with no scratch buffer. Maximum and minimum note, per element, which input
won (the first one to reach the extreme value, so ties go to the earliest
input) and route the whole gradient to it.

``concat_forward``/``concat_backward`` copy a block of columns at an
offset: a concatenation along any axis is a concatenation of columns of the
``(prod(shape[:axis]), prod(shape[axis:]))`` views.

``batch_matmul`` multiplies per sample, either operand read transposed
(Dot's forward and both of its gradients); ``l2_normalize_forward`` and
``_backward`` give Dot's ``normalize=True``; ``merge_directions_forward``
and ``_backward`` merge Bidirectional's two directions (the backward one in
reversed step order) and ``reverse_steps`` flips a sequence. ``permute_axes`` transposes the
four non-batch axes of a 5-D view; ``repeat_vector_forward``/``_backward``
copy a vector along a new axis and sum the gradient back.
"""

import math

import numpy as np
from numba import njit

# The pairwise merge codes (shared with the CUDA twins).
ADD = 0
SUBTRACT = 1
MULTIPLY = 2


@njit(cache=True, error_model="numpy", inline="always")
def _combine(a, b, code, scale):
    if code == ADD:
        return (a + b) * scale
    if code == SUBTRACT:
        return (a - b) * scale
    return a * b * scale


@njit(cache=True, error_model="numpy", inline="always")
def _wins(candidate, current, maximum):
    """Whether ``candidate`` replaces ``current`` as the running extreme
    (strictly, so an earlier input keeps a tie)."""
    return candidate > current if maximum else candidate < current


@njit(cache=True, error_model="numpy")
def merge_pair(a, b, code, scale, out):
    """``out = (a + b) * scale``, ``(a - b) * scale`` or ``a * b * scale``
    for ``code`` ADD, SUBTRACT or MULTIPLY.

    a, b, out: (rows, cols), the same shape; ``out`` may be ``a`` or ``b``.
    """
    rows, cols = out.shape
    for i in range(rows):
        for j in range(cols):
            out[i, j] = _combine(a[i, j], b[i, j], code, scale)


@njit(cache=True, error_model="numpy")
def scaled_copy(source, factor, target):
    """``target = factor * source`` over 2-D arrays of the same shape."""
    rows, cols = target.shape
    for i in range(rows):
        for j in range(cols):
            target[i, j] = source[i, j] * factor


@njit(cache=True, error_model="numpy")
def merge_extremum_forward(x, index, maximum, out, winner):
    """Fold input number ``index`` into a running maximum (``maximum``
    true) or minimum: input 0 initialises ``out`` and ``winner``; a later
    input replaces the elements it beats strictly and writes its index into
    ``winner``.

    x, out, winner: (rows, cols); ``winner`` holds input indices as floats.
    """
    rows, cols = out.shape
    for i in range(rows):
        for j in range(cols):
            if index == 0 or _wins(x[i, j], out[i, j], maximum):
                out[i, j] = x[i, j]
                winner[i, j] = index


@njit(cache=True, error_model="numpy")
def merge_extremum_backward(dy, winner, index, dx):
    """``dx = dy`` where input ``index`` won, 0 elsewhere.

    dy, winner, dx: (rows, cols).
    """
    rows, cols = dx.shape
    for i in range(rows):
        for j in range(cols):
            dx[i, j] = dy[i, j] if winner[i, j] == index else 0.0


@njit(cache=True, error_model="numpy")
def concat_forward(x, offset, out):
    """``out[:, offset:offset + x.shape[1]] = x``.

    x: (rows, cols); out: (rows, total_cols).
    """
    rows, cols = x.shape
    for i in range(rows):
        for j in range(cols):
            out[i, offset + j] = x[i, j]


@njit(cache=True, error_model="numpy")
def concat_backward(dy, offset, dx):
    """``dx = dy[:, offset:offset + dx.shape[1]]``.

    dy: (rows, total_cols); dx: (rows, cols).
    """
    rows, cols = dx.shape
    for i in range(rows):
        for j in range(cols):
            dx[i, j] = dy[i, offset + j]


@njit(cache=True, error_model="numpy")
def batch_matmul(a, b, transpose_a, transpose_b, out):
    """``out[s] = op(a[s]) @ op(b[s])`` for every sample ``s``, where
    ``op`` transposes its matrix when the flag says so.

    a: (samples, m, k), or (samples, k, m) when ``transpose_a``; b:
    (samples, k, n), or (samples, n, k) when ``transpose_b``; out:
    (samples, m, n). Each product runs on BLAS.
    """
    for s in range(out.shape[0]):
        if transpose_a and transpose_b:
            np.dot(a[s].T, b[s].T, out[s])
        elif transpose_a:
            np.dot(a[s].T, b[s], out[s])
        elif transpose_b:
            np.dot(a[s], b[s].T, out[s])
        else:
            np.dot(a[s], b[s], out[s])


@njit(cache=True, error_model="numpy")
def permute_axes(x, axis1, axis2, axis3, axis4, y):
    """``y[b, i1, i2, i3, i4] = x[b, j1, j2, j3, j4]`` where input axis
    ``axis_k`` (1-4) is output axis ``k``: ``j_{axis_k} = i_k``.

    x, y: (batch, d1, d2, d3, d4) 5-D views (trailing axes of length 1 pad a
    lower rank); y's shape is x's with its axes permuted.
    """
    batch, n1, n2, n3, n4 = y.shape
    for b in range(batch):
        for i1 in range(n1):
            for i2 in range(n2):
                for i3 in range(n3):
                    for i4 in range(n4):
                        j1 = _inverse_pick(i1, i2, i3, i4, axis1, axis2, axis3, axis4, 1)
                        j2 = _inverse_pick(i1, i2, i3, i4, axis1, axis2, axis3, axis4, 2)
                        j3 = _inverse_pick(i1, i2, i3, i4, axis1, axis2, axis3, axis4, 3)
                        j4 = _inverse_pick(i1, i2, i3, i4, axis1, axis2, axis3, axis4, 4)
                        y[b, i1, i2, i3, i4] = x[b, j1, j2, j3, j4]


@njit(cache=True, error_model="numpy", inline="always")
def _inverse_pick(i1, i2, i3, i4, axis1, axis2, axis3, axis4, source_axis):
    """The index along input axis ``source_axis``: that of the output axis
    ``k`` with ``axis_k == source_axis``."""
    if axis1 == source_axis:
        return i1
    if axis2 == source_axis:
        return i2
    if axis3 == source_axis:
        return i3
    return i4


@njit(cache=True, error_model="numpy")
def repeat_vector_forward(x, y):
    """``y[b, t] = x[b]`` for every step ``t``.

    x: (batch, features); y: (batch, steps, features).
    """
    batch, steps, features = y.shape
    for b in range(batch):
        for t in range(steps):
            for f in range(features):
                y[b, t, f] = x[b, f]


@njit(cache=True, error_model="numpy")
def repeat_vector_backward(dy, dx):
    """``dx[b] = sum over t of dy[b, t]``, the steps added in order.

    dy: (batch, steps, features); dx: (batch, features).
    """
    batch, steps, features = dy.shape
    for b in range(batch):
        for f in range(features):
            dx[b, f] = dy[b, 0, f]
        for t in range(1, steps):
            for f in range(features):
                dx[b, f] += dy[b, t, f]



@njit(cache=True, error_model="numpy", inline="always")
def _inverse_norm(sum_of_squares, epsilon):
    """Keras's L2 scale ``min(1 / sqrt(sum_of_squares), 1 / epsilon)``, and
    whether the bound applies (the norm is at most ``epsilon``)."""
    norm = math.sqrt(sum_of_squares)
    if norm <= epsilon:
        return 1.0 / epsilon, True
    return 1.0 / norm, False


@njit(cache=True, error_model="numpy", inline="always")
def _line(s, line, k, along_rows):
    """The ``(sample, row, col)`` index of element ``k`` of line ``line``:
    a column when ``along_rows``, else a row."""
    if along_rows:
        return s, k, line
    return s, line, k


@njit(cache=True, error_model="numpy")
def l2_normalize_forward(x, along_rows, epsilon, scale, y):
    """``y = x * min(1 / ||line||, 1 / epsilon)`` for every line of each
    sample: its columns when ``along_rows`` (the norm runs down the rows),
    else its rows; ``scale`` receives each line's factor.

    x, y: (samples, rows, cols); scale: (samples, cols) when ``along_rows``,
    else (samples, rows).
    """
    samples, rows, cols = x.shape
    lines, length = (cols, rows) if along_rows else (rows, cols)
    for s in range(samples):
        for line in range(lines):
            total = 0.0
            for k in range(length):
                value = x[_line(s, line, k, along_rows)]
                total += value * value
            factor, _ = _inverse_norm(total, epsilon)
            scale[s, line] = factor
            for k in range(length):
                index = _line(s, line, k, along_rows)
                y[index] = x[index] * factor


@njit(cache=True, error_model="numpy")
def l2_normalize_backward(x, y, dy, scale, along_rows, epsilon, dx):
    """The gradient of ``l2_normalize_forward`` given its ``y`` and
    ``scale``: ``dx = scale * (dy - y * sum(y * dy))`` over each line, or
    ``dx = scale * dy`` where the ``1 / epsilon`` bound applied.

    x, y, dy, dx: (samples, rows, cols); scale as in the forward.
    """
    samples, rows, cols = x.shape
    lines, length = (cols, rows) if along_rows else (rows, cols)
    for s in range(samples):
        for line in range(lines):
            total = 0.0
            projection = 0.0
            for k in range(length):
                index = _line(s, line, k, along_rows)
                total += x[index] * x[index]
                projection += y[index] * dy[index]
            _, bounded = _inverse_norm(total, epsilon)
            if bounded:
                projection = 0.0
            factor = scale[s, line]
            for k in range(length):
                index = _line(s, line, k, along_rows)
                dx[index] = factor * (dy[index] - y[index] * projection)


# Bidirectional's merge modes (shared with the CUDA twins).
CONCAT = 0
SUM = 1
AVERAGE = 2
PRODUCT = 3


@njit(cache=True, error_model="numpy", inline="always")
def _source_step(t, steps, reverse):
    return steps - 1 - t if reverse else t


@njit(cache=True, error_model="numpy")
def reverse_steps(x, y):
    """``y[b, t] = x[b, steps - 1 - t]``.

    x, y: (batch, steps, features).
    """
    batch, steps, features = y.shape
    for b in range(batch):
        for t in range(steps):
            for f in range(features):
                y[b, t, f] = x[b, steps - 1 - t, f]


@njit(cache=True, error_model="numpy")
def merge_directions_forward(forward, backward, reverse, mode, out):
    """Bidirectional's merge of the two directions' outputs, the backward
    one read in reversed step order when ``reverse``: ``mode`` CONCAT puts
    it after the forward one's features, SUM adds, AVERAGE averages and
    PRODUCT multiplies them.

    forward, backward: (batch, steps, units); out: (batch, steps, 2 * units)
    for CONCAT, else (batch, steps, units).
    """
    batch, steps, units = forward.shape
    for b in range(batch):
        for t in range(steps):
            s = _source_step(t, steps, reverse)
            for j in range(units):
                f = forward[b, t, j]
                r = backward[b, s, j]
                if mode == CONCAT:
                    out[b, t, j] = f
                    out[b, t, units + j] = r
                elif mode == SUM:
                    out[b, t, j] = f + r
                elif mode == AVERAGE:
                    out[b, t, j] = (f + r) * 0.5
                else:
                    out[b, t, j] = f * r


@njit(cache=True, error_model="numpy")
def merge_directions_backward(forward, backward, dy, reverse, mode, dforward, dbackward):
    """The gradients of ``merge_directions_forward`` for each direction's
    output (``dbackward`` in the backward layer's own step order).

    forward, backward, dforward, dbackward: (batch, steps, units); dy as
    the forward's ``out``.
    """
    batch, steps, units = forward.shape
    for b in range(batch):
        for t in range(steps):
            s = _source_step(t, steps, reverse)
            for j in range(units):
                if mode == CONCAT:
                    dforward[b, t, j] = dy[b, t, j]
                    dbackward[b, s, j] = dy[b, t, units + j]
                elif mode == SUM:
                    dforward[b, t, j] = dy[b, t, j]
                    dbackward[b, s, j] = dy[b, t, j]
                elif mode == AVERAGE:
                    dforward[b, t, j] = dy[b, t, j] * 0.5
                    dbackward[b, s, j] = dy[b, t, j] * 0.5
                else:
                    dforward[b, t, j] = dy[b, t, j] * backward[b, s, j]
                    dbackward[b, s, j] = dy[b, t, j] * forward[b, t, j]
