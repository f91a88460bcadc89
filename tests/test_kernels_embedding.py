"""Embedding lookup, its gradient and the padding-mask kernels against
float64 NumPy references, on the CPU and on the (simulated) GPU."""

import numpy as np
import pytest

from devices import device_cases, ops_for

DTYPES = [np.float32, np.float64]
# (rows, input_dim, output_dim)
CASES = [(1, 1, 1), (7, 3, 5), (40, 11, 33), (300, 50, 64)]


@pytest.mark.parametrize("device,case", device_cases(CASES, size=lambda c: c[0] * c[2]))
@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_forward_and_backward_match_numpy(device, case, dtype, rng):
    ops = ops_for(device)
    rows, input_dim, output_dim = case
    indices = rng.integers(0, input_dim, rows)
    table = rng.standard_normal((input_dim, output_dim))
    y = np.full((rows, output_dim), np.nan, dtype)
    bad = np.zeros(1, dtype)
    ops.embedding_forward(indices.astype(dtype), table.astype(dtype), bad, y)
    np.testing.assert_array_equal(y, table.astype(dtype)[indices])
    assert bad[0] == 0

    dy = rng.standard_normal((rows, output_dim))
    grad = np.full((input_dim, output_dim), np.nan, dtype)
    ops.embedding_backward(indices.astype(dtype), dy.astype(dtype), grad)
    expected = np.zeros((input_dim, output_dim))
    np.add.at(expected, indices, dy)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(grad, expected, **tolerance)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_bad_indices_give_zero_rows_and_are_counted(device, rng):
    ops = ops_for(device)
    table = rng.standard_normal((4, 3)).astype(np.float32)
    indices = np.array([0, 4, 3.7, -1, np.nan, -0.5, 2], np.float32)
    y = np.full((7, 3), np.nan, np.float32)
    bad = np.array([2.0], np.float32)  # the count adds up
    ops.embedding_forward(indices, table, bad, y)
    assert bad[0] == 2 + 4
    np.testing.assert_array_equal(y[[0, 2, 6]], table[[0, 3, 2]])
    np.testing.assert_array_equal(y[[1, 3, 4, 5]], 0)
    grad = np.full((4, 3), np.nan, np.float32)
    dy = np.ones((7, 3), np.float32)
    ops.embedding_backward(indices, dy, grad)
    np.testing.assert_array_equal(grad.sum(axis=1), [3, 0, 3, 3])


@pytest.mark.parametrize("device,shape", device_cases([(1, 1), (3, 7), (17, 40)]))
def test_nonzero_mask_matches_numpy(device, shape, rng):
    ops = ops_for(device)
    indices = rng.integers(0, 3, shape).astype(np.float32)
    mask = np.full(shape, np.nan, np.float32)
    ops.nonzero_mask(indices, mask)
    np.testing.assert_array_equal(mask, indices != 0)


@pytest.mark.parametrize("device,shape", device_cases([(1, 1), (6, 3), (65, 33)]))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_value", [0.0, 0.1])
def test_masking_matches_numpy(device, shape, dtype, mask_value, rng):
    ops = ops_for(device)
    x = rng.standard_normal(shape).astype(dtype)
    x[::2] = dtype(mask_value)
    x[1::3, 0] = dtype(mask_value)  # one feature at the padding value keeps the step
    y = np.full(shape, np.nan, dtype)
    mask = np.full(shape[0], np.nan, dtype)
    ops.masking_forward(x, dtype(mask_value), y, mask)
    keep = np.any(x != dtype(mask_value), axis=1)
    np.testing.assert_array_equal(mask, keep)
    np.testing.assert_array_equal(y, x * keep[:, None])
    dy = rng.standard_normal(shape).astype(dtype)
    dx = np.full(shape, np.nan, dtype)
    ops.masking_backward(dy, mask, dx)
    np.testing.assert_array_equal(dx, dy * keep[:, None])


@pytest.mark.parametrize("device,shape", device_cases([(1, 1), (6, 3), (65, 33)]))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [0.0, 0.5])
def test_not_equal_and_any_nonzero_match_numpy(device, shape, dtype, value, rng):
    ops = ops_for(device)
    x = rng.integers(0, 3, shape).astype(dtype) * 0.5
    compared = np.full(shape, np.nan, dtype)
    ops.not_equal(x, value, compared)
    np.testing.assert_array_equal(compared, (x != value).astype(dtype))
    found = np.full(shape[0], np.nan, dtype)
    ops.any_nonzero(compared, found)
    np.testing.assert_array_equal(found, (x != value).any(axis=1).astype(dtype))
