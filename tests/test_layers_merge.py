"""Merge layers: float64 gradient checks over every input, Keras 3 parity
(outputs, configs, functional forms), errors naming the layer, training on
both devices and .keras round trips."""


import numpy as np
import pytest

import nkeras as keras
from devices import assert_trains_alike_on_both_devices
from nkeras import layers
from tests.gradcheck import numerical_grad
from tests.layer_check import run_layer


def check_multi_input_gradients(layer, xs, rng, eps=1e-6):
    """Every input's analytic gradient against central differences of
    ``sum(output * probe)`` (float64)."""
    shapes = [(None,) + x.shape[1:] for x in xs]
    layer.build(shapes)
    context, outputs, state = run_layer(layer, xs)
    probe = rng.standard_normal(outputs[0].shape)
    grads = [np.full(x.shape, np.nan) for x in xs]
    layer.backward(context, xs, outputs, state, [probe], grads)
    for i, x in enumerate(xs):
        numeric = numerical_grad(lambda _: float(np.sum(run_layer(layer, xs)[1][0] * probe)), x, eps)
        np.testing.assert_allclose(grads[i], numeric, rtol=1e-6, atol=1e-8, err_msg=f"{layer.name}: input {i}")
    return outputs[0]


ELEMENTWISE = [
    (layers.Add, lambda xs: sum(xs)),
    (layers.Subtract, lambda xs: xs[0] - xs[1]),
    (layers.Multiply, lambda xs: np.prod(xs, axis=0)),
    (layers.Average, lambda xs: np.mean(xs, axis=0)),
    (layers.Maximum, lambda xs: np.max(xs, axis=0)),
    (layers.Minimum, lambda xs: np.min(xs, axis=0)),
]


@pytest.mark.parametrize("cls,reference", ELEMENTWISE)
@pytest.mark.parametrize("count", [2, 3])
def test_elementwise_merges_match_numpy_and_their_gradients(cls, reference, count, float64, rng):
    if cls is layers.Subtract and count != 2:
        count = 2
    xs = [rng.standard_normal((3, 2, 4)) for _ in range(count)]
    out = check_multi_input_gradients(cls(), xs, rng)
    np.testing.assert_allclose(out, reference(xs), rtol=1e-12)


def test_maximum_gives_a_tie_to_the_first_input(float64, rng):
    x = rng.standard_normal((2, 3))
    layer = layers.Maximum()
    layer.build([(None, 3)] * 2)
    context, outputs, state = run_layer(layer, [x, x.copy()])
    grads = [np.empty_like(x), np.empty_like(x)]
    layer.backward(context, [x, x], outputs, state, [np.ones_like(x)], grads)
    np.testing.assert_array_equal(grads[0], 1.0)
    np.testing.assert_array_equal(grads[1], 0.0)


@pytest.mark.parametrize("axis,shapes", [
    (-1, [(2, 3, 4), (2, 3, 1), (2, 3, 2)]),
    (1, [(2, 1, 4), (2, 3, 4)]),
    (-2, [(2, 5, 2, 3), (2, 5, 1, 3)]),
    (1, [(3, 2), (3, 5)]),
])
def test_concatenate_matches_numpy_and_its_gradients(axis, shapes, float64, rng):
    xs = [rng.standard_normal(shape) for shape in shapes]
    out = check_multi_input_gradients(layers.Concatenate(axis=axis), xs, rng)
    np.testing.assert_array_equal(out, np.concatenate(xs, axis=axis))


def _batch_dot(x, y, axes):
    out = np.stack([np.tensordot(a, b, axes=(axes[0] - 1, axes[1] - 1)) for a, b in zip(x, y)])
    return out.reshape(len(x), 1) if out.ndim == 1 else out


DOT_CASES = [
    ((4,), (4,), 1),
    ((4,), (4,), -1),
    ((3, 4), (3, 5), 1),
    ((3, 4), (5, 4), 2),
    ((3, 4), (5, 4), -1),
    ((3, 4), (4,), (2, 1)),
    ((4,), (4, 3), (1, 1)),
    ((4,), (3, 4), (1, 2)),
    ((3, 4), (4, 5), (2, 1)),
    ((4, 3), (4, 5), (1, 1)),
]


@pytest.mark.parametrize("x_shape,y_shape,axes", DOT_CASES)
@pytest.mark.parametrize("normalize", [False, True])
def test_dot_matches_numpy_and_its_gradients(x_shape, y_shape, axes, normalize, float64, rng):
    x = rng.standard_normal((2,) + x_shape)
    y = rng.standard_normal((2,) + y_shape)
    layer = layers.Dot(axes, normalize=normalize)
    out = check_multi_input_gradients(layer, [x, y], rng)
    pair = axes if isinstance(axes, tuple) else (axes, axes)
    pair = [a % (len(s) + 1) for a, s in zip(pair, (x_shape, y_shape))]
    if normalize:
        x = x / np.linalg.norm(x, axis=pair[0], keepdims=True)
        y = y / np.linalg.norm(y, axis=pair[1], keepdims=True)
    np.testing.assert_allclose(out, _batch_dot(x, y, pair), rtol=1e-12, atol=1e-14)
    assert layer.compute_output_shape([(None,) + x_shape, (None,) + y_shape]) == (None,) + out.shape[1:]


# ---- Keras parity ------------------------------------------------------------------


PARITY = [
    ("Add", {}, [(3, 4)] * 3),
    ("Subtract", {}, [(3, 4)] * 2),
    ("Multiply", {}, [(5,)] * 2),
    ("Average", {}, [(2, 3)] * 3),
    ("Maximum", {}, [(2, 3)] * 2),
    ("Minimum", {}, [(2, 3)] * 3),
    ("Concatenate", {"axis": 1}, [(2, 3), (4, 3)]),
    ("Concatenate", {}, [(2, 3), (2, 1)]),
    ("Dot", {"axes": 2}, [(3, 4), (5, 4)]),
    ("Dot", {"axes": (1, 2)}, [(4, 3), (5, 4)]),
    ("Dot", {"axes": 1}, [(6,), (6,)]),
    ("Dot", {"axes": (1, 2), "normalize": True}, [(4, 3), (5, 4)]),
    ("Dot", {"axes": -1, "normalize": True}, [(6,), (6,)]),
]


@pytest.mark.parametrize("name,options,shapes", PARITY)
def test_forward_and_config_match_keras(name, options, shapes, real_keras, rng):
    xs = [rng.standard_normal((2,) + shape).astype("float32") for shape in shapes]
    ours = getattr(layers, name)(**options)
    theirs = getattr(real_keras.layers, name)(**options)
    np.testing.assert_allclose(ours(xs), np.asarray(theirs(xs)), rtol=1e-5, atol=1e-6)
    symbolic = ours.compute_output_shape([(None,) + s for s in shapes])
    their_shape = theirs.compute_output_shape([(None,) + s for s in shapes])
    assert symbolic == tuple(their_shape)
    config = ours.get_config()
    their_config = theirs.get_config()
    assert set(config) == set(their_config)
    rebuilt = getattr(real_keras.layers, name).from_config(config).get_config()
    for key in set(config) - {"name", "dtype"}:
        assert list(np.atleast_1d(rebuilt[key])) == list(np.atleast_1d(their_config[key])), key
    assert type(ours).from_config(config).get_config() == config


@pytest.mark.parametrize("function,cls,options", [
    ("add", "Add", {}), ("subtract", "Subtract", {}), ("multiply", "Multiply", {}), ("average", "Average", {}),
    ("maximum", "Maximum", {}), ("minimum", "Minimum", {}), ("concatenate", "Concatenate", {"axis": 1}),
    ("dot", "Dot", {"axes": 2}),
])
def test_functional_forms_build_the_layer(function, cls, options, real_keras):
    inputs = [keras.Input((2, 2)), keras.Input((2, 2))]
    out = getattr(layers, function)(inputs, **options)
    layer = out.node.layer
    assert type(layer) is getattr(layers, cls)
    their_out = getattr(real_keras.layers, function)([real_keras.Input((2, 2)), real_keras.Input((2, 2))], **options)
    assert out.shape == tuple(their_out.shape)


# ---- errors ------------------------------------------------------------------------


@pytest.mark.parametrize("make,shapes,message", [
    (lambda: layers.Add(name="a"), [(3, 4), (3, 5)], "Add 'a': inputs must have the same shape.*\\(None, 3, 5\\)"),
    (lambda: layers.Multiply(name="m"), [(3, 4), (4, 3)], "Multiply 'm': inputs must have the same shape"),
    (lambda: layers.Maximum(name="m"), [(3, 4), (3, 4, 1)], "Maximum 'm': inputs must have the same shape"),
    (lambda: layers.Subtract(name="s"), [(3,)] * 3, "Subtract 's': expected exactly 2 inputs, got 3"),
    (lambda: layers.Add(name="a"), [(3,)], "Add 'a': expected a list of at least 2 inputs"),
    (lambda: layers.Concatenate(name="c"), [(3, 4), (2, 5)], "Concatenate 'c': inputs must match in every"),
    (lambda: layers.Concatenate(name="c"), [(3, 4), (3,)], "Concatenate 'c': inputs must have the same rank"),
    (lambda: layers.Concatenate(axis=0, name="c"), [(3,), (3,)], "Concatenate 'c': axis 0 is not a non-batch"),
    (lambda: layers.Concatenate(axis=3, name="c"), [(3,), (3,)], "Concatenate 'c': axis 3 is not"),
    (lambda: layers.Dot(1, name="d"), [(3,), (4,)], "Dot 'd': dimension 3 of axis 1 .* dimension 4"),
    (lambda: layers.Dot(1, name="d"), [(3,)] * 3, "Dot 'd': expected exactly 2 inputs"),
    (lambda: layers.Dot(1, name="d"), [(3, 2, 2), (3,)], "Dot 'd': nkeras supports inputs of rank 2 or 3"),
])
def test_bad_inputs_raise_naming_the_layer(make, shapes, message):
    with pytest.raises(ValueError, match=message):
        make()([keras.Input(shape) for shape in shapes])


def test_a_single_tensor_is_rejected():
    with pytest.raises(ValueError, match="Add 'add': expected a list of input tensors"):
        layers.Add()(keras.Input((3,)))


def test_a_built_merge_rejects_other_shapes():
    layer = layers.Add(name="shared")
    layer([keras.Input((3,)), keras.Input((3,))])
    with pytest.raises(ValueError, match="Add 'shared': inputs must have the same shape"):
        layer([keras.Input((3,)), keras.Input((4,))])


def test_bad_arguments():
    with pytest.raises(ValueError, match="Dot 'd': axes must be an int or a pair"):
        layers.Dot((1, 2, 3), name="d")
    with pytest.raises(TypeError, match="Concatenate 'c': axis must be an integer"):
        layers.Concatenate(axis="x", name="c")


# ---- models --------------------------------------------------------------------------


def _merge_model(every_merge=True):
    """A model over two inputs; the simulator runs a smaller one (each
    kernel launch there costs a fifth of a second)."""
    keras.utils.set_random_seed(3)
    a = keras.Input((2, 3), name="a")
    b = keras.Input((2, 3), name="b")
    da = layers.Dense(3, activation="tanh")(a)
    if every_merge:
        db = layers.Dense(3)(b)
        merged = [layers.Add()([da, db, a]), layers.Subtract()([da, db]), layers.Multiply()([da, db]),
                  layers.Average()([da, db]), layers.Maximum()([da, db, b]), layers.Minimum()([da, db])]
    else:
        merged = [layers.Add()([da, b]), layers.Maximum()([da, b]), layers.Multiply()([da, b])]
    joined = layers.Concatenate(axis=1)(merged)
    scores = layers.Dot(axes=2)([joined, da])
    out = layers.Dense(2)(layers.Flatten()(scores))
    model = keras.Model([a, b], out)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def _merge_data():
    rng = np.random.default_rng(4)
    return [rng.standard_normal((4, 2, 3)).astype("float32") for _ in range(2)], rng.standard_normal((4, 2)).astype("float32")


def test_training_a_merge_model_on_cuda_matches_the_cpu():
    x, y = _merge_data()
    losses = assert_trains_alike_on_both_devices(lambda: _merge_model(every_merge=False), x, y, batch_size=4)
    assert losses[1] < losses[0]


def test_a_merge_model_round_trips_through_a_keras_file(tmp_path):
    x, y = _merge_data()
    model = _merge_model()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "merge.keras")
    loaded = keras.models.load_model(tmp_path / "merge.keras")
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_keras_merge_model_loads_with_its_outputs(real_keras, tmp_path, rng):
    L = real_keras.layers
    a, b = real_keras.Input((3, 4)), real_keras.Input((3, 4))
    da = L.Dense(4)(a)
    out = L.Dot(axes=(2, 2))([L.Concatenate(axis=1)([L.Maximum()([da, b]), L.Subtract()([a, b])]), da])
    theirs = real_keras.Model([a, b], L.Average()([L.Add()([out, out]), L.Multiply()([out, out])]))
    theirs.save(tmp_path / "theirs.keras")
    ours = keras.models.load_model(tmp_path / "theirs.keras")
    x = [rng.standard_normal((5, 3, 4)).astype("float32") for _ in range(2)]
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
