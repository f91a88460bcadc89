"""RepeatVector and Permute: float64 gradient checks, Keras 3 parity,
errors naming the layer, training on both devices and a .keras round trip."""


import numpy as np
import pytest

import nkeras as keras
from devices import assert_trains_alike_on_both_devices
from nkeras import layers
from tests.layer_check import check_layer_gradients, run_layer


@pytest.mark.parametrize("n,features", [(1, 1), (3, 5)])
def test_repeat_vector_gradients_and_values(n, features, float64, rng):
    layer = layers.RepeatVector(n)
    check_layer_gradients(layer, (4, features), rng)
    x = rng.standard_normal((4, features))
    np.testing.assert_array_equal(run_layer(layer, [x])[1][0], np.repeat(x[:, None], n, axis=1))


@pytest.mark.parametrize("dims,shape", [((2, 1), (3, 4)), ((1, 2), (3, 4)), ((3, 1, 2), (2, 3, 4)),
                                        ((2, 4, 1, 3), (2, 3, 1, 2)), ((1,), (5,))])
def test_permute_gradients_and_values(dims, shape, float64, rng):
    layer = layers.Permute(dims)
    check_layer_gradients(layer, (2,) + shape, rng)
    x = rng.standard_normal((2,) + shape)
    np.testing.assert_array_equal(run_layer(layer, [x])[1][0], x.transpose((0,) + dims))


@pytest.mark.parametrize("name,options,shape", [
    ("RepeatVector", {"n": 3}, (4,)),
    ("Permute", {"dims": (2, 1)}, (3, 4)),
    ("Permute", {"dims": (3, 1, 2)}, (2, 3, 4)),
])
def test_forward_and_config_match_keras(name, options, shape, real_keras, rng):
    x = rng.standard_normal((2,) + shape).astype("float32")
    ours = getattr(layers, name)(**options)
    theirs = getattr(real_keras.layers, name)(**options)
    np.testing.assert_array_equal(ours(x), np.asarray(theirs(x)))
    assert ours.compute_output_shape((None,) + shape) == tuple(theirs.compute_output_shape((None,) + shape))
    config = ours.get_config()
    assert set(config) == set(theirs.get_config())
    (key,) = options
    assert getattr(real_keras.layers, name).from_config(config).get_config()[key] == theirs.get_config()[key]


@pytest.mark.parametrize("make,message", [
    (lambda: layers.RepeatVector(0, name="r"), "RepeatVector 'r': n must be a positive integer"),
    (lambda: layers.RepeatVector(2.5, name="r"), "RepeatVector 'r': n must be a positive integer"),
    (lambda: layers.Permute((1, 1), name="p"), "Permute 'p': dims must be a permutation"),
    (lambda: layers.Permute((0, 1), name="p"), "Permute 'p': dims must be a permutation"),
])
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_too_many_permuted_axes_are_not_supported():
    with pytest.raises(NotImplementedError, match="'p': nkeras permutes at most 4 axes"):
        layers.Permute((1, 2, 3, 4, 5), name="p")


@pytest.mark.parametrize("layer,shape,message", [
    (layers.RepeatVector(2, name="r"), (3, 4), "RepeatVector 'r': expected an input of rank 2"),
    (layers.Permute((2, 1), name="p"), (3, 4, 5), "Permute 'p': dims \\(2, 1\\) need an input of rank 3"),
])
def test_wrong_rank_raises_naming_the_layer(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer(keras.Input(shape))


def _model():
    keras.utils.set_random_seed(6)
    inputs = keras.Input((3, 4))
    x = layers.Permute((2, 1))(inputs)
    x = layers.Dense(2)(x)
    x = layers.Flatten()(x)
    x = layers.RepeatVector(3)(x)
    model = keras.Model(inputs, layers.Dense(1)(x))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def test_training_on_cuda_matches_the_cpu_and_the_model_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 3, 4)).astype("float32")
    y = rng.standard_normal((6, 3, 1)).astype("float32")
    losses = assert_trains_alike_on_both_devices(_model, x, y, batch_size=6)
    assert losses[1] < losses[0]
    model = _model()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
