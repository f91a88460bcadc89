"""Activation functions, as in ``keras.activations``.

The functions work eagerly on NumPy arrays through the CPU activation
kernels. Layers do not call them: they take the kernel code from
``activation_code`` and run the activation inside their own kernels, which
is why an activation must be one of the named ones below.
"""

import numpy as np

from nkeras import config
from nkeras.backend import get_device
from nkeras.kernels import codes


def _as_float_array(x):
    array = np.asarray(x)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(config.floatx())
    return array


def _apply(x, code, alpha=0.0):
    """Run the activation kernel over ``x`` viewed as (-1, last_dim)."""
    array = _as_float_array(x)
    if array.size == 0:
        return array.copy()
    flat = np.ascontiguousarray(array.reshape(-1, array.shape[-1] if array.ndim else 1))
    out = np.empty_like(flat)
    get_device("cpu").ops.activation_forward(flat, code, float(alpha), out)
    return out.reshape(array.shape)


def linear(x):
    """Linear activation: returns the input unchanged."""
    return _as_float_array(x)


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Rectified linear unit.

    With the defaults, ``max(x, 0)``. Args as Keras: ``negative_slope`` for
    values below ``threshold``, ``max_value`` caps the output, values below
    ``threshold`` are set to zero (or damped by ``negative_slope``).
    """
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return _apply(x, codes.RELU)
    if max_value is None and threshold == 0.0:
        return _apply(x, codes.LEAKY_RELU, negative_slope)
    array = _as_float_array(x)
    kept = np.where(array > threshold, array, 0.0) if threshold != 0.0 else np.maximum(array, 0.0)
    if max_value is not None:
        kept = np.clip(kept, 0.0, max_value)
    if negative_slope != 0.0:
        kept = kept - negative_slope * np.maximum(threshold - array, 0.0)
    return kept.astype(array.dtype)


def leaky_relu(x, negative_slope=0.2):
    """``x`` for ``x > 0``, ``negative_slope * x`` otherwise."""
    return _apply(x, codes.LEAKY_RELU, negative_slope)


def sigmoid(x):
    """``1 / (1 + exp(-x))``."""
    return _apply(x, codes.SIGMOID)


def tanh(x):
    """Hyperbolic tangent."""
    return _apply(x, codes.TANH)


def softmax(x, axis=-1):
    """``exp(x) / sum(exp(x))`` along ``axis`` (the last by default)."""
    array = _as_float_array(x)
    if array.ndim == 0:
        raise ValueError(f"softmax: expected an array of rank >= 1, got a scalar {x!r}")
    moved = np.moveaxis(array, axis, -1)
    return np.moveaxis(_apply(moved, codes.SOFTMAX), -1, axis)


def gelu(x, approximate=False):
    """Gaussian error linear unit: ``x * Phi(x)``.

    Args:
        approximate: use the tanh approximation instead of the exact erf form
            (Keras 3's default is exact).
    """
    return _apply(x, codes.GELU_TANH if approximate else codes.GELU)


def elu(x, alpha=1.0):
    """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise."""
    return _apply(x, codes.ELU, alpha)


def selu(x):
    """Scaled ELU: ``scale * elu(x, alpha)`` with Keras' fixed constants."""
    return _apply(x, codes.SELU)


def silu(x):
    """Sigmoid linear unit (swish): ``x * sigmoid(x)``."""
    return _apply(x, codes.SILU)


swish = silu


def softplus(x):
    """``log(exp(x) + 1)``, computed stably."""
    return _apply(x, codes.SOFTPLUS)


_FUNCTIONS = {
    "linear": linear,
    "relu": relu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "softmax": softmax,
    "gelu": gelu,
    "elu": elu,
    "selu": selu,
    "leaky_relu": leaky_relu,
    "silu": silu,
    "swish": silu,
    "softplus": softplus,
}

# The kernel parameter each named activation takes at its Keras default.
_ALPHAS = {"leaky_relu": 0.2, "elu": 1.0}


def _valid_names():
    return ", ".join(repr(name) for name in _FUNCTIONS)


def _name_of(identifier, what):
    """The registered name of an activation name or function."""
    if identifier is None:
        return "linear"
    if isinstance(identifier, str):
        if identifier not in _FUNCTIONS:
            raise ValueError(f"Unknown activation {identifier!r} in {what}; valid names: {_valid_names()}")
        return identifier
    for function in _FUNCTIONS.values():
        if identifier is function:
            return function.__name__
    raise ValueError(
        f"{what}: activation {identifier!r} is not one of nkeras' named activations. Layers run their "
        f"activation inside compiled kernels, so it must be one of: {_valid_names()}"
    )


def get(identifier):
    """The activation function for ``identifier``.

    Args:
        identifier: None (linear), an activation name, or a callable
            (returned as is).
    """
    if identifier is None or isinstance(identifier, str):
        return _FUNCTIONS[_name_of(identifier, "activations.get")]
    if callable(identifier):
        return identifier
    raise ValueError(
        f"Could not interpret activation identifier {identifier!r}: expected None, a name or a function; "
        f"valid names: {_valid_names()}"
    )


def serialize(activation):
    """The name of an activation function (``"silu"`` for swish, as Keras)."""
    return _name_of(activation, "activations.serialize")


def deserialize(name):
    """The activation function named ``name``."""
    return get(name)


def activation_code(identifier):
    """``(code, alpha)`` for the kernels: the activation's integer code from
    ``nkeras.kernels.codes`` and its parameter at the Keras default.

    Args:
        identifier: None, an activation name, or one of this module's
            functions. Any other callable raises ValueError: layers run
            their activation inside compiled kernels.
    """
    name = _name_of(identifier, "activation_code")
    return codes.ACTIVATION_CODES[name], _ALPHAS.get(name, 0.0)
