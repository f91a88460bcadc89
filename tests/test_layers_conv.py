"""Conv1D, Conv2D and Conv2DTranspose: gradient checks in float64, Keras 3
parity, shapes, configs, errors, and training on both devices."""

import os

import numpy as np
import pytest

import nkeras as keras
from nkeras.layers import Dense, Flatten, Reshape
from nkeras.layers.convolutional import Conv1D, Conv2D, Conv2DTranspose
from tests.layer_check import check_layer_gradients

os.environ.setdefault("KERAS_BACKEND", "jax")


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (lambda: Conv2D(3, 3), (2, 5, 6, 2)),
        (lambda: Conv2D(3, (3, 2), strides=2, padding="same", activation="tanh"), (2, 5, 6, 2)),
        (lambda: Conv2D(2, 3, dilation_rate=2, activation="gelu", use_bias=False), (1, 6, 7, 3)),
        (lambda: Conv2D(4, 1, strides=(1, 2), activation="sigmoid"), (2, 3, 5, 3)),
        (lambda: Conv2D(3, 2, padding="same", activation="softmax"), (1, 4, 3, 2)),
        (lambda: Conv2D(8, 3, padding="same", activation="relu"), (1, 5, 6, 8)),
        (lambda: Conv2D(9, 3, activation="tanh", use_bias=False), (2, 6, 5, 8)),
        (lambda: Conv1D(2, 3, padding="causal", dilation_rate=2, activation="relu"), (2, 7, 3)),
        (lambda: Conv1D(3, 4, strides=3, padding="same", activation="elu"), (2, 8, 2)),
        (lambda: Conv1D(2, 2, use_bias=False), (1, 5, 1)),
        (lambda: Conv2DTranspose(2, 3), (2, 3, 4, 2)),
        (
            lambda: Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1, activation="sigmoid"),
            (2, 3, 4, 2),
        ),
        (lambda: Conv2DTranspose(3, (2, 3), strides=(1, 2), use_bias=False, activation="softmax"), (1, 3, 3, 2)),
        (lambda: Conv2DTranspose(2, 3, dilation_rate=(2, 1), padding="same", activation="silu"), (1, 4, 3, 3)),
    ],
)
def test_gradients(layer, input_shape, float64, rng):
    check_layer_gradients(layer(), input_shape, rng)


def _parity(real_keras, ours, theirs, x, rng, atol=1e-5):
    ours(keras.Input(x.shape[1:]))
    weights = [rng.standard_normal(w.shape).astype("float32") * 0.3 for w in ours.weights]
    ours.set_weights(weights)
    theirs.build((None,) + x.shape[1:])
    theirs.set_weights(weights)
    expected = np.asarray(theirs(x))
    result = ours(x)
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=atol)


@pytest.mark.parametrize(
    "arguments",
    [
        {"filters": 3, "kernel_size": 3},
        {"filters": 3, "kernel_size": (2, 3), "strides": 2, "padding": "same"},
        {"filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "same", "activation": "relu"},
        {"filters": 2, "kernel_size": (3, 1), "strides": (2, 3), "padding": "same", "activation": "tanh",
         "use_bias": False},
    ],
)
def test_conv2d_matches_keras(real_keras, arguments, rng):
    x = rng.standard_normal((2, 7, 8, 3)).astype("float32")
    _parity(real_keras, Conv2D(**arguments), real_keras.layers.Conv2D(**arguments), x, rng)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_winograd_conv2d_matches_keras(real_keras, padding, rng):
    x = rng.standard_normal((2, 9, 10, 16)).astype("float32")
    arguments = {"filters": 20, "kernel_size": 3, "padding": padding, "activation": "relu"}
    # Winograd's transforms round more than a direct sum: ~1e-5 of the output's scale.
    _parity(real_keras, Conv2D(**arguments), real_keras.layers.Conv2D(**arguments), x, rng, atol=1e-4)


@pytest.mark.parametrize(
    "layer, channels, winograd",
    [
        (lambda: Conv2D(8, 3), 8, True),
        (lambda: Conv2D(16, 3, padding="same"), 32, True),
        (lambda: Conv2D(16, 3), 4, False),
        (lambda: Conv2D(4, 3), 16, False),
        (lambda: Conv2D(16, 3, strides=2), 16, False),
        (lambda: Conv2D(16, 3, dilation_rate=2), 16, False),
        (lambda: Conv2D(16, (3, 2)), 16, False),
    ],
)
def test_algorithm_is_chosen_by_shape(layer, channels, winograd):
    layer = layer()
    layer(keras.Input((9, 9, channels)))
    state = layer.state_shapes([(4, 9, 9, channels)], training=True)
    assert ("v" in state) == winograd and ("cols" in state) != winograd


@pytest.mark.parametrize(
    "arguments",
    [
        {"filters": 3, "kernel_size": 3, "padding": "causal"},
        {"filters": 3, "kernel_size": 4, "strides": 2, "padding": "same"},
        {"filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "causal", "activation": "relu"},
        {"filters": 2, "kernel_size": 2, "strides": 3},
    ],
)
def test_conv1d_matches_keras(real_keras, arguments, rng):
    x = rng.standard_normal((2, 9, 2)).astype("float32")
    _parity(real_keras, Conv1D(**arguments), real_keras.layers.Conv1D(**arguments), x, rng)


TRANSPOSE_ARGUMENTS = [
    {"filters": 3, "kernel_size": 3},
    {"filters": 3, "kernel_size": 3, "strides": 2},
    {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"},
    {"filters": 2, "kernel_size": (2, 3), "strides": (2, 3), "padding": "same"},
    {"filters": 2, "kernel_size": 4, "strides": 2, "padding": "same", "output_padding": 1},
    {"filters": 2, "kernel_size": 3, "strides": 3, "output_padding": (2, 1)},
    {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same", "output_padding": 0},
    {"filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "same"},
    {"filters": 2, "kernel_size": 2, "dilation_rate": (2, 1)},
    {"filters": 2, "kernel_size": 1, "strides": 3},
    {"filters": 2, "kernel_size": 2, "strides": 3, "padding": "same"},
    {"filters": 4, "kernel_size": 5, "strides": 2, "padding": "same", "output_padding": (1, 0),
     "activation": "sigmoid"},
]


@pytest.mark.parametrize("arguments", TRANSPOSE_ARGUMENTS)
def test_conv2d_transpose_matches_keras(real_keras, arguments, rng):
    x = rng.standard_normal((2, 4, 5, 3)).astype("float32")
    _parity(real_keras, Conv2DTranspose(**arguments), real_keras.layers.Conv2DTranspose(**arguments), x, rng)


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("strides", [1, 2, 3])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv2d_transpose_output_shape_is_keras(real_keras, kernel_size, strides, padding):
    shape = (None, 5, 4, 3)
    for output_padding in [None] + list(range(strides)):
        arguments = {
            "filters": 2, "kernel_size": kernel_size, "strides": strides, "padding": padding,
            "output_padding": output_padding,
        }
        expected = tuple(real_keras.layers.Conv2DTranspose(**arguments).compute_output_shape(shape))
        assert Conv2DTranspose(**arguments).compute_output_shape(shape) == expected, arguments


@pytest.mark.parametrize(
    "ours, theirs, input_shape",
    [
        (Conv1D, "Conv1D", (9, 3)),
        (Conv2D, "Conv2D", (7, 6, 3)),
        (Conv2DTranspose, "Conv2DTranspose", (7, 6, 3)),
    ],
)
def test_weights_and_config_keys_are_keras(real_keras, ours, theirs, input_shape):
    layer, reference = ours(4, 3), getattr(real_keras.layers, theirs)(4, 3)
    layer(keras.Input(input_shape))
    reference.build((None,) + input_shape)
    assert [(w.name, w.shape) for w in layer.weights] == [(w.name, tuple(w.shape)) for w in reference.weights]
    unsupported = {
        "kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint"
    }
    assert set(layer.get_config()) == set(reference.get_config()) - unsupported
    config, keras_config = layer.get_config(), reference.get_config()
    for key in ("kernel_size", "strides", "padding", "data_format", "dilation_rate", "activation", "use_bias"):
        assert config[key] == keras_config[key], key


def test_output_shapes():
    assert Conv2D(5, 3)(keras.Input((28, 28, 1))).shape == (None, 26, 26, 5)
    assert Conv2D(5, (3, 2), strides=2, padding="same")(keras.Input((7, 8, 2))).shape == (None, 4, 4, 5)
    assert Conv1D(4, 3, padding="causal", dilation_rate=4)(keras.Input((10, 2))).shape == (None, 10, 4)
    assert Conv1D(4, 3, strides=2)(keras.Input((10, 2))).shape == (None, 4, 4)
    assert Conv2DTranspose(3, 3, strides=2, padding="same")(keras.Input((5, 6, 2))).shape == (None, 10, 12, 3)


def test_configs_round_trip():
    for layer in [
        Conv2D(4, (3, 2), strides=2, padding="same", dilation_rate=1, activation="relu", use_bias=False, name="c"),
        Conv1D(3, 5, padding="causal", dilation_rate=2, kernel_initializer="he_normal"),
        Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1, bias_initializer="ones"),
    ]:
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config


def test_eager_call_matches_a_numpy_convolution(rng):
    layer = Conv2D(4, (2, 3), activation="relu")
    x = rng.standard_normal((2, 5, 6, 3)).astype("float32")
    y = layer(x)
    kernel, bias = layer.get_weights()
    windows = np.lib.stride_tricks.sliding_window_view(x, (2, 3), axis=(1, 2))
    expected = np.maximum(np.einsum("bhwcij,ijcf->bhwf", windows, kernel) + bias, 0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: Conv2D(0, 3), ValueError, "filters must be a positive integer"),
        (lambda: Conv2D(2, 0), ValueError, "kernel_size must be a positive"),
        (lambda: Conv2D(2, (3, 3, 3)), ValueError, "kernel_size must be a positive integer or a tuple of 2"),
        (lambda: Conv2D(2, 3, strides=0), ValueError, "strides must be a positive"),
        (lambda: Conv1D(2, 3, dilation_rate=-1), ValueError, "dilation_rate must be a positive"),
        (lambda: Conv2D(2, 3, strides=2, dilation_rate=2), ValueError, "strides > 1 is not supported together"),
        (lambda: Conv2D(2, 3, padding="causal"), ValueError, "padding must be one of"),
        (lambda: Conv2DTranspose(2, 3, padding="full"), ValueError, "padding must be one of"),
        (lambda: Conv2D(2, 3, data_format="channels_first"), ValueError, "channels_last"),
        (lambda: Conv2D(2, 3, groups=2), NotImplementedError, "groups=2 not supported"),
        (lambda: Conv1D(2, 3, groups=0), ValueError, "groups must be a positive integer"),
        (lambda: Conv2D(2, 3, kernel_regularizer="l2"), NotImplementedError, "kernel_regularizer not supported"),
        (lambda: Conv2DTranspose(2, 3, bias_constraint="non_neg"), NotImplementedError, "bias_constraint"),
        (lambda: Conv2DTranspose(2, 3, strides=2, output_padding=2), ValueError, "output_padding must be less than"),
        (lambda: Conv2D(2, 3, activation="nope"), ValueError, "nope"),
    ],
)
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bad_inputs_name_the_layer():
    with pytest.raises(ValueError, match="'small'.*kernel_size \\(5, 5\\).*larger than the input"):
        Conv2D(2, 5, name="small")(keras.Input((4, 6, 1)))
    with pytest.raises(ValueError, match="'dilated'.*dilated to 5"):
        Conv1D(2, 3, dilation_rate=2, name="dilated")(keras.Input((4, 1)))
    Conv2D(2, 5, padding="same")(keras.Input((4, 3, 1)))
    with pytest.raises(ValueError, match="'rank'.*expected an input of rank 4"):
        Conv2D(2, 3, name="rank")(keras.Input((8, 3)))
    with pytest.raises(ValueError, match="'rank1'.*expected an input of rank 3"):
        Conv1D(2, 3, name="rank1")(keras.Input((8, 8, 3)))
    layer = Conv2D(2, 3, name="channels")
    layer(keras.Input((8, 8, 3)))
    with pytest.raises(ValueError, match="'channels'.*expected 3 input channels"):
        layer(keras.Input((8, 8, 4)))
    with pytest.raises(ValueError, match="'channels'.*larger than the input"):
        layer(keras.Input((2, 8, 3)))
    transpose = Conv2DTranspose(2, 3, name="up")
    transpose(keras.Input((4, 4, 2)))
    with pytest.raises(ValueError, match="'up'.*expected 2 input channels"):
        transpose(keras.Input((4, 4, 3)))
    with pytest.raises(ValueError, match="'empty'.*empty output"):
        Conv2DTranspose(2, 2, padding="same", output_padding=0, name="empty")(keras.Input((1, 3, 2)))


def _convnet():
    """Conv2D first (no input gradient), Conv2DTranspose, then Conv1D over the
    pixels: every layer in one small model, since the simulator is slow."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input(shape=(5, 5, 2)),
        Conv2D(2, 3, activation="relu"),
        Conv2DTranspose(2, 3, activation="tanh"),
        Reshape((25, 2)),
        Conv1D(3, 3, strides=2, padding="causal"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mean_squared_error")
    return model


def test_training_decreases_the_loss_identically_on_cpu_and_cuda(rng):
    x = rng.standard_normal((4, 5, 5, 2)).astype("float32")
    y = rng.standard_normal((4, 13, 3)).astype("float32")
    histories = {}
    for device in ("cpu", "cuda"):
        with keras.device(device):
            model = _convnet()
        histories[device] = model.fit(x, y, batch_size=4, epochs=2, verbose=0).history["loss"]
    assert histories["cpu"][-1] < histories["cpu"][0]
    np.testing.assert_allclose(histories["cuda"], histories["cpu"], rtol=1e-5, atol=1e-6)


def test_winograd_layers_train(rng):
    """Winograd's transforms live in the plan's state from forward to backward."""
    keras.utils.set_random_seed(5)
    model = keras.Sequential([
        keras.Input(shape=(6, 6, 8)),
        Conv2D(8, 3, padding="same", activation="relu"),
        Conv2D(8, 3, activation="relu"),
        Flatten(),
        Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((32, 6, 6, 8)).astype("float32")
    y = rng.integers(0, 3, 32)
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0).history["loss"]
    assert history[-1] < 0.7 * history[0]
