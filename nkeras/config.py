"""Global settings: the default float type, the fuzz factor ``epsilon`` and
the device new models are placed on."""

import numpy as np

_FLOATX = "float32"
_EPSILON = 1e-7


def floatx():
    """The default float type of weights and activations, as a string."""
    return _FLOATX


def set_floatx(value):
    """Set the default float type: ``"float32"`` or ``"float64"``."""
    global _FLOATX
    if value not in ("float32", "float64"):
        raise ValueError(f"set_floatx: expected 'float32' or 'float64', got {value!r}")
    _FLOATX = value


def epsilon():
    """The fuzz factor that keeps logarithms and divisions finite (1e-7)."""
    return _EPSILON


def set_epsilon(value):
    global _EPSILON
    _EPSILON = float(value)


def floatx_dtype():
    return np.dtype(_FLOATX)


def set_device(name):
    """Place models built from now on on ``name``: ``"cpu"`` or ``"cuda"``
    (``None`` restores the default: cuda when a GPU is found, else cpu)."""
    from nkeras import backend

    backend.set_device(name)


def device():
    """The name of the device new models are placed on."""
    from nkeras import backend

    return backend.current_device_name()
