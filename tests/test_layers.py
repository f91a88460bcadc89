"""Layers: finite-difference gradient checks in float64, shapes, configs, errors."""

import numpy as np
import pytest

import nkeras as keras
from nkeras import layers
from tests.layer_check import check_layer_gradients, run_layer

ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh", "softmax", "gelu", "elu", "selu", "leaky_relu", "silu", "softplus"]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_gradients(activation, float64, rng):
    check_layer_gradients(layers.Dense(5, activation=activation), (4, 3), rng)


def test_dense_without_bias_and_on_rank_3_gradients(float64, rng):
    check_layer_gradients(layers.Dense(3, activation="tanh", use_bias=False), (2, 4, 5), rng)
    check_layer_gradients(layers.Dense(2, activation="relu"), (3, 2, 3), rng)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_layer_gradients(activation, float64, rng):
    check_layer_gradients(layers.Activation(activation), (3, 6), rng)


def test_dropout_gradients_with_a_fixed_mask(float64, rng):
    check_layer_gradients(layers.Dropout(0.4, seed=3), (5, 7), rng)


def test_flatten_and_reshape_gradients(float64, rng):
    check_layer_gradients(layers.Flatten(), (2, 3, 4), rng)
    check_layer_gradients(layers.Reshape((4, 3)), (2, 3, 4), rng)


def test_dense_output_shape_and_weights():
    inputs = keras.Input(shape=(6, 5))
    layer = layers.Dense(3)
    outputs = layer(inputs)
    assert outputs.shape == (None, 6, 3)
    assert [w.name for w in layer.weights] == ["kernel", "bias"]
    assert layer.kernel.shape == (5, 3) and layer.count_params() == 18


def test_dense_eager_call_matches_numpy(rng):
    layer = layers.Dense(4, activation="relu")
    x = rng.standard_normal((3, 5)).astype("float32")
    y = layer(x)
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(y, np.maximum(x @ kernel + bias, 0), rtol=1e-5, atol=1e-6)


def test_dropout_is_identity_at_inference_and_drops_in_training(rng):
    layer = layers.Dropout(0.5, seed=1)
    x = rng.standard_normal((64, 32)) + 5
    np.testing.assert_array_equal(layer(x), x.astype("float32"))
    _, outputs, state = run_layer(layer, [x], training=True)
    assert 0.35 < (state["mask"] == 0).mean() < 0.65


def test_reshape_infers_minus_one():
    assert layers.Reshape((-1, 2))(keras.Input((3, 4))).shape == (None, 6, 2)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: layers.Dense(0), "units must be a positive integer"),
        (lambda: layers.Dense(3, activation="nope"), "nope"),
        (lambda: layers.Dropout(1.0), "rate must be a float in \\[0, 1\\)"),
        (lambda: layers.Reshape((-1, -1)), "at most one -1"),
        (lambda: layers.Dense(2, kernel_regularizer="l2"), "not supported"),
    ],
)
def test_bad_layer_arguments(make, message):
    with pytest.raises((ValueError, NotImplementedError), match=message):
        make()


def test_wrong_input_shape_names_the_layer():
    layer = layers.Dense(3, name="head")
    layer(keras.Input((4,)))
    with pytest.raises(ValueError, match="head.*last dimension 4"):
        layer(keras.Input((5,)))
    with pytest.raises(ValueError, match="reshape"):
        layers.Reshape((5,))(keras.Input((2, 3)))


def test_layer_configs_round_trip():
    for layer in [
        layers.Dense(3, activation="gelu", use_bias=False, name="d"),
        layers.Activation("tanh"),
        layers.Dropout(0.3, seed=2),
        layers.Flatten(),
        layers.Reshape((2, 3)),
    ]:
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config


def test_dropout_at_rate_zero_on_a_shared_tensor_passes_the_gradient_through(rng):
    inputs = keras.Input((3,))
    hidden = layers.Dense(2)(inputs)
    model = keras.Model(inputs, [layers.Dense(1)(layers.Dropout(0.0)(hidden)), layers.Flatten()(hidden)])
    model.compile(optimizer="sgd", loss=["mse", "mse"])
    x = rng.random((8, 3)).astype("float32")
    history = model.fit(x, [rng.random((8, 1)), rng.random((8, 2))], epochs=3, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


def test_default_names_follow_keras():
    assert [layer.name for layer in (layers.Dense(1), layers.Conv2D(1, 1), layers.MaxPooling2D(), layers.PReLU())] == [
        "dense", "conv2d", "max_pooling2d", "p_re_lu"
    ]
