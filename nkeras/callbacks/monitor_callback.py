"""Shared logic of callbacks that watch a monitored quantity."""

import operator
import warnings

from nkeras.callbacks.callback import _MODES, Callback


def _resolve_mode(callback, mode):
    if mode not in _MODES:
        warnings.warn(f"{type(callback).__name__} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=3)
        return "auto"
    return mode


_MINIMIZED_NAME_PARTS = ("loss", "error", "crossentropy", "hinge", "divergence", "logcosh", "poisson")
_MINIMIZED_NAMES = ("mae", "mse", "rmse", "mape", "msle")
_MAXIMIZED_NAME_PARTS = ("acc", "auc", "precision", "recall", "f1", "fbeta", "iou", "r2", "correlation")


class _MonitorCallback(Callback):
    """Shared logic of callbacks that watch one metric and look for
    improvement (``mode``, ``min_delta``)."""

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        self.monitor = monitor
        self.mode = _resolve_mode(self, mode)
        self.best = baseline
        self.min_delta = abs(min_delta)
        self.monitor_op = None

    def _set_monitor_op(self):
        """Choose ``<`` or ``>``. In "auto" mode the direction comes from the
        model's metric of that name (its ``_direction``), else from the name:
        losses and errors are minimized, accuracies, AUC, precision, recall,
        F-scores and IoU maximized."""
        if self.mode == "min":
            self.monitor_op = operator.lt
        elif self.mode == "max":
            self.monitor_op = operator.gt
        else:
            self.monitor_op = self._auto_monitor_op()
        if self.monitor_op is operator.lt:
            self.min_delta = -abs(self.min_delta)

    def _auto_monitor_op(self):
        name = self.monitor.removeprefix("val_")
        for metric in getattr(self.model, "metrics", None) or ():
            direction = getattr(metric, "_direction", None)
            if getattr(metric, "name", None) == name and direction in ("up", "down"):
                return operator.gt if direction == "up" else operator.lt
        lowered = name.lower()
        if lowered in _MINIMIZED_NAMES or any(part in lowered for part in _MINIMIZED_NAME_PARTS):
            return operator.lt
        if any(part in lowered for part in _MAXIMIZED_NAME_PARTS):
            return operator.gt
        raise ValueError(
            f"{type(self).__name__} callback received monitor={self.monitor}, but Keras isn't able to "
            "automatically determine whether that metric should be maximized or minimized. Pass "
            "`mode='max'` in order to monitor based on the highest metric value, or pass `mode='min'` "
            "in order to use the lowest value."
        )

    def _is_improvement(self, monitor_value, reference_value):
        if reference_value is None:
            return True
        return self.monitor_op(monitor_value - self.min_delta, reference_value)
