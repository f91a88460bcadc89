"""Grid and block sizes shared by the CUDA launchers."""

THREADS = 256
"""Threads per block for elementwise kernels and block reductions (a power
of two: the reductions halve it)."""

MAX_BLOCKS = 65535


def blocks(count, threads=THREADS):
    """Blocks of ``threads`` needed to give each of ``count`` items a thread
    (at least one, so empty launches stay valid)."""
    return max(1, min(MAX_BLOCKS, (count + threads - 1) // threads))
