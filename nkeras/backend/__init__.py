"""Devices. A device owns allocation, host transfer and its set of kernels
(``device.ops``); it is the only part of nkeras that knows where an array
lives."""

from nkeras.backend.cpu import CpuDevice

_DEVICES = {}


def get_device(name="cpu"):
    """The device object for ``name`` (only ``"cpu"`` so far)."""
    if name not in ("cpu",):
        raise ValueError(f"Unknown device {name!r}; available devices: 'cpu'")
    if name not in _DEVICES:
        _DEVICES[name] = CpuDevice()
    return _DEVICES[name]


def clear_session():
    """Reset layer and model name counters, as ``keras.backend.clear_session``."""
    from nkeras.layers.layer import reset_names

    reset_names()
