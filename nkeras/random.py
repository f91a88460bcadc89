"""The global seed stream behind initializers, dropout and shuffling.

``nkeras.utils.set_random_seed(seed)`` resets it, so the same seed gives the
same initial weights, the same dropout masks and the same batch order.
"""

import random as _py_random

import numpy as np

_state = {"generator": np.random.default_rng()}


def set_random_seed(seed):
    """Seed Python's ``random``, NumPy's global generator and nkeras's stream."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"set_random_seed: expected a non-negative integer seed, got {seed!r}")
    _py_random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    _state["generator"] = np.random.default_rng(int(seed))


def draw_seed():
    """A fresh 63-bit seed from the global stream."""
    return int(_state["generator"].integers(0, 2**63 - 1))


def make_generator(seed=None):
    """A NumPy Generator: seeded by ``seed`` when given, else from the stream."""
    return np.random.default_rng(draw_seed() if seed is None else seed)
