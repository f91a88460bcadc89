"""Data movement on the GPU, one thread per element: gathering a batch's
rows, summing gradients, copies."""

from numba import cuda

from nkeras.kernels.cuda.launch import THREADS, blocks


@cuda.jit(cache=True)
def _gather_rows(source, indices, start, out):
    cols = out.shape[1]
    for k in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        out[i, j] = source[indices[start + i], j]


@cuda.jit(cache=True)
def _add_into(target, source):
    cols = target.shape[1]
    for k in range(cuda.grid(1), target.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        target[i, j] += source[i, j]


@cuda.jit(cache=True)
def _copy_into(target, source):
    cols = target.shape[1]
    for k in range(cuda.grid(1), target.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        target[i, j] = source[i, j]


def gather_rows(source, indices, start, out):
    """``out[i] = source[indices[start + i]]`` for every row of ``out``.

    source: (n, cols) device array of any real dtype (cast to ``out``'s);
    indices: int64 (n,) device array; out: (rows, cols).
    """
    _gather_rows[blocks(out.size), THREADS](source, indices, int(start), out)


def add_into(target, source):
    """``target += source`` over 2-D device arrays of the same shape."""
    _add_into[blocks(target.size), THREADS](target, source)


def copy_into(target, source):
    """``target[...] = source`` over 2-D device arrays of the same shape."""
    _copy_into[blocks(target.size), THREADS](target, source)
