"""Models end to end: training, Keras behaviours, graph wiring, bad input."""

import numpy as np
import pytest

import nkeras as keras
from nkeras import layers


def _blobs(rng, n=600, features=8, classes=3):
    centers = rng.standard_normal((classes, features)) * 3
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.standard_normal((n, features))
    return x.astype("float32"), y


def _mlp(features=8, classes=3, dropout=0.0):
    return keras.Sequential([
        keras.Input(shape=(features,)),
        layers.Dense(16, activation="relu"),
        layers.Dropout(dropout),
        layers.Dense(classes, activation="softmax"),
    ])


def test_sequential_trains_and_reports_keras_history(rng):
    x, y = _blobs(rng)
    model = _mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=8, validation_split=0.2, verbose=0)
    assert list(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert len(history.history["loss"]) == 8 and history.epoch == list(range(8))
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert accuracy > 0.9
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy"} and np.isclose(logs["loss"], loss)
    probs = model.predict(x[:7], verbose=0)
    assert probs.shape == (7, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_evaluate_matches_a_numpy_forward_pass(rng):
    x, y = _blobs(rng, n=101)
    model = _mlp()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    w1, b1, w2, b2 = model.get_weights()
    hidden = np.maximum(x.astype(np.float64) @ w1 + b1, 0)
    logits = hidden @ w2 + b2
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    expected_loss = -np.log(np.clip(probs[np.arange(101), y], 1e-7, 1 - 1e-7)).mean()
    expected_accuracy = (probs.argmax(1) == y).mean()
    loss, accuracy = model.evaluate(x, y, batch_size=16, verbose=0)
    assert np.isclose(loss, expected_loss, rtol=1e-4)
    assert np.isclose(accuracy, expected_accuracy)
    np.testing.assert_allclose(model.predict(x, batch_size=16, verbose=0), probs, rtol=1e-4, atol=1e-6)


def test_functional_model_matches_sequential_with_same_weights(rng):
    x, y = _blobs(rng)
    inputs = keras.Input(shape=(8,))
    hidden = layers.Dense(16, activation="relu")(inputs)
    outputs = layers.Dense(3, activation="softmax")(hidden)
    functional = keras.Model(inputs, outputs)
    sequential = _mlp()
    sequential.set_weights(functional.get_weights())
    for model in (functional, sequential):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=50, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(functional.get_weights(), sequential.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _flat_gradient_check(model, xs, ys, rng, eps=1e-6):
    """The engine's flat gradient against central differences of the loss."""
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=model._test_losses, loss_weights=model._test_weights)
    data = model._prepare(xs, ys, None, len(ys[0]), False)
    model._compile_metrics()
    rows, load = next(data.epoch(None))
    bound = model._bound(rows, True)
    ops = model._device.ops
    bound.load(load)
    bound.plan.forward(0)
    model._loss_step(ops, bound)
    bound.plan.backward()
    analytic = model._grads.copy()

    def loss_value():
        return model.test_on_batch(xs, ys) if len(model.metrics_names) == 1 else model.test_on_batch(xs, ys)[0]

    params = model._params
    picks = rng.choice(params.size, size=min(params.size, 60), replace=False)
    for index in picks:
        saved = params[index]
        params[index] = saved + eps
        model.reset_metrics()
        plus = loss_value()
        params[index] = saved - eps
        model.reset_metrics()
        minus = loss_value()
        params[index] = saved
        assert np.isclose(analytic[index], (plus - minus) / (2 * eps), rtol=1e-5, atol=1e-8), index


def test_graph_gradients_with_shared_tensor_and_two_outputs(float64, rng):
    """A tensor feeding three layers (its gradient is summed) and two heads
    with weighted losses: the flat gradient matches finite differences."""
    a = keras.Input(shape=(4,), name="a")
    b = keras.Input(shape=(3,), name="b")
    trunk = layers.Dense(5, activation="tanh", name="trunk")(a)
    left = layers.Dense(4, activation="sigmoid", name="left")(trunk)
    right = layers.Dense(4, activation="elu", name="right")(trunk)
    side = layers.Dense(4, name="side")(b)
    mixed = layers.Dense(3, activation="softmax", name="mixed")(layers.Flatten()(left))
    regression = layers.Dense(2, name="regression")(layers.Reshape((4,))(right))
    del side
    model = keras.Model([a], [mixed, regression, trunk])
    model._test_losses = ["categorical_crossentropy", "mse", "huber"]
    model._test_weights = [1.0, 0.5, 2.0]
    n = 6
    xs = [rng.standard_normal((n, 4))]
    ys = [np.eye(3)[rng.integers(0, 3, n)], rng.standard_normal((n, 2)), rng.standard_normal((n, 5))]
    _flat_gradient_check(model, xs, ys, rng)


def test_multi_input_multi_output_history_and_dicts(rng):
    n = 200
    a_in = keras.Input(shape=(5,), name="a")
    b_in = keras.Input(shape=(2, 3), name="b")
    joined = layers.Dense(8, activation="relu")(a_in)
    flat_b = layers.Flatten()(b_in)
    hidden = layers.Dense(8, activation="relu")(flat_b)
    out_class = layers.Dense(4, activation="softmax", name="cls")(joined)
    out_reg = layers.Dense(1, name="reg")(hidden)
    model = keras.Model({"a": a_in, "b": b_in}, [out_class, out_reg])
    model.compile(
        optimizer="adam",
        loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
        loss_weights={"cls": 1.0, "reg": 0.5},
        metrics={"cls": ["accuracy"], "reg": ["mae"]},
    )
    x = {"a": rng.standard_normal((n, 5)), "b": rng.standard_normal((n, 2, 3))}
    y = {"cls": rng.integers(0, 4, n), "reg": rng.standard_normal((n, 1))}
    history = model.fit(x, y, epochs=2, batch_size=64, verbose=0, validation_data=(x, y))
    assert sorted(history.history) == list(history.history)
    assert set(history.history) == {
        "loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae",
        "val_loss", "val_cls_loss", "val_reg_loss", "val_cls_accuracy", "val_reg_mae",
    }
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert np.isclose(logs["loss"], logs["cls_loss"] + 0.5 * logs["reg_loss"], rtol=1e-5)
    predictions = model.predict([x["a"], x["b"]], verbose=0)
    assert [p.shape for p in predictions] == [(n, 4), (n, 1)]


def test_dense_on_rank_3_inputs_with_sparse_targets(rng):
    inputs = keras.Input(shape=(5, 4))
    outputs = layers.Dense(3, activation="softmax")(layers.Dense(6, activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.standard_normal((40, 5, 4))
    y = (x[..., 0] > 0).astype(int)
    history = model.fit(x, y, epochs=30, batch_size=8, verbose=0)
    assert history.history["accuracy"][-1] > 0.85
    assert model.predict(x[:3], verbose=0).shape == (3, 5, 3)


def test_set_random_seed_makes_runs_identical(rng):
    x, y = _blobs(rng)
    results = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        model = _mlp(dropout=0.3)
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=32, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_sample_weight_and_class_weight(rng):
    x, y = _blobs(rng, n=64)
    model = _mlp()
    model.compile("sgd", "sparse_categorical_crossentropy", weighted_metrics=["accuracy"])
    plain = model.evaluate(x, y, verbose=0, return_dict=True)
    zeros = np.zeros(64)
    zeros[:32] = 2.0
    weighted = model.evaluate(x, y, sample_weight=zeros, verbose=0, return_dict=True)
    first_half = model.evaluate(x[:32], y[:32], verbose=0, return_dict=True)
    assert np.isclose(weighted["loss"], first_half["loss"], rtol=1e-5)
    assert np.isclose(weighted["accuracy"], first_half["accuracy"])
    assert not np.isclose(plain["loss"], weighted["loss"])
    before = model.get_weights()
    model.fit(x, y, class_weight={0: 0.0, 1: 0.0, 2: 0.0}, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_pydataset_and_generator_inputs(rng):
    x, y = _blobs(rng, n=100)

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epochs_ended = 0

        def __len__(self):
            return 4

        def __getitem__(self, index):
            rows = slice(index * 25, (index + 1) * 25)
            return x[rows], y[rows]

        def on_epoch_end(self):
            self.epochs_ended += 1

    dataset = Batches()
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(dataset, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3 and dataset.epochs_ended == 3

    def generator():
        while True:
            for start in range(0, 100, 30):
                yield x[start:start + 30], y[start:start + 30]

    history = model.fit(generator(), steps_per_epoch=4, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert model.predict(dataset, verbose=0).shape == (100, 3)
    array_eval = model.evaluate(x, y, batch_size=25, verbose=0)
    assert np.allclose(model.evaluate(dataset, verbose=0), array_eval, rtol=1e-5)


def test_on_batch_methods(rng):
    x, y = _blobs(rng, n=32)
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    loss_before = model.test_on_batch(x, y)[0]
    model.reset_metrics()
    for _ in range(20):
        model.train_on_batch(x, y)
    model.reset_metrics()
    assert model.test_on_batch(x, y)[0] < loss_before
    np.testing.assert_allclose(model.predict_on_batch(x), model.predict(x, verbose=0), rtol=1e-6)


def test_get_weights_order_and_weight_files(rng, tmp_path):
    model = _mlp()
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(8, 16), (16,), (16, 3), (3,)]
    path = tmp_path / "m.weights.npz"
    model.save_weights(path)
    original = model.get_weights()
    model.set_weights([rng.standard_normal(s) for s in shapes])
    model.load_weights(path)
    for a, b in zip(original, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=".weights.npz"):
        model.save_weights(tmp_path / "m.pkl")
    other = keras.Sequential([keras.Input((8,)), layers.Dense(4)])
    with pytest.raises(ValueError, match="holds 4 weights"):
        other.load_weights(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.weights.npz"]


def test_summary_table(capsys):
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.summary()
    text = capsys.readouterr().out
    assert 'Model: "sequential"' in text
    assert "dense (Dense)" in text and "(None, 16)" in text and "144" in text
    assert "Total params:" in text and "Trainable params: 195" in text


def test_sequential_builds_from_data_and_legacy_input_shape(rng):
    x, y = _blobs(rng, n=40)
    lazy = keras.Sequential([layers.Dense(4, activation="relu"), layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="not been built"):
        lazy.summary()
    lazy.compile("adam", "sparse_categorical_crossentropy")
    lazy.fit(x, y, epochs=1, verbose=0)
    assert lazy.inputs[0].shape == (None, 8)
    legacy = keras.Sequential([layers.Dense(4, input_shape=(8,))])
    assert legacy.outputs[0].shape == (None, 4)


# ---- bad input ------------------------------------------------------------


def _compiled(rng):
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, *_blobs(rng, n=50)


def _unchanged(model, before):
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m, x, y: m.fit(x[:, :5], y, verbose=0), ValueError, r"expects samples of shape \(8,\)"),
        (lambda m, x, y: m.fit(x[..., None], y, verbose=0), ValueError, "expects samples of shape"),
        (lambda m, x, y: m.fit(x, y[:40], verbose=0), ValueError, "same number of samples"),
        (lambda m, x, y: m.fit(x, y + 3, verbose=0), ValueError, r"labels in \[0, 2\]"),
        (lambda m, x, y: m.fit(x, y - 1, verbose=0), ValueError, r"labels in \[0, 2\]"),
        (lambda m, x, y: m.fit(x.astype(str), y, verbose=0), TypeError, "real numbers"),
        (lambda m, x, y: m.fit(x[:0], y[:0], verbose=0), ValueError, "empty"),
        (lambda m, x, y: m.fit(x, y, batch_size=0, verbose=0), ValueError, "batch_size"),
        (lambda m, x, y: m.fit(x, y, validation_split=1.0, verbose=0), ValueError, "validation_split"),
        (lambda m, x, y: m.fit(x, y, validation_split=-0.1, verbose=0), ValueError, "validation_split"),
        (lambda m, x, y: m.fit(x, np.eye(3)[y][:, :2], verbose=0), ValueError, "class indices"),
        (lambda m, x, y: m.predict(x[:, :3], verbose=0), ValueError, "expects samples of shape"),
    ],
)
def test_bad_data_gives_clear_errors_and_changes_nothing(call, error, message, rng):
    model, x, y = _compiled(rng)
    before = model.get_weights()
    iterations = model.optimizer.iterations
    with pytest.raises(error, match=message):
        call(model, x, y)
    _unchanged(model, before)
    assert model.optimizer.iterations == iterations


def test_fit_before_compile_and_unknown_names(rng):
    x, y = _blobs(rng, n=10)
    model = _mlp()
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="adam"):
        model.compile(optimizer="adamm", loss="mse")
    with pytest.raises(ValueError, match="mean_squared_error"):
        model.compile(optimizer="adam", loss="mean_squared_errr")
    with pytest.raises(ValueError, match="accuracy"):
        model.compile(optimizer="adam", loss="mse", metrics=["acuracy"])
        model.fit(x, np.eye(3)[y], verbose=0)


def test_graph_errors():
    a = keras.Input((3,), name="a")
    b = keras.Input((3,), name="b")
    c = keras.Input((3,), name="c")
    out = layers.Dense(2)(a)
    with pytest.raises(ValueError, match="'b' is not used"):
        keras.Model([a, b], out)
    with pytest.raises(ValueError, match="disconnected"):
        keras.Model([a], layers.Dense(2)(c))


def test_terminate_on_nan_stops_training(rng, capsys):
    x, y = _blobs(rng, n=64)
    x[10] = np.nan
    model = _mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=5, batch_size=8, shuffle=False, verbose=1,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1 and np.isnan(history.history["loss"][0])
    out = capsys.readouterr().out
    assert "nan" in out and "terminating" in out


def test_dense_without_bias_in_a_model_matches_numpy(rng):
    model = keras.Sequential([keras.Input((5,)), layers.Dense(4, use_bias=False, activation="tanh")])
    x = rng.standard_normal((9, 5)).astype("float32")
    (kernel,) = model.get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0), np.tanh(x @ kernel), rtol=1e-5, atol=1e-6)
    model.compile("sgd", "mse")
    model.fit(x, np.zeros((9, 4)), epochs=2, verbose=0)
    assert len(model.get_weights()) == 1


def test_inference_plan_reuses_dead_buffers():
    from nkeras.backend import get_device
    from nkeras.graph import Plan

    inputs = keras.Input((8,))
    x = inputs
    for _ in range(4):
        x = layers.Dense(8, activation="relu")(x)
    model = keras.Model(inputs, x)
    plan = Plan(model._graph, 16, get_device("cpu"), training=False)
    storages = {id(step.outputs[0]) for step in plan.forward_steps}
    assert len(storages) < len(plan.forward_steps)
    training = Plan(model._graph, 16, get_device("cpu"), training=True)
    assert len({id(step.outputs[0]) for step in training.forward_steps}) == len(training.forward_steps)


def test_model_checkpoint_refuses_unwritable_formats_before_training(rng, tmp_path):
    x, y = _blobs(rng, n=32)

    class Unregistered(layers.Dense):
        pass

    model = keras.Sequential([keras.Input((8,)), Unregistered(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    before = model.get_weights()
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"))
    with pytest.raises(ValueError, match="register_keras_serializable"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
    _unchanged(model, before)
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "w-{epoch:02d}.weights.npz"), save_weights_only=True)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[checkpoint])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w-01.weights.npz", "w-02.weights.npz"]
