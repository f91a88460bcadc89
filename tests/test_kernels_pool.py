"""Pooling and spatial reshaping kernels against float64 NumPy references,
on the CPU and on the CUDA twins (numba-cuda's simulator in CI)."""

import numpy as np
import pytest

from devices import device_cases, ops_for

DTYPES = [np.float32, np.float64]

# (input shape, pool, strides, padding); the windows overlap where strides < pool,
# leave gaps where strides > pool, and are clipped by "same" padding at odd sizes.
POOL_CASES = [
    ((1, 1, 1, 1), (1, 1), (1, 1), "valid"),
    ((2, 5, 7, 3), (2, 2), (2, 2), "valid"),
    ((2, 5, 7, 3), (2, 2), (2, 2), "same"),
    ((1, 7, 5, 2), (3, 3), (2, 2), "same"),
    ((1, 7, 5, 2), (3, 3), (2, 2), "valid"),
    ((3, 6, 6, 4), (3, 2), (1, 1), "valid"),
    ((2, 5, 6, 3), (2, 2), (1, 1), "same"),
    ((2, 4, 4, 3), (4, 4), (1, 1), "same"),
    ((2, 7, 7, 2), (2, 2), (3, 3), "valid"),
    ((1, 1, 9, 5), (1, 3), (1, 2), "same"),
    ((2, 11, 11, 3), (2, 2), (2, 2), "valid"),
    ((2, 4, 5, 3), (4, 5), (4, 5), "valid"),
    ((4, 26, 26, 32), (2, 2), (2, 2), "valid"),
    ((2, 9, 8, 33), (3, 2), (2, 3), "same"),
]


def _output_length(length, pool, stride, padding):
    if padding == "same":
        return (length + stride - 1) // stride
    return (length - pool) // stride + 1


def _pad_before(length, pool, stride, padding):
    if padding == "valid":
        return 0
    out = _output_length(length, pool, stride, padding)
    return max((out - 1) * stride + pool - length, 0) // 2


def _windows(shape, pool, strides, padding):
    """Every window as (i, j, row slice, col slice, row start, col start)."""
    _, rows, cols, _ = shape
    pads = _pad_before(rows, pool[0], strides[0], padding), _pad_before(cols, pool[1], strides[1], padding)
    out_rows = _output_length(rows, pool[0], strides[0], padding)
    out_cols = _output_length(cols, pool[1], strides[1], padding)
    for i in range(out_rows):
        r0 = i * strides[0] - pads[0]
        for j in range(out_cols):
            c0 = j * strides[1] - pads[1]
            yield i, j, slice(max(r0, 0), min(r0 + pool[0], rows)), slice(max(c0, 0), min(c0 + pool[1], cols)), r0, c0


def _reference_max(x, pool, strides, padding):
    """Max pooling, the window position of the first maximum, and the
    backward as a scatter of ``dy`` to those positions (not the kernels' gather)."""
    batch, channels = x.shape[0], x.shape[3]
    windows = list(_windows(x.shape, pool, strides, padding))
    out_rows, out_cols = windows[-1][0] + 1, windows[-1][1] + 1
    y = np.empty((batch, out_rows, out_cols, channels))
    where = np.empty_like(y)
    sources = []
    for i, j, rs, cs, r0, c0 in windows:
        block = x[:, rs, cs, :].reshape(batch, -1, channels)
        flat = block.argmax(axis=1)
        y[:, i, j, :] = block.max(axis=1)
        width = cs.stop - cs.start
        h, w = rs.start + flat // width, cs.start + flat % width
        where[:, i, j, :] = (h - r0) * pool[1] + (w - c0)
        sources.append((i, j, h, w))

    def backward(dy):
        dx = np.zeros(x.shape)
        b_index, c_index = np.meshgrid(np.arange(batch), np.arange(channels), indexing="ij")
        for i, j, h, w in sources:
            np.add.at(dx, (b_index, h, w, c_index), dy[:, i, j, :])
        return dx

    return y, where, backward


def _reference_average(x, pool, strides, padding):
    """Average pooling over the real elements of each window and its backward
    as a scatter of ``dy / count`` over each window."""
    windows = list(_windows(x.shape, pool, strides, padding))
    out_rows, out_cols = windows[-1][0] + 1, windows[-1][1] + 1
    y = np.empty((x.shape[0], out_rows, out_cols, x.shape[3]))
    for i, j, rs, cs, _, _ in windows:
        y[:, i, j, :] = x[:, rs, cs, :].mean(axis=(1, 2))

    def backward(dy):
        dx = np.zeros(x.shape)
        for i, j, rs, cs, _, _ in windows:
            count = (rs.stop - rs.start) * (cs.stop - cs.start)
            dx[:, rs, cs, :] += dy[:, i, j, None, None, :] / count
        return dx

    return y, backward


def _tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def _pool_arguments(case):
    shape, pool, strides, padding = case
    pads = tuple(_pad_before(n, p, s, padding) for n, p, s in zip(shape[1:3], pool, strides))
    return (*pool, *strides, *pads)


@pytest.mark.parametrize("device,case", device_cases(POOL_CASES, size=lambda case: int(np.prod(case[0]))))
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_matches_numpy(device, case, dtype, rng):
    ops = ops_for(device)
    shape, pool, strides, padding = case
    x = rng.standard_normal(shape)
    y_ref, where_ref, backward_ref = _reference_max(x, pool, strides, padding)
    dy = rng.standard_normal(y_ref.shape)
    xs = x.astype(dtype)
    y, argmax = np.empty(y_ref.shape, dtype), np.empty(y_ref.shape, dtype)
    ops.max_pool_forward(xs, *_pool_arguments(case), y, argmax)
    np.testing.assert_array_equal(y, y_ref.astype(dtype))
    np.testing.assert_array_equal(argmax, where_ref)
    dx = np.full(shape, np.nan, dtype)
    ops.max_pool_backward(dy.astype(dtype), argmax, *_pool_arguments(case), dx)
    np.testing.assert_allclose(dx, backward_ref(dy.astype(dtype)), **_tolerance(dtype))


@pytest.mark.parametrize("device,case", device_cases(POOL_CASES, size=lambda case: int(np.prod(case[0]))))
@pytest.mark.parametrize("dtype", DTYPES)
def test_average_pool_matches_numpy(device, case, dtype, rng):
    ops = ops_for(device)
    shape, pool, strides, padding = case
    x = rng.standard_normal(shape)
    y_ref, backward_ref = _reference_average(x, pool, strides, padding)
    dy = rng.standard_normal(y_ref.shape)
    y = np.empty(y_ref.shape, dtype)
    ops.average_pool_forward(x.astype(dtype), *_pool_arguments(case), y)
    np.testing.assert_allclose(y, y_ref, **_tolerance(dtype))
    dx = np.full(shape, np.nan, dtype)
    ops.average_pool_backward(dy.astype(dtype), *_pool_arguments(case), dx)
    np.testing.assert_allclose(dx, backward_ref(dy), **_tolerance(dtype))


@pytest.mark.parametrize("case", [POOL_CASES[1], POOL_CASES[5], POOL_CASES[6]])
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_ties_go_to_the_first_maximum_identically_on_both_devices(case, dtype, rng):
    """Few distinct values: most windows hold several maxima; the backward
    sums overlapping windows in the same order on both devices."""
    shape, pool, strides, padding = case
    x = rng.integers(0, 3, shape).astype(np.float64)
    y_ref, where_ref, _ = _reference_max(x, pool, strides, padding)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    results = {}
    for device in ("cpu", "cuda"):
        ops = ops_for(device)
        y, argmax, dx = np.empty(y_ref.shape, dtype), np.empty(y_ref.shape, dtype), np.empty(shape, dtype)
        ops.max_pool_forward(x.astype(dtype), *_pool_arguments(case), y, argmax)
        ops.max_pool_backward(dy, argmax, *_pool_arguments(case), dx)
        results[device] = y, argmax, dx
    np.testing.assert_array_equal(results["cpu"][1], where_ref)
    for cpu_array, cuda_array in zip(results["cpu"], results["cuda"]):
        np.testing.assert_array_equal(cuda_array, cpu_array)


@pytest.mark.parametrize("dtype", DTYPES)
def test_average_pool_backward_is_identical_on_both_devices(dtype, rng):
    """Clipped, overlapping 4 x 4 windows: each input element sums up to 16 terms."""
    case = POOL_CASES[7]
    dy = rng.standard_normal((2, 4, 4, 3)).astype(dtype)
    results = []
    for device in ("cpu", "cuda"):
        dx = np.empty(case[0], dtype)
        ops_for(device).average_pool_backward(dy, *_pool_arguments(case), dx)
        results.append(dx)
    np.testing.assert_array_equal(results[1], results[0])


# (input shape, row offset, col offset, output rows, output cols): padding,
# cropping, both at once, and a window that misses the input entirely.
WINDOW_CASES = [
    ((1, 1, 1, 1), 0, 0, 1, 1),
    ((2, 3, 4, 5), -1, -2, 6, 7),
    ((2, 5, 7, 3), 1, 2, 2, 3),
    ((1, 4, 6, 2), -2, 1, 7, 3),
    ((3, 2, 3, 4), 3, -5, 2, 3),
    ((4, 9, 8, 33), -1, -1, 11, 10),
]


def _reference_copy_window(x, row_offset, col_offset, out_rows, out_cols):
    y = np.zeros((x.shape[0], out_rows, out_cols, x.shape[3]))
    for i in range(out_rows):
        for j in range(out_cols):
            h, w = i + row_offset, j + col_offset
            if 0 <= h < x.shape[1] and 0 <= w < x.shape[2]:
                y[:, i, j] = x[:, h, w]
    return y


def _window_output_size(case):
    shape, _, _, out_rows, out_cols = case
    return shape[0] * out_rows * out_cols * shape[3]


@pytest.mark.parametrize("device,case", device_cases(WINDOW_CASES, size=_window_output_size))
@pytest.mark.parametrize("dtype", DTYPES)
def test_copy_window_matches_numpy(device, case, dtype, rng):
    shape, row_offset, col_offset, out_rows, out_cols = case
    x = rng.standard_normal(shape).astype(dtype)
    y = np.full((shape[0], out_rows, out_cols, shape[3]), np.nan, dtype)
    ops_for(device).copy_window(x, row_offset, col_offset, y)
    np.testing.assert_array_equal(y, _reference_copy_window(x, row_offset, col_offset, out_rows, out_cols))


# (input shape, row factor, col factor)
UPSAMPLE_CASES = [
    ((1, 1, 1, 1), 1, 1),
    ((2, 3, 4, 5), 2, 2),
    ((1, 5, 3, 2), 2, 3),
    ((3, 2, 7, 3), 3, 1),
    ((2, 6, 5, 33), 2, 2),
]


@pytest.mark.parametrize("device,case", device_cases(UPSAMPLE_CASES, size=lambda c: np.prod(c[0]) * c[1] * c[2]))
@pytest.mark.parametrize("dtype", DTYPES)
def test_upsample_nearest_matches_numpy(device, case, dtype, rng):
    ops = ops_for(device)
    shape, row_factor, col_factor = case
    x = rng.standard_normal(shape)
    y_ref = x.repeat(row_factor, axis=1).repeat(col_factor, axis=2)
    y = np.empty(y_ref.shape, dtype)
    ops.upsample_nearest_forward(x.astype(dtype), row_factor, col_factor, y)
    np.testing.assert_array_equal(y, y_ref.astype(dtype))
    dy = rng.standard_normal(y_ref.shape)
    dx_ref = dy.reshape(shape[0], shape[1], row_factor, shape[2], col_factor, shape[3]).sum(axis=(2, 4))
    dx = np.full(shape, np.nan, dtype)
    ops.upsample_nearest_backward(dy.astype(dtype), row_factor, col_factor, dx)
    np.testing.assert_allclose(dx, dx_ref, **_tolerance(dtype))


GLOBAL_CASES = [(1, 1, 1), (2, 7, 3), (3, 12, 5), (2, 1, 4), (16, 49, 65)]


@pytest.mark.parametrize("device,shape", device_cases(GLOBAL_CASES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["normal", "ties"])
def test_global_max_pool_shares_the_gradient_among_ties(device, shape, dtype, values, rng):
    ops = ops_for(device)
    x = rng.standard_normal(shape) if values == "normal" else rng.integers(0, 3, shape).astype(np.float64)
    y_ref = x.max(axis=1)
    hits = x == y_ref[:, None, :]
    ties_ref = hits.sum(axis=1)
    dy = rng.standard_normal(y_ref.shape)
    dx_ref = np.where(hits, dy[:, None, :] / ties_ref[:, None, :], 0.0)
    y, ties = np.empty(y_ref.shape, dtype), np.empty(y_ref.shape, dtype)
    xs = x.astype(dtype)
    ops.global_max_pool_forward(xs, y, ties)
    np.testing.assert_array_equal(y, y_ref.astype(dtype))
    np.testing.assert_array_equal(ties, ties_ref)
    dx = np.full(shape, np.nan, dtype)
    ops.global_max_pool_backward(xs, y, ties, dy.astype(dtype), dx)
    np.testing.assert_allclose(dx, dx_ref, **_tolerance(dtype))


@pytest.mark.parametrize("device,shape", device_cases([(1, 1, 1), (2, 7, 3), (3, 12, 5), (16, 33, 17)]))
@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_average_pool_is_the_mean_over_unmasked_steps(device, shape, dtype, rng):
    ops = ops_for(device)
    x = rng.standard_normal(shape)
    mask = (rng.random(shape[:2]) < 0.6).astype(np.float64)
    mask[:, 0] = 1.0
    y_ref = (x * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    y = np.full(y_ref.shape, np.nan, dtype)
    ops.masked_average_pool_forward(x.astype(dtype), mask.astype(dtype), y)
    np.testing.assert_allclose(y, y_ref, **_tolerance(dtype))
    dy = rng.standard_normal(y_ref.shape)
    dx_ref = dy[:, None, :] * (mask / mask.sum(axis=1, keepdims=True))[:, :, None]
    dx = np.full(shape, np.nan, dtype)
    ops.masked_average_pool_backward(dy.astype(dtype), mask.astype(dtype), dx)
    np.testing.assert_allclose(dx, dx_ref, **_tolerance(dtype))
