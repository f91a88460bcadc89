"""Buffers laid out task by task, for CPU kernels that split their batch
into tasks over Numba's threads (``prange``; docs/architecture.md,
"Threads"): an array (leading, rows, cols) holds one (leading, task rows,
cols) block per task, one after the other, so that each task's part is
contiguous. It is a helper of the CPU kernels, not an op."""

from numba import njit


@njit(cache=True, error_model="numpy", inline="always")
def _task_block(array, first, last):
    """The block of rows ``[first, last)`` of ``array`` laid out task by task."""
    leading, _, cols = array.shape
    flat = array.reshape(array.size)
    return flat[leading * cols * first:leading * cols * last].reshape(leading, last - first, cols)
