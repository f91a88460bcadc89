"""Metrics, as in ``keras.metrics``.

A metric keeps its state in ``totals`` (float64: the weighted sum of the
per-sample values, and the sum of the weights), which its metric kernel
(``kernels/cpu/metric.py`` or its CUDA twin) adds into. A model places its
metrics on its device (``place``), so on a GPU the totals stay there and
only ``result()`` copies two numbers down. The training loop calls
``update_arrays`` with the batch's buffers; ``update_state`` does the same
eagerly on NumPy arrays.
"""

import numpy as np

from nkeras.backend import get_device
from nkeras.losses import _kernel_arrays, _snake_case, _standardize_dtype


class Metric:
    """Base class of metrics.

    A subclass names its kernel in ``kernel`` (an op adding into ``totals``)
    and returns the kernel's extra parameters from ``_kernel_params``; or it
    overrides ``update_arrays``/``update_state``.

    Args:
        name: the metric's name (its key in the training logs).
        dtype: "float32" or "float64" for eager updates (default floatx()).
    """

    kernel = None
    sparse_labels = False
    _elementwise = False

    def __init__(self, name=None, dtype=None):
        self.name = name or _snake_case(type(self).__name__)
        self._dtype = _standardize_dtype(dtype, f"Metric '{self.name}'")
        self.device = get_device("cpu")
        self.totals = np.zeros(2, np.float64)

    def place(self, device):
        """Keep the totals on ``device`` from now on (they restart at zero)."""
        self.device = device
        self.totals = device.zeros(2, np.float64)

    @property
    def dtype(self):
        return self._dtype

    def _kernel_params(self):
        return ()

    def update_arrays(self, ops, y_true, y_pred, sample_weight):
        """Add a batch to ``totals`` through the metric kernel.

        Args:
            ops: the device's kernel set.
            y_true: (rows, cols) targets, or (rows,) class ids when
                ``sparse_labels``; y_pred: (rows, cols); sample_weight: (rows,).
        """
        if self.kernel is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no kernel: a Metric subclass must set `kernel` or override `update_arrays`"
            )
        getattr(ops, self.kernel)(y_true, y_pred, sample_weight, *self._kernel_params(), self.totals)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add a batch of NumPy targets and predictions."""
        labels, preds, weights, _ = _kernel_arrays(
            y_true, y_pred, sample_weight, self.sparse_labels, self._dtype, f"Metric '{self.name}'",
            elementwise=self._elementwise,
        )
        device = self.device
        self.update_arrays(device.ops, device.to_device(labels), device.to_device(preds), device.to_device(weights))

    def result(self):
        """The weighted mean of the values seen so far, as a Python float
        (0.0 before any update)."""
        total, count = self.device.to_host(self.totals)
        return float(total / count) if count else 0.0

    def reset_state(self):
        self.device.copy_from_host(np.zeros(2, np.float64), self.totals)

    def _add_to_totals(self, total, count):
        totals = self.device.to_host(self.totals)
        totals += (total, count)
        self.device.copy_from_host(totals, self.totals)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


class Mean(Metric):
    """The (weighted) running mean of the values given to ``update_state``."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, values, sample_weight=None):
        """Add ``values`` (a scalar or an array; non-batch axes are averaged),
        weighted by ``sample_weight`` (default 1 per sample)."""
        values = np.asarray(values, np.float64)
        if sample_weight is None:
            values = _mean_over_inner_axes(values)
            count = values.shape[0] if values.ndim else 1
        else:
            weights = np.asarray(sample_weight, np.float64)
            if values.ndim > weights.ndim:
                values = values.mean(axis=tuple(range(weights.ndim, values.ndim)))
            try:
                weights = np.broadcast_to(weights, values.shape)
            except ValueError:
                raise ValueError(
                    f"Metric '{self.name}': sample_weight of shape {weights.shape} does not match values of shape "
                    f"{values.shape}"
                ) from None
            values = _mean_over_inner_axes(values * weights)
            count = _mean_over_inner_axes(weights).sum()
        self._add_to_totals(values.sum(), count)


def _mean_over_inner_axes(array):
    return array.mean(axis=tuple(range(1, array.ndim))) if array.ndim > 1 else array


class Accuracy(Metric):
    """How often predictions equal labels exactly."""

    kernel = "accuracy"
    _elementwise = True

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)


class BinaryAccuracy(Metric):
    """How often ``y_pred > threshold`` matches binary labels.

    Args:
        threshold: float deciding whether a prediction counts as 1 or 0.
    """

    kernel = "binary_accuracy"
    _elementwise = True

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        super().__init__(name=name, dtype=dtype)
        self.threshold = float(threshold)

    def _kernel_params(self):
        return (self.threshold,)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class CategoricalAccuracy(Metric):
    """How often the argmax of ``y_pred`` matches that of one-hot labels."""

    kernel = "categorical_accuracy"

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)


class SparseCategoricalAccuracy(Metric):
    """How often the argmax of ``y_pred`` matches integer labels."""

    kernel = "sparse_categorical_accuracy"
    sparse_labels = True

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)


def _check_k(k, owner):
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0:
        raise ValueError(f"{owner}: k must be a positive integer, got {k!r}")
    return int(k)


class TopKCategoricalAccuracy(Metric):
    """How often the one-hot label's class is among the ``k`` top scores.

    Args:
        k: number of top scores to look at (default 5).
    """

    kernel = "top_k_categorical_accuracy"

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.k = _check_k(k, f"TopKCategoricalAccuracy '{self.name}'")

    def _kernel_params(self):
        return (self.k,)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class SparseTopKCategoricalAccuracy(Metric):
    """How often the integer label is among the ``k`` top scores.

    Args:
        k: number of top scores to look at (default 5).
        from_sorted_ids: not supported (must be False).
    """

    kernel = "sparse_top_k_categorical_accuracy"
    sparse_labels = True

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None, from_sorted_ids=False):
        super().__init__(name=name, dtype=dtype)
        if from_sorted_ids:
            raise NotImplementedError(
                f"SparseTopKCategoricalAccuracy '{self.name}': from_sorted_ids is not supported yet"
            )
        self.k = _check_k(k, f"SparseTopKCategoricalAccuracy '{self.name}'")

    def _kernel_params(self):
        return (self.k,)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class MeanSquaredError(Metric):
    """The mean of squared errors over the last axis, averaged over samples."""

    kernel = "mean_squared_error_metric"

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)


class MeanAbsoluteError(Metric):
    """The mean of absolute errors over the last axis, averaged over samples."""

    kernel = "mean_absolute_error_metric"

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(name=name, dtype=dtype)


_CLASSES = (
    Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, TopKCategoricalAccuracy,
    SparseTopKCategoricalAccuracy, MeanSquaredError, MeanAbsoluteError, Mean,
)
_BY_NAME = {
    **{cls.__name__: cls for cls in _CLASSES},
    **{_snake_case(cls.__name__): cls for cls in _CLASSES},
    "mse": MeanSquaredError, "MSE": MeanSquaredError,
    "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
}


def _valid_names():
    return ", ".join(repr(name) for name in _BY_NAME)


def serialize(metric):
    """``{"class_name": ..., "config": ...}`` for a Metric instance."""
    if not isinstance(metric, Metric):
        raise ValueError(f"metrics.serialize: expected a Metric instance, got {metric!r}")
    return {"class_name": type(metric).__name__, "config": metric.get_config()}


def deserialize(config):
    """The Metric for a ``{"class_name": ..., "config": ...}`` dict."""
    class_name = config.get("class_name") if isinstance(config, dict) else None
    cls = next((cls for cls in _CLASSES if cls.__name__ == class_name), None)
    if cls is None:
        raise ValueError(
            f"metrics.deserialize: unknown metric config {config!r}; class_name must be one of "
            f"{[cls.__name__ for cls in _CLASSES]}"
        )
    return cls.from_config(config.get("config") or {})


def get(identifier):
    """The Metric for ``identifier``.

    A metric given by a string is named with that string, as Keras' compile
    names it (``"mse"`` logs as "mse"). "accuracy"/"acc" in compile are
    resolved from the data's shapes by ``resolve_accuracy``.

    Args:
        identifier: a metric name (snake_case or class name, or the aliases
            "mse", "mae"), a Metric instance (returned as is), a Metric
            subclass, or a config dict.
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(f"Unknown metric {identifier!r}; valid names: {_valid_names()}")
        return _BY_NAME[identifier](name=identifier)
    raise ValueError(
        f"Could not interpret metric {identifier!r}. nkeras computes metrics in compiled kernels, so a metric "
        f"must be one of the named ones ({_valid_names()}) or an instance of a Metric subclass that supplies a "
        "kernel; plain Python functions are not supported."
    )


def resolve_accuracy(name, y_true_shape, y_pred_shape):
    """The accuracy metric Keras' compile picks for the string "accuracy" or
    "acc", named ``name``: binary when predictions have one column, sparse
    categorical when the targets have a lower rank than the predictions (or
    one column where the predictions have several), categorical otherwise.

    Args:
        name: "accuracy" or "acc".
        y_true_shape, y_pred_shape: shapes including the batch axis.
    """
    if y_pred_shape[-1] == 1:
        return BinaryAccuracy(name=name)
    if len(y_true_shape) < len(y_pred_shape) or y_true_shape[-1] == 1:
        return SparseCategoricalAccuracy(name=name)
    return CategoricalAccuracy(name=name)
