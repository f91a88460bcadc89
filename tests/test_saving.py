"""Model and weight files: Keras 3's formats, both ways, and safe loading."""

import io
import json
import os
import time
import zipfile

import h5py
import numpy as np
import pytest

import nkeras as keras
from nkeras import layers
from nkeras.saving import h5_store
from nkeras.saving.model_config import keras_layer_order, weight_keys

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def _sequential(k=keras):
    return k.Sequential([
        k.Input((6,)),
        k.layers.Dense(8, activation="relu"),
        k.layers.Dropout(0.25),
        k.layers.Dense(12, activation="tanh", use_bias=False),
        k.layers.Reshape((3, 4)),
        k.layers.Flatten(),
        k.layers.Dense(3),
        k.layers.Activation("softmax"),
    ])


def _functional(k=keras):
    a = k.Input((5,), name="a")
    b = k.Input((2, 3), name="b")
    hidden = k.layers.Dense(6, activation="sigmoid", name="hidden")(a)
    joined = k.layers.Dense(4, activation="relu")(k.layers.Flatten()(b))
    mixed = k.layers.Dense(4, activation="elu")(hidden)
    label = k.layers.Dense(2, activation="softmax", name="label")(mixed)
    score = k.layers.Dense(1, use_bias=False, name="score")(joined)
    return k.Model([a, b], [label, score])


def _data(rng, n=32):
    x = rng.standard_normal((n, 6)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, n)]
    return x, y


def _functional_data(rng, n=16):
    xs = [rng.standard_normal((n, 5)).astype("float32"), rng.standard_normal((n, 2, 3)).astype("float32")]
    ys = [rng.integers(0, 2, n).astype("float32"), rng.standard_normal((n, 1)).astype("float32")]
    return xs, ys


def _compile_functional(model, optimizer):
    model.compile(
        optimizer=optimizer,
        loss={"label": "sparse_categorical_crossentropy", "score": "mse"},
        loss_weights={"label": 1.0, "score": 0.5},
        metrics={"label": ["accuracy"]},
    )


def _slots(model):
    return {name: model._device.to_host(buffer) for name, buffer in model.optimizer.slot_buffers()}


def _assert_same_state(a, b):
    for left, right in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)
    if a.compiled:
        assert a.optimizer.iterations == b.optimizer.iterations
        for name, value in _slots(a).items():
            np.testing.assert_array_equal(value, _slots(b)[name])


def _rewrite(source, target, config=None, weights=None, extra=()):
    """Copy a .keras archive, replacing config.json or model.weights.h5 and adding members."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if config is not None:
        members["config.json"] = json.dumps(config).encode()
    if weights is not None:
        members["model.weights.h5"] = weights
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in list(members.items()) + list(extra):
            archive.writestr(name, data)
    return target


def _config(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


# ---- round trips in nkeras ---------------------------------------------------------


def test_sequential_round_trip_is_exact(rng, tmp_path):
    x, y = _data(rng)
    model = _sequential()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy", "mae"])
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        metadata = json.loads(archive.read("metadata.json"))
    assert set(metadata) >= {"keras_version", "date_saved"}
    loaded = keras.saving.load_model(path)
    assert type(loaded) is keras.Sequential and [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    serialize = keras.saving.serialize_keras_object
    assert [serialize(l) for l in loaded.layers] == [serialize(l) for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    _assert_same_state(model, loaded)
    assert type(loaded.optimizer) is keras.optimizers.Adam and loaded.optimizer.learning_rate == 0.001
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == model.evaluate(x, y, verbose=0, return_dict=True)
    assert keras.models.load_model is keras.saving.load_model


def test_functional_round_trip_is_exact(rng, tmp_path):
    xs, ys = _functional_data(rng)
    model = _functional()
    _compile_functional(model, keras.optimizers.SGD(0.05, momentum=0.9))
    model.fit(xs, ys, batch_size=4, epochs=2, verbose=0)
    model.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    assert loaded.output_names == ["label", "score"] and loaded.input_names == ["a", "b"]
    for left, right in zip(model.predict(xs, verbose=0), loaded.predict(xs, verbose=0)):
        np.testing.assert_array_equal(left, right)
    _assert_same_state(model, loaded)
    assert loaded.evaluate(xs, ys, verbose=0, return_dict=True) == model.evaluate(xs, ys, verbose=0, return_dict=True)


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.Adam(amsgrad=True),
    lambda: keras.optimizers.SGD(0.05, momentum=0.5, nesterov=True),
    lambda: keras.optimizers.RMSprop(momentum=0.3, centered=True),
    lambda: keras.optimizers.Adagrad(0.05),
    lambda: keras.optimizers.AdamW(keras.optimizers.schedules.ExponentialDecay(0.01, 3, 0.5)),
])
def test_fit_after_load_continues_exactly(rng, tmp_path, optimizer):
    x, y = _data(rng)

    def fresh():
        keras.utils.set_random_seed(3)
        model = _sequential()
        model.compile(optimizer=optimizer(), loss="categorical_crossentropy")
        return model

    straight = fresh()
    straight.fit(x, y, batch_size=8, epochs=4, verbose=0, shuffle=False)
    first = fresh()
    first.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    first.save(tmp_path / "half.keras")
    resumed = keras.models.load_model(tmp_path / "half.keras")
    resumed.layers[1]._seed = first.layers[1]._seed  # Dropout(seed=None) draws a new seed when made
    resumed.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    _assert_same_state(straight, resumed)


def test_weight_files_round_trip(rng, tmp_path):
    x, y = _data(rng)
    model = _sequential()
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    for name in ("w.weights.h5", "w.weights.npz"):
        model.save_weights(tmp_path / name)
        other = _sequential()
        other.compile(optimizer="rmsprop", loss="categorical_crossentropy")
        other.load_weights(tmp_path / name)
        np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
        expected_steps = model.optimizer.iterations if name.endswith(".h5") else 0
        assert other.optimizer.iterations == expected_steps
    model.save(tmp_path / "m.keras")
    other = _sequential()
    other.load_weights(tmp_path / "m.keras")
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ValueError, match=r"\.weights\.h5.*\.weights\.npz"):
        model.save_weights(tmp_path / "w.h5")
    with pytest.raises(FileExistsError):
        model.save_weights(tmp_path / "w.weights.h5", overwrite=False)


def test_uncompiled_and_unbuilt_models(tmp_path, rng):
    model = _functional()
    model.save(tmp_path / "plain.keras")
    loaded = keras.models.load_model(tmp_path / "plain.keras")
    assert not loaded.compiled
    xs, _ = _functional_data(rng)
    for left, right in zip(model.predict(xs, verbose=0), loaded.predict(xs, verbose=0)):
        np.testing.assert_array_equal(left, right)
    unbuilt = keras.Sequential([layers.Dense(3), layers.Dense(2)])
    unbuilt.save(tmp_path / "unbuilt.keras")
    assert not keras.models.load_model(tmp_path / "unbuilt.keras").built
    compiled = keras.models.load_model(tmp_path / "plain.keras", compile=False)
    assert not compiled.compiled


def test_weight_groups_follow_keras_layer_order():
    # The fixture's vars groups name the layer Keras stored there.
    path = os.path.join(FIXTURES, "keras_functional.keras")
    model = keras.models.load_model(path)
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as handle:
        stored = {key: handle[f"layers/{key}/vars"].attrs["name"] for key in handle["layers"]}
    assert {key: layer.name for key, layer in weight_keys(model)} == stored


# ---- Keras 3 interop -------------------------------------------------------------


def test_keras_fixture_files_load_and_predict():
    expected = np.load(os.path.join(FIXTURES, "keras_expected.npz"), allow_pickle=False)
    model = keras.models.load_model(os.path.join(FIXTURES, "keras_sequential.keras"))
    np.testing.assert_allclose(model.predict(expected["sequential_x"], verbose=0), expected["sequential_y"],
                               rtol=1e-5, atol=1e-6)
    assert model.optimizer.iterations == int(expected["sequential_iterations"])
    assert type(model.optimizer) is keras.optimizers.Adam and model.optimizer.built
    assert model._metric_request[0] == [["accuracy"]]
    model = keras.models.load_model(os.path.join(FIXTURES, "keras_functional.keras"))
    label, score = model.predict({"a": expected["functional_a"], "b": expected["functional_b"]}, verbose=0)
    np.testing.assert_allclose(label, expected["functional_label"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(score, expected["functional_score"], rtol=1e-5, atol=1e-6)
    assert model.optimizer.iterations == int(expected["functional_iterations"])
    assert model._loss_weights == [1.0, 0.5]
    weights_only = keras.Sequential([
        keras.Input((6,)), layers.Dense(8, activation="relu"), layers.Dropout(0.25), layers.Dense(12, activation="tanh"),
        layers.Reshape((3, 4)), layers.Flatten(), layers.Dense(3), layers.Activation("softmax"),
    ])
    weights_only.compile(optimizer="adam", loss="categorical_crossentropy")
    weights_only.load_weights(os.path.join(FIXTURES, "keras_sequential.weights.h5"))
    np.testing.assert_allclose(weights_only.predict(expected["sequential_x"], verbose=0), expected["sequential_y"],
                               rtol=1e-5, atol=1e-6)
    assert weights_only.optimizer.iterations == int(expected["sequential_iterations"])


def _assert_close_by_layer(keras_model, model):
    for layer in model.layers:
        theirs = keras_model.get_layer(layer.name).get_weights()
        assert len(theirs) == len(layer.weights)
        for left, right in zip(theirs, layer.get_weights()):
            np.testing.assert_allclose(left, right, rtol=1e-4, atol=1e-6, err_msg=layer.name)


def _keras_slots(model):
    return [np.asarray(v) for v in model.optimizer.variables[2:] if len(v.shape)]


def test_nkeras_files_load_in_keras(rng, tmp_path):
    k = _keras()
    x, y = _data(rng)
    model = _sequential()
    model.compile(optimizer=keras.optimizers.RMSprop(momentum=0.2, centered=True), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    model.save(tmp_path / "s.keras")
    theirs = k.models.load_model(tmp_path / "s.keras")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert int(theirs.optimizer.iterations) == model.optimizer.iterations
    slots = _slots(model)
    expected = [slots[name][start:stop] for name in ("velocity", "momentum", "average_gradient")
                for _, start, stop in h5_store._slot_slices(model)[0]]
    assert len(_keras_slots(theirs)) == len(expected)
    for mine, keras_value in zip(expected, _keras_slots(theirs)):
        np.testing.assert_array_equal(mine, keras_value.reshape(-1))

    xs, ys = _functional_data(rng)
    functional = _functional()
    _compile_functional(functional, "adam")
    functional.fit(xs, ys, batch_size=4, epochs=1, verbose=0)
    functional.save(tmp_path / "f.keras")
    theirs = k.models.load_model(tmp_path / "f.keras")
    for left, right in zip(theirs.predict(xs, verbose=0), functional.predict(xs, verbose=0)):
        np.testing.assert_allclose(left, right, rtol=1e-5, atol=1e-6)
    theirs.fit(xs, ys, batch_size=16, epochs=1, verbose=0, shuffle=False)
    functional.fit(xs, ys, batch_size=16, epochs=1, verbose=0, shuffle=False)
    _assert_close_by_layer(theirs, functional)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop_centered"])
def test_keras_files_load_in_nkeras_and_train_alike(rng, tmp_path, optimizer):
    k = _keras()
    k.utils.set_random_seed(5)
    xs, ys = _functional_data(rng)
    theirs = _functional(k)
    make = {"adam": lambda: k.optimizers.Adam(amsgrad=True),
            "rmsprop_centered": lambda: k.optimizers.RMSprop(momentum=0.5, centered=True)}[optimizer]
    _compile_functional(theirs, make())
    theirs.fit(xs, ys, batch_size=4, epochs=2, verbose=0)
    theirs.save(tmp_path / "k.keras")
    ours = keras.models.load_model(tmp_path / "k.keras")
    for left, right in zip(theirs.predict(xs, verbose=0), ours.predict(xs, verbose=0)):
        np.testing.assert_allclose(left, right, rtol=1e-5, atol=1e-6)
    assert ours.optimizer.iterations == int(theirs.optimizer.iterations)
    theirs.fit(xs, ys, batch_size=16, epochs=2, verbose=0, shuffle=False)
    ours.fit(xs, ys, batch_size=16, epochs=2, verbose=0, shuffle=False)
    _assert_close_by_layer(theirs, ours)


def test_weight_keys_match_keras_on_other_graphs(tmp_path):
    k = _keras()

    def graph(lib):
        a = lib.Input((4,), name="a")
        b = lib.Input((3,), name="b")
        deep = lib.layers.Dense(3)(lib.layers.Dense(5)(lib.layers.Dense(4)(a)))
        side = lib.layers.Dense(2)(b)
        reshaped = lib.layers.Flatten()(lib.layers.Reshape((3, 1))(deep))
        return lib.Model([b, a], [side, lib.layers.Dense(1)(reshaped), lib.layers.Activation("relu")(deep)])

    graph(k).save(tmp_path / "g.keras")
    with zipfile.ZipFile(tmp_path / "g.keras") as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as f:
        stored = {key: f[f"layers/{key}/vars"].attrs["name"] for key in f["layers"]}
    ours = keras.models.load_model(tmp_path / "g.keras")
    assert {key: layer.name for key, layer in weight_keys(ours)} == stored
    keras_names = [entry["name"] for entry in _config(tmp_path / "g.keras")["config"]["layers"]]
    assert keras_names == [layer.name for layer in keras_layer_order(ours)]


# ---- custom objects ----------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tests")
class ScaledDense(layers.Dense):
    def __init__(self, units, scale=1.0, **kwargs):
        super().__init__(units, **kwargs)
        self.scale = scale

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


class Unregistered(layers.Dense):
    pass


def test_custom_objects(rng, tmp_path):
    model = keras.Sequential([keras.Input((3,)), ScaledDense(2, scale=3.0)])
    model.save(tmp_path / "c.keras")
    assert _config(tmp_path / "c.keras")["config"]["layers"][1]["registered_name"] == "tests>ScaledDense"
    loaded = keras.models.load_model(tmp_path / "c.keras")
    assert type(loaded.layers[0]) is ScaledDense and loaded.layers[0].scale == 3.0
    bad = keras.Sequential([keras.Input((3,)), Unregistered(2)])
    with pytest.raises(ValueError, match="register_keras_serializable"):
        bad.save(tmp_path / "u.keras")
    assert not (tmp_path / "u.keras").exists()
    config = _config(tmp_path / "c.keras")
    layer = config["config"]["layers"][1]
    layer.update(class_name="Mine", registered_name=None, module="my.module")
    path = _rewrite(tmp_path / "c.keras", tmp_path / "mine.keras", config)
    with pytest.raises(ValueError, match=r"unknown layer class 'Mine' \(module 'my.module' is never imported\)"):
        keras.models.load_model(path)
    assert type(keras.models.load_model(path, custom_objects={"Mine": ScaledDense}).layers[0]) is ScaledDense
    with keras.saving.custom_object_scope({"Mine": ScaledDense}):
        assert type(keras.models.load_model(path).layers[0]) is ScaledDense


# ---- hostile and broken files ------------------------------------------------------


@pytest.fixture
def saved(tmp_path, rng):
    x, y = _data(rng)
    model = _sequential()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "good.keras")
    return tmp_path / "good.keras"


def _layer_config_edit(saved, tmp_path, index, **changes):
    config = _config(saved)
    config["config"]["layers"][index].update(changes)
    return _rewrite(saved, tmp_path / "edited.keras", config)


def _h5(build):
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        build(handle)
    return buffer.getvalue()


def _hostile_files(saved, tmp_path):
    """(name, path, message) for broken and hostile variants of ``saved``."""
    good_config = _config(saved)
    with zipfile.ZipFile(saved) as archive:
        weights = archive.read("model.weights.h5")
    lambda_config = json.loads(json.dumps(good_config))
    lambda_config["config"]["layers"][2] = {"module": "keras.layers", "class_name": "Lambda",
                                            "config": {"function": "os.system"}, "registered_name": None}
    module_config = json.loads(json.dumps(good_config))
    module_config["config"]["layers"][1]["class_name"] = "os.system"
    (tmp_path / "text.keras").write_text("hello")
    (tmp_path / "cut.keras").write_bytes(saved.read_bytes()[:-300])
    with zipfile.ZipFile(tmp_path / "j.keras", "w") as archive:
        archive.writestr("config.json", "{not json")
        archive.writestr("model.weights.h5", weights)
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", json.dumps(good_config))
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(200_000_000))
    cases = [
        ("not a zip", tmp_path / "text.keras", "not a readable .keras archive"),
        ("truncated", tmp_path / "cut.keras", "not a readable .keras archive"),
        ("parent member", _rewrite(saved, tmp_path / "p.keras", extra=[("../../evil", b"x")]), "unsafe"),
        ("absolute member", _rewrite(saved, tmp_path / "a.keras", extra=[("/etc/evil", b"x")]), "unsafe"),
        ("duplicate member", _rewrite(saved, tmp_path / "d.keras", extra=[("config.json", b"{}")]), "duplicate"),
        ("lambda layer", _rewrite(saved, tmp_path / "l.keras", lambda_config), "Lambda layer cannot run in nkeras"),
        ("module path", _rewrite(saved, tmp_path / "m.keras", module_config), "unknown layer class 'os.system'"),
        ("config not json", tmp_path / "j.keras", "not valid JSON"),
        ("zip bomb", bomb, "more than|expands beyond"),
        ("absurd units", _layer_config_edit(saved, tmp_path, 1, config={
            **good_config["config"]["layers"][1]["config"], "units": 10**9}), "more values than the weights file"),
        ("bad hdf5", _rewrite(saved, tmp_path / "h.keras", weights=b"\x89HDF\r\n\x1a\n" + bytes(500)), "HDF5"),
        ("not hdf5", _rewrite(saved, tmp_path / "n.keras", weights=b"PK" + bytes(100)), "not an HDF5 file"),
        ("wrong shape", _rewrite(saved, tmp_path / "s.keras", weights=_swap_dataset(weights, "layers/dense/vars/0",
                                                                                     np.zeros((8, 6), "f4"))),
         r"has shape \(8, 6\), expected \(6, 8\)"),
        ("integer weights", _rewrite(saved, tmp_path / "i.keras", weights=_swap_dataset(
            weights, "layers/dense/vars/0", np.zeros((6, 8), "i4"))), "expected floating point"),
        ("soft link", _rewrite(saved, tmp_path / "k.keras", weights=_h5(
            lambda f: f.__setitem__("layers", h5py.SoftLink("/elsewhere")))), "link"),
        ("external link", _rewrite(saved, tmp_path / "e.keras", weights=_h5(
            lambda f: f.__setitem__("layers", h5py.ExternalLink("/etc/passwd", "/")))), "link"),
        ("compressed data", _rewrite(saved, tmp_path / "z.keras", weights=_h5(
            lambda f: f.create_dataset("layers/dense/vars/0", data=np.zeros((6, 8), "f4"), compression="gzip"))),
         "compressed or filtered"),
    ]
    return cases


def _swap_dataset(weights, path, value):
    buffer = io.BytesIO(weights)
    with h5py.File(buffer, "r+") as handle:
        del handle[path]
        handle.create_dataset(path, data=value)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_hostile_files_raise_clear_errors(saved, tmp_path):
    cases = _hostile_files(saved, tmp_path)
    before = sorted(os.listdir(tmp_path))
    cwd_before = sorted(os.listdir("."))
    for name, path, message in cases:
        start = time.monotonic()
        with pytest.raises(ValueError, match=message) as info:
            keras.models.load_model(path)
        assert str(path) in str(info.value), name
        assert time.monotonic() - start < 5, name
    assert sorted(os.listdir(tmp_path)) == before
    assert sorted(os.listdir(".")) == cwd_before
    assert not os.path.exists(os.path.join(os.path.dirname(tmp_path), "evil"))


def test_failed_load_leaves_model_untouched(saved, tmp_path, rng):
    x, y = _data(rng)
    model = _sequential()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    weights, slots, steps = model.get_weights(), _slots(model), model.optimizer.iterations
    with zipfile.ZipFile(saved) as archive:
        good = archive.read("model.weights.h5")
    broken = _swap_dataset(good, "layers/dense_2/vars/1", np.zeros(4, "f4"))  # the last Dense layer's bias
    (tmp_path / "broken.weights.h5").write_bytes(broken)
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        model.load_weights(tmp_path / "broken.weights.h5")
    broken_slot = _swap_dataset(good, "optimizer/vars/5", np.zeros((7, 7), "f4"))
    (tmp_path / "slot.weights.h5").write_bytes(broken_slot)
    with pytest.raises(ValueError, match="optimizer slot"):
        model.load_weights(tmp_path / "slot.weights.h5")
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert model.optimizer.iterations == steps
    for name, value in _slots(model).items():
        np.testing.assert_array_equal(value, slots[name])


def test_npz_weights_never_unpickle(tmp_path):
    model = keras.Sequential([keras.Input((2,)), layers.Dense(1)])
    manifest = np.frombuffer(json.dumps([{"layer": "dense", "name": "kernel", "shape": [2, 1]},
                                         {"layer": "dense", "name": "bias", "shape": [1]}]).encode(), np.uint8)
    np.savez(tmp_path / "p.weights.npz", manifest=manifest, w00000=np.array([{"x": 1}], dtype=object),
             w00001=np.zeros(1))
    with pytest.raises(ValueError, match="Could not read weights"):
        model.load_weights(tmp_path / "p.weights.npz")


def test_hdf5_crashes_are_contained(saved, tmp_path):
    # Byte flips in an HDF5 file can crash the HDF5 C library; the parse
    # runs in a child process, so they become ValueErrors here.
    with zipfile.ZipFile(saved) as archive:
        data = bytearray(archive.read("model.weights.h5"))
    data[96:4000] = bytes(np.random.default_rng(0).integers(0, 256, 3904, dtype=np.uint8))
    with pytest.raises(ValueError, match="cannot read the HDF5 weights"):
        h5_store.read_weights(bytes(data), "flipped.weights.h5")


def test_fuzzed_files_load_or_raise_quickly(saved, tmp_path):
    rng = np.random.default_rng(11)
    original = saved.read_bytes()
    with zipfile.ZipFile(saved) as archive:
        h5 = archive.read("model.weights.h5")
    model = _sequential()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    outcomes = {"loaded": 0, "raised": 0}
    start = time.monotonic()
    cases = [("keras", original, 300), ("h5", h5, 100)]
    for kind, source, count in cases:
        for index in range(count):
            data = bytearray(source)
            if index % 3 == 0:
                data = data[: rng.integers(0, len(data))]
            else:
                for position in rng.integers(0, len(data), rng.integers(1, 6)):
                    data[position] = rng.integers(0, 256)
            path = tmp_path / (f"f{index}.keras" if kind == "keras" else f"f{index}.weights.h5")
            path.write_bytes(bytes(data))
            began = time.monotonic()
            try:
                if kind == "keras":
                    keras.models.load_model(path)
                else:
                    model.load_weights(path)
                outcomes["loaded"] += 1
            except ValueError:
                outcomes["raised"] += 1
            assert time.monotonic() - began < 5
            path.unlink()
    assert outcomes["raised"] > 200 and sum(outcomes.values()) == 400
    assert time.monotonic() - start < 60
    assert sorted(os.listdir(tmp_path)) == ["good.keras"]
