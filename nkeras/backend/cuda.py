"""The CUDA device: arrays are Numba device arrays, ops are the launchers
of ``nkeras.kernels.cuda``. Everything runs on the default stream, so
kernels queue in order and the host waits only when it copies a result down."""

import contextlib

import numpy as np

from nkeras.backend.kernel_set import KernelSet


class DeviceMemoryError(MemoryError):
    """The GPU has not enough free memory for an allocation."""


def _is_out_of_memory(error):
    text = str(error).upper()
    return "OUT_OF_MEMORY" in text or "OUT OF MEMORY" in text


class CudaDevice:
    """The current CUDA GPU (``numba.cuda.get_current_device()``).

    Args:
        cuda: the ``numba.cuda`` module (its simulator when
            ``NUMBA_ENABLE_CUDASIM=1``).
    """

    name = "cuda"

    def __init__(self, cuda):
        self._cuda = cuda
        self.ops = KernelSet("nkeras.kernels.cuda")

    def memory_info(self):
        """``(free, total)`` bytes of the GPU's memory."""
        free, total = self._cuda.current_context().get_memory_info()
        return free, total

    def empty(self, shape, dtype):
        try:
            return self._cuda.device_array(shape, dtype=dtype)
        except Exception as error:  # the driver's error type depends on the binding in use
            if not _is_out_of_memory(error):
                raise
            raise self._memory_error(shape, dtype) from None

    def _memory_error(self, shape, dtype):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        free, total = self.memory_info()
        return DeviceMemoryError(
            f"cuda: out of GPU memory allocating an array of shape {shape} ({size / 2**20:.1f} MiB of {np.dtype(dtype)}); "
            f"{free / 2**20:.0f} MiB of {total / 2**20:.0f} MiB free. Use a smaller batch_size or a smaller model"
        )

    def zeros(self, shape, dtype):
        array = self.empty(shape, dtype)
        array.copy_to_device(np.zeros(shape, dtype))
        return array

    def to_device(self, host_array):
        host_array = np.ascontiguousarray(host_array)
        array = self.empty(host_array.shape, host_array.dtype)
        array.copy_to_device(host_array)
        return array

    def to_host(self, array):
        return array.copy_to_host()

    def copy_to_host(self, array, out):
        """Copy a device array into the host array ``out`` of the same shape."""
        array.copy_to_host(out)

    def copy_from_host(self, host_array, out):
        """Copy a host array into the device array ``out`` of the same shape."""
        out.copy_to_device(np.ascontiguousarray(host_array, dtype=out.dtype))

    def host_empty(self, shape, dtype):
        """A page-locked host array, which the GPU copies from directly."""
        return self._cuda.pinned_array(shape, dtype=dtype)

    def synchronize(self):
        self._cuda.synchronize()

    def parallel_kernel_scope(self):
        """Nothing to set up: see ``CpuDevice.parallel_kernel_scope``."""
        return contextlib.nullcontext()
