"""Plan-time fusion: which nodes fuse, and that a fused plan trains and
predicts as the layers run apart do."""

import numpy as np
import pytest

import nkeras as keras
import nkeras.fusion
from nkeras import layers
from nkeras.backend import get_device
from nkeras.fusion import ConvMaxPooling, FusedNode
from nkeras.graph import Plan


def _first_block(conv=None, pool=None, shape=(10, 9, 1), after=None):
    """Conv2D then MaxPooling2D on the input, then a softmax classifier."""
    inputs = keras.Input(shape)
    conv = conv or layers.Conv2D(4, 3, activation="relu")
    pool = pool or layers.MaxPooling2D(2)
    x = pool(conv(inputs))
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(x))


def _fused_layers(model, training=True, input_grads=False):
    plan = Plan(model._graph, 4, get_device("cpu"), training, input_grads=input_grads)
    return [node.layer for node in plan.nodes if isinstance(node, FusedNode)]


@pytest.mark.parametrize("conv", [
    dict(filters=4, kernel_size=3, activation="relu"),
    dict(filters=4, kernel_size=3, padding="same"),
    dict(filters=4, kernel_size=(3, 3), use_bias=False, activation="relu"),
])
def test_first_conv_and_pooling_fuse(conv):
    model = _first_block(layers.Conv2D(**conv, name="conv"), layers.MaxPooling2D(2, name="pool"))
    for training in (True, False):
        (fused,) = _fused_layers(model, training)
        assert isinstance(fused, ConvMaxPooling)
        assert fused.name == "conv+pool"
        assert fused.trainable_weights == model.get_layer("conv").trainable_weights


@pytest.mark.parametrize("conv,pool,shape", [
    (dict(activation="tanh"), {}, (10, 9, 1)),
    (dict(strides=2), {}, (10, 9, 1)),
    (dict(dilation_rate=2), {}, (10, 9, 1)),
    (dict(kernel_size=2), {}, (10, 9, 1)),
    ({}, dict(strides=1), (10, 9, 1)),
    ({}, dict(pool_size=3), (10, 9, 1)),
    ({}, dict(padding="same"), (10, 9, 1)),
    ({}, {}, (10, 9, 2)),
])
def test_other_convolutions_and_poolings_do_not_fuse(conv, pool, shape):
    conv = {"filters": 4, "kernel_size": 3, "activation": "relu", **conv}
    model = _first_block(layers.Conv2D(**conv), layers.MaxPooling2D(**{"pool_size": 2, **pool}), shape)
    assert _fused_layers(model) == []


@pytest.mark.parametrize("input_grads", [False, True])
def test_winograd_convolution_and_pooling_fuse_anywhere(input_grads):
    """A Winograd convolution (3x3 between 8 or more channels) fuses with its
    pooling wherever it is, input gradient or not."""
    inputs = keras.Input((12, 12, 8))
    x = layers.MaxPooling2D(2, name="pool")(layers.Conv2D(8, 3, padding="same", name="conv")(inputs))
    x = layers.MaxPooling2D(2, name="pool_1")(layers.Conv2D(16, 3, activation="relu", name="conv_1")(x))
    model = keras.Model(inputs, layers.Flatten()(x))
    assert [layer.name for layer in _fused_layers(model, input_grads=input_grads)] == ["conv+pool", "conv_1+pool_1"]


def test_no_fusion_where_the_convolution_output_is_read_elsewhere_or_needs_an_input_gradient():
    inputs = keras.Input((8, 8, 1))
    conv = layers.Conv2D(2, 3, activation="relu")(inputs)
    pooled = layers.Flatten()(layers.MaxPooling2D(2)(conv))
    also = layers.Flatten()(conv)
    model = keras.Model(inputs, [pooled, also])
    assert _fused_layers(model) == []
    model = keras.Model(inputs, [pooled, conv])
    assert _fused_layers(model) == []
    model = _first_block()
    assert _fused_layers(model, input_grads=True) == []
    # Not on the model's input: after another convolution.
    inputs = keras.Input((10, 10, 1))
    x = layers.Conv2D(1, 1)(inputs)
    x = layers.MaxPooling2D(2)(layers.Conv2D(2, 3, activation="relu")(x))
    assert _fused_layers(keras.Model(inputs, layers.Flatten()(x))) == []


def _train(padding, use_bias, fused):
    """Both fused pairs: a one-channel first block and a Winograd block."""
    rng = np.random.default_rng(0)
    x = rng.random((24, 11, 10, 1)).astype("float32")
    y = rng.integers(0, 3, 24)
    keras.utils.set_random_seed(7)
    model = keras.Sequential([
        keras.Input((11, 10, 1)),
        layers.Conv2D(8, 3, padding=padding, use_bias=use_bias, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(8, 3, padding="same", use_bias=use_bias, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])
    # SGD: Adam's first steps are about lr * sign(g), which turns float32
    # rounding in a near-zero gradient into a whole step.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    assert len(_fused_layers(model)) == (2 if fused else 0)
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0).history["loss"]
    return history, model.get_weights(), model.predict(x, verbose=0)


@pytest.mark.parametrize("padding,use_bias", [("valid", True), ("same", False)])
def test_fused_plan_trains_and_predicts_as_the_layers_apart(padding, use_bias, monkeypatch):
    fused = _train(padding, use_bias, fused=True)
    monkeypatch.setattr(nkeras.fusion, "fuse", lambda graph, input_grads: list(graph.nodes))
    apart = _train(padding, use_bias, fused=False)
    assert fused[0][-1] < fused[0][0]
    np.testing.assert_allclose(fused[0], apart[0], rtol=1e-5)
    for got, want in zip(fused[1], apart[1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fused[2], apart[2], rtol=1e-4, atol=1e-6)


def test_fused_plan_trains_identically_on_cpu_and_cuda(rng):
    x = rng.random((4, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 2, 4)
    histories = {}
    for device in ("cpu", "cuda"):
        with keras.device(device):
            keras.utils.set_random_seed(2)
            model = keras.Sequential([
                keras.Input((6, 6, 1)),
                layers.Conv2D(8, 3, padding="same", activation="relu"),
                layers.MaxPooling2D(2),
                layers.Conv2D(8, 3, padding="same"),
                layers.MaxPooling2D(2),
                layers.Flatten(),
                layers.Dense(2, activation="softmax"),
            ])
            model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
            assert len(_fused_layers(model)) == 2
        histories[device] = model.fit(x, y, batch_size=4, epochs=3, verbose=0).history["loss"]
    assert histories["cpu"][-1] < histories["cpu"][0]
    np.testing.assert_allclose(histories["cuda"], histories["cpu"], rtol=1e-5, atol=1e-6)


def test_fused_convnet_predicts_and_steps_as_keras(real_keras, rng):
    """The classic MNIST convnet (both blocks fused) against Keras on JAX with
    the same weights: the predictions, and the weights after one SGD step."""

    def build(lib):
        return lib.Sequential([
            lib.Input((12, 11, 1)),
            lib.layers.Conv2D(8, 3, activation="relu"),
            lib.layers.MaxPooling2D(2),
            lib.layers.Conv2D(8, 3, padding="same", activation="relu"),
            lib.layers.MaxPooling2D(2),
            lib.layers.Flatten(),
            lib.layers.Dense(3, activation="softmax"),
        ])

    ours, theirs = build(keras), build(real_keras)
    assert len(_fused_layers(ours)) == 2
    theirs.set_weights(ours.get_weights())
    x = rng.random((16, 12, 11, 1)).astype("float32")
    y = rng.integers(0, 3, 16)
    np.testing.assert_allclose(ours.predict(x, verbose=0), np.asarray(theirs.predict(x, verbose=0)), rtol=1e-4,
                               atol=1e-6)
    ours.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    theirs.compile(optimizer=real_keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    ours.train_on_batch(x, y)
    theirs.train_on_batch(x, y)
    for got, want in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-6)
