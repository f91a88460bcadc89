"""DepthwiseConv2D and SeparableConv2D: float64 gradient checks, output
shapes, weights and forward parity with Keras 3, configs, errors, and a
tiny model trained on the CPU and the simulated CUDA device."""


import numpy as np
import pytest

import nkeras as keras
from nkeras.layers.depthwise_convolutional import DepthwiseConv2D, SeparableConv2D
from tests.layer_check import check_layer_gradients


@pytest.mark.parametrize(
    "options, input_shape",
    [
        (dict(kernel_size=3), (2, 5, 4, 3)),
        (dict(kernel_size=(3, 2), strides=2, padding="same", depth_multiplier=2, activation="tanh"), (1, 7, 6, 3)),
        (dict(kernel_size=2, dilation_rate=2, activation="softmax", use_bias=False), (2, 6, 5, 2)),
        (dict(kernel_size=(1, 3), strides=(1, 2), padding="same", depth_multiplier=3, activation="gelu"), (2, 3, 5, 1)),
    ],
)
def test_depthwise_conv2d_gradients(options, input_shape, float64, rng):
    check_layer_gradients(DepthwiseConv2D(**options), input_shape, rng)


@pytest.mark.parametrize(
    "options, input_shape",
    [
        (dict(filters=4, kernel_size=3), (2, 5, 4, 3)),
        (dict(filters=3, kernel_size=(3, 2), strides=2, padding="same", depth_multiplier=2, activation="relu"),
         (1, 7, 6, 3)),
        (dict(filters=2, kernel_size=2, dilation_rate=2, activation="softmax", use_bias=False), (2, 6, 5, 2)),
        (dict(filters=5, kernel_size=3, padding="same", depth_multiplier=2, activation="sigmoid"), (2, 3, 4, 1)),
    ],
)
def test_separable_conv2d_gradients(options, input_shape, float64, rng):
    check_layer_gradients(SeparableConv2D(**options), input_shape, rng)


def test_output_shapes_weights_and_params():
    inputs = keras.Input(shape=(9, 8, 3))
    depthwise = DepthwiseConv2D((3, 2), strides=2, padding="same", depth_multiplier=2)
    assert depthwise(inputs).shape == (None, 5, 4, 6)
    assert [(w.name, w.shape) for w in depthwise.weights] == [("kernel", (3, 2, 3, 2)), ("bias", (6,))]
    assert depthwise.count_params() == 3 * 2 * 3 * 2 + 6
    separable = SeparableConv2D(4, 3, dilation_rate=2, depth_multiplier=2)
    assert separable(inputs).shape == (None, 5, 4, 4)
    assert [(w.name, w.shape) for w in separable.weights] == [
        ("depthwise_kernel", (3, 3, 3, 2)), ("pointwise_kernel", (1, 1, 6, 4)), ("bias", (4,))
    ]
    assert DepthwiseConv2D(3, use_bias=False)(inputs).shape == (None, 7, 6, 3)
    assert SeparableConv2D(2, 5, padding="same", use_bias=False)(keras.Input((3, 3, 1))).shape == (None, 3, 3, 2)


def test_eager_call_matches_numpy(rng):
    layer = DepthwiseConv2D(2, depth_multiplier=2, activation="relu")
    x = rng.standard_normal((2, 3, 3, 2)).astype("float32")
    y = layer(x)
    kernel, bias = layer.get_weights()
    expected = np.zeros((2, 2, 2, 2, 2))
    for ki in range(2):
        for kj in range(2):
            expected += x[:, ki:ki + 2, kj:kj + 2, :, None] * kernel[ki, kj]
    np.testing.assert_allclose(y, np.maximum(expected.reshape(2, 2, 2, 4) + bias, 0), rtol=1e-5, atol=1e-6)


def test_configs_round_trip():
    for layer in [
        DepthwiseConv2D((3, 1), strides=2, padding="SAME", depth_multiplier=2, activation="relu", use_bias=False,
                        depthwise_initializer="he_normal", name="dw"),
        SeparableConv2D(7, 2, dilation_rate=(2, 1), activation="gelu", pointwise_initializer="ones",
                        data_format="channels_last"),
    ]:
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
    assert config["padding"] == "valid" and config["kernel_size"] == (2, 2)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: DepthwiseConv2D(0), "kernel_size must be a positive integer"),
        (lambda: DepthwiseConv2D((3, 3, 3)), "kernel_size must be"),
        (lambda: DepthwiseConv2D(3, strides=0), "strides must be"),
        (lambda: DepthwiseConv2D(3, depth_multiplier=0), "depth_multiplier must be a positive integer"),
        (lambda: DepthwiseConv2D(3, strides=2, dilation_rate=2), "strides > 1 cannot be combined"),
        (lambda: DepthwiseConv2D(3, padding="causal"), "padding must be one of"),
        (lambda: DepthwiseConv2D(3, data_format="channels_first"), "channels_last"),
        (lambda: DepthwiseConv2D(3, depthwise_regularizer="l2"), "depthwise_regularizer not supported"),
        (lambda: DepthwiseConv2D(3, activation="nope"), "nope"),
        (lambda: SeparableConv2D(0, 3), "filters must be a positive integer"),
        (lambda: SeparableConv2D(2, 3, pointwise_constraint="non_neg"), "pointwise_constraint not supported"),
        (lambda: SeparableConv2D(2, 3, strides=(1, 2), dilation_rate=(2, 1)), "strides > 1 cannot be combined"),
    ],
)
def test_bad_arguments_name_the_layer(make, message):
    with pytest.raises((ValueError, NotImplementedError), match=message):
        make()


@pytest.mark.parametrize("make", [
    lambda **options: DepthwiseConv2D(3, name="conv", **options),
    lambda **options: SeparableConv2D(2, 3, name="conv", **options),
])
def test_bad_inputs_name_the_layer(make):
    with pytest.raises(ValueError, match="'conv'.*rank 4"):
        make()(keras.Input((5, 5)))
    with pytest.raises(ValueError, match="'conv'.*larger than the input"):
        make()(keras.Input((2, 5, 3)))
    with pytest.raises(ValueError, match="'conv'.*dilated to 5.*larger than the input"):
        make(dilation_rate=2)(keras.Input((9, 4, 1)))
    layer = make()
    layer(keras.Input((5, 5, 3)))
    with pytest.raises(ValueError, match="'conv'.*expected 3 input channels"):
        layer(keras.Input((5, 5, 4)))
    assert make(padding="same")(keras.Input((2, 1, 3))).shape[1:3] == (2, 1)


# ---- Keras 3 parity ----------------------------------------------------------


PARITY = [
    dict(kernel_size=3),
    dict(kernel_size=(2, 3), strides=(2, 1), padding="same", depth_multiplier=2, activation="relu", use_bias=False),
    dict(kernel_size=4, padding="same", dilation_rate=2, activation="softmax"),
]


@pytest.mark.parametrize("options", PARITY, ids=range(len(PARITY)))
@pytest.mark.parametrize("separable", [False, True], ids=["depthwise", "separable"])
def test_forward_matches_keras(options, separable, real_keras, rng):
    x = rng.standard_normal((2, 7, 8, 3)).astype("float32")
    if separable:
        theirs, ours = real_keras.layers.SeparableConv2D(5, **options), SeparableConv2D(5, **options)
    else:
        theirs, ours = real_keras.layers.DepthwiseConv2D(**options), DepthwiseConv2D(**options)
    theirs.build((None, 7, 8, 3))
    ours(keras.Input((7, 8, 3)))
    assert [(w.name, w.shape) for w in ours.weights] == [(w.name, tuple(w.shape)) for w in theirs.weights]
    weights = [rng.standard_normal(w.shape).astype("float32") for w in ours.weights]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    expected = np.asarray(theirs(x))
    np.testing.assert_allclose(ours(x), expected, rtol=1e-5, atol=1e-5)
    assert ours.compute_output_shape((None, 7, 8, 3)) == tuple(theirs.compute_output_shape((None, 7, 8, 3)))
    config = theirs.get_config()
    for key, value in ours.get_config().items():
        # nkeras names a default SeparableConv2D "separable_conv2_d", Keras "separable_conv2d".
        if key.endswith("_initializer") or key in ("dtype", "name"):
            continue
        assert value == config[key], key


# ---- training on both devices ------------------------------------------------


def _model():
    keras.utils.set_random_seed(11)
    model = keras.Sequential([
        keras.Input(shape=(6, 6, 2)),
        DepthwiseConv2D(3, depth_multiplier=2, activation="relu"),
        SeparableConv2D(2, 3, padding="same", strides=2, activation="tanh"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    return model


def test_tiny_model_trains_on_cpu_and_cuda_alike(rng):
    """Three steps on the CPU and on the simulated GPU give the same losses."""
    x = rng.standard_normal((8, 6, 6, 2)).astype("float32")
    y = rng.standard_normal((8, 2, 2, 2)).astype("float32")
    histories = {}
    for device in ("cpu", "cuda"):
        with keras.device(device):
            model = _model()
        histories[device] = model.fit(x, y, batch_size=8, epochs=3, verbose=0).history["loss"]
    assert histories["cpu"][2] < histories["cpu"][1] < histories["cpu"][0]
    np.testing.assert_allclose(histories["cuda"], histories["cpu"], rtol=1e-5, atol=1e-6)


@pytest.fixture
def registered(monkeypatch):
    """The layers as the package will export them (nkeras.layers)."""
    from nkeras import layers

    for cls in (DepthwiseConv2D, SeparableConv2D):
        monkeypatch.setattr(layers, cls.__name__, cls, raising=False)
    monkeypatch.setattr(layers, "__all__", sorted(set(layers.__all__) | {"DepthwiseConv2D", "SeparableConv2D"}))


def test_keras_files_round_trip_with_keras(registered, real_keras, rng, tmp_path):
    x = rng.standard_normal((4, 6, 6, 2)).astype("float32")
    ours = keras.Sequential([
        keras.Input(shape=(6, 6, 2)),
        DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu", depthwise_initializer="he_normal"),
        SeparableConv2D(3, (3, 2), strides=2, use_bias=False, pointwise_initializer="ones"),
    ])
    ours.save(tmp_path / "ours.keras")
    theirs = real_keras.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), ours.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-5)
    theirs.save(tmp_path / "theirs.keras")
    back = keras.models.load_model(tmp_path / "theirs.keras")
    assert [type(layer) for layer in back.layers] == [DepthwiseConv2D, SeparableConv2D]
    np.testing.assert_allclose(back.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
