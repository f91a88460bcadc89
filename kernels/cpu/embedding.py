"""Embedding lookups: a gather of rows by index, its gradient (a scatter-add
into the table), and the masks of padded steps (non-zero indices for
Embedding's ``mask_zero``, Keras's Masking).

Indices arrive as floats of the layer's dtype (nkeras feeds every input as
floats) and are truncated to integers, as a cast to int does. An index
outside ``[0, input_dim)`` (or NaN) reads no memory: its output row is
zeros and it is counted into ``bad_count[0]`` (added to, so a count left
unread by the host is not lost), which the layer checks on the host.

The gradient adds each row's output gradient into its table row in the
order of the rows, on the GPU too (one thread per table column walks the
rows in order), so both devices give the same sums and the result never
depends on thread timing.
"""

from numba import njit


@njit(cache=True, error_model="numpy", inline="always")
def _is_valid(index, input_dim):
    """Whether ``index`` (a float) names a table row; False for NaN."""
    return 0.0 <= index < input_dim


@njit(cache=True, error_model="numpy")
def embedding_forward(indices, embeddings, bad_count, y):
    """``y[i] = embeddings[int(indices[i])]``; rows whose index is outside
    ``[0, input_dim)`` are zeros and add 1 each to ``bad_count[0]``.

    indices: (rows,) floats; embeddings: (input_dim, output_dim); bad_count:
    (1,); y: (rows, output_dim).
    """
    rows, output_dim = y.shape
    input_dim = embeddings.shape[0]
    bad = 0
    for i in range(rows):
        index = indices[i]
        if _is_valid(index, input_dim):
            row = int(index)
            for j in range(output_dim):
                y[i, j] = embeddings[row, j]
        else:
            bad += 1
            for j in range(output_dim):
                y[i, j] = 0.0
    bad_count[0] += bad


@njit(cache=True, error_model="numpy")
def embedding_backward(indices, dy, dembeddings):
    """``dembeddings[v] = sum of dy[i] over the rows i with int(indices[i]) == v``
    (zero for unused rows), the rows added in order; invalid indices add nothing.

    indices: (rows,); dy: (rows, output_dim); dembeddings: (input_dim, output_dim).
    """
    input_dim, output_dim = dembeddings.shape
    for v in range(input_dim):
        for j in range(output_dim):
            dembeddings[v, j] = 0.0
    for i in range(indices.shape[0]):
        index = indices[i]
        if _is_valid(index, input_dim):
            row = int(index)
            for j in range(output_dim):
                dembeddings[row, j] += dy[i, j]


@njit(cache=True, error_model="numpy")
def nonzero_mask(indices, mask):
    """``mask = 1.0 where indices != 0, else 0.0`` (Embedding's ``mask_zero``).

    indices, mask: (rows, cols).
    """
    rows, cols = mask.shape
    for i in range(rows):
        for j in range(cols):
            mask[i, j] = 1.0 if indices[i, j] != 0.0 else 0.0


@njit(cache=True, error_model="numpy")
def masking_forward(x, mask_value, y, mask):
    """Keras's Masking: ``mask[i] = 1.0`` when some ``x[i, j] != mask_value``
    (else 0.0) and ``y[i] = x[i] * mask[i]``.

    x, y: (rows, features), a row per (sample, timestep); mask: (rows,).
    """
    rows, features = x.shape
    for i in range(rows):
        keep = 0.0
        for j in range(features):
            if x[i, j] != mask_value:
                keep = 1.0
        mask[i] = keep
        for j in range(features):
            y[i, j] = x[i, j] * keep


@njit(cache=True, error_model="numpy")
def masking_backward(dy, mask, dx):
    """``dx[i] = dy[i] * mask[i]``: padded steps pass no gradient.

    dy, dx: (rows, features); mask: (rows,).
    """
    rows, features = dx.shape
    for i in range(rows):
        for j in range(features):
            dx[i, j] = dy[i, j] * mask[i]


@njit(cache=True, error_model="numpy")
def not_equal(x, value, y):
    """``y = 1.0 where x != value, else 0.0`` (Keras's ``ops.not_equal``,
    which Keras model files record when they compute a mask).

    x, y: (rows, cols).
    """
    rows, cols = y.shape
    for i in range(rows):
        for j in range(cols):
            y[i, j] = 1.0 if x[i, j] != value else 0.0


@njit(cache=True, error_model="numpy")
def any_nonzero(x, y):
    """``y[i] = 1.0 when some x[i, j] != 0, else 0.0`` (Keras's
    ``ops.any(x, axis=-1)``).

    x: (rows, cols); y: (rows,).
    """
    rows, cols = x.shape
    for i in range(rows):
        found = 0.0
        for j in range(cols):
            if x[i, j] != 0.0:
                found = 1.0
        y[i] = found
