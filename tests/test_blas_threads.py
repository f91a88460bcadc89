"""BLAS on one thread while a plan runs kernels that split their work over
Numba's threads (``nkeras.backend.blas_threads``)."""

import glob
import os

import numpy as np
import pytest
import scipy

import nkeras as keras
from nkeras import layers
from nkeras.backend import blas_threads, get_device
from nkeras.graph import Plan
from nkeras.kernels.cpu.recurrent import TASK_ROWS

SCIPY_OPENBLAS = glob.glob(os.path.join(os.path.dirname(scipy.__file__), "..", "scipy.libs", "*openblas*"))
needs_openblas = pytest.mark.skipif(not SCIPY_OPENBLAS, reason="needs SciPy's wheel with its OpenBLAS")


@pytest.fixture
def two_blas_threads():
    set_threads = blas_threads._blas()[0]
    before = blas_threads.blas_threads()
    set_threads(2)
    yield
    set_threads(before)


@needs_openblas
def test_scipys_openblas_is_found():
    assert isinstance(blas_threads.blas_threads(), int)


@needs_openblas
def test_single_threaded_sets_one_thread_and_restores_the_count(two_blas_threads):
    with blas_threads.single_threaded():
        assert blas_threads.blas_threads() == 1
        with blas_threads.single_threaded():
            assert blas_threads.blas_threads() == 1
        assert blas_threads.blas_threads() == 1
    assert blas_threads.blas_threads() == 2
    with pytest.raises(RuntimeError), blas_threads.single_threaded():
        raise RuntimeError("inside")
    assert blas_threads.blas_threads() == 2


def _record_blas_threads(plan):
    """Wrap every step's kernels to record the BLAS thread count they ran at."""
    seen = []
    for step in plan.forward_steps + plan.backward_steps:
        layer = step.layer

        class Recording(type(layer)):
            def forward(self, *args):
                seen.append(blas_threads.blas_threads())
                return super().forward(*args)

            def backward(self, *args):
                seen.append(blas_threads.blas_threads())
                return super().backward(*args)

        layer.__class__ = Recording
    return seen


def _convnet():
    return keras.Sequential([
        keras.Input((10, 10, 1)), layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dense(3),
    ])


def _lstm():
    return keras.Sequential([keras.Input((3, 2)), layers.Bidirectional(layers.LSTM(3)), layers.Dense(2)])


@needs_openblas
@pytest.mark.parametrize("build,batch,parallel", [
    (_convnet, 4, True),
    (lambda: keras.Sequential([keras.Input((6,)), layers.Dense(5, activation="relu"), layers.Dense(2)]), 4, False),
    # The LSTM splits a batch of more than TASK_ROWS rows into tasks.
    (_lstm, TASK_ROWS + 1, True),
    (_lstm, TASK_ROWS, False),
])
def test_a_plan_runs_blas_on_one_thread_only_for_kernels_that_split_their_work(build, batch, parallel,
                                                                               two_blas_threads):
    plan = Plan(build()._graph, batch, get_device("cpu"), True)
    assert plan._parallel_kernels is parallel
    seen = _record_blas_threads(plan)
    plan.input_buffers[0][...] = np.random.default_rng(0).random(plan.input_buffers[0].shape)
    plan.forward(0)
    for grad in plan.output_grads:
        grad[...] = 1.0
    plan.backward()
    assert seen and set(seen) == {1 if parallel else 2}
    assert blas_threads.blas_threads() == 2
