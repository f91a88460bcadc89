"""TimeDistributed and Bidirectional: float64 gradient checks, Keras 3
parity (weights, configs, outputs), masks, errors naming the layer,
training on both devices and .keras files both ways."""

import os

import numpy as np
import pytest

import nkeras as keras
from nkeras import layers
from nkeras.testing import check_gradients


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")


@pytest.fixture
def real_keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


# ---- TimeDistributed ------------------------------------------------------------------


@pytest.mark.parametrize("make,shape", [
    (lambda: layers.Dense(3, activation="tanh"), (2, 4, 5)),
    (lambda: layers.Conv2D(2, 2, padding="same"), (2, 3, 4, 4, 2)),
    (lambda: layers.LayerNormalization(), (3, 2, 4)),
    (lambda: layers.Flatten(), (2, 3, 2, 2)),
])
def test_time_distributed_gradients(make, shape, float64):
    check_gradients(layers.TimeDistributed(make()), shape)


def test_time_distributed_matches_each_step_and_keras(real_keras, rng):
    x = rng.standard_normal((2, 5, 4)).astype("float32")
    ours = layers.TimeDistributed(layers.Dense(3, activation="relu"))
    theirs = real_keras.layers.TimeDistributed(real_keras.layers.Dense(3, activation="relu"))
    ours.build((None, 5, 4))
    theirs.build((None, 5, 4))
    assert [(w.name, w.shape) for w in ours.weights] == [(w.name, tuple(w.shape)) for w in theirs.weights]
    weights = [rng.standard_normal(w.shape).astype("float32") for w in ours.weights]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    y = ours(x)
    np.testing.assert_allclose(y, np.asarray(theirs(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y[:, 2], np.maximum(x[:, 2] @ weights[0] + weights[1], 0), rtol=1e-5, atol=1e-6)
    config = ours.get_config()
    their_config = theirs.get_config()
    assert set(config) == set(their_config)
    assert config["layer"]["class_name"] == their_config["layer"]["class_name"] == "Dense"
    rebuilt = layers.TimeDistributed.from_config(config)
    assert rebuilt.get_config() == config and rebuilt.layer is not ours.layer
    assert real_keras.layers.TimeDistributed.from_config(config).layer.units == 3


def test_time_distributed_passes_the_mask_so_padded_steps_leave_the_loss_alone(rng):
    inputs = keras.Input((4,))
    x = layers.Embedding(7, 3, mask_zero=True)(inputs)
    out = layers.TimeDistributed(layers.Dense(2))(x)
    assert out._keras_mask is not None
    model = keras.Model(inputs, out)
    model.compile(optimizer="sgd", loss="mse")
    tokens = rng.integers(1, 7, (5, 4)).astype("float32")
    tokens[:, 2:] = 0
    y = rng.standard_normal((5, 4, 2)).astype("float32")
    moved = y.copy()
    moved[:, 2:] -= 3.0
    assert model.evaluate(tokens, moved, verbose=0) == pytest.approx(model.evaluate(tokens, y, verbose=0), rel=1e-6)


def test_freezing_the_wrapper_freezes_the_inner_layer():
    wrapper = layers.TimeDistributed(layers.Dense(2))
    wrapper.build((None, 3, 4))
    wrapper.trainable = False
    assert not wrapper.layer.trainable and wrapper.trainable_weights == []
    assert len(wrapper.non_trainable_weights) == 2
    assert not layers.TimeDistributed(layers.Dense(2), trainable=False).layer.trainable


@pytest.mark.parametrize("make,shape,error,message", [
    (lambda: layers.TimeDistributed(layers.Dense(2), name="td"), (4,), ValueError,
     "TimeDistributed 'td': expected one input of shape \\(batch, timesteps, ...\\) with rank >= 3"),
    (lambda: layers.TimeDistributed(layers.Conv2D(2, 2), name="td"), (3, 4), ValueError, "rank"),
])
def test_time_distributed_rejects_bad_inputs_naming_the_layer(make, shape, error, message):
    with pytest.raises(error, match=message):
        make()(keras.Input(shape))


def test_time_distributed_takes_one_tensor():
    with pytest.raises(ValueError, match="TimeDistributed 'td': expected one input"):
        layers.TimeDistributed(layers.Dense(2), name="td")([keras.Input((3, 4)), keras.Input((3, 4))])


def test_time_distributed_needs_a_layer():
    with pytest.raises(TypeError, match="TimeDistributed 'td': layer must be a keras.layers.Layer instance"):
        layers.TimeDistributed("dense", name="td")


def test_a_built_time_distributed_rejects_another_step_shape():
    wrapper = layers.TimeDistributed(layers.Dense(2, name="inner"), name="td")
    wrapper(keras.Input((3, 4)))
    with pytest.raises(ValueError, match="Dense 'inner'"):
        wrapper(keras.Input((3, 5)))


def _time_distributed_model():
    keras.utils.set_random_seed(9)
    inputs = keras.Input((3, 4, 4, 1))
    x = layers.TimeDistributed(layers.Conv2D(2, 3, padding="same", activation="relu"))(inputs)
    x = layers.TimeDistributed(layers.Flatten())(x)
    x = layers.TimeDistributed(layers.Dense(2))(x)
    model = keras.Model(inputs, x)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def test_time_distributed_training_on_cuda_matches_the_cpu():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 4, 4, 1)).astype("float32")
    y = rng.standard_normal((4, 3, 2)).astype("float32")
    results = {}
    for device in ("cpu", "cuda"):
        with keras.device(device):
            model = _time_distributed_model()
            history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"]
            results[device] = history, model.get_weights()
    assert results["cpu"][0][1] < results["cpu"][0][0]
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-5, atol=1e-6)
    for got, want in zip(results["cuda"][1], results["cpu"][1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_time_distributed_files_both_ways(real_keras, tmp_path, rng):
    x = rng.standard_normal((3, 3, 4, 4, 1)).astype("float32")
    ours = _time_distributed_model()
    ours.fit(x, rng.standard_normal((3, 3, 2)), verbose=0)
    ours.save(tmp_path / "ours.keras")
    loaded = keras.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), ours.predict(x, verbose=0))
    serialize = keras.saving.serialize_keras_object
    assert [serialize(layer) for layer in loaded.layers] == [serialize(layer) for layer in ours.layers]
    theirs = real_keras.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    theirs.save(tmp_path / "theirs.keras")
    back = keras.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
