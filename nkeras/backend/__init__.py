"""Devices. A device owns allocation, host transfer and its set of kernels
(``device.ops``); it is the only part of nkeras that knows where an array
lives.

The device used for new models is, in this order: the innermost
``with nkeras.device(name):`` block, ``nkeras.config.set_device(name)``, the
environment variable ``NKERAS_DEVICE``, and otherwise ``"cuda"`` when Numba
finds a GPU (``numba.cuda.is_available()``) and ``"cpu"`` when it does not.
"""

import contextlib
import os

from nkeras.backend.cpu import CpuDevice

DEVICE_NAMES = ("cpu", "cuda")

_DEVICES = {}
_scoped = []
_chosen = None
_gpu_found = None


def _numba_cuda():
    """``numba.cuda``, or None when numba-cuda is not installed."""
    try:
        from numba import cuda
    except ImportError:
        return None
    return cuda


def _simulated(cuda):
    from numba.core import config

    return bool(config.ENABLE_CUDASIM)


def cuda_available():
    """Whether a real CUDA GPU is usable (numba-cuda's simulator does not
    count: it runs kernels as Python, for tests)."""
    global _gpu_found
    if _gpu_found is None:
        cuda = _numba_cuda()
        _gpu_found = bool(cuda is not None and not _simulated(cuda) and cuda.is_available())
    return _gpu_found


def _check_name(name, source):
    if name not in DEVICE_NAMES:
        raise ValueError(f"{source}: unknown device {name!r}; expected one of {list(DEVICE_NAMES)}")
    return name


def scoped_device_name():
    """The device of the innermost ``with nkeras.device(...)`` block, or None."""
    return _scoped[-1] if _scoped else None


def current_device_name():
    """The name of the device new models are placed on."""
    if _scoped:
        return _scoped[-1]
    if _chosen is not None:
        return _chosen
    from_env = os.environ.get("NKERAS_DEVICE")
    if from_env:
        return _check_name(from_env.strip().lower(), "NKERAS_DEVICE")
    return "cuda" if cuda_available() else "cpu"


def get_device(name=None):
    """The device object called ``name`` ("cpu" or "cuda"; default: the
    current device). Asking for "cuda" without a usable GPU raises."""
    name = current_device_name() if name is None else _check_name(name, "get_device")
    device = _DEVICES.get(name)
    if device is None:
        device = _DEVICES[name] = CpuDevice() if name == "cpu" else _make_cuda_device()
    return device


def _make_cuda_device():
    from nkeras.backend.cuda import CudaDevice

    cuda = _numba_cuda()
    if cuda is None:
        raise RuntimeError(
            "Device 'cuda' needs numba-cuda, which is not installed: pip install 'nkeras[cuda]' (or use device 'cpu')"
        )
    if not (_simulated(cuda) or cuda.is_available()):
        raise RuntimeError(
            "Device 'cuda' was requested but Numba finds no usable CUDA GPU (numba.cuda.is_available() is False: "
            "no NVIDIA GPU, driver or CUDA runtime). Use device 'cpu', or run numba.cuda.detect() to see why"
        )
    return CudaDevice(cuda)


def set_device(name):
    """Place models built from now on on ``name`` ("cpu" or "cuda"); ``None``
    goes back to the default. Raises at once if the device is unusable."""
    global _chosen
    if name is not None:
        get_device(_check_name(name, "set_device"))
    _chosen = name


@contextlib.contextmanager
def device(name):
    """``with nkeras.device("cuda"):`` places the models built inside the
    block on that device, and moves a model whose ``fit``, ``evaluate`` or
    ``predict`` is called inside it there (weights and optimizer state)."""
    get_device(_check_name(name, "nkeras.device"))
    _scoped.append(name)
    try:
        yield get_device(name)
    finally:
        _scoped.pop()


def clear_session():
    """Reset layer and model name counters, as ``keras.backend.clear_session``."""
    from nkeras.layers.layer import reset_names

    reset_names()
