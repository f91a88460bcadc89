"""Normalisation, PReLU and spatial dropout kernels against float64 NumPy
references, on the CPU and on the (simulated) GPU."""

import itertools

import numpy as np
import pytest

from devices import ops_for

DTYPES = [np.float32, np.float64]
AFFINE = [(True, True), (False, True), (True, False)]


def _cases(cpu_cases, cuda_cases):
    """``pytest.param(device, *case)`` for every CPU case and a few small CUDA
    cases (the simulator runs each GPU thread, barriers included, in Python)."""
    def param(device, case):
        words = [np.dtype(v).name if isinstance(v, type) else str(v) for v in case]
        return pytest.param(device, *case, id="-".join([device] + words))

    return [param("cpu", case) for case in cpu_cases] + [param("cuda", case) for case in cuda_cases]


# (rows, channels): single rows and channels, odd sizes, two GPU column tiles
# (33 and 65 channels against tiles of 32), many rows.
BATCH_NORM_SHAPES = [(1, 1), (1, 7), (5, 1), (13, 3), (70, 33), (3000, 65)]
BATCH_NORM_CASES = _cases(
    itertools.product(BATCH_NORM_SHAPES, DTYPES, [True, False], AFFINE),
    [((1, 7), np.float64, True, (True, True)), ((20, 33), np.float32, True, (True, True)),
     ((20, 33), np.float32, False, (True, True)), ((6, 3), np.float32, True, (False, True)),
     ((6, 3), np.float64, False, (True, False))],
)
LAYER_NORM_SHAPES = [(1, 1), (1, 7), (5, 1), (13, 33), (9, 70), (300, 65)]
LAYER_NORM_CASES = _cases(
    itertools.product(LAYER_NORM_SHAPES, DTYPES, AFFINE + [(False, False)]),
    [((1, 7), np.float64, (True, True)), ((11, 33), np.float32, (True, True)),
     ((5, 3), np.float32, (False, True)), ((3, 4), np.float32, (True, False)), ((2, 3), np.float32, (False, False))],
)


def _tolerance(dtype):
    return {"rtol": 2e-4, "atol": 2e-4} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}


def _cast(dtype, *arrays):
    return [np.ascontiguousarray(a, dtype=dtype) for a in arrays]


def _reference_normalization_grads(x_hat, inv_std, gamma, dy, axis):
    """dx of ``y = gamma * x_hat + beta`` with ``x_hat`` standardised along ``axis``."""
    dy_gamma = dy * gamma
    mean_dy_gamma = dy_gamma.mean(axis=axis, keepdims=True)
    mean_dy_gamma_x_hat = (dy_gamma * x_hat).mean(axis=axis, keepdims=True)
    return inv_std * (dy_gamma - mean_dy_gamma - x_hat * mean_dy_gamma_x_hat)


@pytest.mark.parametrize("device,shape,dtype,training,affine", BATCH_NORM_CASES)
def test_batch_norm_matches_numpy(device, shape, dtype, training, affine, rng):
    ops = ops_for(device)
    scale, center = affine
    channels = shape[1]
    momentum, epsilon = 0.9, 1e-3
    x = rng.standard_normal(shape) * 2.0 + rng.standard_normal(channels)
    gamma = rng.standard_normal(channels)
    beta = rng.standard_normal(channels)
    moving_mean = rng.standard_normal(channels)
    moving_variance = rng.uniform(0.5, 2.0, channels)
    dy = rng.standard_normal(shape)
    if training:
        mean, variance = x.mean(axis=0), x.var(axis=0)
        expected_moving = (moving_mean * momentum + mean * (1 - momentum),
                           moving_variance * momentum + variance * (1 - momentum))
    else:
        mean, variance = moving_mean, moving_variance
        expected_moving = (moving_mean, moving_variance)
    inv_std = 1 / np.sqrt(variance + epsilon)
    x_hat = (x - mean) * inv_std
    g = gamma if scale else np.ones(channels)
    y_ref = x_hat * g + (beta if center else 0.0)
    if training:
        dx_ref = _reference_normalization_grads(x_hat, inv_std, g, dy, axis=0)
    else:
        dx_ref = dy * g * inv_std

    xs, gs, bs, mms, mvs, dys = _cast(dtype, x, gamma, beta, moving_mean, moving_variance, dy)
    mean_out, inv_std_out = np.empty(channels, dtype), np.empty(channels, dtype)
    y = np.empty(shape, dtype)
    ops.batch_norm_forward(xs, gs, bs, scale, center, training, momentum, epsilon, mms, mvs, mean_out, inv_std_out, y)
    tolerance = _tolerance(dtype)
    np.testing.assert_allclose(mean_out, mean, **tolerance)
    np.testing.assert_allclose(inv_std_out, inv_std, **tolerance)
    np.testing.assert_allclose(mms, expected_moving[0], **tolerance)
    np.testing.assert_allclose(mvs, expected_moving[1], **tolerance)
    np.testing.assert_allclose(y, y_ref, **tolerance)

    # The stand-ins for an absent gamma or beta gradient must stay untouched.
    dgamma = np.full(channels, 7.0, dtype)
    dbeta = np.full(channels, 7.0, dtype)
    dx = np.empty(shape, dtype)
    ops.batch_norm_backward(xs, dys, gs, scale, center, training, mean_out, inv_std_out, dgamma, dbeta, dx, True)
    np.testing.assert_allclose(dgamma, (dy * x_hat).sum(axis=0) if scale else 7.0, **tolerance)
    np.testing.assert_allclose(dbeta, dy.sum(axis=0) if center else 7.0, **tolerance)
    np.testing.assert_allclose(dx, dx_ref, **tolerance)


def test_batch_norm_backward_without_dx_writes_only_weight_grads(ops, rng):
    x, gamma, dy = rng.standard_normal((6, 3)), rng.standard_normal(3), rng.standard_normal((6, 3))
    mean, inv_std = x.mean(axis=0), 1 / np.sqrt(x.var(axis=0) + 1e-3)
    dgamma, dbeta = np.empty(3), np.empty(3)
    dx = dy.copy()
    ops.batch_norm_backward(x, dy, gamma, True, True, True, mean, inv_std, dgamma, dbeta, dx, False)
    np.testing.assert_array_equal(dx, dy)
    np.testing.assert_allclose(dbeta, dy.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("device,shape,dtype,affine", LAYER_NORM_CASES)
def test_layer_norm_matches_numpy(device, shape, dtype, affine, rng):
    ops = ops_for(device)
    scale, center = affine
    rows, cols = shape
    epsilon = 1e-3
    x = rng.standard_normal(shape) * 3.0 + rng.standard_normal((rows, 1))
    gamma, beta, dy = rng.standard_normal(cols), rng.standard_normal(cols), rng.standard_normal(shape)
    mean, inv_std = x.mean(axis=1), 1 / np.sqrt(x.var(axis=1) + epsilon)
    x_hat = (x - mean[:, None]) * inv_std[:, None]
    g = gamma if scale else np.ones(cols)
    y_ref = x_hat * g + (beta if center else 0.0)
    dx_ref = _reference_normalization_grads(x_hat, inv_std[:, None], g, dy, axis=1)

    xs, gs, bs, dys = _cast(dtype, x, gamma, beta, dy)
    mean_out, inv_std_out, y = np.empty(rows, dtype), np.empty(rows, dtype), np.empty(shape, dtype)
    ops.layer_norm_forward(xs, gs, bs, scale, center, epsilon, mean_out, inv_std_out, y)
    tolerance = _tolerance(dtype)
    np.testing.assert_allclose(mean_out, mean, **tolerance)
    np.testing.assert_allclose(inv_std_out, inv_std, **tolerance)
    np.testing.assert_allclose(y, y_ref, **tolerance)

    dgamma, dbeta, dx = np.full(cols, 7.0, dtype), np.full(cols, 7.0, dtype), np.empty(shape, dtype)
    ops.layer_norm_backward(xs, dys, gs, scale, center, mean_out, inv_std_out, dgamma, dbeta, dx, True)
    np.testing.assert_allclose(dgamma, (dy * x_hat).sum(axis=0) if scale else 7.0, **tolerance)
    np.testing.assert_allclose(dbeta, dy.sum(axis=0) if center else 7.0, **tolerance)
    np.testing.assert_allclose(dx, dx_ref, **tolerance)


# (rows, cols, (alpha_rows, row_repeat), (alpha_cols, col_repeat)): one alpha
# per element, per column, per run of columns, a shared middle axis, a scalar.
PRELU_CASES = [
    (1, 1, (1, 1), (1, 1)),
    (5, 7, (1, 1), (7, 1)),
    (6, 12, (1, 1), (3, 1)),
    (9, 10, (1, 1), (5, 2)),
    (12, 5, (3, 2), (5, 1)),
    (7, 9, (1, 1), (1, 1)),
    (240, 30, (4, 3), (6, 5)),
]


@pytest.mark.parametrize(
    "device,case,dtype",
    _cases(itertools.product(PRELU_CASES, DTYPES), [(case, np.float32) for case in PRELU_CASES[1:5]]
           + [(PRELU_CASES[5], np.float64)]),
)
def test_prelu_matches_numpy(device, case, dtype, rng):
    ops = ops_for(device)
    rows, cols, (alpha_rows, row_repeat), (alpha_cols, col_repeat) = case
    x = rng.standard_normal((rows, cols))
    alpha = rng.standard_normal((alpha_rows, alpha_cols))
    dy = rng.standard_normal((rows, cols))
    row_of = (np.arange(rows) // row_repeat) % alpha_rows
    col_of = (np.arange(cols) // col_repeat) % alpha_cols
    alpha_full = alpha[np.ix_(row_of, col_of)]
    y_ref = np.where(x > 0, x, alpha_full * x)
    dx_ref = np.where(x > 0, dy, alpha_full * dy)
    dalpha_ref = np.zeros_like(alpha)
    np.add.at(dalpha_ref, np.ix_(row_of, col_of), dy * np.minimum(x, 0))

    xs, alphas, dys = _cast(dtype, x, alpha, dy)
    y = np.empty((rows, cols), dtype)
    ops.prelu_forward(xs, alphas, row_repeat, col_repeat, y)
    tolerance = _tolerance(dtype)
    np.testing.assert_allclose(y, y_ref, **tolerance)
    dalpha, dx = np.empty_like(alphas), np.empty_like(xs)
    ops.prelu_backward(xs, alphas, dys, row_repeat, col_repeat, dalpha, dx, True)
    np.testing.assert_allclose(dalpha, dalpha_ref, **tolerance)
    np.testing.assert_allclose(dx, dx_ref, **tolerance)
    dx_untouched = np.zeros_like(xs)
    ops.prelu_backward(xs, alphas, dys, row_repeat, col_repeat, dalpha, dx_untouched, False)
    assert not dx_untouched.any()


# (samples, positions, channels)
SPATIAL_SHAPES = [(1, 1, 1), (3, 4, 5), (2, 9, 33), (64, 50, 64)]
SPATIAL_CASES = _cases(
    itertools.product(SPATIAL_SHAPES, [0.0, 0.3, 0.9], DTYPES),
    [((1, 1, 1), 0.3, np.float64), ((3, 4, 5), 0.0, np.float32), ((3, 4, 5), 0.9, np.float64),
     ((2, 9, 33), 0.3, np.float32)],
)


@pytest.mark.parametrize("device,shape,rate,dtype", SPATIAL_CASES)
def test_spatial_dropout_drops_whole_channels(device, shape, rate, dtype, rng):
    ops = ops_for(device)
    samples, _, channels = shape
    x = (rng.standard_normal(shape) + 3.0).astype(dtype)
    mask, y = np.empty((samples, channels), dtype), np.empty(shape, dtype)
    ops.spatial_dropout_forward(x, rate, 11, 5, mask, y)
    kept = mask != 0
    np.testing.assert_allclose(mask[kept], 1 / (1 - rate), rtol=1e-6)
    np.testing.assert_allclose(y, x * mask[:, None, :], rtol=1e-6)
    if mask.size > 4000:
        assert abs((~kept).mean() - rate) < 0.03
    dy = rng.standard_normal(shape).astype(dtype)
    dx = np.empty(shape, dtype)
    ops.spatial_dropout_backward(dy, mask, dx)
    np.testing.assert_allclose(dx, dy * mask[:, None, :], rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_spatial_dropout_masks_are_identical_on_cpu_and_cuda_and_vary_with_step(dtype, rng):
    x = rng.standard_normal((6, 5, 17)).astype(dtype)
    results = {}
    for device, step in [("cpu", 3), ("cuda", 3), ("cpu", 4)]:
        mask, y = np.empty((6, 17), dtype), np.empty_like(x)
        ops_for(device).spatial_dropout_forward(x, 0.3, 2**62 + 9, step, mask, y)
        results[device, step] = mask, y
    for cpu_array, cuda_array in zip(results["cpu", 3], results["cuda", 3]):
        np.testing.assert_array_equal(cuda_array, cpu_array)
    assert not np.array_equal(results["cpu", 3][0], results["cpu", 4][0])
