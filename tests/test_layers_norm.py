"""BatchNormalization, LayerNormalization, PReLU and spatial dropout:
gradient checks in float64, Keras 3 parity (weights, configs, forward,
training with moving statistics), errors, and training on both devices."""


import numpy as np
import pytest

import nkeras as keras
from nkeras.layers import Dense, Flatten
from nkeras.layers.activations import PReLU
from nkeras.layers.normalization import BatchNormalization, LayerNormalization
from nkeras.layers.regularization import SpatialDropout1D, SpatialDropout2D
from nkeras.saving.serialization import deserialize_layer
from tests.layer_check import check_layer_gradients, run_layer


def _check_with_positive_variance(layer, input_shape, rng, training):
    """check_layer_gradients draws every weight from a normal distribution;
    the moving variance of an inference-mode batch norm must stay positive."""
    layer.build((None,) + tuple(input_shape[1:]))
    variance = layer.moving_variance
    assign = variance.assign
    variance.assign = lambda value: assign(np.abs(value) + 0.5)
    check_layer_gradients(layer, input_shape, rng, training=training)


# ---- gradients ----------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"scale": False}, {"center": False}, {"scale": False, "center": False}])
@pytest.mark.parametrize("input_shape", [(7, 5), (3, 2, 2, 3)])
def test_batch_norm_gradients_with_batch_statistics(options, input_shape, float64, rng):
    check_layer_gradients(BatchNormalization(momentum=0.7, **options), input_shape, rng)


@pytest.mark.parametrize("options", [{}, {"scale": False, "center": False}])
def test_batch_norm_gradients_with_moving_statistics(options, float64, rng):
    _check_with_positive_variance(BatchNormalization(**options), (6, 4), rng, training=False)


def test_frozen_batch_norm_uses_moving_statistics_in_training(float64, rng):
    layer = BatchNormalization(trainable=False)
    _check_with_positive_variance(layer, (6, 2, 3), rng, training=True)
    x = rng.standard_normal((6, 2, 3))
    moving = [w.numpy() for w in layer.weights]
    _, outputs, _ = run_layer(layer, [x], training=True)
    _, expected, _ = run_layer(layer, [x], training=False)
    np.testing.assert_array_equal(outputs[0], expected[0])
    for variable, before in zip(layer.weights, moving):
        np.testing.assert_array_equal(variable.numpy(), before)


@pytest.mark.parametrize("options", [{}, {"scale": False}, {"center": False}, {"scale": False, "center": False}])
@pytest.mark.parametrize("input_shape", [(1, 5), (4, 3, 6)])
def test_layer_norm_gradients(options, input_shape, float64, rng):
    check_layer_gradients(LayerNormalization(**options), input_shape, rng)


@pytest.mark.parametrize("shared_axes", [None, [1, 2], [3], [2], [1], [1, 2, 3], 2])
def test_prelu_gradients(shared_axes, float64, rng):
    check_layer_gradients(PReLU(shared_axes=shared_axes), (3, 4, 2, 3), rng)


def test_prelu_gradients_on_rank_2(float64, rng):
    check_layer_gradients(PReLU(), (4, 5), rng)


def test_spatial_dropout_gradients_with_a_fixed_mask(float64, rng):
    check_layer_gradients(SpatialDropout2D(0.4, seed=3), (4, 2, 3, 5), rng)
    check_layer_gradients(SpatialDropout1D(0.4, seed=3), (4, 3, 5), rng)


# ---- behaviour -------------------------------------------------------------------


def test_spatial_dropout_drops_channels_in_training_only(rng):
    layer = SpatialDropout2D(0.5, seed=1)
    x = rng.standard_normal((16, 3, 4, 32)) + 5
    np.testing.assert_array_equal(layer(x), x.astype("float32"))
    assert layer.output_is_view(False) and not layer.output_is_view(True)
    _, outputs, state = run_layer(layer, [x], training=True)
    dropped = state["mask"] == 0
    assert 0.35 < dropped.mean() < 0.65
    y = outputs[0].reshape(16, -1, 32)
    assert np.all(y.transpose(0, 2, 1)[dropped] == 0)
    np.testing.assert_allclose(y.transpose(0, 2, 1)[~dropped], 2 * x.reshape(16, -1, 32).transpose(0, 2, 1)[~dropped])


def test_spatial_dropout_at_rate_0_passes_the_gradient_to_an_input_with_other_readers(rng):
    def fit(with_dropout):
        keras.utils.set_random_seed(2)
        inputs = keras.Input((3, 2))
        hidden = Dense(2)(inputs)
        dropped = SpatialDropout1D(0.0, seed=1)(hidden) if with_dropout else hidden
        model = keras.Model(inputs, [Dense(1)(dropped), Flatten()(hidden)])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, [np.ones((4, 3, 1)), np.ones((4, 6))], epochs=2, verbose=0)
        return model.get_weights()

    x = rng.standard_normal((4, 3, 2)).astype("float32")
    for got, want in zip(fit(True), fit(False)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_batch_norm_predict_and_evaluate_use_the_moving_statistics(rng):
    x = (rng.standard_normal((32, 4)) * 3 + 2).astype("float32")
    y = rng.standard_normal((32, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), BatchNormalization(momentum=0.5)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    gamma, beta, moving_mean, moving_variance = model.get_weights()
    assert np.all(np.abs(moving_mean) > 0.1)
    expected = (x - moving_mean) / np.sqrt(moving_variance + 1e-3) * gamma + beta
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.layers[0](x), expected, rtol=1e-5, atol=1e-5)
    mse = np.mean((expected - y) ** 2)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), mse, rtol=1e-5)
    np.testing.assert_array_equal(model.get_weights()[2], moving_mean)


def test_frozen_batch_norm_keeps_its_statistics_during_fit(rng):
    x = (rng.standard_normal((16, 3)) + 4).astype("float32")
    model = keras.Sequential([keras.Input((3,)), Dense(3), BatchNormalization()])
    model.layers[1].trainable = False
    model.compile(optimizer="sgd", loss="mse")
    before = model.layers[1].get_weights()
    model.fit(x, x, batch_size=8, epochs=2, verbose=0)
    for got, want in zip(model.layers[1].get_weights(), before):
        np.testing.assert_array_equal(got, want)


# ---- Keras parity ------------------------------------------------------------------


class _OurLayers:
    Dense = Dense
    BatchNormalization = BatchNormalization


LAYERS = [
    ("BatchNormalization", BatchNormalization, {"momentum": 0.9, "epsilon": 1e-2, "center": False}),
    ("BatchNormalization", BatchNormalization, {}),
    ("LayerNormalization", LayerNormalization, {"scale": False}),
    ("LayerNormalization", LayerNormalization, {}),
    ("PReLU", PReLU, {"shared_axes": [1, 2]}),
    ("PReLU", PReLU, {}),
    ("SpatialDropout2D", SpatialDropout2D, {"rate": 0.3, "seed": 4}),
]


@pytest.mark.parametrize("name,ours,options", LAYERS)
def test_weights_configs_and_forward_match_keras(name, ours, options, real_keras, rng):
    shape = (5, 4, 3)
    theirs = getattr(real_keras.layers, name)(**options)
    theirs.build((None,) + shape)
    layer = ours(**options)
    layer.build((None,) + shape)
    assert [(w.name, w.shape, w.trainable) for w in layer.weights] == [
        (w.name, tuple(w.shape), w.trainable) for w in theirs.weights
    ]
    weights = [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.weights]
    layer.set_weights(weights)
    theirs.set_weights(weights)
    x = rng.standard_normal((2,) + shape).astype("float32")
    np.testing.assert_allclose(layer(x), np.asarray(theirs(x)), rtol=1e-5, atol=1e-5)

    # Keras's keys, and a config that each library rebuilds the same layer from.
    config = layer.get_config()
    their_config = getattr(real_keras.layers, name)(**options).get_config()
    assert set(config) <= set(their_config) | {"trainable"}
    assert ours.from_config(config).get_config() == config
    rebuilt = getattr(real_keras.layers, name).from_config(config).get_config()
    for key in set(config) - {"name"}:
        assert rebuilt[key] == their_config[key], key
    # A Keras file's config (every Keras key, initializers as objects) loads.
    entry = real_keras.saving.serialize_keras_object(theirs)
    loaded = deserialize_layer(entry, custom_objects={name: ours})
    assert type(loaded) is ours and loaded.get_config().keys() == config.keys()


def _batch_norm_model(lib, layers):
    return lib.Sequential([
        lib.Input(shape=(5,)),
        layers.Dense(6),
        layers.BatchNormalization(momentum=0.8),
        layers.Dense(3),
    ])


def test_batch_norm_training_matches_keras_step_for_step(real_keras, rng):
    x = (rng.standard_normal((24, 5)) * 2 + 1).astype("float32")
    y = rng.standard_normal((24, 3)).astype("float32")
    theirs = _batch_norm_model(real_keras, real_keras.layers)
    ours = _batch_norm_model(keras, _OurLayers)
    ours.set_weights(theirs.get_weights())
    histories = []
    for model, lib in ((theirs, real_keras), (ours, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse")
        histories.append(model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-4, atol=1e-6)
    for got, want in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0), rtol=1e-4)


# ---- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: BatchNormalization(momentum=1.5), ValueError, "momentum must be a float in \\[0, 1\\]"),
        (lambda: BatchNormalization(epsilon=0), ValueError, "epsilon must be a positive float"),
        (lambda: LayerNormalization(epsilon=-1e-3), ValueError, "epsilon must be a positive float"),
        (lambda: BatchNormalization(gamma_regularizer="l2"), NotImplementedError, "gamma_regularizer not supported"),
        (lambda: BatchNormalization(synchronized=True), NotImplementedError, "synchronized not supported"),
        (lambda: BatchNormalization(renorm=True), NotImplementedError, "renorm not supported"),
        (lambda: BatchNormalization(axis=[1, 2]), NotImplementedError, "only the last axis"),
        (lambda: LayerNormalization(rms_scaling=True), NotImplementedError, "rms_scaling not supported"),
        (lambda: LayerNormalization(beta_constraint="non_neg"), NotImplementedError, "beta_constraint"),
        (lambda: PReLU(alpha_regularizer="l2"), NotImplementedError, "alpha_regularizer not supported"),
        (lambda: SpatialDropout2D(1.0), ValueError, "rate must be a float in \\[0, 1\\)"),
        (lambda: SpatialDropout2D(0.2, data_format="channels_first"), ValueError, "data_format=.channels_last. only"),
    ],
)
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    "layer, shape, error, message",
    [
        (BatchNormalization(axis=1, name="bn"), (4, 3), NotImplementedError, "'bn'.*only the last axis"),
        (BatchNormalization(axis=2, name="bn"), (4, 3), None, None),
        (LayerNormalization(axis=[-1], name="ln"), (4, 3), None, None),
        (LayerNormalization(axis=0, name="ln"), (4, 3), NotImplementedError, "'ln'.*only the last axis"),
        (PReLU(shared_axes=[3], name="p"), (4, 3), ValueError, "'p'.*shared_axes must be axes 1 to 2"),
        (PReLU(shared_axes=[2, 4], name="p"), (2, 3, 4, 5, 6), NotImplementedError, "'p'.*more than two"),
        (SpatialDropout2D(0.3, name="sd"), (4, 3), ValueError, "'sd'.*expected an input of rank 4"),
        (SpatialDropout1D(0.3, name="sd"), (4, 3, 2), ValueError, "'sd'.*expected an input of rank 3"),
    ],
)
def test_bad_inputs_are_rejected_at_build_naming_the_layer(layer, shape, error, message):
    if error is None:
        assert layer(keras.Input(shape)).shape == (None,) + shape
    else:
        with pytest.raises(error, match=message):
            layer(keras.Input(shape))


@pytest.mark.parametrize(
    "layer, built, other, message",
    [
        (BatchNormalization(name="bn"), (4, 3), (4, 5), "'bn'.*3 channels"),
        (LayerNormalization(name="ln"), (3,), (4,), "'ln'.*3 channels"),
        (PReLU(shared_axes=[1], name="p"), (4, 3), (5, 2), "'p'.*expected inputs of shape \\(None, any, 3\\)"),
    ],
)
def test_inputs_that_do_not_fit_the_built_layer_are_rejected(layer, built, other, message):
    layer(keras.Input(built))
    with pytest.raises(ValueError, match=message):
        layer(keras.Input(other))


def test_prelu_shares_alpha_along_an_axis_whose_length_changes(rng):
    layer = PReLU(shared_axes=[2])
    layer(keras.Input((2, 3)))
    alpha = rng.standard_normal((2, 1)).astype("float32")
    layer.set_weights([alpha])
    for shape in [(4, 2, 3), (4, 2, 5)]:
        x = rng.standard_normal(shape).astype("float32")
        np.testing.assert_allclose(layer(x), np.where(x > 0, x, alpha * x), rtol=1e-6)


# ---- training on both devices --------------------------------------------------------


def _vision_model():
    keras.utils.set_random_seed(5)
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        PReLU(alpha_initializer="ones", shared_axes=[1, 2]),
        SpatialDropout2D(0.3),
        BatchNormalization(momentum=0.5),
        Flatten(),
        LayerNormalization(),
        Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return model


def _vision_data():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((8, 6, 6, 2)).astype("float32")
    return x, (x[:, :3].sum(axis=(1, 2, 3)) > 0).astype("int64") + (x[:, 3:, :, 1].sum(axis=(1, 2)) > 0)


def test_a_model_with_every_layer_learns_on_the_cpu():
    x, y = _vision_data()
    losses = _vision_model().fit(x, y, batch_size=4, epochs=15, verbose=0).history["loss"]
    assert losses[-1] < 0.7 * losses[0]


def test_training_on_cuda_matches_the_cpu():
    x, y = _vision_data()
    results = {}
    for device in ("cpu", "cuda"):
        with keras.device(device):
            model = _vision_model()
            history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]
            results[device] = history, model.get_weights(), model.predict(x, batch_size=8, verbose=0)
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-5, atol=1e-6)
    for got, want in zip(results["cuda"][1], results["cpu"][1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(results["cuda"][2], results["cpu"][2], rtol=1e-4, atol=1e-5)
