"""Sequence models in Keras 3 files, both ways: Embedding with mask_zero,
Masking, recurrent layers and Bidirectional. Keras 3 records the mask a
Masking or Embedding layer computes as operation layers (NotEqual, Any)
whose output it passes as ``mask=``; nkeras rebuilds those as layers."""


import numpy as np
import pytest

import nkeras as keras
from nkeras.layers.mask_ops import Any, NotEqual


def _padded(rng, n=5, steps=6, features=4):
    x = rng.standard_normal((n, steps, features)).astype("float32")
    for i, length in enumerate(rng.integers(1, steps + 1, n)):
        x[i, length:] = 0.0
    return x


def _tokens(rng, n=5, steps=6, vocabulary=9):
    tokens = rng.integers(1, vocabulary, (n, steps))
    for i, length in enumerate(rng.integers(1, steps + 1, n)):
        tokens[i, length:] = 0
    return tokens.astype("float32")


def _masking_model(k):
    inputs = k.Input((6, 4))
    x = k.layers.Masking()(inputs)
    x = k.layers.Bidirectional(k.layers.LSTM(3, return_sequences=True))(x)
    x = k.layers.GRU(5, return_sequences=True, go_backwards=True)(x)
    return k.Model(inputs, k.layers.TimeDistributed(k.layers.Dense(2))(x))


def _embedding_model(k):
    inputs = k.Input((6,))
    x = k.layers.Embedding(9, 4, mask_zero=True)(inputs)
    x = k.layers.SimpleRNN(3, return_sequences=True)(x)
    return k.Model(inputs, k.layers.LSTM(2)(x))


@pytest.mark.parametrize("build,data", [(_masking_model, _padded), (_embedding_model, _tokens)], ids=["masking", "embedding"])
def test_keras_sequence_files_load_and_predict_as_keras(build, data, real_keras, rng, tmp_path):
    theirs = build(real_keras)
    theirs.set_weights([rng.uniform(-0.5, 0.5, w.shape) for w in theirs.get_weights()])
    theirs.save(tmp_path / "theirs.keras")
    x = data(rng)
    mine = keras.models.load_model(tmp_path / "theirs.keras")
    assert any(isinstance(layer, (NotEqual, Any)) for layer in mine.layers), "Keras records its mask computation"
    expected = np.asarray(theirs.predict(x, verbose=0))
    np.testing.assert_allclose(mine.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # Saved again by nkeras, the file still opens in Keras and in nkeras.
    mine.save(tmp_path / "again.keras")
    np.testing.assert_allclose(np.asarray(real_keras.models.load_model(tmp_path / "again.keras").predict(x, verbose=0)),
                               expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "again.keras").predict(x, verbose=0),
                               expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("build,data", [(_masking_model, _padded), (_embedding_model, _tokens)], ids=["masking", "embedding"])
def test_nkeras_sequence_files_load_in_keras(build, data, real_keras, rng, tmp_path):
    mine = build(keras)
    mine.compile("adam", "mse")
    x = data(rng)
    mine.fit(x, mine.predict(x, verbose=0) + 0.1, verbose=0)
    mine.save(tmp_path / "mine.keras")
    theirs = real_keras.models.load_model(tmp_path / "mine.keras")
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), mine.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_zero_output_for_mask_zeroes_padded_steps_and_their_gradients(rng):
    from tests.layer_check import run_layer

    for go_backwards in (False, True):
        layer = keras.layers.GRU(3, return_sequences=True, go_backwards=go_backwards, zero_output_for_mask=True,
                                 dtype="float64")
        x = rng.standard_normal((2, 5, 4))
        mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=np.float64)
        layer.build((None, 5, 4))
        context, _, state = run_layer(layer, [x], training=True)
        state["mask"] = mask
        y = np.empty((2, 5, 3))
        layer.forward(context, [x], [y], state)
        steps = mask[:, ::-1] if go_backwards else mask
        assert np.all(y[steps == 0] == 0) and np.all(y[steps == 1] != 0)
        dy = rng.standard_normal(y.shape)
        dx = np.empty_like(x)
        for variable in layer.weights:
            variable.grad = np.zeros(variable.shape)
        layer.backward(context, [x], [y], state, [dy.copy()], [dx])
        zeroed = np.where(steps[:, :, None] == 0, 0.0, dy)
        dx_zeroed = np.empty_like(x)
        kernel_grad = layer.kernel.grad.copy()
        layer.forward(context, [x], [y], state)
        layer.backward(context, [x], [y], state, [zeroed], [dx_zeroed])
        np.testing.assert_allclose(dx, dx_zeroed, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(kernel_grad, layer.kernel.grad, rtol=1e-12, atol=1e-14)
