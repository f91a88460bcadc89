"""Embedding lookups and masks of padded steps on the GPU, twins of
``kernels/cpu/embedding.py``.

The gather runs a thread per output element; bad indices are counted with
an atomic add of whole numbers into ``bad_count[0]``, exact in any order.
The gradient first zeroes the table (a thread per element), then gives
each table column one thread that walks the rows in order and adds into
its column, so the sums are those of the CPU twin and do not depend on
thread timing (no atomics on the gradient).
"""

from numba import cuda

from nkeras.kernels.cpu.embedding import _is_valid
from nkeras.kernels.cuda.launch import THREADS, blocks


@cuda.jit(cache=True)
def _embedding_forward(indices, embeddings, bad_count, y):
    output_dim = y.shape[1]
    input_dim = embeddings.shape[0]
    for k in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        i = k // output_dim
        j = k - i * output_dim
        index = indices[i]
        if _is_valid(index, input_dim):
            y[i, j] = embeddings[int(index), j]
        else:
            y[i, j] = 0
            if j == 0:
                cuda.atomic.add(bad_count, 0, 1)


@cuda.jit(cache=True)
def _zero(array):
    cols = array.shape[1]
    for k in range(cuda.grid(1), array.size, cuda.gridsize(1)):
        i = k // cols
        array[i, k - i * cols] = 0


@cuda.jit(cache=True)
def _scatter_columns(indices, dy, dembeddings):
    input_dim, output_dim = dembeddings.shape
    for j in range(cuda.grid(1), output_dim, cuda.gridsize(1)):
        for i in range(indices.shape[0]):
            index = indices[i]
            if _is_valid(index, input_dim):
                dembeddings[int(index), j] += dy[i, j]


@cuda.jit(cache=True)
def _nonzero_mask(indices, mask):
    cols = mask.shape[1]
    for k in range(cuda.grid(1), mask.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        mask[i, j] = 1 if indices[i, j] != 0 else 0


def embedding_forward(indices, embeddings, bad_count, y):
    """``y[i] = embeddings[int(indices[i])]``; invalid indices give zero rows
    and are added to ``bad_count[0]``, as the CPU twin."""
    _embedding_forward[blocks(y.size), THREADS](indices, embeddings, bad_count, y)


def embedding_backward(indices, dy, dembeddings):
    """The table's gradient, the rows added in order per column, as the CPU twin."""
    _zero[blocks(dembeddings.size), THREADS](dembeddings)
    _scatter_columns[blocks(dembeddings.shape[1]), THREADS](indices, dy, dembeddings)


def nonzero_mask(indices, mask):
    """``mask = 1.0 where indices != 0, else 0.0``."""
    _nonzero_mask[blocks(mask.size), THREADS](indices, mask)


@cuda.jit(cache=True)
def _masking_forward(x, mask_value, y, mask):
    features = x.shape[1]
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        keep = 0
        for j in range(features):
            if x[i, j] != mask_value:
                keep = 1
        mask[i] = keep
        for j in range(features):
            y[i, j] = x[i, j] * keep


@cuda.jit(cache=True)
def _masking_backward(dy, mask, dx):
    features = dx.shape[1]
    for k in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        i = k // features
        dx[i, k - i * features] = dy[i, k - i * features] * mask[i]


def masking_forward(x, mask_value, y, mask):
    """Keras's Masking over ``(rows, features)``: a thread per row, as the CPU twin."""
    _masking_forward[blocks(x.shape[0]), THREADS](x, x.dtype.type(mask_value), y, mask)


def masking_backward(dy, mask, dx):
    """``dx[i] = dy[i] * mask[i]``."""
    _masking_backward[blocks(dx.size), THREADS](dy, mask, dx)


@cuda.jit(cache=True)
def _not_equal(x, value, y):
    cols = y.shape[1]
    for k in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        y[i, j] = 1 if x[i, j] != value else 0


@cuda.jit(cache=True)
def _any_nonzero(x, y):
    cols = x.shape[1]
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        found = 0
        for j in range(cols):
            if x[i, j] != 0:
                found = 1
        y[i] = found


def not_equal(x, value, y):
    """``y = 1.0 where x != value, else 0.0`` over (rows, cols)."""
    _not_equal[blocks(y.size), THREADS](x, x.dtype.type(value), y)


def any_nonzero(x, y):
    """``y[i] = 1.0 when some x[i, j] != 0``: a thread per row."""
    _any_nonzero[blocks(x.shape[0]), THREADS](x, y)
