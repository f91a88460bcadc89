"""Loss kernels of both devices against float64 NumPy references, their
gradients against finite differences (CPU), and the CUDA kernels against
their CPU twins."""

import numpy as np
import pytest

from devices import ops_for
from gradcheck import numerical_grad

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
EPS = 1e-7


# ---- references: per-row losses, straight from the definitions ----------


def _log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def ref_mse(t, p):
    return ((p - t) ** 2).mean(axis=1)


def ref_mae(t, p):
    return np.abs(p - t).mean(axis=1)


def ref_huber(t, p, delta):
    e = np.abs(p - t)
    return np.where(e <= delta, 0.5 * e**2, delta * e - 0.5 * delta**2).mean(axis=1)


def ref_bce(t, p, from_logits, smoothing):
    t = t * (1 - smoothing) + 0.5 * smoothing
    if from_logits:
        log_sigmoid = lambda z: -np.logaddexp(0.0, -z)
        return -(t * log_sigmoid(p) + (1 - t) * log_sigmoid(-p)).mean(axis=1)
    q = np.clip(p, EPS, 1 - EPS)
    return -(t * np.log(q) + (1 - t) * np.log(1 - q)).mean(axis=1)


def ref_cce(t, p, from_logits, smoothing):
    t = t * (1 - smoothing) + smoothing / p.shape[1]
    if from_logits:
        return -(t * _log_softmax(p)).sum(axis=1)
    q = np.clip(p / p.sum(axis=1, keepdims=True), EPS, 1 - EPS)
    return -(t * np.log(q)).sum(axis=1)


def ref_scce(labels, p, from_logits):
    one_hot = np.eye(p.shape[1])[labels.astype(int)]
    return ref_cce(one_hot, p, from_logits, 0.0)


def ref_kld(t, p):
    t = np.clip(t, EPS, 1)
    q = np.clip(p, EPS, 1)
    return (t * np.log(t / q)).sum(axis=1)


# ---- cases: (kernel name, params, reference, kind of data) ---------------

CASES = {
    "mse": ("mean_squared_error", (), ref_mse, "real"),
    "mae": ("mean_absolute_error", (), ref_mae, "real"),
    "huber": ("huber", (0.7,), lambda t, p: ref_huber(t, p, 0.7), "real"),
    "bce": ("binary_crossentropy", (False, 0.0, EPS), lambda t, p: ref_bce(t, p, False, 0.0), "prob"),
    "bce_smooth": ("binary_crossentropy", (False, 0.2, EPS), lambda t, p: ref_bce(t, p, False, 0.2), "prob"),
    "bce_logits": ("binary_crossentropy", (True, 0.0, EPS), lambda t, p: ref_bce(t, p, True, 0.0), "logit"),
    "bce_logits_smooth": ("binary_crossentropy", (True, 0.1, EPS), lambda t, p: ref_bce(t, p, True, 0.1), "logit"),
    "cce": ("categorical_crossentropy", (False, 0.0, EPS), lambda t, p: ref_cce(t, p, False, 0.0), "prob"),
    "cce_smooth": ("categorical_crossentropy", (False, 0.3, EPS), lambda t, p: ref_cce(t, p, False, 0.3), "prob"),
    "cce_logits": ("categorical_crossentropy", (True, 0.0, EPS), lambda t, p: ref_cce(t, p, True, 0.0), "logit"),
    "cce_logits_smooth": (
        "categorical_crossentropy", (True, 0.15, EPS), lambda t, p: ref_cce(t, p, True, 0.15), "logit",
    ),
    "scce": ("sparse_categorical_crossentropy", (False, EPS), lambda t, p: ref_scce(t, p, False), "prob"),
    "scce_logits": ("sparse_categorical_crossentropy", (True, EPS), lambda t, p: ref_scce(t, p, True), "logit"),
    "kld": ("kl_divergence", (EPS,), ref_kld, "prob"),
}


def _data(case, shape, rng):
    """(y_true, y_pred, sample_weight) in float64, random and nonzero, away
    from the kinks (mae at 0) and from the clip bounds."""
    kernel, _, _, kind = CASES[case]
    rows, cols = shape
    weights = rng.uniform(0.2, 2.0, rows)
    if kernel == "sparse_categorical_crossentropy":
        y_true = rng.integers(0, cols, rows).astype(np.float64)
    elif kernel == "categorical_crossentropy":
        # soft labels whose rows need not sum to one
        y_true = rng.dirichlet(np.ones(cols), rows) * rng.uniform(0.5, 1.5, (rows, 1))
    elif kind == "real":
        y_true = rng.standard_normal(shape)
    else:
        y_true = rng.uniform(0.05, 0.95, shape)
    if kind == "real":
        y_pred = y_true + rng.choice([-1.0, 1.0], shape) * rng.uniform(0.05, 2.5, shape)
    elif kind == "logit":
        y_pred = 3.0 * rng.standard_normal(shape)
    elif kernel in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        y_pred = rng.uniform(0.1, 1.0, shape)
        y_pred /= y_pred.sum(axis=1, keepdims=True) * rng.uniform(0.8, 1.25, (rows, 1))
    else:
        y_pred = rng.uniform(0.02, 0.98, shape)
    return y_true, y_pred, weights


def _run(ops, case, y_true, y_pred, weights, scale):
    kernel, params, _, _ = CASES[case]
    grad = np.full_like(y_pred, np.nan)
    loss_sum = np.full(1, np.nan)
    getattr(ops, kernel)(y_true, y_pred, weights, *params, scale, grad, loss_sum)
    return loss_sum[0], grad


@pytest.mark.parametrize(("device", "shape"), DEVICE_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_and_gradient_match_numpy(case, device, shape, dtype, rng):
    y_true, y_pred, weights = _data(case, shape, rng)
    reference = CASES[case][2]
    cast = lambda a: np.ascontiguousarray(a, dtype)
    t, p, w = cast(y_true), cast(y_pred), cast(weights)
    scale = 0.5
    total, grad = _run(ops_for(device), case, t, p, w, scale)
    # The reference sees the inputs the kernel saw (rounded for float32).
    t64, p64, w64 = t.astype(np.float64), p.astype(np.float64), w.astype(np.float64)
    expected = np.sum(w64 * reference(t64, p64))
    assert total == pytest.approx(expected, rel=1e-6 if dtype == np.float32 else 1e-12, abs=1e-12)
    assert grad.dtype == dtype
    # Row i's loss depends on row i only: differentiate row by row.
    numeric = np.vstack([
        scale * numerical_grad(lambda row, i=i: w64[i] * reference(t64[i:i + 1], row)[0], p64[i:i + 1].copy())
        for i in range(shape[0])
    ])
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-6, "atol": 1e-8}
    np.testing.assert_allclose(grad, numeric, **tolerance)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (6, 1), (5, 4)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_matches_finite_differences_of_the_kernel(case, shape, rng):
    ops = ops_for("cpu")
    y_true, y_pred, weights = _data(case, shape, rng)
    scale = 0.37
    _, grad = _run(ops, case, y_true, y_pred, weights, scale)
    numeric = numerical_grad(lambda p: scale * _run(ops, case, y_true, p, weights, scale)[0], y_pred)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_gradient_is_written_not_accumulated(ops, rng):
    y_true, y_pred, weights = _data("cce_logits", (5, 4), rng)
    first = _run(ops, "cce_logits", y_true, y_pred, weights, 1.0)
    grad = np.full_like(y_pred, 123.0)
    loss_sum = np.full(1, 456.0)
    ops.categorical_crossentropy(y_true, y_pred, weights, True, 0.0, EPS, 1.0, grad, loss_sum)
    np.testing.assert_array_equal(grad, first[1])
    assert loss_sum[0] == first[0]


@pytest.mark.parametrize("case", ["bce", "kld"])
def test_clipped_probabilities_have_zero_gradient(ops, case, rng):
    y_true, y_pred, weights = _data(case, (3, 4), rng)
    y_pred[0, 0] = 0.0
    y_pred[1, 1] = 1.0
    total, grad = _run(ops, case, y_true, y_pred, weights, 1.0)
    assert np.isfinite(total)
    assert grad[0, 0] == 0.0 and grad[1, 1] == 0.0
    assert np.all(grad[2] != 0.0)


def test_sparse_clipped_label_probability_has_zero_gradient(ops, rng):
    y_true, y_pred, weights = _data("scce", (3, 4), rng)
    y_pred[0, int(y_true[0])] = 0.0
    total, grad = _run(ops, "scce", y_true, y_pred, weights, 1.0)
    assert total == pytest.approx(np.sum(weights * ref_scce(y_true, y_pred, False)), rel=1e-12)
    np.testing.assert_array_equal(grad[0], 0.0)
    assert np.all(grad[1:] != 0.0)


def test_cross_entropies_from_logits_are_stable(ops):
    logits = np.array([[800.0, -800.0, 0.0], [-900.0, 900.0, 1.0]])
    labels = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    weights = np.ones(2)
    for case, y_true in (("cce_logits", labels), ("scce_logits", labels.argmax(axis=1).astype(float)),
                         ("bce_logits", labels)):
        total, grad = _run(ops, case, y_true, logits, weights, 1.0)
        assert np.isfinite(total) and total > 1000.0, case
        assert np.all(np.isfinite(grad)), case


def test_sparse_ids_outside_the_classes_select_nothing(ops, rng):
    y_pred = rng.standard_normal((3, 4))
    weights = np.ones(3)
    for case in ("scce", "scce_logits"):
        probs = y_pred if case == "scce_logits" else np.exp(y_pred)
        total, grad = _run(ops, case, np.array([-1.0, 4.0, 2.0]), probs, weights, 1.0)
        expected = CASES[case][2](np.array([2.0]), probs[2:])[0]
        assert total == pytest.approx(expected, rel=1e-12)
        np.testing.assert_array_equal(grad[:2], 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_cuda_matches_cpu(case, dtype, rng):
    kernel, _, _, kind = CASES[case]
    rows, cols = 260, 7
    y_true, y_pred, weights = _data(case, (rows, cols), rng)
    if kind == "prob":
        y_pred[0, 0], y_pred[1, 1] = 0.0, 1.0
    if kernel == "sparse_categorical_crossentropy":
        y_true[:2] = [-1.0, cols]
    cast = lambda a: np.ascontiguousarray(a, dtype)
    t, p, w = cast(y_true), cast(y_pred), cast(weights)
    cpu_total, cpu_grad = _run(ops_for("cpu"), case, t, p, w, 0.3)
    cuda_total, cuda_grad = _run(ops_for("cuda"), case, t, p, w, 0.3)
    assert cuda_total == pytest.approx(cpu_total, rel=1e-12)
    # A GPU's exp and log may differ from the CPU's in the last bit.
    tolerance = {"rtol": 1e-6, "atol": 1e-9} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-15}
    np.testing.assert_allclose(cuda_grad, cpu_grad, **tolerance)


@pytest.mark.parametrize("rows", [1, 7, 300])
def test_masked_row_weights_give_a_mean_over_the_unmasked_rows(ops, rows, rng):
    mask = (rng.random(rows) < 0.6).astype(np.float64)
    mask[0] = 1.0
    weights = rng.random(rows) + 0.5
    out = np.full(rows, np.nan)
    ops.masked_row_weights(mask, weights, 1e-7, out)
    expected = weights * mask * rows / (mask.sum() + 1e-7)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
