"""Finite-difference gradients for gradient checks (float64)."""

import numpy as np


def numerical_grad(f, x, eps=1e-6):
    """Central-difference gradient of the scalar function ``f(x)`` at ``x``.

    ``x`` (a float64 array) is perturbed in place one element at a time and
    restored afterwards, so ``f`` may also read it through a closure.
    Returns a float64 array shaped like ``x``.
    """
    if x.dtype != np.float64:
        raise TypeError(f"numerical_grad needs a float64 array, got {x.dtype}")
    grad = np.empty(x.shape, np.float64)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + eps
        plus = float(f(x))
        x[index] = saved - eps
        minus = float(f(x))
        x[index] = saved
        grad[index] = (plus - minus) / (2.0 * eps)
    return grad
