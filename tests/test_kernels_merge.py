"""Merge, concatenation, batched product, permutation and repeat kernels
against float64 NumPy references, on the CPU and on the (simulated) GPU."""

import numpy as np
import pytest

from devices import device_cases, ops_for
from nkeras.kernels.cpu.merge import ADD, AVERAGE, CONCAT, MULTIPLY, PRODUCT, SUBTRACT, SUM

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (3, 7), (33, 5), (130, 129)]


def _tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@pytest.mark.parametrize("device,shape", device_cases(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code,scale,reference", [
    (ADD, 1.0, lambda a, b: a + b),
    (ADD, 1 / 3, lambda a, b: (a + b) / 3),
    (SUBTRACT, 1.0, lambda a, b: a - b),
    (MULTIPLY, -2.0, lambda a, b: -2 * a * b),
])
def test_merge_pair_matches_numpy(device, shape, dtype, code, scale, reference, rng):
    ops = ops_for(device)
    a, b = rng.standard_normal((2,) + shape)
    out = np.full(shape, np.nan, dtype)
    ops.merge_pair(a.astype(dtype), b.astype(dtype), code, scale, out)
    np.testing.assert_allclose(out, reference(a, b), **_tolerance(dtype))
    # In place: the running result is the first operand.
    acc = a.astype(dtype)
    ops.merge_pair(acc, acc, code, scale, acc)
    np.testing.assert_allclose(acc, reference(a, a), **_tolerance(dtype))


@pytest.mark.parametrize("device,shape", device_cases(SHAPES))
def test_scaled_copy_matches_numpy(device, shape, rng):
    ops = ops_for(device)
    x = rng.standard_normal(shape)
    out = np.full(shape, np.nan)
    ops.scaled_copy(x, -0.25, out)
    np.testing.assert_allclose(out, -0.25 * x, rtol=1e-15)


@pytest.mark.parametrize("device,shape", device_cases([(1, 1), (5, 9), (64, 65)]))
@pytest.mark.parametrize("maximum", [True, False])
def test_extremum_picks_the_first_winner_and_routes_its_gradient(device, shape, maximum, rng):
    ops = ops_for(device)
    xs = rng.integers(-2, 3, (4,) + shape).astype(np.float32)  # many ties
    out = np.full(shape, np.nan, np.float32)
    winner = np.full(shape, -1.0, np.float32)
    for index, x in enumerate(xs):
        ops.merge_extremum_forward(x, index, maximum, out, winner)
    expected = xs.max(axis=0) if maximum else xs.min(axis=0)
    np.testing.assert_array_equal(out, expected)
    first = np.argmax(xs == expected, axis=0)
    np.testing.assert_array_equal(winner, first)
    dy = rng.standard_normal(shape).astype(np.float32)
    total = np.zeros(shape, np.float32)
    for index in range(len(xs)):
        dx = np.full(shape, np.nan, np.float32)
        ops.merge_extremum_backward(dy, winner, index, dx)
        np.testing.assert_array_equal(dx, np.where(first == index, dy, 0))
        total += dx
    np.testing.assert_array_equal(total, dy)


@pytest.mark.parametrize("device,rows", device_cases([1, 4, 37], size=lambda rows: rows * 20))
@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_forward_and_backward_match_numpy(device, rows, dtype, rng):
    ops = ops_for(device)
    parts = [rng.standard_normal((rows, cols)).astype(dtype) for cols in (3, 1, 16)]
    out = np.full((rows, 20), np.nan, dtype)
    offsets = [0, 3, 4]
    for part, offset in zip(parts, offsets):
        ops.concat_forward(part, offset, out)
    np.testing.assert_array_equal(out, np.concatenate(parts, axis=1))
    dy = rng.standard_normal((rows, 20)).astype(dtype)
    for part, offset in zip(parts, offsets):
        dx = np.full(part.shape, np.nan, dtype)
        ops.concat_backward(dy, offset, dx)
        np.testing.assert_array_equal(dx, dy[:, offset:offset + part.shape[1]])


MATMUL_CASES = [(1, 1, 1, 1), (3, 4, 5, 6), (2, 1, 7, 1), (5, 9, 3, 17)]


@pytest.mark.parametrize("device,case", device_cases(MATMUL_CASES, size=lambda c: c[0] * c[1] * c[3] * c[2]))
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_matmul_matches_numpy(device, case, transpose_a, transpose_b, dtype, rng):
    ops = ops_for(device)
    samples, m, k, n = case
    a = rng.standard_normal((samples, k, m) if transpose_a else (samples, m, k))
    b = rng.standard_normal((samples, n, k) if transpose_b else (samples, k, n))
    out = np.full((samples, m, n), np.nan, dtype)
    ops.batch_matmul(a.astype(dtype), b.astype(dtype), transpose_a, transpose_b, out)
    left = a.transpose(0, 2, 1) if transpose_a else a
    right = b.transpose(0, 2, 1) if transpose_b else b
    np.testing.assert_allclose(out, left @ right, **_tolerance(dtype))


PERMUTATIONS = [((3, 4, 1, 1), (2, 1, 3, 4)), ((2, 3, 5, 1), (3, 1, 2, 4)), ((2, 3, 4, 5), (4, 2, 3, 1)),
                ((1, 2, 1, 3), (1, 2, 3, 4))]


@pytest.mark.parametrize("device,case", device_cases(PERMUTATIONS, size=lambda c: 3 * int(np.prod(c[0]))))
@pytest.mark.parametrize("dtype", DTYPES)
def test_permute_axes_matches_numpy(device, case, dtype, rng):
    ops = ops_for(device)
    dims, axes = case
    x = rng.standard_normal((3,) + dims).astype(dtype)
    expected = x.transpose((0,) + axes)
    y = np.full(expected.shape, np.nan, dtype)
    ops.permute_axes(x, *axes, y)
    np.testing.assert_array_equal(y, expected)
    # The inverse permutation undoes it (the backward of Permute).
    inverse = tuple(int(i) + 1 for i in np.argsort(axes))
    back = np.full(x.shape, np.nan, dtype)
    ops.permute_axes(y, *inverse, back)
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("device,case", device_cases([(1, 1, 1), (3, 4, 5), (7, 1, 33), (40, 6, 50)]))
@pytest.mark.parametrize("dtype", DTYPES)
def test_repeat_vector_matches_numpy(device, case, dtype, rng):
    ops = ops_for(device)
    batch, steps, features = case
    x = rng.standard_normal((batch, features)).astype(dtype)
    y = np.full(case, np.nan, dtype)
    ops.repeat_vector_forward(x, y)
    np.testing.assert_array_equal(y, np.repeat(x[:, None], steps, axis=1))
    dy = rng.standard_normal(case)
    dx = np.full((batch, features), np.nan, dtype)
    ops.repeat_vector_backward(dy.astype(dtype), dx)
    np.testing.assert_allclose(dx, dy.sum(axis=1), **_tolerance(dtype))


@pytest.mark.parametrize("device,shape", device_cases([(1, 1, 1), (2, 3, 5), (3, 17, 9)]))
@pytest.mark.parametrize("along_rows", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_l2_normalize_matches_numpy(device, shape, along_rows, dtype, rng):
    ops = ops_for(device)
    axis = 1 if along_rows else 2
    x = rng.standard_normal(shape)
    x[0] = 1e-9  # a line whose norm is below epsilon: the 1 / epsilon bound
    epsilon = 1e-7
    norm = np.sqrt(np.sum(x * x, axis=axis, keepdims=True))
    scale = np.minimum(1 / norm, 1 / epsilon)
    y = np.full(shape, np.nan, dtype)
    got_scale = np.full(np.squeeze(scale, axis).shape, np.nan, dtype)
    ops.l2_normalize_forward(x.astype(dtype), along_rows, epsilon, got_scale, y)
    np.testing.assert_allclose(y, x * scale, **_tolerance(dtype))
    np.testing.assert_allclose(got_scale, np.squeeze(scale, axis), **_tolerance(dtype))
    dy = rng.standard_normal(shape)
    expected = np.where(norm > epsilon, scale * (dy - x * scale * np.sum(x * scale * dy, axis=axis, keepdims=True)),
                        scale * dy)
    dx = np.full(shape, np.nan, dtype)
    ops.l2_normalize_backward(x.astype(dtype), y, dy.astype(dtype), got_scale, along_rows, epsilon, dx)
    np.testing.assert_allclose(dx, expected, rtol=2e-4 if dtype == np.float32 else 1e-10,
                               atol=1e-4 if dtype == np.float32 else 1e-12)


def _reference_directions(forward, backward, reverse, mode):
    other = backward[:, ::-1] if reverse else backward
    return {CONCAT: np.concatenate([forward, other], axis=-1), SUM: forward + other,
            AVERAGE: (forward + other) / 2, PRODUCT: forward * other}[mode]


@pytest.mark.parametrize("device,shape", device_cases([(1, 1, 1), (2, 5, 3), (3, 7, 33)]))
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("mode", [CONCAT, SUM, AVERAGE, PRODUCT])
def test_merge_directions_match_numpy(device, shape, reverse, mode, rng):
    ops = ops_for(device)
    forward, backward = rng.standard_normal((2,) + shape)
    expected = _reference_directions(forward, backward, reverse, mode)
    out = np.full(expected.shape, np.nan)
    ops.merge_directions_forward(forward, backward, reverse, mode, out)
    np.testing.assert_allclose(out, expected, rtol=1e-14)
    dy = rng.standard_normal(expected.shape)
    dforward, dbackward = np.full(shape, np.nan), np.full(shape, np.nan)
    ops.merge_directions_backward(forward, backward, dy, reverse, mode, dforward, dbackward)
    # The gradients of sum(out * dy), in closed form per mode.
    flip = (lambda a: a[:, ::-1]) if reverse else (lambda a: a)
    units = shape[2]
    want_forward, want_backward = {
        CONCAT: lambda: (dy[..., :units], flip(dy[..., units:])),
        SUM: lambda: (dy, flip(dy)),
        AVERAGE: lambda: (dy / 2, flip(dy / 2)),
        PRODUCT: lambda: (dy * flip(backward), flip(dy * forward)),
    }[mode]()
    np.testing.assert_allclose(dforward, want_forward, rtol=1e-14)
    np.testing.assert_allclose(dbackward, want_backward, rtol=1e-14)


@pytest.mark.parametrize("device,shape", device_cases([(1, 1, 1), (2, 5, 3), (4, 6, 40)]))
def test_reverse_steps_matches_numpy(device, shape, rng):
    ops = ops_for(device)
    x = rng.standard_normal(shape)
    y = np.full(shape, np.nan)
    ops.reverse_steps(x, y)
    np.testing.assert_array_equal(y, x[:, ::-1])
