"""The CPU device: arrays are NumPy arrays, ops are ``@njit`` kernels."""

import numpy as np

from nkeras.backend.blas_threads import single_threaded
from nkeras.backend.kernel_set import KernelSet


class CpuDevice:
    name = "cpu"

    def __init__(self):
        self.ops = KernelSet("nkeras.kernels.cpu")

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def to_device(self, host_array):
        return np.ascontiguousarray(host_array)

    def to_host(self, array):
        return np.array(array, copy=True)

    def copy_to_host(self, array, out):
        """Copy a device array into the host array ``out`` of the same shape."""
        np.copyto(out, array)

    def copy_from_host(self, host_array, out):
        """Copy a host array into the device array ``out`` of the same shape."""
        np.copyto(out, host_array)

    def host_empty(self, shape, dtype):
        """A host array to stage transfers in."""
        return np.empty(shape, dtype=dtype)

    def synchronize(self):
        pass

    def parallel_kernel_scope(self):
        """A ``with`` block for kernels that split their work over Numba's
        threads and call BLAS from each: BLAS on one thread inside it."""
        return single_threaded()
