"""to_categorical and normalize against plain-loop references."""

import numpy as np
import pytest

from nkeras.utils.numerical import normalize, to_categorical


def one_hot_reference(labels, num_classes):
    flat = np.asarray(labels).reshape(-1)
    rows = np.zeros((flat.size, num_classes))
    for row, label in enumerate(flat):
        rows[row, int(label)] = 1.0
    return rows


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 1)])
def test_to_categorical_matches_reference(rng, shape):
    labels = rng.integers(0, 6, shape)
    result = to_categorical(labels, num_classes=6)
    kept_shape = shape[:-1] if len(shape) > 1 and shape[-1] == 1 else shape
    assert result.shape == kept_shape + (6,) and result.dtype == np.float64
    np.testing.assert_array_equal(result.reshape(-1, 6), one_hot_reference(labels, 6))


def test_to_categorical_infers_num_classes_and_accepts_lists_floats_scalars(rng):
    labels = rng.integers(0, 9, 11)
    inferred = to_categorical(labels.tolist())
    assert inferred.shape == (11, labels.max() + 1)
    np.testing.assert_array_equal(inferred, one_hot_reference(labels, labels.max() + 1))
    np.testing.assert_array_equal(to_categorical(labels.astype(np.float32), 9), one_hot_reference(labels, 9))
    np.testing.assert_array_equal(to_categorical(2, 4), [0.0, 0.0, 1.0, 0.0])
    assert to_categorical(np.zeros((0,), np.int64), 3).shape == (0, 3)
    assert to_categorical(np.array([[1], [0]], np.uint8)).shape == (2, 2)


@pytest.mark.parametrize(
    "labels, num_classes, error, message",
    [
        ([0, 3], 3, ValueError, "label 3 is out of range for num_classes=3"),
        ([0, -1], None, ValueError, "non-negative, found -1"),
        ([0.0, 1.5], None, ValueError, "integer class labels, found 1.5"),
        ([0.0, np.nan], 2, ValueError, "integer class labels, found nan"),
        (["a", "b"], 2, TypeError, "integer class labels, got dtype <U1"),
        ([], None, ValueError, "num_classes cannot be inferred"),
        ([0, 1], 0, ValueError, "num_classes must be a positive integer or None, got 0"),
        ([0, 1], 2.0, ValueError, "num_classes must be a positive integer or None, got 2.0"),
    ],
)
def test_to_categorical_errors(labels, num_classes, error, message):
    with pytest.raises(error, match=message):
        to_categorical(labels, num_classes)


def norm_reference(vector, order):
    magnitudes = [abs(float(v)) for v in vector]
    if order == np.inf:
        return max(magnitudes, default=0.0)
    return sum(m**order for m in magnitudes) ** (1.0 / order)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, axis", [((1,), -1), ((7,), 0), ((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1)])
@pytest.mark.parametrize("order", [1, 2, 3, np.inf])
def test_normalize_matches_reference(rng, dtype, shape, axis, order):
    x = rng.standard_normal(shape).astype(dtype)
    result = normalize(x, axis=axis, order=order)
    assert result.shape == x.shape and result.dtype == dtype
    moved_x, moved_result = np.moveaxis(x, axis, -1), np.moveaxis(result, axis, -1)
    for index in np.ndindex(moved_x.shape[:-1]):
        expected = moved_x[index].astype(np.float64) / norm_reference(moved_x[index], order)
        np.testing.assert_allclose(moved_result[index], expected, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_normalize_leaves_zero_rows_and_casts_integers(rng):
    x = rng.integers(1, 5, (4, 3))
    x[2] = 0
    result = normalize(x)
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result[2], 0.0)
    np.testing.assert_allclose(np.linalg.norm(result[[0, 1, 3]], axis=1), 1.0)
    np.testing.assert_allclose(normalize([3, 4]), [0.6, 0.8])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"axis": 2}, r"axis must be an integer in \[-2, 2\)"),
        ({"axis": (0, 1)}, "axis must be an integer"),
        ({"order": 0}, "order must be an integer >= 1 or numpy.inf, got 0"),
        ({"order": 1.5}, "order must be an integer >= 1 or numpy.inf, got 1.5"),
        ({"order": "fro"}, "order must be an integer >= 1"),
    ],
)
def test_normalize_errors(rng, kwargs, message):
    with pytest.raises(ValueError, match=message):
        normalize(rng.standard_normal((2, 3)), **kwargs)
