"""``nkeras.kernels.cpu.blas._gemm`` against a float64 NumPy product."""

import numpy as np
import pytest

from nkeras.kernels.cpu.blas import _gemm


def _block(rng, rows, cols, dtype, pad):
    """A (rows, cols) view into a wider array: its rows are strided."""
    return rng.standard_normal((rows, cols + pad)).astype(dtype)[:, pad // 2:pad // 2 + cols]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (7, 5, 3), (33, 17, 65)])
def test_gemm_matches_numpy(rng, dtype, transpose_a, transpose_b, beta, m, n, k):
    a = _block(rng, *((k, m) if transpose_a else (m, k)), dtype, pad=3)
    b = _block(rng, *((n, k) if transpose_b else (k, n)), dtype, pad=0)
    wide = rng.standard_normal((m, n + 6)).astype(dtype)
    c = wide[:, 2:2 + n]
    before = wide.copy()
    expected = (a.T if transpose_a else a).astype(np.float64) @ (b.T if transpose_b else b) + beta * before[:, 2:2 + n]
    _gemm(a, b, c, transpose_a, transpose_b, beta)
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, expected, rtol=tolerance, atol=tolerance * k)
    np.testing.assert_array_equal(wide[:, :2], before[:, :2])
    np.testing.assert_array_equal(wide[:, 2 + n:], before[:, 2 + n:])


def test_gemm_with_beta_zero_ignores_what_c_held(rng):
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    c = np.full((4, 5), np.nan, np.float32)
    _gemm(a, b, c)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5)


def test_gemm_with_empty_inner_dimension_scales_c(rng):
    c = rng.standard_normal((3, 4))
    expected = 2.0 * c
    _gemm(np.zeros((3, 0)), np.zeros((0, 4)), c, False, False, 2.0)
    np.testing.assert_array_equal(c, expected)


def test_gemm_rejects_shapes_that_do_not_chain():
    with pytest.raises(ValueError, match="do not chain"):
        _gemm(np.ones((3, 4)), np.ones((5, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="do not chain"):
        _gemm(np.ones((3, 4)), np.ones((4, 2)), np.zeros((3, 3)))


def test_gemm_rejects_rows_whose_elements_are_strided():
    with pytest.raises(ValueError, match="contiguous"):
        _gemm(np.ones((3, 8))[:, ::2], np.ones((4, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="without overlapping"):
        _gemm(np.ones((3, 4))[::-1], np.ones((4, 2)), np.zeros((3, 2)))
