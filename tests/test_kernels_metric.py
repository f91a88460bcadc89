"""Metric kernels of both devices against float64 NumPy references, and the
CUDA kernels against their CPU twins."""

import numpy as np
import pytest

from devices import ops_for

SHAPES = [(1, 1), (1, 6), (7, 1), (13, 17), (64, 10)]
# Simulated launches are slow: CUDA runs one element, a few rows, and more rows
# than a block has threads (each thread then loops over rows).
CUDA_SHAPES = [(1, 1), (13, 17), (300, 3)]
DEVICE_SHAPES = [
    pytest.param(device, shape, id=f"{device}-{shape}")
    for device, shapes in (("cpu", SHAPES), ("cuda", CUDA_SHAPES))
    for shape in shapes
]
DTYPES = [np.float32, np.float64]


def _in_top_k(labels, scores, k):
    """Whether each label's score reaches the k-th largest score of its row."""
    kth = -np.sort(-scores, axis=1)[:, min(k, scores.shape[1]) - 1]
    return scores[np.arange(len(labels)), labels] >= kth


# name -> (params, make y_true from (rng, y_pred), per-row reference)
CASES = {
    "accuracy": ((), lambda rng, p: rng.integers(0, 3, p.shape).astype(float),
                 lambda t, p: (t == p).mean(axis=1)),
    "binary_accuracy": ((0.5,), lambda rng, p: (rng.random(p.shape) < 0.5).astype(float),
                        lambda t, p: (t == (p > 0.5)).mean(axis=1)),
    "binary_accuracy_0.3": ((0.3,), lambda rng, p: (rng.random(p.shape) < 0.5).astype(float),
                            lambda t, p: (t == (p > 0.3)).mean(axis=1)),
    "categorical_accuracy": ((), lambda rng, p: np.eye(p.shape[1])[rng.integers(0, p.shape[1], len(p))],
                             lambda t, p: (t.argmax(axis=1) == p.argmax(axis=1)).astype(float)),
    "sparse_categorical_accuracy": ((), lambda rng, p: rng.integers(0, p.shape[1], len(p)).astype(float),
                                    lambda t, p: (t == p.argmax(axis=1)).astype(float)),
    "top_k_categorical_accuracy": ((3,), lambda rng, p: np.eye(p.shape[1])[rng.integers(0, p.shape[1], len(p))],
                                   lambda t, p: _in_top_k(t.argmax(axis=1), p, 3).astype(float)),
    "sparse_top_k_categorical_accuracy": (
        (2,), lambda rng, p: rng.integers(0, p.shape[1], len(p)).astype(float),
        lambda t, p: _in_top_k(t.astype(int), p, 2).astype(float),
    ),
    "mean_squared_error_metric": ((), lambda rng, p: rng.standard_normal(p.shape),
                                  lambda t, p: ((p - t) ** 2).mean(axis=1)),
    "mean_absolute_error_metric": ((), lambda rng, p: rng.standard_normal(p.shape),
                                   lambda t, p: np.abs(p - t).mean(axis=1)),
}


def _predictions(name, shape, rng):
    if name == "accuracy":
        return rng.integers(0, 3, shape).astype(float)
    if "binary" in name:
        return rng.random(shape)
    if "error" in name:
        return rng.standard_normal(shape)
    # scores on a coarse grid, so that rows have ties
    return rng.integers(0, 4, shape) / 4.0


@pytest.mark.parametrize(("device", "shape"), DEVICE_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_metric_adds_weighted_sums(case, device, shape, dtype, rng):
    params, make_true, reference = CASES[case]
    y_pred = _predictions(case, shape, rng)
    y_true = make_true(rng, y_pred)
    weights = rng.uniform(0.1, 2.0, shape[0])
    cast = lambda a: np.ascontiguousarray(a, dtype)
    t, p, w = cast(y_true), cast(y_pred), cast(weights)
    acc = np.array([1.25, 3.5])
    getattr(ops_for(device), case.split("_0.")[0])(t, p, w, *params, acc)
    t64, p64, w64 = t.astype(float), p.astype(float), w.astype(float)
    expected = np.sum(w64 * reference(t64, p64))
    np.testing.assert_allclose(acc, [1.25 + expected, 3.5 + w64.sum()], rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_argmax_ties_and_nans_follow_numpy(ops):
    y_pred = np.array([[0.5, 0.7, 0.7, 0.1], [0.2, np.nan, 0.9, np.nan], [0.3, 0.3, 0.3, 0.3]])
    for label in range(4):
        acc = np.zeros(2)
        ops.sparse_categorical_accuracy(np.full(3, float(label)), y_pred, np.ones(3), acc)
        assert acc[0] == np.sum(np.argmax(y_pred, axis=1) == label)


def test_top_k_counts_ties_for_the_label_and_never_nan(ops):
    y_pred = np.array([[0.9, 0.5, 0.5, 0.5, 0.1], [0.9, np.nan, 0.5, 0.4, 0.1]])
    hits = {}
    for label in range(5):
        acc = np.zeros(2)
        ops.sparse_top_k_categorical_accuracy(np.full(2, float(label)), y_pred, np.ones(2), 2, acc)
        hits[label] = acc[0]
    # row 0: label 1, 2 or 3 ties for second place; row 1: the NaN never counts
    assert hits == {0: 2.0, 1: 1.0, 2: 2.0, 3: 1.0, 4: 0.0}


def test_sparse_ids_outside_the_classes_never_hit(ops):
    y_pred = np.array([[0.2, 0.8], [0.6, 0.4]])
    acc = np.zeros(2)
    ops.sparse_top_k_categorical_accuracy(np.array([-1.0, 2.0]), y_pred, np.ones(2), 5, acc)
    ops.sparse_categorical_accuracy(np.array([-1.0, 2.0]), y_pred, np.ones(2), acc)
    np.testing.assert_array_equal(acc, [0.0, 4.0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_cuda_matches_cpu(case, dtype, rng):
    params, make_true, _ = CASES[case]
    name = case.split("_0.")[0]
    rows, cols = 260, 7
    y_pred = _predictions(case, (rows, cols), rng)
    y_true = make_true(rng, y_pred)
    if name.startswith("sparse"):
        y_true[:2] = [-1.0, cols]
    elif "categorical" in name:
        y_pred[0, 3] = np.nan
    cast = lambda a: np.ascontiguousarray(a, dtype)
    t, p, w = cast(y_true), cast(y_pred), cast(rng.uniform(0.1, 2.0, rows))
    totals = {}
    for device in ("cpu", "cuda"):
        totals[device] = np.array([1.25, 3.5])
        getattr(ops_for(device), name)(t, p, w, *params, totals[device])
    np.testing.assert_allclose(totals["cuda"], totals["cpu"], rtol=1e-12)
