"""Dense, dropout and array kernels against float64 NumPy references."""

import numpy as np
import pytest
from scipy.special import erf

from nkeras.kernels import codes
from nkeras.kernels.cpu import array, dense, dropout

SHAPES = [(1, 1, 1), (1, 7, 3), (5, 1, 9), (13, 17, 11), (64, 33, 130)]
DTYPES = [np.float32, np.float64]


def _reference_activation(z, name, alpha):
    if name == "linear":
        return z, np.ones_like(z)
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(z.dtype)
    if name == "tanh":
        return np.tanh(z), 1 - np.tanh(z) ** 2
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s, s * (1 - s)
    if name == "gelu":
        cdf = 0.5 * (1 + erf(z / np.sqrt(2)))
        return z * cdf, cdf + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    if name == "leaky_relu":
        return np.where(z > 0, z, alpha * z), np.where(z > 0, 1.0, alpha)
    raise KeyError(name)


def _tolerance(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rows,inputs,units", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["linear", "relu", "tanh", "sigmoid", "gelu", "leaky_relu", "softmax"])
def test_dense_forward_backward_match_numpy(rows, inputs, units, dtype, name, rng):
    alpha = 0.2
    x = rng.standard_normal((rows, inputs))
    w = rng.standard_normal((inputs, units)) / np.sqrt(inputs)
    b = rng.standard_normal(units)
    dy = rng.standard_normal((rows, units))
    z_ref = x @ w + b
    if name == "softmax":
        e = np.exp(z_ref - z_ref.max(axis=1, keepdims=True))
        y_ref = e / e.sum(axis=1, keepdims=True)
        dz_ref = y_ref * (dy - (dy * y_ref).sum(axis=1, keepdims=True))
    else:
        y_ref, slope = _reference_activation(z_ref, name, alpha)
        dz_ref = dy * slope

    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)  # noqa: E731
    xs, ws, bs, dys = cast(x), cast(w), cast(b), cast(dy)
    z = np.empty((rows, units), dtype)
    y = np.empty((rows, units), dtype)
    dense.dense_forward(xs, ws, bs, codes.ACTIVATION_CODES[name], alpha, z, y)
    np.testing.assert_allclose(z, z_ref, **_tolerance(dtype))
    np.testing.assert_allclose(y, y_ref, **_tolerance(dtype))

    dz, dw, db, dx = (np.empty(s, dtype) for s in ((rows, units), (inputs, units), (units,), (rows, inputs)))
    dense.dense_backward(xs, ws, z, y, dys, codes.ACTIVATION_CODES[name], alpha, dz, dw, db, dx, True)
    np.testing.assert_allclose(dz, dz_ref, **_tolerance(dtype))
    np.testing.assert_allclose(dw, x.T @ dz_ref, **_tolerance(dtype))
    np.testing.assert_allclose(db, dz_ref.sum(axis=0), **_tolerance(dtype))
    np.testing.assert_allclose(dx, dz_ref @ w.T, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_in_place_variants(dtype, rng):
    """Inference passes y as z; training passes dy as dz and skips dx."""
    x = rng.standard_normal((9, 5)).astype(dtype)
    w = rng.standard_normal((5, 4)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y = np.empty((9, 4), dtype)
    dense.dense_forward(x, w, b, codes.RELU, 0.0, y, y)
    np.testing.assert_allclose(y, np.maximum(x @ w + b, 0), **_tolerance(dtype))
    dy = rng.standard_normal((9, 4)).astype(dtype)
    expected_dz = dy * (y > 0)
    dw, db = np.empty((5, 4), dtype), np.empty(4, dtype)
    dense.dense_backward(x, w, y, y, dy, codes.RELU, 0.0, dy, dw, db, dy, False)
    np.testing.assert_allclose(dy, expected_dz, **_tolerance(dtype))
    np.testing.assert_allclose(dw, x.T @ expected_dz, **_tolerance(dtype))


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (128, 513)])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_scales_kept_values_and_drops_at_rate(shape, rate, dtype, rng):
    x = (rng.standard_normal(shape) + 3.0).astype(dtype)
    mask = np.empty(shape, dtype)
    y = np.empty(shape, dtype)
    dropout.dropout_forward(x, rate, 42, 7, mask, y)
    kept = mask != 0
    np.testing.assert_allclose(mask[kept], 1 / (1 - rate), rtol=1e-6)
    np.testing.assert_allclose(y, x * mask, rtol=1e-6)
    if x.size > 10000:
        assert abs((~kept).mean() - rate) < 0.01
    dy = rng.standard_normal(shape).astype(dtype)
    dx = np.empty(shape, dtype)
    dropout.dropout_backward(dy, mask, dx)
    np.testing.assert_allclose(dx, dy * mask, rtol=1e-6)


def test_dropout_is_reproducible_and_varies_with_step_and_seed():
    x = np.ones((64, 65), np.float32)
    masks = {}
    for seed, step in [(1, 0), (1, 0), (1, 1), (2, 0)]:
        mask, y = np.empty_like(x), np.empty_like(x)
        dropout.dropout_forward(x, 0.5, seed, step, mask, y)
        masks.setdefault((seed, step), []).append(mask)
    np.testing.assert_array_equal(*masks[(1, 0)])
    assert not np.array_equal(masks[(1, 0)][0], masks[(1, 1)][0])
    assert not np.array_equal(masks[(1, 0)][0], masks[(2, 0)][0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_array_kernels(dtype, rng):
    source = rng.standard_normal((50, 7)).astype(dtype)
    order = rng.permutation(50).astype(np.int64)
    out = np.empty((13, 7), dtype)
    array.gather_rows(source, order, 20, out)
    np.testing.assert_array_equal(out, source[order[20:33]])
    target = rng.standard_normal((5, 3)).astype(dtype)
    addend = rng.standard_normal((5, 3)).astype(dtype)
    expected = target.astype(np.float64) + addend
    array.add_into(target, addend)
    np.testing.assert_allclose(target, expected, rtol=1e-6)
    array.copy_into(target, addend)
    np.testing.assert_array_equal(target, addend)
