"""Training parity with Keras 3 (JAX backend) where Keras is installed.

nkeras does not need Keras; these tests compare whole training runs with it
when it is importable (the kernel tests against NumPy references run
everywhere).
"""

import os

import numpy as np
import pytest

import nkeras

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")


def _build(lib):
    return lib.Sequential([
        lib.Input(shape=(6, 2)),
        lib.layers.Flatten(),
        lib.layers.Dense(16, activation="tanh"),
        lib.layers.Dense(8, activation="gelu"),
        lib.layers.Dense(3, activation="softmax"),
    ])


@pytest.mark.parametrize(
    "optimizer, loss",
    [
        ("adam", "sparse_categorical_crossentropy"),
        ("rmsprop", "sparse_categorical_crossentropy"),
        ("sgd", "categorical_crossentropy"),
    ],
)
def test_fit_matches_keras_step_for_step(optimizer, loss, rng):
    x = rng.standard_normal((96, 6, 2)).astype("float32")
    labels = rng.integers(0, 3, 96)
    y = labels if loss.startswith("sparse") else np.eye(3, dtype="float32")[labels]
    theirs = _build(keras)
    ours = _build(nkeras)
    ours.set_weights(theirs.get_weights())
    histories = []
    for model in (theirs, ours):
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
        histories.append(model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=2e-4, atol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-5)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-3, atol=1e-5)
    assert sorted(histories[1]) == sorted(histories[0])
