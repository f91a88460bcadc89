import os

# CUDA kernels run on numba-cuda's simulator unless the environment chose
# (NUMBA_ENABLE_CUDASIM=0 runs the same tests on a real GPU). Numba reads the
# variable when it is first imported, so this comes before any import of it.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np
import pytest

from nkeras.backend import clear_session

if os.environ["NUMBA_ENABLE_CUDASIM"] not in ("", "0"):
    from cuda_simulator import make_shared_arrays_thread_safe

    make_shared_arrays_thread_safe()


@pytest.fixture(autouse=True)
def _fresh_names():
    clear_session()
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def float64():
    """nkeras's floatx set to float64 for the test (gradient checks)."""
    from nkeras import config

    config.set_floatx("float64")
    yield
    config.set_floatx("float32")


@pytest.fixture
def real_keras():
    """Keras 3 on JAX, for parity checks (a test dependency)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


@pytest.fixture(params=["cpu", "cuda"])
def ops(request):
    """The kernels of each device, called with NumPy arrays (tests/devices.py)."""
    from devices import ops_for

    return ops_for(request.param)
