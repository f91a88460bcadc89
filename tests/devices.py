"""Running kernel tests on both devices.

``ops_for(device)`` gives the kernels of ``"cpu"`` or ``"cuda"`` behind one
interface that takes and fills NumPy arrays, so a kernel test written
against a float64 NumPy reference runs unchanged on both. On ``"cuda"``
each call copies its array arguments to the device (arrays passed twice
stay one device array, as aliasing outputs need), runs the launcher, waits,
and copies every array back into the caller's arrays.

In CI the CUDA side runs on numba-cuda's simulator (``conftest.py`` sets
``NUMBA_ENABLE_CUDASIM=1`` unless the environment already chose); with
``NUMBA_ENABLE_CUDASIM=0`` on a machine with a GPU the same tests run on it.
"""

import numpy as np
import pytest

from nkeras.backend.kernel_set import KernelSet

DEVICES = ("cpu", "cuda")

# The simulator runs every GPU thread as Python: keep CUDA cases small.
CUDA_MAX_ELEMENTS = 4096


class _HostCallOps:
    """The CUDA ops, called with NumPy arrays."""

    device = "cuda"

    def __init__(self):
        from numba import cuda

        self._cuda = cuda
        self._ops = KernelSet("nkeras.kernels.cuda")

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        op = getattr(self._ops, name)
        cuda = self._cuda

        def call(*args):
            on_device = {}
            device_args = []
            for arg in args:
                if isinstance(arg, np.ndarray):
                    if id(arg) not in on_device:
                        on_device[id(arg)] = (arg, cuda.to_device(np.ascontiguousarray(arg)))
                    device_args.append(on_device[id(arg)][1])
                else:
                    device_args.append(arg)
            result = op(*device_args)
            cuda.synchronize()
            for host, device_array in on_device.values():
                host[...] = device_array.copy_to_host()
            return result

        return call


class _CpuOps:
    device = "cpu"

    def __init__(self):
        self._ops = KernelSet("nkeras.kernels.cpu")

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._ops, name)


_OPS = {}


def ops_for(device):
    """The kernels of ``device`` ("cpu" or "cuda") as NumPy-in, NumPy-out calls."""
    if device not in _OPS:
        _OPS[device] = _CpuOps() if device == "cpu" else _HostCallOps()
    return _OPS[device]


def device_cases(cases, size=lambda case: int(np.prod(case))):
    """``pytest.param(device, case)`` for every device and case, leaving out
    CUDA cases whose ``size(case)`` exceeds what the simulator runs quickly
    (all cases run on the CPU)."""
    params = []
    for device in DEVICES:
        for case in cases:
            if device == "cuda" and size(case) > CUDA_MAX_ELEMENTS:
                continue
            params.append(pytest.param(device, case, id=f"{device}-{case}"))
    return params


def assert_trains_alike_on_both_devices(build_model, x, y, batch_size, epochs=2, weight_atol=1e-5):
    """Train ``build_model()`` on "cpu" and on "cuda" with the same data and
    order; the loss histories and final weights must agree. Returns the CPU
    loss history (callers check that it fell)."""
    import nkeras as keras

    results = {}
    for device in ("cpu", "cuda"):
        with keras.device(device):
            model = build_model()
            history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0).history["loss"]
            results[device] = history, model.get_weights()
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-5, atol=1e-6)
    for got, want in zip(results["cuda"][1], results["cpu"][1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=weight_atol)
    return results["cpu"][0]


def at_one_and_all_threads(run):
    """``[run() with one Numba thread, run() with every thread]``: the CPU
    kernels that split their work over threads must give the same bits."""
    import numba

    threads = numba.get_num_threads()
    try:
        results = []
        for count in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(count)
            results.append(run())
        return results
    finally:
        numba.set_num_threads(threads)
