"""The fused convolution + 2x2 max pooling kernels (a grayscale image's first
convolution, and Winograd's) against a float64 NumPy reference (the
convolution, activation and pooling done apart), a finite-difference check
of their gradients, and the CUDA twins (numba-cuda's simulator in CI)."""

import numpy as np
import pytest

from devices import at_one_and_all_threads, device_cases, ops_for
from gradcheck import numerical_grad

DTYPES = [np.float32, np.float64]

# (batch, height, width, filters, padding before, relu): odd sizes drop the
# last convolution row or column from the pooling; 4x4 "valid" gives one
# window; "same" (padding 1) reads zeros at every edge.
CASES = [
    (1, 4, 4, 1, 0, True),
    (2, 6, 7, 3, 0, True),
    (2, 6, 7, 3, 1, False),
    (3, 9, 5, 5, 1, True),
    (1, 5, 8, 2, 0, False),
    (2, 11, 10, 4, 1, True),
    (2, 28, 28, 32, 0, True),
    (1, 5, 7, 33, 1, False),
    (37, 6, 7, 3, 0, True),  # the CPU kernels' tasks of 16 samples: 16, 16 and 5
]


def _size(case):
    batch, height, width, filters, _, _ = case
    return batch * height * width * filters


def _reference(x, w, b, padding, relu):
    """Convolution, activation and 2x2 pooling apart, in float64: the pooled
    output, the first maximum's window position, and the backward (the
    pooled gradient scattered to the maxima, then the convolution's kernel,
    bias and input gradients)."""
    x, w, b = (np.asarray(a, np.float64) for a in (x, w, b))
    batch, height, width, channels = x.shape
    filters = w.shape[-1]
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out_h, out_w = padded.shape[1] - 2, padded.shape[2] - 2
    taps = [(ky, kx) for ky in range(3) for kx in range(3)]
    patches = np.concatenate([padded[:, ky:ky + out_h, kx:kx + out_w] for ky, kx in taps], -1)
    z = patches @ w.reshape(9 * channels, filters) + b
    act = np.maximum(z, 0) if relu else z
    rows, cols = out_h // 2, out_w // 2
    windows = act[:, :2 * rows, :2 * cols].reshape(batch, rows, 2, cols, 2, filters).transpose(0, 1, 3, 5, 2, 4)
    windows = windows.reshape(batch, rows, cols, filters, 4)
    y = windows.max(-1)
    where = windows.argmax(-1).astype(np.float64)

    def backward(dy):
        dz = np.zeros_like(z)
        for q in range(4):
            chosen = np.where(where == q, dy, 0.0)
            dz[:, q // 2:2 * rows:2, q % 2:2 * cols:2] += chosen
        if relu:
            dz *= z > 0
        dw = np.einsum("bhwt,bhwf->tf", patches, dz).reshape(3, 3, channels, filters)
        dpatches = dz @ w.reshape(9 * channels, filters).T
        dpadded = np.zeros_like(padded)
        for k, (ky, kx) in enumerate(taps):
            dpadded[:, ky:ky + out_h, kx:kx + out_w] += dpatches[..., k * channels:(k + 1) * channels]
        dx = dpadded[:, padding:padding + height, padding:padding + width]
        return dw, dz.sum((0, 1, 2)), dx

    return y, where, backward


def _inputs(case, dtype, rng):
    batch, height, width, filters, _, _ = case
    x = rng.standard_normal((batch, height, width, 1)).astype(dtype)
    w = rng.standard_normal((3, 3, 1, filters)).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype)
    return x, w, b


def _pooled_shape(case):
    batch, height, width, filters, padding, _ = case
    return batch, (height - 2 + 2 * padding) // 2, (width - 2 + 2 * padding) // 2, filters


@pytest.mark.parametrize("device,case", device_cases(CASES, size=_size))
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_the_layers_apart(device, case, dtype, rng):
    ops = ops_for(device)
    x, w, b = _inputs(case, dtype, rng)
    padding, relu = (case[4], case[4]), case[5]
    want_y, want_where, backward = _reference(x, w, b, case[4], relu)
    y = np.full(_pooled_shape(case), np.nan, dtype)
    where = np.full(y.shape, np.nan, dtype)
    ops.conv2d_max_pool_forward(x, w, b, padding, relu, y, where)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, want_y, rtol=tol, atol=tol)
    # Random data has no ties within float32 rounding here. Under a relu the
    # kernel picks the maximum before it, the reference after: where all four
    # are <= 0 they may differ, and the gradient there is zero either way.
    chosen = want_y > 0 if relu else np.ones(y.shape, bool)
    np.testing.assert_array_equal(where[chosen], want_where[chosen])

    dy = rng.standard_normal(y.shape).astype(dtype)
    want_dw, want_db, _ = backward(dy)
    dw = np.full(w.shape, np.nan, dtype)
    db = np.full(b.shape, np.nan, dtype)
    ops.conv2d_max_pool_backward(x, y, dy, where, padding, relu, dw, db)
    np.testing.assert_allclose(dw, want_dw, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(db, want_db, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ties_go_to_the_first_output_on_both_devices(dtype):
    """A constant image gives four equal outputs per window: the first one
    (position 0) is the maximum, and the window's whole gradient goes to it."""
    case = (2, 6, 6, 3, 0, False)
    x = np.full((2, 6, 6, 1), 0.5, dtype)
    w = np.arange(27, dtype=dtype).reshape(3, 3, 1, 3) / 10
    b = np.zeros(3, dtype)
    dy = np.arange(np.prod(_pooled_shape(case)), dtype=dtype).reshape(_pooled_shape(case))
    results = []
    for device in ("cpu", "cuda"):
        ops = ops_for(device)
        y = np.empty(_pooled_shape(case), dtype)
        where = np.empty(y.shape, dtype)
        dw, db = np.empty(w.shape, dtype), np.empty(3, dtype)
        ops.conv2d_max_pool_forward(x, w, b, (0, 0), False, y, where)
        ops.conv2d_max_pool_backward(x, y, dy, where, (0, 0), False, dw, db)
        assert (where == 0).all()
        results.append((y, dw, db))
    for cpu, cuda in zip(*results):
        np.testing.assert_allclose(cuda, cpu, rtol=1e-6)
    np.testing.assert_allclose(results[0][1], np.broadcast_to(0.5 * dy.sum((0, 1, 2)), w.shape), rtol=1e-6)


@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[3]])
def test_gradients_match_finite_differences(case, rng):
    ops = ops_for("cpu")
    x, w, b = _inputs(case, np.float64, rng)
    padding, relu = (case[4], case[4]), case[5]
    weights = rng.standard_normal(_pooled_shape(case))
    y = np.empty(_pooled_shape(case))
    where = np.empty(y.shape)

    def loss(_):
        ops.conv2d_max_pool_forward(x, w, b, padding, relu, y, where)
        return float((y * weights).sum())

    loss(None)
    dw, db = np.empty(w.shape), np.empty(b.shape)
    ops.conv2d_max_pool_backward(x, y, weights, where, padding, relu, dw, db)
    np.testing.assert_allclose(dw, numerical_grad(loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numerical_grad(loss, b), rtol=1e-6, atol=1e-7)


# Winograd: (batch, height, width, channels, filters, padding before, relu,
# input gradient). 13x13 "valid" is the MNIST convnet's second layer (an
# 11x11 output: the last row and column are not pooled); "same" at 10x9
# ends in a tile with one pooled column.
WINOGRAD_CASES = [
    (2, 13, 13, 8, 9, 0, True, True),
    (1, 10, 9, 8, 8, 1, False, True),
    (2, 6, 6, 8, 8, 0, True, True),
    (1, 7, 12, 9, 10, 0, True, False),
    (1, 8, 8, 8, 16, 1, True, True),
    (37, 6, 7, 4, 5, 1, True, True),  # tasks of 16, 16 and 5 samples on the CPU
]


def _winograd_buffers(case, dtype):
    batch, height, width, channels, filters, padding = case[:6]
    out_h, out_w = height - 2 + 2 * padding, width - 2 + 2 * padding
    tiles_h, tiles_w = -(-out_h // 4), -(-out_w // 4)
    tiles = batch * tiles_h * tiles_w
    return (
        np.zeros((batch, 4 * tiles_h + 2, 4 * tiles_w + 2, channels), dtype),
        np.zeros((36, tiles, channels), dtype),
        np.zeros((36, channels, filters), dtype),
        np.zeros((36, tiles, filters), dtype),
        np.zeros((36, channels, filters), dtype),
    ), (batch, out_h // 2, out_w // 2, filters)


def _winograd_size(case):
    # The simulator runs a thread per (tile, filter) and the 36 products'
    # elements: the largest case stays on the CPU.
    batch, height, width, channels, filters = case[:5]
    return 2 * batch * height * width * max(channels, filters)


def _winograd_run(ops, case, x, w, b, dy, dtype):
    """Forward then backward; returns y, argmax, dw, db, dx (None when the
    case has no input gradient)."""
    padding, relu, need_dx = (case[5], case[5]), case[6], case[7]
    (padded, v, u, m, du), pooled = _winograd_buffers(case, dtype)
    y = np.full(pooled, np.nan, dtype)
    where = np.full(pooled, np.nan, dtype)
    ops.conv2d_winograd_max_pool_forward(x, w, b, padding, relu, padded, v, u, m, y, where)
    dw, db = np.full(w.shape, np.nan, dtype), np.full(b.shape, np.nan, dtype)
    dx = np.full(x.shape, np.nan, dtype)
    ops.conv2d_winograd_max_pool_backward(y, dy.copy(), where, padding, relu, padded, v, u, m, du, dw, db, dx, need_dx)
    return y, where, dw, db, dx if need_dx else None


def _winograd_inputs(case, dtype, rng):
    batch, height, width, channels, filters = case[:5]
    x = rng.standard_normal((batch, height, width, channels)).astype(dtype)
    w = (rng.standard_normal((3, 3, channels, filters)) / np.sqrt(9 * channels)).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype) * 0.1
    return x, w, b


@pytest.mark.parametrize("device,case", device_cases(WINOGRAD_CASES, size=_winograd_size))
@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_matches_the_layers_apart(device, case, dtype, rng):
    x, w, b = _winograd_inputs(case, dtype, rng)
    relu = case[6]
    want_y, want_where, backward = _reference(x, w, b, case[5], relu)
    dy = rng.standard_normal(want_y.shape).astype(dtype)
    y, where, dw, db, dx = _winograd_run(ops_for(device), case, x, w, b, dy, dtype)
    # Winograd F(4x4, 3x3) in float32: about 1e-5 of the output's scale.
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(y, want_y, rtol=tol, atol=tol)
    chosen = want_y > 0 if relu else np.ones(y.shape, bool)
    if dtype == np.float64:
        np.testing.assert_array_equal(where[chosen], want_where[chosen])
    want_dw, want_db, want_dx = backward(dy)
    np.testing.assert_allclose(dw, want_dw, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(db, want_db, rtol=tol, atol=tol * 10)
    if dx is not None:
        np.testing.assert_allclose(dx, want_dx, rtol=tol, atol=tol * 10)


def test_winograd_gradients_match_finite_differences(rng):
    case = (1, 7, 6, 8, 8, 0, True, True)
    ops = ops_for("cpu")
    x, w, b = _winograd_inputs(case, np.float64, rng)
    (padded, v, u, m, du), pooled = _winograd_buffers(case, np.float64)
    weights = rng.standard_normal(pooled)
    y, where = np.empty(pooled), np.empty(pooled)

    def loss(_):
        ops.conv2d_winograd_max_pool_forward(x, w, b, (0, 0), True, padded, v, u, m, y, where)
        return float((y * weights).sum())

    loss(None)
    dw, db, dx = np.empty(w.shape), np.empty(b.shape), np.empty(x.shape)
    ops.conv2d_winograd_max_pool_backward(y, weights.copy(), where, (0, 0), True, padded, v, u, m, du, dw, db, dx, True)
    np.testing.assert_allclose(dw, numerical_grad(loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numerical_grad(loss, b), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-6, atol=1e-7)


def test_cpu_results_do_not_depend_on_the_thread_count(rng):
    """The CPU kernels split the batch into tasks of a fixed size, so one
    thread and every thread give the same bits."""
    ops = ops_for("cpu")
    case = (37, 6, 7, 4, 5, 1, True, True)
    x, w, b = _winograd_inputs(case, np.float32, rng)
    dy = rng.standard_normal((37, 3, 3, 5)).astype(np.float32)
    first = (x[..., :1].copy(), w[:, :, :1].copy())
    first_dy = rng.standard_normal((37, 3, 3, 5)).astype(np.float32)

    def run():
        winograd = _winograd_run(ops, case, x, w, b, dy, np.float32)
        y, where = np.empty((37, 3, 3, 5), np.float32), np.empty((37, 3, 3, 5), np.float32)
        ops.conv2d_max_pool_forward(first[0], first[1], b, (1, 1), True, y, where)
        dw, db = np.empty(first[1].shape, np.float32), np.empty(5, np.float32)
        ops.conv2d_max_pool_backward(first[0], y, first_dy, where, (1, 1), True, dw, db)
        return winograd + (y, where, dw, db)

    results = at_one_and_all_threads(run)
    for one, many in zip(*results):
        np.testing.assert_array_equal(one, many)
