"""Embedding and Masking: float64 gradient checks, Keras 3 parity (weights,
configs, outputs, masks), bad indices and shapes naming the layer, masks
that keep padded steps out of the loss, training on both devices and
.keras round trips."""


import numpy as np
import pytest

import nkeras as keras
from devices import assert_trains_alike_on_both_devices
from nkeras import layers
from tests.gradcheck import numerical_grad


def _forward(layer, x, training=True):
    """Run the layer's forward on ``x``; returns (context, outputs, state)."""
    from nkeras.backend import get_device
    from nkeras.graph import ExecutionContext

    context = ExecutionContext(get_device("cpu"), training)
    shapes = [layer.compute_output_shape((None,) + x.shape[1:])]
    mask_shape = layer.output_mask_shape((None,) + x.shape[1:])
    shapes += [mask_shape] if mask_shape is not None else []
    outputs = [np.full((x.shape[0],) + tuple(s[1:]), np.nan) for s in shapes]
    state = layer.make_state(context.device, [x], outputs, training)
    layer.forward(context, [x], outputs, state)
    return context, outputs, state


@pytest.mark.parametrize("shape,mask_zero", [((4, 3), False), ((2, 3, 2), False), ((5, 4), True)])
def test_embedding_gradient_matches_finite_differences(shape, mask_zero, float64, rng):
    layer = layers.Embedding(6, 3, mask_zero=mask_zero)
    layer.build((None,) + shape[1:])
    layer.embeddings.assign(rng.standard_normal((6, 3)))
    layer.embeddings.grad = np.zeros((6, 3))
    x = rng.integers(0, 6, shape).astype(np.float64)
    x.flat[0] = 5  # a repeated index sums its rows' gradients
    x.flat[-1] = 5
    context, outputs, state = _forward(layer, x)
    probe = rng.standard_normal(outputs[0].shape)
    dx = np.full(x.shape, np.nan)
    layer.backward(context, [x], outputs, state, [probe] + [None] * (len(outputs) - 1), [dx])
    numeric = numerical_grad(lambda _: float(np.sum(_forward(layer, x)[1][0] * probe)), layer.embeddings.value)
    np.testing.assert_allclose(layer.embeddings.grad, numeric, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(dx, 0)
    np.testing.assert_array_equal(outputs[0], layer.embeddings.value[x.astype(int)])
    if mask_zero:
        np.testing.assert_array_equal(outputs[1], x != 0)


@pytest.mark.parametrize("shape", [(3, 4, 2), (1, 1, 5)])
def test_masking_gradient_matches_finite_differences(shape, float64, rng):
    layer = layers.Masking(mask_value=0.5)
    x = rng.standard_normal(shape)
    x[0, 0] = 0.5
    context, outputs, state = _forward(layer, x)
    np.testing.assert_array_equal(outputs[1][0, 0], 0.0)
    np.testing.assert_array_equal(outputs[0][0, 0], 0.0)
    probe = rng.standard_normal(outputs[0].shape)
    dx = np.full(x.shape, np.nan)
    layer.backward(context, [x], outputs, state, [probe, None], [dx])
    numeric = numerical_grad(lambda _: float(np.sum(_forward(layer, x)[1][0] * probe)), x)
    # A padded step's output is zeros whatever its value; moving it off the
    # padding value unmasks it, so differences are meaningless there. Its
    # gradient is zero, as in Keras (the mask carries no gradient).
    numeric[0, 0] = 0.0
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)


# ---- Keras parity ----------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"mask_zero": True}, {"embeddings_initializer": "ones"}])
def test_embedding_matches_keras(options, real_keras, rng):
    ours = layers.Embedding(7, 3, **options)
    theirs = real_keras.layers.Embedding(7, 3, **options)
    ours.build((None, 5))
    theirs.build((None, 5))
    assert [(w.name, w.shape) for w in ours.weights] == [(w.name, tuple(w.shape)) for w in theirs.weights]
    table = rng.standard_normal((7, 3)).astype("float32")
    ours.set_weights([table])
    theirs.set_weights([table])
    x = rng.integers(0, 7, (4, 5))
    x[:, -2:] = 0
    np.testing.assert_array_equal(ours(x.astype("float32")), np.asarray(theirs(x)))
    config = ours.get_config()
    their_config = theirs.get_config()
    assert set(config) <= set(their_config)
    rebuilt = real_keras.layers.Embedding.from_config(config).get_config()
    for key in set(config) - {"name"}:
        assert rebuilt[key] == their_config[key], key
    assert layers.Embedding.from_config(config).get_config() == config
    if options.get("mask_zero"):
        their_mask = np.asarray(theirs.compute_mask(x))
        tensor = ours(keras.Input((5,)))
        assert tensor._keras_mask.shape == (None, 5)
        np.testing.assert_array_equal(x != 0, their_mask)


def test_initial_weights_argument(rng):
    table = rng.standard_normal((4, 2)).astype("float32")
    layer = layers.Embedding(4, 2, weights=[table])
    np.testing.assert_array_equal(layer(np.array([[3.0, 1.0]], "float32"))[0], table[[3, 1]])


def test_input_length_is_ignored_with_a_warning_as_in_keras():
    with pytest.warns(UserWarning, match="Embedding 'e': argument `input_length` is deprecated"):
        layer = layers.Embedding(5, 2, input_length=7, name="e")
    assert layer(keras.Input((3,))).shape == (None, 3, 2)


def test_masking_matches_keras(real_keras, rng):
    x = rng.standard_normal((3, 4, 2)).astype("float32")
    x[0, 1] = 0.25
    x[2, 3, 0] = 0.25
    ours = layers.Masking(0.25)
    theirs = real_keras.layers.Masking(0.25)
    np.testing.assert_array_equal(ours(x), np.asarray(theirs(x)))
    assert ours.get_config().keys() == theirs.get_config().keys()
    assert ours.get_config()["mask_value"] == theirs.get_config()["mask_value"]


def _sequence_model(lib, layer_module, mask_zero):
    inputs = lib.Input((5,))
    x = layer_module.Embedding(9, 4, mask_zero=mask_zero)(inputs)
    return lib.Model(inputs, layer_module.Dense(2)(x))


def test_padded_steps_leave_the_loss_alone_as_in_keras(real_keras, rng):
    x = rng.integers(1, 9, (6, 5)).astype("float32")
    x[:, 3:] = 0
    y = rng.standard_normal((6, 5, 2)).astype("float32")
    y_changed = y.copy()
    y_changed[:, 3:] += 10.0
    ours = _sequence_model(keras, layers, True)
    ours.compile(optimizer="sgd", loss="mse")
    theirs = _sequence_model(real_keras, real_keras.layers, True)
    theirs.compile(optimizer="sgd", loss="mse")
    theirs.set_weights(ours.get_weights())
    ours_loss = ours.evaluate(x, y, verbose=0)
    assert ours.evaluate(x, y_changed, verbose=0) == pytest.approx(ours_loss, rel=1e-6)
    assert ours_loss == pytest.approx(theirs.evaluate(x, y, verbose=0), rel=1e-5)


# ---- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("make,error,message", [
    (lambda: layers.Embedding(0, 3, name="e"), ValueError, "Embedding 'e': input_dim must be a positive integer"),
    (lambda: layers.Embedding(3, 2.5, name="e"), ValueError, "Embedding 'e': output_dim must be a positive"),
    (lambda: layers.Embedding(3, 2, embeddings_regularizer="l2", name="e"), NotImplementedError,
     "'e': embeddings_regularizer not supported"),
    (lambda: layers.Embedding(3, 2, lora_rank=4, name="e"), NotImplementedError, "'e': lora_rank not supported"),
    (lambda: layers.Masking("x", name="m"), TypeError, "Masking 'm': mask_value must be a number"),
])
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("layer,shape,message", [
    (layers.Embedding(5, 2, mask_zero=True, name="e"), (3, 2), "Embedding 'e': mask_zero=True needs indices of shape"),
    (layers.Masking(name="m"), (3,), "Masking 'm': expected an input of shape \\(batch, timesteps, features\\)"),
])
def test_wrong_rank_raises_naming_the_layer(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer(keras.Input(shape))


@pytest.mark.parametrize("bad", [7.0, -1.0, np.nan])
def test_an_index_outside_the_table_raises_naming_the_layer_on_the_cpu(bad, rng):
    model = _sequence_model(keras, layers, False)
    model.layers[1].name = "words"
    model.compile(optimizer="sgd", loss="mse")
    x = rng.integers(0, 7, (4, 5)).astype("float32")
    x[2, 1] = bad
    message = "Embedding 'words': 1 input value\\(s\\) outside \\[0, input_dim=9\\)"
    if bad == 7.0:
        x[2, 1] = 9.0
    with pytest.raises(ValueError, match=message):
        model.fit(x, np.zeros((4, 5, 2)), verbose=0)
    with pytest.raises(ValueError, match=message):
        model.predict(x, verbose=0)
    x[2, 1] = 0
    model.predict(x, verbose=0)  # the counter was reset


def test_an_index_outside_the_table_raises_on_cuda():
    with keras.device("cuda"):
        model = _sequence_model(keras, layers, False)
        model.compile(optimizer="sgd", loss="mse")
        x = np.full((2, 5), 9.0, "float32")
        with pytest.raises(ValueError, match="Embedding 'embedding': 10 input value"):
            model.predict(x, verbose=0)


# ---- training on both devices and saving ---------------------------------------------------


def _masked_model():
    keras.utils.set_random_seed(11)
    inputs = keras.Input((4,))
    x = layers.Embedding(6, 3, mask_zero=True)(inputs)
    masked = layers.Masking()(layers.Dense(2, activation="tanh")(x))
    model = keras.Model(inputs, layers.Dense(1)(masked))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def _masked_data():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 6, (4, 4)).astype("float32")
    return x, rng.standard_normal((4, 4, 1)).astype("float32")


def test_training_on_cuda_matches_the_cpu():
    x, y = _masked_data()
    losses = assert_trains_alike_on_both_devices(_masked_model, x, y, batch_size=4)
    assert losses[1] < losses[0]


def test_models_round_trip_through_keras_files(real_keras, tmp_path, rng):
    x, y = _masked_data()
    model = _masked_model()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "ours.keras")
    loaded = keras.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    theirs = real_keras.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
