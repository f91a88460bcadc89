"""nkeras.losses and nkeras.metrics: names, get(), configs, eager values
against NumPy references, the engine-facing API, and parity with Keras 3
where keras is installed."""

import os

import numpy as np
import pytest

from nkeras import losses, metrics
from nkeras.backend import get_device

LOSS_CLASSES = [
    (losses.MeanSquaredError, {}, "mean_squared_error"),
    (losses.MeanAbsoluteError, {}, "mean_absolute_error"),
    (losses.Huber, {"delta": 0.6}, "huber_loss"),
    (losses.BinaryCrossentropy, {"from_logits": True, "label_smoothing": 0.1}, "binary_crossentropy"),
    (losses.CategoricalCrossentropy, {"from_logits": True, "label_smoothing": 0.2}, "categorical_crossentropy"),
    (losses.SparseCategoricalCrossentropy, {"from_logits": True}, "sparse_categorical_crossentropy"),
    (losses.KLDivergence, {}, "kl_divergence"),
]


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def _loss_data(cls, shape, rng, from_logits=False):
    """(y_true, y_pred) suited to the loss, float32."""
    classes = shape[-1]
    if cls is losses.SparseCategoricalCrossentropy:
        y_true = rng.integers(0, classes, shape[:-1])
    elif cls is losses.CategoricalCrossentropy:
        y_true = np.eye(classes)[rng.integers(0, classes, shape[:-1])]
    elif cls in (losses.BinaryCrossentropy, losses.KLDivergence):
        y_true = rng.uniform(0.0, 1.0, shape)
    else:
        y_true = rng.standard_normal(shape)
    if from_logits or cls in (losses.MeanSquaredError, losses.MeanAbsoluteError, losses.Huber):
        y_pred = 2.0 * rng.standard_normal(shape)
    else:
        y_pred = rng.uniform(0.02, 0.98, shape)
    return y_true.astype(np.float32), y_pred.astype(np.float32)


# ---- losses: names, get(), configs --------------------------------------


@pytest.mark.parametrize("cls,kwargs,name", LOSS_CLASSES)
def test_loss_defaults_and_config_round_trip(cls, kwargs, name):
    loss = cls()
    assert loss.name == name and loss.reduction == "sum_over_batch_size" and loss.dtype == "float32"
    assert loss.sparse_labels == (cls is losses.SparseCategoricalCrossentropy)
    configured = cls(**kwargs, reduction="sum", name="custom")
    config = configured.get_config()
    assert config["name"] == "custom" and config["reduction"] == "sum"
    for key, value in kwargs.items():
        assert config[key] == value
    clone = cls.from_config(config)
    assert type(clone) is cls and clone.get_config() == config
    again = losses.get(losses.serialize(configured))
    assert type(again) is cls and again.get_config() == config


def test_loss_get_accepts_names_aliases_classes_and_functions():
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    assert isinstance(losses.get("MAE"), losses.MeanAbsoluteError)
    assert isinstance(losses.get("kld"), losses.KLDivergence)
    assert isinstance(losses.get("bce"), losses.BinaryCrossentropy)
    assert isinstance(losses.get("huber"), losses.Huber)
    assert isinstance(losses.get("sparse_categorical_crossentropy"), losses.SparseCategoricalCrossentropy)
    assert isinstance(losses.get("CategoricalCrossentropy"), losses.CategoricalCrossentropy)
    assert isinstance(losses.get(losses.BinaryCrossentropy), losses.BinaryCrossentropy)
    assert isinstance(losses.get(losses.categorical_crossentropy), losses.CategoricalCrossentropy)
    instance = losses.Huber(delta=2.0)
    assert losses.get(instance) is instance
    assert losses.get(None) is None
    assert losses.mse is losses.mean_squared_error and losses.kld is losses.kl_divergence


def test_loss_get_errors_list_valid_names():
    with pytest.raises(ValueError, match="valid names: .*'mean_squared_error'.*'kld'"):
        losses.get("mean_squared_errors")
    with pytest.raises(ValueError, match="subclass"):
        losses.get(lambda y_true, y_pred: 0.0)
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="average")
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.BinaryCrossentropy(label_smoothing=1.5)
    with pytest.raises(NotImplementedError, match="ignore_class"):
        losses.SparseCategoricalCrossentropy(ignore_class=0)
    with pytest.raises(ValueError, match="dtype"):
        losses.MeanSquaredError(dtype="int32")
    with pytest.raises(ValueError, match=r"same shape, got \(4, 3\) and \(4, 2\)"):
        losses.MeanSquaredError()(np.ones((4, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="class ids of shape"):
        losses.SparseCategoricalCrossentropy()(np.ones((4, 3)), np.ones((4, 3)))


def test_custom_loss_without_kernel_is_explained():
    class Custom(losses.Loss):
        pass

    loss = Custom()
    assert loss.name == "custom"
    with pytest.raises(NotImplementedError, match="forward.*backward.*docs/custom_layers.md"):
        losses.get(loss)
    with pytest.raises(NotImplementedError, match="forward.*backward.*docs/custom_layers.md"):
        loss(np.ones((2, 2)), np.ones((2, 2)))


# ---- losses: eager values -------------------------------------------------


def test_loss_reductions_and_sample_weights(rng):
    y_true = rng.standard_normal((6, 3))
    y_pred = rng.standard_normal((6, 3))
    weights = rng.uniform(0.1, 2.0, 6)
    per_sample = ((y_true - y_pred) ** 2).mean(axis=1)
    call = lambda reduction, **kw: losses.MeanSquaredError(reduction=reduction, dtype="float64")(
        y_true, y_pred, **kw)
    assert call("sum_over_batch_size") == pytest.approx(per_sample.mean(), rel=1e-12)
    assert call("mean", sample_weight=weights) == pytest.approx((weights * per_sample).mean(), rel=1e-12)
    assert call("sum", sample_weight=weights) == pytest.approx((weights * per_sample).sum(), rel=1e-12)
    assert call("mean_with_sample_weight", sample_weight=weights) == pytest.approx(
        (weights * per_sample).sum() / weights.sum(), rel=1e-12)
    np.testing.assert_allclose(call(None, sample_weight=weights), weights * per_sample, rtol=1e-12)
    np.testing.assert_allclose(call("none"), per_sample, rtol=1e-12)
    assert isinstance(call("sum"), float)


def test_loss_shapes_follow_keras(rng):
    y = rng.standard_normal((5, 1))
    p = rng.standard_normal(5)
    # (n,) targets against (n, 1) predictions: one error per sample
    assert losses.MeanSquaredError(dtype="float64")(y[:, 0], p[:, None]) == pytest.approx(((y[:, 0] - p) ** 2).mean())
    # rank-3 predictions: one loss per (sample, step); weights broadcast over steps
    y3 = rng.standard_normal((4, 3, 2))
    p3 = rng.standard_normal((4, 3, 2))
    w = rng.uniform(0.5, 1.5, 4)
    per_step = np.abs(y3 - p3).mean(axis=-1)
    assert losses.MeanAbsoluteError(dtype="float64")(y3, p3, sample_weight=w) == pytest.approx(
        (per_step * w[:, None]).mean(), rel=1e-12)
    # sparse labels as (n,) or (n, 1)
    logits = rng.standard_normal((4, 5))
    labels = rng.integers(0, 5, 4)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_probs[np.arange(4), labels].mean()
    scce = losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    assert scce(labels, logits) == pytest.approx(expected, rel=1e-12)
    assert scce(labels[:, None], logits) == pytest.approx(expected, rel=1e-12)


def test_loss_functions_return_per_sample_values(rng):
    y_true = rng.uniform(0.05, 0.95, (4, 3))
    y_pred = rng.uniform(0.05, 0.95, (4, 3))
    eps = 1e-7
    bce = -(y_true * np.log(y_pred) + (1 - y_true) * np.log(1 - y_pred)).mean(axis=1)
    np.testing.assert_allclose(losses.binary_crossentropy(y_true, y_pred), bce, rtol=1e-12)
    smoothed = y_true * 0.8 + 0.2 / 3
    normalised = y_pred / y_pred.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(losses.categorical_crossentropy(y_true, y_pred, label_smoothing=0.2),
                               -(smoothed * np.log(normalised)).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(losses.kl_divergence(y_true, y_pred),
                               (y_true * np.log(y_true / y_pred)).sum(axis=1), rtol=1e-12)
    error = y_pred - y_true
    np.testing.assert_allclose(losses.huber(y_true, y_pred, delta=0.3),
                               np.where(np.abs(error) <= 0.3, 0.5 * error**2, 0.3 * np.abs(error) - 0.045).mean(axis=1))
    assert losses.mean_absolute_error(y_true, y_pred).shape == (4,)
    labels = np.array([0, 2, 1, 1])
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(labels, y_pred),
                               -np.log(np.clip(normalised[np.arange(4), labels], eps, 1 - eps)), rtol=1e-12)


@pytest.mark.parametrize("cls,kwargs,name", LOSS_CLASSES)
def test_eager_loss_matches_its_per_sample_function(cls, kwargs, name, rng):
    y_true, y_pred = _loss_data(cls, (7, 4), rng, kwargs.get("from_logits", False))
    weights = rng.uniform(0.2, 2.0, 7)
    loss = cls(**kwargs, dtype="float64")
    per_sample = loss.call(y_true.astype(np.float64), y_pred.astype(np.float64))
    assert loss(y_true, y_pred, sample_weight=weights) == pytest.approx(np.mean(weights * per_sample), rel=1e-10)


# ---- losses: the engine-facing API ----------------------------------------


def test_compute_and_batch_scale(rng):
    ops = get_device("cpu").ops
    y_true = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 5)]
    y_pred = rng.standard_normal((5, 3)).astype(np.float32)
    weights = rng.uniform(0.5, 1.5, 5).astype(np.float32)
    loss = losses.CategoricalCrossentropy(from_logits=True)
    scale = 2.0 * loss.batch_scale(5)
    grad = np.empty_like(y_pred)
    loss_sum = np.zeros(1)
    loss.compute(ops, y_true, y_pred, weights, scale, grad, loss_sum)
    z = y_pred.astype(np.float64)
    softmax = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert loss_sum[0] == pytest.approx(np.sum(-weights * np.log((softmax * y_true).sum(axis=1))), rel=1e-6)
    np.testing.assert_allclose(grad, scale * weights[:, None] * (softmax - y_true), rtol=1e-5, atol=1e-7)
    assert losses.MeanSquaredError(reduction="sum").batch_scale(5) == 1.0
    with pytest.raises(ValueError, match="not supported in training"):
        losses.MeanSquaredError(reduction=None).batch_scale(5)


# ---- metrics ----------------------------------------------------------------

METRIC_CLASSES = [
    (metrics.Accuracy, {}, "accuracy"),
    (metrics.BinaryAccuracy, {"threshold": 0.3}, "binary_accuracy"),
    (metrics.CategoricalAccuracy, {}, "categorical_accuracy"),
    (metrics.SparseCategoricalAccuracy, {}, "sparse_categorical_accuracy"),
    (metrics.TopKCategoricalAccuracy, {"k": 2}, "top_k_categorical_accuracy"),
    (metrics.SparseTopKCategoricalAccuracy, {"k": 2}, "sparse_top_k_categorical_accuracy"),
    (metrics.MeanSquaredError, {}, "mean_squared_error"),
    (metrics.MeanAbsoluteError, {}, "mean_absolute_error"),
    (metrics.Mean, {}, "mean"),
]


@pytest.mark.parametrize("cls,kwargs,name", METRIC_CLASSES)
def test_metric_defaults_and_config_round_trip(cls, kwargs, name):
    metric = cls()
    assert metric.name == name and metric.dtype == "float32" and metric.result() == 0.0
    assert metric.sparse_labels == (cls in (metrics.SparseCategoricalAccuracy, metrics.SparseTopKCategoricalAccuracy))
    configured = cls(**kwargs, name="custom", dtype="float64")
    config = configured.get_config()
    assert config == {"name": "custom", "dtype": "float64", **kwargs}
    assert cls.from_config(config).get_config() == config
    assert metrics.get(metrics.serialize(configured)).get_config() == config


def test_metric_get_names_metrics_by_the_given_string():
    assert isinstance(metrics.get("mse"), metrics.MeanSquaredError) and metrics.get("mse").name == "mse"
    assert metrics.get("mean_absolute_error").name == "mean_absolute_error"
    assert isinstance(metrics.get("SparseCategoricalAccuracy"), metrics.SparseCategoricalAccuracy)
    assert isinstance(metrics.get("accuracy"), metrics.Accuracy)
    assert metrics.get(metrics.BinaryAccuracy).name == "binary_accuracy"
    instance = metrics.TopKCategoricalAccuracy(k=3)
    assert metrics.get(instance) is instance
    with pytest.raises(ValueError, match="valid names: .*'binary_accuracy'.*'mse'"):
        metrics.get("f1")
    with pytest.raises(ValueError, match="plain Python functions"):
        metrics.get(lambda y_true, y_pred: 0.0)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        metrics.TopKCategoricalAccuracy(k=0)


@pytest.mark.parametrize(
    "name,y_true_shape,y_pred_shape,expected",
    [
        ("accuracy", (None, 1), (None, 1), metrics.BinaryAccuracy),
        ("acc", (None, 1), (None, 10), metrics.SparseCategoricalAccuracy),
        ("accuracy", (None,), (None, 10), metrics.SparseCategoricalAccuracy),
        ("acc", (None, 10), (None, 10), metrics.CategoricalAccuracy),
        ("accuracy", (None, 5, 1), (None, 5, 3), metrics.SparseCategoricalAccuracy),
    ],
)
def test_resolve_accuracy_follows_keras(name, y_true_shape, y_pred_shape, expected):
    metric = metrics.resolve_accuracy(name, y_true_shape, y_pred_shape)
    assert type(metric) is expected and metric.name == name


def test_metrics_accumulate_weighted_batches(rng):
    metric = metrics.SparseCategoricalAccuracy()
    total = count = 0.0
    for rows in (5, 3):
        scores = rng.standard_normal((rows, 4))
        labels = rng.integers(0, 4, rows)
        weights = rng.uniform(0.1, 1.0, rows)
        metric.update_state(labels[:, None], scores, sample_weight=weights)
        total += np.sum(weights * (scores.argmax(axis=1) == labels))
        count += weights.sum()
    assert metric.result() == pytest.approx(total / count, rel=1e-6)
    metric.reset_state()
    assert metric.result() == 0.0 and np.all(metric.totals == 0.0)


def test_metric_values_per_sample(rng):
    y_true = rng.standard_normal((6, 3))
    y_pred = rng.standard_normal((6, 3))
    mse = metrics.MeanSquaredError(dtype="float64")
    mse.update_state(y_true, y_pred)
    assert mse.result() == pytest.approx(((y_true - y_pred) ** 2).mean(), rel=1e-12)
    labels = (rng.random((6, 3)) < 0.5).astype(float)
    probs = rng.random((6, 3))
    binary = metrics.BinaryAccuracy(threshold=0.4)
    binary.update_state(labels, probs, sample_weight=np.arange(1, 7))
    per_row = (labels == (probs > 0.4)).mean(axis=1)
    assert binary.result() == pytest.approx(np.sum(np.arange(1, 7) * per_row) / 21, rel=1e-6)
    # rank-1 inputs: one value per element for accuracy, one sample for mse
    accuracy = metrics.Accuracy()
    accuracy.update_state([1, 2, 3, 4], [0, 2, 3, 4])
    assert accuracy.result() == pytest.approx(0.75) and accuracy.totals[1] == 4
    mae = metrics.MeanAbsoluteError()
    mae.update_state([1.0, 2.0], [1.5, 3.0])
    assert mae.result() == pytest.approx(0.75) and mae.totals[1] == 1
    top = metrics.TopKCategoricalAccuracy(k=1)
    top.update_state([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], sample_weight=[0.7, 0.3])
    assert top.result() == pytest.approx(0.3)


def test_update_arrays_adds_into_totals(rng):
    ops = get_device("cpu").ops
    metric = metrics.CategoricalAccuracy()
    scores = rng.standard_normal((8, 3)).astype(np.float32)
    targets = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]
    metric.update_arrays(ops, targets, scores, np.ones(8, np.float32))
    metric.update_arrays(ops, targets, scores, np.ones(8, np.float32))
    hits = np.sum(scores.argmax(axis=1) == targets.argmax(axis=1))
    np.testing.assert_array_equal(metric.totals, [2 * hits, 16])


def test_mean_tracks_weighted_scalars_and_arrays():
    mean = metrics.Mean(name="loss")
    mean.update_state(2.0, 32)
    mean.update_state(4.0, 16)
    assert mean.result() == pytest.approx((2 * 32 + 4 * 16) / 48)
    mean.reset_state()
    mean.update_state([1.0, 3.0, 5.0, 7.0], sample_weight=[1, 1, 0, 0])
    assert mean.result() == pytest.approx(2.0)
    mean.update_state(np.array([[1.0, 3.0], [5.0, 7.0]]))
    assert mean.result() == pytest.approx((1 + 3 + 2 + 6) / 4)


# ---- parity with Keras 3 ----------------------------------------------------

KERAS_LOSS_CASES = [
    ("MeanSquaredError", "mean_squared_error", {}),
    ("MeanAbsoluteError", "mean_absolute_error", {}),
    ("Huber", "huber", {"delta": 0.5}),
    ("BinaryCrossentropy", "binary_crossentropy", {}),
    ("BinaryCrossentropy", "binary_crossentropy", {"from_logits": True, "label_smoothing": 0.1}),
    ("CategoricalCrossentropy", "categorical_crossentropy", {}),
    ("CategoricalCrossentropy", "categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.2}),
    ("SparseCategoricalCrossentropy", "sparse_categorical_crossentropy", {}),
    ("SparseCategoricalCrossentropy", "sparse_categorical_crossentropy", {"from_logits": True}),
    ("KLDivergence", "kl_divergence", {}),
]


@pytest.mark.parametrize("class_name,function_name,kwargs", KERAS_LOSS_CASES)
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum"])
def test_losses_match_keras(class_name, function_name, kwargs, reduction, rng):
    keras = _keras()
    cls = getattr(losses, class_name)
    for shape in ((6, 5), (1, 1), (3, 2, 4)):
        if cls is losses.CategoricalCrossentropy and shape[-1] == 1:
            continue
        y_true, y_pred = _loss_data(cls, shape, rng, kwargs.get("from_logits", False))
        weights = rng.uniform(0.2, 2.0, shape[0]).astype(np.float32)
        ours = cls(**kwargs, reduction=reduction)
        theirs = getattr(keras.losses, class_name)(**kwargs, reduction=reduction)
        if len(shape) == 3:
            assert ours(y_true, y_pred) == pytest.approx(float(theirs(y_true, y_pred)), rel=2e-5, abs=1e-6)
        else:
            assert ours(y_true, y_pred, sample_weight=weights) == pytest.approx(
                float(theirs(y_true, y_pred, sample_weight=weights)), rel=2e-5, abs=1e-6)
        np.testing.assert_allclose(
            getattr(losses, function_name)(y_true, y_pred, **kwargs),
            np.asarray(getattr(keras.losses, function_name)(y_true, y_pred, **kwargs)), rtol=2e-5, atol=1e-6)


KERAS_METRIC_CASES = [
    ("Accuracy", {}, "equal"),
    ("BinaryAccuracy", {"threshold": 0.4}, "binary"),
    ("CategoricalAccuracy", {}, "one_hot"),
    ("SparseCategoricalAccuracy", {}, "sparse"),
    ("TopKCategoricalAccuracy", {"k": 2}, "one_hot"),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, "sparse"),
    ("MeanSquaredError", {}, "real"),
    ("MeanAbsoluteError", {}, "real"),
]


@pytest.mark.parametrize("class_name,kwargs,kind", KERAS_METRIC_CASES)
def test_metrics_match_keras(class_name, kwargs, kind, rng):
    keras = _keras()
    ours = getattr(metrics, class_name)(**kwargs)
    theirs = getattr(keras.metrics, class_name)(**kwargs)
    assert ours.name == theirs.name
    for rows in (7, 1, 4):
        if kind == "equal":
            y_true, y_pred = rng.integers(0, 3, (rows, 2)), rng.integers(0, 3, (rows, 2))
        elif kind == "binary":
            y_true, y_pred = (rng.random((rows, 3)) < 0.5).astype(np.float32), rng.random((rows, 3))
        elif kind == "one_hot":
            y_true, y_pred = np.eye(5)[rng.integers(0, 5, rows)], rng.integers(0, 4, (rows, 5)) / 4
        elif kind == "sparse":
            y_true, y_pred = rng.integers(0, 5, (rows, 1)), rng.integers(0, 4, (rows, 5)) / 4
        else:
            y_true, y_pred = rng.standard_normal((rows, 3)), rng.standard_normal((rows, 3))
        y_true, y_pred = np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32)
        weights = rng.uniform(0.1, 2.0, rows).astype(np.float32)
        ours.update_state(y_true, y_pred, sample_weight=weights)
        theirs.update_state(y_true, y_pred, sample_weight=weights)
        assert ours.result() == pytest.approx(float(theirs.result()), rel=2e-5, abs=1e-6)
    assert ours.get_config() == {k: v for k, v in theirs.get_config().items() if k in ours.get_config()}
