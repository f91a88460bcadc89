"""``to_categorical`` and ``normalize``, as in ``keras.utils``."""

import numpy as np


def to_categorical(x, num_classes=None):
    """Convert integer class labels to one-hot rows.

    Args:
        x: array-like of class indices in ``0..num_classes - 1`` (integers,
            or floats with integral values). A trailing axis of size 1 is
            dropped first, so ``(n, 1)`` labels give ``(n, num_classes)``.
        num_classes: number of classes; ``None`` infers ``max(x) + 1``.

    Returns:
        A float64 NumPy array of shape ``x.shape + (num_classes,)`` with a
        single 1 on the last axis.
    """
    labels = np.asarray(x)
    if labels.dtype.kind not in "biuf":
        raise TypeError(f"to_categorical: x must hold integer class labels, got dtype {labels.dtype}")
    if labels.dtype.kind == "f":
        fractional = labels[~(np.isfinite(labels) & (labels == np.round(labels)))]
        if fractional.size:
            raise ValueError(f"to_categorical: x must hold integer class labels, found {fractional.flat[0]}")
    shape = labels.shape[:-1] if labels.ndim > 1 and labels.shape[-1] == 1 else labels.shape
    flat = labels.reshape(-1).astype(np.int64)
    if flat.size and flat.min() < 0:
        raise ValueError(f"to_categorical: labels must be non-negative, found {flat.min()}")
    if num_classes is None:
        if not flat.size:
            raise ValueError("to_categorical: x is empty, so num_classes cannot be inferred; pass num_classes")
        num_classes = int(flat.max()) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"to_categorical: num_classes must be a positive integer or None, got {num_classes!r}")
    num_classes = int(num_classes)
    if flat.size and flat.max() >= num_classes:
        raise ValueError(f"to_categorical: label {flat.max()} is out of range for num_classes={num_classes}")
    categorical = np.zeros((flat.size, num_classes))
    categorical[np.arange(flat.size), flat] = 1.0
    return categorical.reshape(shape + (num_classes,))


def normalize(x, axis=-1, order=2):
    """Scale ``x`` to unit norm along ``axis``; all-zero slices stay zero.

    Args:
        x: array-like to normalize.
        axis: the axis along which to take the norm.
        order: the norm's order: an integer >= 1, or ``numpy.inf`` for the
            largest absolute value.

    Returns:
        A new NumPy array of ``x``'s shape: ``x``'s float dtype, float64 for
        integer or boolean input.
    """
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"normalize: x must be numeric, got dtype {array.dtype}")
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    is_int = isinstance(order, (int, np.integer)) and not isinstance(order, bool)
    if not (order == np.inf or (is_int and order >= 1)):
        raise ValueError(f"normalize: order must be an integer >= 1 or numpy.inf, got {order!r}")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -array.ndim <= axis < array.ndim:
        raise ValueError(
            f"normalize: axis must be an integer in [-{array.ndim}, {array.ndim}) "
            f"for x of shape {array.shape}, got {axis!r}"
        )
    norm = np.linalg.norm(array, ord=order, axis=int(axis), keepdims=True)
    norm[norm == 0] = 1
    return array / norm
