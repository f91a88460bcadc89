"""A fix for numba-cuda's CUDA simulator, applied by conftest.py.

The simulator runs the threads of a block as Python threads and creates a
``cuda.shared.array`` the first time any of them reaches its line: it
looks the line up in a dict and, when absent, makes a new array and stores
it, without a lock. When the interpreter switches threads between the two,
two threads each create their own array; a thread that later reads what
another wrote gets ``np.empty``'s leftovers instead, sometimes NaN. In the
test suite this showed as a rare, load-dependent mismatch between the
devices (under two pytest processes on two cores, and after
test_fusion.py: NaN losses on "cuda" in
test_time_distributed_training_on_cuda_matches_the_cpu). Real GPUs are
not affected. ``make_shared_arrays_thread_safe`` does the look-up and the
creation under one lock.
"""

import sys
import threading

import numpy as np

_LOCK = threading.Lock()


def _new_array(shape, dtype):
    return np.empty(shape, dtype)


def make_shared_arrays_thread_safe():
    """Replace ``FakeCUDAShared.array`` with a locked version (idempotent)."""
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    unlocked = kernelapi.FakeCUDAShared.array
    if getattr(unlocked, "thread_safe", False):
        return

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            # Dynamic shared memory is one buffer made with the block; the
            # simulator refuses an alignment. Neither path has the race.
            return unlocked(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = sys._getframe(1)
        site = (caller.f_code.co_filename, caller.f_lineno)
        with _LOCK:
            found = self._allocations.get(site)
            if found is None:
                found = self._allocations[site] = _new_array(shape, dtype)
        return found

    array.thread_safe = True
    kernelapi.FakeCUDAShared.array = array
