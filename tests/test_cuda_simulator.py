"""The fix conftest.py applies to numba-cuda's simulator (tests/cuda_simulator.py).

Simulator only: on a real GPU (NUMBA_ENABLE_CUDASIM=0) shared memory is the
hardware's and the fix is not installed.
"""

import os
import time

import numba
import numpy as np
import pytest
from numba import cuda

import cuda_simulator

pytestmark = pytest.mark.skipif(
    os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0"), reason="tests a fix to the CUDA simulator"
)


@cuda.jit
def _column_sums(x, out):
    partial = cuda.shared.array((4, 8), numba.float64)
    lane, column = cuda.threadIdx.y, cuda.threadIdx.x
    total = 0.0
    for i in range(lane, x.shape[0], 4):
        total += x[i, column]
    partial[lane, column] = total
    cuda.syncthreads()
    if lane == 0:
        for other in range(1, 4):
            total += partial[other, column]
        out[column] = total


def test_a_block_shares_one_array_even_when_creating_it_is_slow(monkeypatch):
    # A slow creation lets every thread of the block reach the line before
    # the first one has stored the array: unlocked, each makes its own and
    # lane 0 sums the garbage of a fresh np.empty.
    def slow_new_array(shape, dtype):
        time.sleep(0.01)
        return np.full(shape, np.nan, dtype)

    monkeypatch.setattr(cuda_simulator, "_new_array", slow_new_array)
    x = np.random.default_rng(0).standard_normal((13, 8))
    out = np.zeros(8)
    _column_sums[1, (8, 4)](x, out)
    np.testing.assert_allclose(out, x.sum(axis=0), rtol=1e-12)


def test_the_fix_is_installed():
    from numba.cuda.simulator import kernelapi

    assert getattr(kernelapi.FakeCUDAShared.array, "thread_safe", False)
