"""Model files with the vision layers: exact round trips of every layer type,
and Keras 3 files both ways for convolution, batch normalization and pooling."""

import os

import numpy as np
import pytest

import nkeras as keras
from nkeras import layers
from tests.fixtures.make_keras_fixtures import convnet_model

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
# Names in nkeras.layers that are not layer types of their own, and Lambda,
# which cannot be called (docs/custom_layers.md).
NOT_LAYER_TYPES = {"Input", "InputLayer", "Lambda", "Layer"}


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def _every_layer_model(k=keras):
    """A functional model that uses every layer type nkeras has."""
    L = k.layers
    image = k.Input((8, 8, 3), name="image")
    tokens = k.Input((4,), name="tokens")
    x = L.ZeroPadding2D(1)(image)
    x = L.Conv2D(4, 3, activation="relu")(x)
    x = L.BatchNormalization()(x)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    x = L.SeparableConv2D(4, 3, padding="same", activation="tanh")(x)
    x = L.PReLU(shared_axes=[1, 2])(x)
    x = L.SpatialDropout2D(0.2)(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2DTranspose(3, 3, strides=2, padding="same")(x)
    x = L.Cropping2D(((1, 0), (0, 1)))(x)
    x = L.UpSampling2D(2)(x)
    x = L.AveragePooling2D(2, padding="same")(x)
    x = L.LayerNormalization()(x)
    pooled = L.GlobalAveragePooling2D()(x)
    peak = L.GlobalMaxPooling2D()(x)
    seq = L.Masking()(L.Reshape((7, 7 * 3))(x))
    seq = L.ZeroPadding1D(1)(seq)
    seq = L.Conv1D(5, 3, padding="causal")(seq)
    seq = L.SpatialDropout1D(0.1)(seq)
    seq = L.MaxPooling1D(2)(seq)
    seq = L.UpSampling1D(2)(seq)
    seq = L.Cropping1D((1, 1))(seq)
    seq = L.AveragePooling1D(2)(seq)
    seq = L.MultiHeadAttention(2, 3)(seq, seq)
    seq = L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode="sum")(seq)
    seq = L.GRU(4, return_sequences=True, go_backwards=True)(seq)
    seq_pooled = L.GlobalAveragePooling1D()(seq)
    seq_peak = L.Concatenate()([L.GlobalMaxPooling1D()(seq), L.SimpleRNN(1)(seq), L.LSTM(1)(seq)])
    head = L.Dense(4, activation="relu")(L.Flatten()(x))
    head = L.Dropout(0.3)(head)
    head = L.Activation("softmax")(L.Dense(3)(head))
    merged = L.Concatenate()([
        L.Add()([pooled, peak]), L.Subtract()([pooled, peak]), L.Multiply()([pooled, peak]),
        L.Average()([pooled, peak]), L.Maximum()([pooled, peak]), L.Minimum()([pooled, peak]),
        L.Dot(axes=1)([pooled, peak]), L.Flatten()(L.Embedding(5, 2)(tokens)),
    ])
    side = L.TimeDistributed(L.Dense(3))(L.Permute((2, 1))(L.RepeatVector(2)(merged)))
    side = L.Dense(2)(L.Flatten()(side))
    return k.Model([image, tokens], [head, side, peak, seq_pooled, seq_peak])


def test_every_layer_type_round_trips_exactly(rng, tmp_path):
    model = _every_layer_model()
    used = {type(layer).__name__ for layer in model.layers}
    every = {getattr(layers, name).__name__ for name in layers.__all__ if isinstance(getattr(layers, name), type)}
    every -= NOT_LAYER_TYPES
    assert every <= used, f"add {sorted(every - used)} to the round-trip model"

    x = [rng.standard_normal((6, 8, 8, 3)).astype("float32"), rng.integers(0, 5, (6, 4)).astype("float32")]
    targets = [rng.integers(0, 3, 6), rng.standard_normal((6, 2)), rng.standard_normal((6, 3)),
               rng.standard_normal((6, 4)), rng.standard_normal((6, 6))]
    model.compile(optimizer="adam", loss=["sparse_categorical_crossentropy", "mse", "mse", "mse", "mse"])
    model.fit(x, targets, batch_size=3, epochs=2, verbose=0)
    model.save(tmp_path / "every.keras")
    loaded = keras.models.load_model(tmp_path / "every.keras")
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    serialize = keras.saving.serialize_keras_object
    assert [serialize(layer) for layer in loaded.layers] == [serialize(layer) for layer in model.layers]
    for left, right in zip(model.predict(x, verbose=0), loaded.predict(x, verbose=0), strict=True):
        np.testing.assert_array_equal(left, right)
    for left, right in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)
    assert loaded.optimizer.iterations == model.optimizer.iterations


def test_every_layer_model_loads_in_keras_and_predicts_the_same(rng, tmp_path):
    k = _keras()
    model = _every_layer_model()
    model.compile(optimizer="adam", loss=["sparse_categorical_crossentropy", "mse", "mse", "mse", "mse"])
    x = [rng.standard_normal((4, 8, 8, 3)).astype("float32"), rng.integers(0, 5, (4, 4)).astype("float32")]
    model.save(tmp_path / "every.keras")
    theirs = k.models.load_model(tmp_path / "every.keras")
    for left, right in zip(theirs.predict(x, verbose=0), model.predict(x, verbose=0), strict=True):
        np.testing.assert_allclose(left, right, rtol=1e-4, atol=1e-5)


def test_keras_convnet_fixture_loads_and_predicts():
    expected = np.load(os.path.join(FIXTURES, "keras_convnet_expected.npz"), allow_pickle=False)
    model = keras.models.load_model(os.path.join(FIXTURES, "keras_convnet.keras"))
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "BatchNormalization", "MaxPooling2D", "Conv2D", "AveragePooling2D", "Flatten", "Dense"
    ]
    np.testing.assert_allclose(model.predict(expected["x"], verbose=0), expected["y"], rtol=1e-5, atol=1e-6)
    assert model.optimizer.iterations == int(expected["iterations"])
    moving_mean = model.layers[1].moving_mean.numpy()
    assert np.abs(moving_mean).max() > 0, "the file's trained moving statistics were loaded"


def test_nkeras_convnet_loads_in_keras_and_both_train_alike(rng, tmp_path):
    k = _keras()
    x = rng.standard_normal((16, 12, 12, 2)).astype("float32")
    y = rng.integers(0, 3, 16)
    ours = convnet_model(keras)
    ours.fit(x, y, batch_size=8, epochs=2, verbose=0)
    ours.save(tmp_path / "c.keras")
    theirs = k.models.load_model(tmp_path / "c.keras")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert int(theirs.optimizer.iterations) == ours.optimizer.iterations
    theirs.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    ours.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    for layer in ours.layers:
        for left, right in zip(theirs.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True):
            np.testing.assert_allclose(left, right, rtol=1e-3, atol=1e-5, err_msg=layer.name)
