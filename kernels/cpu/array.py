"""Data movement: gathering a batch's rows, summing gradients, copies."""

from numba import njit


@njit(cache=True, error_model="numpy")
def gather_rows(source, indices, start, out):
    """``out[i] = source[indices[start + i]]`` for every row of ``out``.

    source: (n, cols), any real dtype (cast to ``out``'s dtype);
    indices: int64 (n,); out: (rows, cols).
    """
    rows, cols = out.shape
    for i in range(rows):
        src = indices[start + i]
        for j in range(cols):
            out[i, j] = source[src, j]


@njit(cache=True, error_model="numpy")
def add_into(target, source):
    """``target += source`` over 2-D arrays of the same shape."""
    rows, cols = target.shape
    for i in range(rows):
        for j in range(cols):
            target[i, j] += source[i, j]


@njit(cache=True, error_model="numpy")
def copy_into(target, source):
    """``target[...] = source`` over 2-D arrays of the same shape."""
    rows, cols = target.shape
    for i in range(rows):
        for j in range(cols):
            target[i, j] = source[i, j]
