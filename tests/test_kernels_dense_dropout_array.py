"""Dense, dropout and array kernels against float64 NumPy references."""

import numpy as np
import pytest
from scipy.special import erf

from devices import device_cases, ops_for
from nkeras.kernels import codes

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


@pytest.mark.parametrize("device,shape", device_cases(SHAPES + [(70, 19, 67)], size=lambda s: s[0] * s[2] // 2))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["linear", "relu", "tanh", "sigmoid", "gelu", "leaky_relu", "softmax"])
def test_dense_forward_backward_match_numpy(device, shape, dtype, name, rng):
    """Also on GPU-tile-straddling shapes: 70 rows and 67 units span two 64-wide tiles."""
    ops = ops_for(device)
    rows, inputs, units = shape
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

    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)
    xs, ws, bs, dys = cast(x), cast(w), cast(b), cast(dy)
    z = np.empty((rows, units), dtype)
    y = np.empty((rows, units), dtype)
    ops.dense_forward(xs, ws, bs, codes.ACTIVATION_CODES[name], alpha, z, y)
    np.testing.assert_allclose(z, z_ref, **_tolerance(dtype))
    np.testing.assert_allclose(y, y_ref, **_tolerance(dtype))

    dz, dw, db, dx = (np.empty(s, dtype) for s in ((rows, units), (inputs, units), (units,), (rows, inputs)))
    ops.dense_backward(xs, ws, z, y, dys, codes.ACTIVATION_CODES[name], alpha, dz, dw, db, dx, True)
    np.testing.assert_allclose(dz, dz_ref, **_tolerance(dtype))
    np.testing.assert_allclose(dw, x.T @ dz_ref, **_tolerance(dtype))
    np.testing.assert_allclose(db, dz_ref.sum(axis=0), **_tolerance(dtype))
    np.testing.assert_allclose(dx, dz_ref @ w.T, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_in_place_variants(ops, dtype, rng):
    """Inference passes y as z; training passes dy as dz and skips dx."""
    x = rng.standard_normal((9, 5)).astype(dtype)
    w = rng.standard_normal((5, 4)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y = np.empty((9, 4), dtype)
    ops.dense_forward(x, w, b, codes.RELU, 0.0, y, y)
    np.testing.assert_allclose(y, np.maximum(x @ w + b, 0), **_tolerance(dtype))
    dy = rng.standard_normal((9, 4)).astype(dtype)
    expected_dz = dy * (y > 0)
    dw, db = np.empty((5, 4), dtype), np.empty(4, dtype)
    ops.dense_backward(x, w, y, y, dy, codes.RELU, 0.0, dy, dw, db, dy, False)
    np.testing.assert_allclose(dy, expected_dz, **_tolerance(dtype))
    np.testing.assert_allclose(dw, x.T @ expected_dz, **_tolerance(dtype))


# (20, 33): more elements than one block of GPU threads; (128, 513) is CPU-only.
@pytest.mark.parametrize("device,shape", device_cases([(1, 1), (3, 7), (20, 33), (128, 513)]))
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_scales_kept_values_and_drops_at_rate(device, shape, rate, dtype, rng):
    ops = ops_for(device)
    x = (rng.standard_normal(shape) + 3.0).astype(dtype)
    mask = np.empty(shape, dtype)
    y = np.empty(shape, dtype)
    ops.dropout_forward(x, rate, 42, 7, mask, y)
    kept = mask != 0
    np.testing.assert_allclose(mask[kept], 1 / (1 - rate), rtol=1e-6)
    np.testing.assert_allclose(y, x * mask, rtol=1e-6)
    if x.size > 10000:
        assert abs((~kept).mean() - rate) < 0.01
    dy = rng.standard_normal(shape).astype(dtype)
    dx = np.empty(shape, dtype)
    ops.dropout_backward(dy, mask, dx)
    np.testing.assert_allclose(dx, dy * mask, rtol=1e-6)


def test_dropout_is_reproducible_and_varies_with_step_and_seed(ops):
    x = np.ones((64, 65), np.float32)
    masks = {}
    for seed, step in [(1, 0), (1, 0), (1, 1), (2, 0)]:
        mask, y = np.empty_like(x), np.empty_like(x)
        ops.dropout_forward(x, 0.5, seed, step, mask, y)
        masks.setdefault((seed, step), []).append(mask)
    np.testing.assert_array_equal(*masks[(1, 0)])
    assert not np.array_equal(masks[(1, 0)][0], masks[(1, 1)][0])
    assert not np.array_equal(masks[(1, 0)][0], masks[(2, 0)][0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rate,seed,step", [(0.3, 42, 7), (0.5, 2**62 + 12345, 987654321)])
def test_dropout_masks_are_identical_on_cpu_and_cuda(dtype, rate, seed, step, rng):
    x = rng.standard_normal((19, 29)).astype(dtype)
    results = {}
    for device in ("cpu", "cuda"):
        mask, y = np.empty_like(x), np.empty_like(x)
        ops_for(device).dropout_forward(x, rate, seed, step, mask, y)
        results[device] = mask, y
    for cpu_array, cuda_array in zip(results["cpu"], results["cuda"]):
        np.testing.assert_array_equal(cuda_array, cpu_array)


@pytest.mark.parametrize("dtype", DTYPES)
def test_array_kernels(ops, dtype, rng):
    source = rng.standard_normal((50, 7)).astype(dtype)
    order = rng.permutation(50).astype(np.int64)
    out = np.empty((13, 7), dtype)
    ops.gather_rows(source, order, 20, out)
    np.testing.assert_array_equal(out, source[order[20:33]])
    target = rng.standard_normal((5, 3)).astype(dtype)
    addend = rng.standard_normal((5, 3)).astype(dtype)
    expected = target.astype(np.float64) + addend
    ops.add_into(target, addend)
    np.testing.assert_allclose(target, expected, rtol=1e-6)
    ops.copy_into(target, addend)
    np.testing.assert_array_equal(target, addend)


@pytest.mark.parametrize("source_dtype", [np.uint8, np.int32, np.float64])
def test_array_kernels_cast_sources_and_span_blocks(ops, source_dtype, rng):
    """Batches gather from uint8 images or float64 arrays into float32
    buffers; (40, 9) takes more than one block of GPU threads."""
    source = rng.uniform(0, 255, (90, 9)).astype(source_dtype)
    order = rng.permutation(90).astype(np.int64)
    out = np.empty((40, 9), np.float32)
    ops.gather_rows(source, order, 45, out)
    np.testing.assert_array_equal(out, source[order[45:85]].astype(np.float32))
    addend = rng.standard_normal(out.shape).astype(np.float32)
    expected = out + addend
    ops.add_into(out, addend)
    np.testing.assert_array_equal(out, expected)
    ops.copy_into(out, addend)
    np.testing.assert_array_equal(out, addend)
