"""Losses, as in ``keras.losses``.

A ``Loss`` does its work in a loss kernel (``kernels/cpu/loss.py``) that
writes the weighted loss sum and the gradient in one pass; the training
loop calls ``Loss.compute`` with preallocated buffers, and calling a loss
eagerly on NumPy arrays runs the same kernel on the CPU. The plain functions
(``mean_squared_error`` ...) return per-sample losses in NumPy, as Keras'.
"""

import re

import numpy as np

from nkeras import config
from nkeras.backend import get_device

_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", None, "none")


def _snake_case(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _standardize_dtype(dtype, owner):
    if dtype is None:
        return config.floatx()
    name = np.dtype(dtype).name
    if name not in ("float32", "float64"):
        raise ValueError(f"{owner}: dtype must be 'float32' or 'float64', got {dtype!r}")
    return name


def _as_float(array):
    array = np.asarray(array)
    return array if array.dtype in (np.float32, np.float64) else array.astype(config.floatx())


def _squeeze_or_expand(y_true, y_pred):
    """Keras' rule: when the ranks differ by one and the longer array ends in
    a size-1 axis, drop that axis (or add one to a rank-1 partner)."""
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        return (y_true, y_pred[..., None]) if y_pred.ndim == 1 else (y_true[..., 0], y_pred)
    if y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        return (y_true[..., None], y_pred) if y_true.ndim == 1 else (y_true, y_pred[..., 0])
    return y_true, y_pred


def _row_weights(sample_weight, values_shape, dtype, owner):
    """``sample_weight`` broadcast to the per-sample values and flattened to
    one weight per kernel row."""
    rows = int(np.prod(values_shape))
    if sample_weight is None:
        return np.ones(rows, dtype)
    weights = np.asarray(sample_weight, dtype)
    given = weights.shape
    if weights.ndim == len(values_shape) + 1 and given[-1] == 1:
        weights = weights[..., 0]
    if weights.ndim > len(values_shape):
        raise ValueError(
            f"{owner}: sample_weight of shape {given} has more axes than the per-sample values {values_shape}"
        )
    weights = weights.reshape(weights.shape + (1,) * (len(values_shape) - weights.ndim))
    try:
        weights = np.broadcast_to(weights, values_shape)
    except ValueError:
        raise ValueError(
            f"{owner}: sample_weight of shape {given} does not match the per-sample values of shape {values_shape}"
        ) from None
    return np.ascontiguousarray(weights).reshape(rows)


def _kernel_arrays(y_true, y_pred, sample_weight, sparse, dtype, owner, elementwise=False):
    """Arrays shaped for a loss or metric kernel: labels (rows, cols), or
    (rows,) class ids when ``sparse``; predictions (rows, cols); weights
    (rows,); and the shape of the per-sample values.

    ``elementwise``: a rank-1 ``y_pred`` holds one value per sample (Keras'
    accuracy metrics) rather than the features of a single sample.
    """
    y_pred = np.asarray(y_pred, dtype)
    y_true = np.asarray(y_true, dtype)
    if sparse:
        if y_pred.ndim == 0:
            raise ValueError(f"{owner}: predictions must have a class axis, got a scalar")
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true[..., 0]
        if y_true.shape != y_pred.shape[:-1]:
            raise ValueError(
                f"{owner}: expected class ids of shape {y_pred.shape[:-1]} (or with a trailing 1) for predictions "
                f"of shape {y_pred.shape}, got shape {y_true.shape}"
            )
    else:
        y_true, y_pred = _squeeze_or_expand(y_true, y_pred)
        if y_true.shape != y_pred.shape:
            raise ValueError(
                f"{owner}: y_true and y_pred must have the same shape, got {y_true.shape} and {y_pred.shape}"
            )
        if elementwise and y_pred.ndim < 2:
            y_true, y_pred = y_true.reshape(-1, 1), y_pred.reshape(-1, 1)
    cols = y_pred.shape[-1] if y_pred.ndim else 1
    values_shape = y_pred.shape[:-1]
    preds = np.ascontiguousarray(y_pred.reshape(-1, cols))
    labels = np.ascontiguousarray(y_true.reshape(-1) if sparse else y_true.reshape(-1, cols))
    return labels, preds, _row_weights(sample_weight, values_shape, dtype, owner), values_shape


class Loss:
    """Base class of losses.

    A subclass computes its loss and gradient in one of three ways:

    - it names its kernel in ``kernel`` (an op of the device's kernel set)
      and returns the kernel's extra parameters from ``_kernel_params``
      (the built-in losses);
    - it overrides ``compute`` (its own Numba kernels, on any device);
    - it defines ``forward(y_true, y_pred)`` and ``backward(y_true,
      y_pred)`` in NumPy (CPU only); the base applies the sample weights
      and the scale and sums the losses.

    Plain Python loss functions have no gradient, so they cannot train;
    docs/custom_layers.md shows the three ways.

    Args:
        name: the loss' name.
        reduction: "sum_over_batch_size" (default) or "mean" (the weighted
            sum over the number of samples), "sum", "mean_with_sample_weight"
            (over the sum of the weights; eager calls only), or None/"none"
            (per-sample losses; eager calls only).
        dtype: "float32" or "float64" for eager calls (default floatx()).
    """

    kernel = None
    sparse_labels = False

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.name = name or _snake_case(type(self).__name__)
        self.reduction = reduction
        self._dtype = _standardize_dtype(dtype, f"Loss '{self.name}'")

    @property
    def dtype(self):
        return self._dtype

    def _kernel_params(self):
        return ()

    def compute(self, ops, y_true, y_pred, sample_weight, scale, grad, loss_sum):
        """Run the loss kernel: ``loss_sum[0] = sum_i w_i * loss_i`` and
        ``grad = scale * w_i * d loss_i / d y_pred``.

        Args:
            ops: the device's kernel set.
            y_true: (rows, cols) targets, or (rows,) class ids when
                ``sparse_labels``; y_pred: (rows, cols); sample_weight: (rows,).
            scale: float multiplying the gradient (see ``batch_scale``).
            grad: (rows, cols) output; loss_sum: float64 (1,) output.
        """
        if self.kernel is not None:
            getattr(ops, self.kernel)(y_true, y_pred, sample_weight, *self._kernel_params(), scale, grad, loss_sum)
            return
        check_computable(self)
        owner = f"Loss '{self.name}' ({type(self).__name__})"
        on_host = isinstance(grad, np.ndarray)  # a GPU's arrays are numba device arrays
        if not on_host:
            raise RuntimeError(
                f"{owner} is written in NumPy (forward/backward), which runs only on the CPU, but the model is on a "
                "GPU. Train it on the CPU (`with keras.device('cpu'):` around building the model) or override "
                f"`compute` with kernels for both devices; see {_CUSTOM_DOCS}"
            )
        rows = y_pred.shape[0]
        values = np.asarray(self.forward(y_true, y_pred), np.float64)
        if values.shape != (rows,):
            raise ValueError(
                f"{owner}: forward(y_true, y_pred) must return one loss per row, shape ({rows},), got shape {values.shape}"
            )
        gradient = np.asarray(self.backward(y_true, y_pred))
        if gradient.shape != y_pred.shape:
            raise ValueError(
                f"{owner}: backward(y_true, y_pred) must return d loss / d y_pred of shape {y_pred.shape}, "
                f"got shape {gradient.shape}"
            )
        loss_sum[0] = np.dot(np.asarray(sample_weight, np.float64), values)
        np.multiply(gradient, (scale * np.asarray(sample_weight))[:, None], out=grad)

    def forward(self, y_true, y_pred):
        """The loss of each row, for a loss written in NumPy.

        Args:
            y_true: (rows, cols) targets, or (rows,) class ids when
                ``sparse_labels`` is True.
            y_pred: (rows, cols) predictions; a sample with more axes
                contributes one row per position of its leading axes.

        Returns:
            an array of shape (rows,).
        """
        raise NotImplementedError(f"{type(self).__name__} defines no forward(y_true, y_pred); see {_CUSTOM_DOCS}")

    def backward(self, y_true, y_pred):
        """``d loss_i / d y_pred[i, j]`` for a loss written in NumPy: an array
        shaped like ``y_pred`` (the same arguments as ``forward``)."""
        raise NotImplementedError(f"{type(self).__name__} defines no backward(y_true, y_pred); see {_CUSTOM_DOCS}")

    def batch_scale(self, rows):
        """The factor turning a batch's weighted loss sum into its loss, per
        unit of loss weight: ``1 / rows`` or ``1`` for "sum"."""
        if self.reduction in ("sum_over_batch_size", "mean"):
            return 1.0 / rows
        if self.reduction == "sum":
            return 1.0
        raise ValueError(
            f"Loss '{self.name}': reduction={self.reduction!r} is not supported in training; "
            "use 'sum_over_batch_size', 'mean' or 'sum'"
        )

    def call(self, y_true, y_pred):
        """Per-sample losses as a NumPy array (used for reduction=None); from
        ``forward`` for a loss written in NumPy."""
        check_computable(self)
        if not _overrides(self, "forward"):
            raise NotImplementedError(f"{type(self).__name__} does not implement per-sample losses (`call`)")
        labels, preds, _, values_shape = _kernel_arrays(
            y_true, y_pred, None, self.sparse_labels, self._dtype, f"Loss '{self.name}'"
        )
        return np.asarray(self.forward(labels, preds)).reshape(values_shape)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The reduced loss as a Python float (a per-sample NumPy array when
        ``reduction`` is None or "none")."""
        owner = f"Loss '{self.name}'"
        labels, preds, weights, values_shape = _kernel_arrays(
            y_true, y_pred, sample_weight, self.sparse_labels, self._dtype, owner
        )
        if self.reduction in (None, "none"):
            y_true, y_pred = np.asarray(y_true, self._dtype), np.asarray(y_pred, self._dtype)
            return (self.call(y_true, y_pred) * weights.reshape(values_shape)).astype(self._dtype)
        grad = np.empty_like(preds)
        loss_sum = np.zeros(1, np.float64)
        self.compute(get_device("cpu").ops, labels, preds, weights, 1.0, grad, loss_sum)
        total = float(loss_sum[0])
        if values_shape == () or self.reduction == "sum":
            return total
        count = float(weights.sum()) if self.reduction == "mean_with_sample_weight" else float(len(weights))
        return total / count if count else 0.0

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


_CUSTOM_DOCS = "docs/custom_layers.md"


def _overrides(loss, method):
    return getattr(type(loss), method) is not getattr(Loss, method)


def check_computable(loss):
    """Raise NotImplementedError, pointing to docs/custom_layers.md, when a
    Loss subclass has no way to compute its gradient: no ``kernel``, no
    ``compute`` of its own, and not both ``forward`` and ``backward``."""
    if loss.kernel is not None or _overrides(loss, "compute"):
        return
    has_forward, has_backward = _overrides(loss, "forward"), _overrides(loss, "backward")
    if has_forward and has_backward:
        return
    owner = f"Loss '{loss.name}' ({type(loss).__name__})"
    if has_forward or has_backward:
        missing = "backward" if has_forward else "forward"
        raise NotImplementedError(f"{owner} defines {'forward' if has_forward else 'backward'} but not {missing}; "
                                  f"nkeras needs both (see {_CUSTOM_DOCS})")
    keras_call = " defines Keras's call(), which has no gradient in nkeras; it" if _overrides(loss, "call") else ""
    raise NotImplementedError(
        f"{owner}{keras_call} needs forward(y_true, y_pred) returning the loss of each row and "
        f"backward(y_true, y_pred) returning d loss / d y_pred, both in NumPy, or a `compute` with its own "
        f"kernels; see {_CUSTOM_DOCS}"
    )


def _check_axis(axis, owner):
    if axis != -1:
        raise NotImplementedError(f"{owner}: only axis=-1 is supported, got axis={axis!r}")


def _check_label_smoothing(label_smoothing, owner):
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{owner}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return float(label_smoothing)


def _prepare(y_true, y_pred):
    y_pred = _as_float(y_pred)
    return _squeeze_or_expand(np.asarray(y_true, y_pred.dtype), y_pred)


def _log_softmax(logits):
    peak = logits.max(axis=-1, keepdims=True)
    shifted = logits - peak
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _log_normalized_probs(probs):
    eps = config.epsilon()
    return np.log(np.clip(probs / probs.sum(axis=-1, keepdims=True), eps, 1.0 - eps))


def mean_squared_error(y_true, y_pred):
    """``mean(square(y_true - y_pred), axis=-1)``, one value per sample."""
    y_true, y_pred = _prepare(y_true, y_pred)
    return np.mean(np.square(y_true - y_pred), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """``mean(abs(y_true - y_pred), axis=-1)``, one value per sample."""
    y_true, y_pred = _prepare(y_true, y_pred)
    return np.mean(np.abs(y_true - y_pred), axis=-1)


def huber(y_true, y_pred, delta=1.0):
    """Huber loss per sample: the mean over the last axis of ``e^2 / 2`` for
    ``|e| <= delta`` and ``delta * |e| - delta^2 / 2`` beyond, ``e = y_pred - y_true``."""
    y_true, y_pred = _prepare(y_true, y_pred)
    error = y_pred - y_true
    size = np.abs(error)
    return np.mean(np.where(size <= delta, 0.5 * error * error, delta * size - 0.5 * delta * delta), axis=-1)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Binary cross-entropy per sample (mean over the last axis).

    Args:
        from_logits: whether ``y_pred`` holds logits rather than probabilities.
        label_smoothing: float in [0, 1]; labels are squeezed towards 0.5.
    """
    _check_axis(axis, "binary_crossentropy")
    y_true, y_pred = _prepare(y_true, y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        values = np.logaddexp(0.0, y_pred) - y_true * y_pred
    else:
        eps = config.epsilon()
        probs = np.clip(y_pred, eps, 1.0 - eps)
        values = -(y_true * np.log(probs) + (1.0 - y_true) * np.log(1.0 - probs))
    return np.mean(values, axis=-1)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Categorical cross-entropy per sample, against one-hot ``y_true``.

    Args:
        from_logits: whether ``y_pred`` holds logits rather than probabilities.
        label_smoothing: float in [0, 1]; labels become
            ``y * (1 - s) + s / num_classes``.
    """
    _check_axis(axis, "categorical_crossentropy")
    y_true, y_pred = _prepare(y_true, y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"categorical_crossentropy: y_true and y_pred shapes differ: {y_true.shape} and {y_pred.shape}"
        )
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / y_pred.shape[-1]
    log_probs = _log_softmax(y_pred) if from_logits else _log_normalized_probs(y_pred)
    return -np.sum(y_true * log_probs, axis=-1)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """Categorical cross-entropy per sample, against integer class ids.

    Args:
        from_logits: whether ``y_pred`` holds logits rather than probabilities.
        ignore_class: not supported (must be None).
    """
    _check_axis(axis, "sparse_categorical_crossentropy")
    if ignore_class is not None:
        raise NotImplementedError("sparse_categorical_crossentropy: ignore_class is not supported yet in nkeras")
    y_pred = _as_float(y_pred)
    labels = np.asarray(y_true)
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape != y_pred.shape[:-1]:
        raise ValueError(
            f"sparse_categorical_crossentropy: expected class ids of shape {y_pred.shape[:-1]}, got {labels.shape}"
        )
    log_probs = _log_softmax(y_pred) if from_logits else _log_normalized_probs(y_pred)
    labels = labels.astype(np.int64)
    valid = (labels >= 0) & (labels < y_pred.shape[-1])
    picked = np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    return np.where(valid, -picked, 0.0).astype(y_pred.dtype)


def kl_divergence(y_true, y_pred):
    """``sum(y_true * log(y_true / y_pred), axis=-1)`` with both clipped to
    ``[epsilon, 1]``."""
    y_true, y_pred = _prepare(y_true, y_pred)
    eps = config.epsilon()
    y_true = np.clip(y_true, eps, 1.0)
    y_pred = np.clip(y_pred, eps, 1.0)
    return np.sum(y_true * np.log(y_true / y_pred), axis=-1)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
kld = KLD = kl_divergence


class MeanSquaredError(Loss):
    """Mean of squared errors over the last axis: ``mean((y_true - y_pred)^2)``."""

    kernel = "mean_squared_error"

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return mean_squared_error(y_true, y_pred)


class MeanAbsoluteError(Loss):
    """Mean of absolute errors over the last axis: ``mean(|y_true - y_pred|)``."""

    kernel = "mean_absolute_error"

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return mean_absolute_error(y_true, y_pred)


class Huber(Loss):
    """Huber loss: quadratic for errors up to ``delta``, linear beyond.

    Args:
        delta: float, where the loss turns from quadratic to linear.
    """

    kernel = "huber"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.delta = float(delta)

    def _kernel_params(self):
        return (self.delta,)

    def call(self, y_true, y_pred):
        return huber(y_true, y_pred, self.delta)

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class BinaryCrossentropy(Loss):
    """Binary cross-entropy, averaged over the last axis.

    Args:
        from_logits: whether ``y_pred`` holds logits (recommended) rather
            than probabilities.
        label_smoothing: float in [0, 1]; labels are squeezed towards 0.5.
        axis: the class axis; only -1.
    """

    kernel = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_axis(axis, f"BinaryCrossentropy '{self.name}'")
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_label_smoothing(label_smoothing, f"BinaryCrossentropy '{self.name}'")
        self.axis = axis

    def _kernel_params(self):
        return (self.from_logits, self.label_smoothing, config.epsilon())

    def call(self, y_true, y_pred):
        return binary_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}


class CategoricalCrossentropy(Loss):
    """Categorical cross-entropy against one-hot labels.

    Args:
        from_logits: whether ``y_pred`` holds logits rather than probabilities.
        label_smoothing: float in [0, 1]; labels become
            ``y * (1 - s) + s / num_classes``.
        axis: the class axis; only -1.
    """

    kernel = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="categorical_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_axis(axis, f"CategoricalCrossentropy '{self.name}'")
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_label_smoothing(label_smoothing, f"CategoricalCrossentropy '{self.name}'")
        self.axis = axis

    def _kernel_params(self):
        return (self.from_logits, self.label_smoothing, config.epsilon())

    def call(self, y_true, y_pred):
        return categorical_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}


class SparseCategoricalCrossentropy(Loss):
    """Categorical cross-entropy against integer class ids: ``y_true`` holds
    one id per sample (shape of ``y_pred`` without its last axis, or with a
    trailing 1).

    Args:
        from_logits: whether ``y_pred`` holds logits rather than probabilities.
        ignore_class: not supported (must be None).
        axis: the class axis; only -1.
    """

    kernel = "sparse_categorical_crossentropy"
    sparse_labels = True

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size", axis=-1,
                 name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_axis(axis, f"SparseCategoricalCrossentropy '{self.name}'")
        if ignore_class is not None:
            raise NotImplementedError(f"SparseCategoricalCrossentropy '{self.name}': ignore_class is not supported yet")
        self.from_logits = bool(from_logits)
        self.ignore_class = None

    def _kernel_params(self):
        return (self.from_logits, config.epsilon())

    def call(self, y_true, y_pred):
        return sparse_categorical_crossentropy(y_true, y_pred, self.from_logits)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "ignore_class": self.ignore_class}


class KLDivergence(Loss):
    """Kullback-Leibler divergence ``sum(y_true * log(y_true / y_pred))``
    over the last axis, both clipped to ``[epsilon, 1]``."""

    kernel = "kl_divergence"

    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def _kernel_params(self):
        return (config.epsilon(),)

    def call(self, y_true, y_pred):
        return kl_divergence(y_true, y_pred)


_CLASSES = (
    MeanSquaredError, MeanAbsoluteError, Huber, BinaryCrossentropy, CategoricalCrossentropy,
    SparseCategoricalCrossentropy, KLDivergence,
)
_FUNCTIONS = {
    mean_squared_error: MeanSquaredError,
    mean_absolute_error: MeanAbsoluteError,
    huber: Huber,
    binary_crossentropy: BinaryCrossentropy,
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    kl_divergence: KLDivergence,
}
_BY_NAME = {
    **{cls.__name__: cls for cls in _CLASSES},
    **{function.__name__: cls for function, cls in _FUNCTIONS.items()},
    "mse": MeanSquaredError, "MSE": MeanSquaredError,
    "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
    "kld": KLDivergence, "KLD": KLDivergence,
    "bce": BinaryCrossentropy, "BCE": BinaryCrossentropy,
}


def _valid_names():
    return ", ".join(repr(name) for name in _BY_NAME)


def serialize(loss):
    """``{"class_name": ..., "config": ...}`` for a Loss instance."""
    if not isinstance(loss, Loss):
        raise ValueError(f"losses.serialize: expected a Loss instance, got {loss!r}")
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(config):
    """The Loss for a ``{"class_name": ..., "config": ...}`` dict."""
    class_name = config.get("class_name") if isinstance(config, dict) else None
    cls = next((cls for cls in _CLASSES if cls.__name__ == class_name), None)
    if cls is None:
        raise ValueError(
            f"losses.deserialize: unknown loss config {config!r}; class_name must be one of "
            f"{[cls.__name__ for cls in _CLASSES]}"
        )
    return cls.from_config(config.get("config") or {})


def get(identifier):
    """The Loss for ``identifier``.

    Args:
        identifier: a loss name (function name, class name or alias such as
            "mse"), a Loss instance (returned as is), a Loss subclass, one
            of this module's loss functions, a config dict, or None (None).
    """
    if identifier is None:
        return identifier
    if isinstance(identifier, Loss):
        check_computable(identifier)
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        loss = identifier()
        check_computable(loss)
        return loss
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(f"Unknown loss {identifier!r}; valid names: {_valid_names()}")
        return _BY_NAME[identifier]()
    cls = next((cls for function, cls in _FUNCTIONS.items() if function is identifier), None)
    if cls is not None:
        return cls()
    raise ValueError(
        f"Could not interpret loss {identifier!r}. nkeras trains with the gradient a loss supplies, which a plain "
        f"Python function does not have, so a loss must be one of the named ones ({_valid_names()}) or an instance "
        "of a keras.losses.Loss subclass with forward(y_true, y_pred) and backward(y_true, y_pred); "
        f"see {_CUSTOM_DOCS}"
    )
