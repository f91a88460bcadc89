"""Callbacks: hooks into ``fit``, ``evaluate`` and ``predict``, as in Keras 3.

The training loop drives a :class:`CallbackList`. Batch hooks are costly
relative to a fast training step, so the list only calls the callbacks that
actually override a hook, and tells the loop through ``needs_batch_logs``
whether any batch hook is in use at all. Batch-end ``logs`` may be given as
a zero-argument callable returning the dict: it is called at most once, and
only when a callback reads the logs (the progress bar reads them only when
it redraws).
"""

import collections
import csv
import inspect
import math
import operator
import os
import warnings

import numpy as np

from nkeras.utils.progbar import Progbar, print_msg

_TRAIN_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end")
_TEST_BATCH_HOOKS = ("on_test_batch_begin", "on_test_batch_end")
_PREDICT_BATCH_HOOKS = ("on_predict_batch_begin", "on_predict_batch_end")
_BATCH_HOOKS = _TRAIN_BATCH_HOOKS + _TEST_BATCH_HOOKS + _PREDICT_BATCH_HOOKS
_HOOK_ALIASES = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}
_MODES = ("auto", "min", "max")


class Callback:
    """Base class of callbacks: override the ``on_*`` hooks you need.

    Attributes:
        params: Dict of loop parameters (``verbose``, ``epochs``, ``steps``).
        model: The model being trained, evaluated or used for prediction.
    """

    def __init__(self):
        self.params = None
        self._model = None

    def set_params(self, params):
        self.params = params

    def set_model(self, model):
        self._model = model

    @property
    def model(self):
        return self._model

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _uses_hook(self, name):
        """Whether calling hook ``name`` can do anything (it is overridden)."""
        if _is_overridden(self, name):
            return True
        alias = _HOOK_ALIASES.get(name)
        return alias is not None and _is_overridden(self, alias)

    def on_batch_begin(self, batch, logs=None):
        """Alias of ``on_train_batch_begin`` kept for backward compatibility."""

    def on_batch_end(self, batch, logs=None):
        """Alias of ``on_train_batch_end`` kept for backward compatibility."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called at the start of epoch ``epoch`` (0-based) in ``fit``."""

    def on_epoch_end(self, epoch, logs=None):
        """Called at the end of an epoch; ``logs`` holds the epoch's metrics
        and, when validation ran, the same names prefixed with ``val_``."""

    def on_train_batch_begin(self, batch, logs=None):
        """Called before training batch ``batch`` of the epoch."""
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        """Called after a training batch; ``logs`` holds the running averages
        of the epoch so far."""
        self.on_batch_end(batch, logs)

    def on_test_batch_begin(self, batch, logs=None):
        """Called before a batch of ``evaluate`` or of validation in ``fit``."""

    def on_test_batch_end(self, batch, logs=None):
        """Called after a batch of ``evaluate`` or of validation in ``fit``."""

    def on_predict_batch_begin(self, batch, logs=None):
        """Called before a batch of ``predict``."""

    def on_predict_batch_end(self, batch, logs=None):
        """Called after a batch of ``predict``."""

    def on_train_begin(self, logs=None):
        """Called at the start of ``fit``."""

    def on_train_end(self, logs=None):
        """Called at the end of ``fit`` with the last epoch's logs."""

    def on_test_begin(self, logs=None):
        """Called at the start of ``evaluate`` or of validation."""

    def on_test_end(self, logs=None):
        """Called at the end of ``evaluate`` or of validation."""

    def on_predict_begin(self, logs=None):
        """Called at the start of ``predict``."""

    def on_predict_end(self, logs=None):
        """Called at the end of ``predict``."""


def _is_overridden(callback, name, base=None):
    """Whether ``callback.name`` differs from ``base.name`` (default: Callback's)."""
    method = getattr(callback, name)
    return getattr(method, "__func__", method) is not getattr(base or Callback, name)


def _reads_logs_lazily(callback, name):
    return isinstance(callback, ProgbarLogger) and not _is_overridden(callback, name, ProgbarLogger)


def _resolve_logs(logs):
    return logs() if callable(logs) else logs


def _flatten_callbacks(callbacks):
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(
            f"callbacks must be a list of keras.callbacks.Callback instances, got {type(callbacks).__name__}"
        )
    flat = []
    for item in callbacks:
        if isinstance(item, (list, tuple)):
            flat.extend(_flatten_callbacks(item))
        elif isinstance(item, Callback):
            flat.append(item)
        else:
            raise TypeError(f"callbacks must be keras.callbacks.Callback instances, got {item!r}")
    return flat


class CallbackList(Callback):
    """Calls a list of callbacks together.

    Args:
        callbacks: List of ``Callback`` instances (nested lists are flattened).
        add_history: Add a ``History`` callback unless one is in the list.
        add_progbar: Add a ``ProgbarLogger`` unless one is in the list.
        model: The model the callbacks act on.
        **params: Passed to every callback via ``set_params``
            (``verbose``, ``epochs``, ``steps``).

    ``needs_batch_logs`` is True when some callback overrides a train or test
    batch hook; when it is False a loop may skip those hooks and the per-batch
    logs altogether.
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, **params):
        super().__init__()
        self.callbacks = _flatten_callbacks(callbacks)
        self._history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        self._progbar = next((cb for cb in self.callbacks if isinstance(cb, ProgbarLogger)), None)
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)
        self.set_model(model)
        self.set_params(params)

    def append(self, callback):
        """Add ``callback`` at the end of the list."""
        added = _flatten_callbacks(callback)
        self.callbacks.extend(added)
        for new in added:
            if self.params:
                new.set_params(self.params)
            if self._model is not None:
                new.set_model(self._model)
        self._refresh_batch_hooks()

    def set_params(self, params):
        self.params = params
        if params:
            for callback in self.callbacks:
                callback.set_params(params)
        self._refresh_batch_hooks()

    def set_model(self, model):
        if model is None:
            return
        super().set_model(model)
        if self._history is not None:
            model.history = self._history
        for callback in self.callbacks:
            callback.set_model(model)

    def _refresh_batch_hooks(self):
        """Bind, per batch hook, the callbacks that use it; and note whether
        any of them needs the logs as a dict (rather than lazily)."""
        self._batch_hooks = {}
        self._eager_logs = {}
        for name in _BATCH_HOOKS:
            users = [cb for cb in self.callbacks if cb._uses_hook(name)]
            self._batch_hooks[name] = [getattr(cb, name) for cb in users]
            self._eager_logs[name] = any(not _reads_logs_lazily(cb, name) for cb in users)
        self.needs_batch_logs = any(self._batch_hooks[name] for name in _TRAIN_BATCH_HOOKS + _TEST_BATCH_HOOKS)

    def _call_batch_hook(self, name, batch, logs):
        hooks = self._batch_hooks[name]
        if not hooks:
            return
        if self._eager_logs[name] and callable(logs):
            logs = logs()
        for hook in hooks:
            hook(batch, logs)

    def _call_hook(self, name, *args):
        for callback in self.callbacks:
            getattr(callback, name)(*args)

    def on_batch_begin(self, batch, logs=None):
        self._call_batch_hook("on_train_batch_begin", batch, logs)

    def on_batch_end(self, batch, logs=None):
        self._call_batch_hook("on_train_batch_end", batch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call_batch_hook("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call_batch_hook("on_train_batch_end", batch, logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call_batch_hook("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call_batch_hook("on_test_batch_end", batch, logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call_batch_hook("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call_batch_hook("on_predict_batch_end", batch, logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call_hook("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call_hook("on_epoch_end", epoch, logs)

    def on_train_begin(self, logs=None):
        self._call_hook("on_train_begin", logs)
        self._refresh_batch_hooks()

    def on_train_end(self, logs=None):
        self._call_hook("on_train_end", logs)
        self._refresh_batch_hooks()

    def on_test_begin(self, logs=None):
        self._call_hook("on_test_begin", logs)
        self._refresh_batch_hooks()

    def on_test_end(self, logs=None):
        self._call_hook("on_test_end", logs)

    def on_predict_begin(self, logs=None):
        self._call_hook("on_predict_begin", logs)
        self._refresh_batch_hooks()

    def on_predict_end(self, logs=None):
        self._call_hook("on_predict_end", logs)


class History(Callback):
    """Records the epoch logs: ``history`` maps each metric name to the list
    of its per-epoch values, ``epoch`` lists the epoch indices.

    ``fit`` adds one automatically and returns it (also as ``model.history``).
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(value)
        if self.model is not None:
            self.model.history = self

    def get_config(self):
        return {}


class ProgbarLogger(Callback):
    """Prints the metrics to stdout with a :class:`Progbar` ("Epoch 1/5"
    lines, then a live bar for ``verbose=1`` or one line per epoch for
    ``verbose=2``). ``fit``, ``evaluate`` and ``predict`` add one unless
    ``verbose=0``."""

    def __init__(self):
        super().__init__()
        self.seen = 0
        self.progbar = None
        self.target = None
        self.verbose = 1
        self.epochs = 1
        self._called_in_fit = False

    def get_config(self):
        return {}

    def set_params(self, params):
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def _uses_hook(self, name):
        if name in _BATCH_HOOKS and not _is_overridden(self, name, ProgbarLogger):
            if name == "on_test_batch_end" and self._called_in_fit:
                return False
            if name.endswith("_end"):
                return self.verbose == 1 or self.target is None
        return super()._uses_hook(name)

    def on_train_begin(self, logs=None):
        self._called_in_fit = True

    def on_train_end(self, logs=None):
        self._called_in_fit = False

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._reset_progbar()
            self._maybe_init_progbar()

    def on_predict_begin(self, logs=None):
        self._reset_progbar()
        self._maybe_init_progbar()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()
        self._maybe_init_progbar()
        if self.verbose and self.epochs > 1:
            print_msg(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self._update_progbar(batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._update_progbar(batch, None)

    def on_epoch_end(self, epoch, logs=None):
        self._finalize_progbar(logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_end(self, logs=None):
        self._finalize_progbar(logs)

    def _reset_progbar(self):
        self.seen = 0
        self.progbar = None

    def _maybe_init_progbar(self):
        if self.progbar is None:
            self.progbar = Progbar(target=self.target, verbose=self.verbose, unit_name="step", stateless_metrics=())

    def _update_progbar(self, batch, logs):
        self._maybe_init_progbar()
        self.seen = batch + 1
        if self.progbar._redraw_due():
            self.progbar.update(self.seen, list((_resolve_logs(logs) or {}).items()), finalize=False)

    def _finalize_progbar(self, logs):
        if not self.verbose:
            return
        self._maybe_init_progbar()
        if self.target is None:
            self.target = self.seen
            self.progbar.target = self.seen
        self.progbar.update(self.target, list((logs or {}).items()), finalize=True)


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


class EarlyStopping(_MonitorCallback):
    """Stop training when a monitored metric has stopped improving.

    Args:
        monitor: Name of the metric to watch, e.g. "val_loss".
        min_delta: Smallest change that counts as an improvement.
        patience: Epochs without improvement after which training stops.
        verbose: 1 prints a message when stopping or restoring weights.
        mode: "min", "max" or "auto" (direction from the metric's name).
        baseline: Value the metric must beat; training stops after
            ``patience`` epochs that do not beat it.
        restore_best_weights: At the end of training, restore the weights of
            the best epoch (when at least one epoch was monitored).
        start_from_epoch: Epochs to wait before monitoring starts.
    """

    def __init__(
        self,
        monitor="val_loss",
        min_delta=0,
        patience=0,
        verbose=0,
        mode="auto",
        baseline=None,
        restore_best_weights=False,
        start_from_epoch=0,
    ):
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights = None
        self.best_epoch = 0

    def get_config(self):
        return {
            "monitor": self.monitor, "min_delta": abs(self.min_delta), "patience": self.patience,
            "verbose": self.verbose, "mode": self.mode, "baseline": self.baseline,
            "restore_best_weights": self.restore_best_weights, "start_from_epoch": self.start_from_epoch,
        }

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print_msg(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print_msg(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(logs)}",
                stacklevel=2,
            )
        return value


class ReduceLROnPlateau(_MonitorCallback):
    """Multiply the learning rate by ``factor`` when a metric has stopped
    improving for ``patience`` epochs.

    Args:
        monitor: Name of the metric to watch.
        factor: Factor (< 1) applied to the learning rate.
        patience: Epochs without improvement before the rate is reduced.
        verbose: 1 prints a message on each reduction.
        mode: "min", "max" or "auto".
        min_delta: Smallest change that counts as an improvement.
        cooldown: Epochs to wait after a reduction before counting again.
        min_lr: Lower bound of the learning rate.
    """

    def __init__(
        self,
        monitor="val_loss",
        factor=0.1,
        patience=10,
        verbose=0,
        mode="auto",
        min_delta=1e-4,
        cooldown=0,
        min_lr=0.0,
    ):
        super().__init__(monitor, mode, min_delta=min_delta)
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        self.factor = factor
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.cooldown_counter = 0
        self.wait = 0

    def get_config(self):
        return {
            "monitor": self.monitor, "factor": self.factor, "patience": self.patience, "verbose": self.verbose,
            "mode": self.mode, "min_delta": abs(self.min_delta), "cooldown": self.cooldown, "min_lr": self.min_lr,
        }

    def on_train_begin(self, logs=None):
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = {} if logs is None else logs
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(logs)}.",
                stacklevel=2,
            )
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and self._reduce_lr(epoch):
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def _reduce_lr(self, epoch):
        optimizer = self.model.optimizer
        old_lr = float(optimizer.learning_rate)
        if old_lr <= np.float32(self.min_lr):
            return False
        new_lr = max(old_lr * self.factor, self.min_lr)
        optimizer.learning_rate = new_lr
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
        return True


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch.

    Args:
        schedule: Function ``schedule(epoch, lr) -> new_lr`` (a float) with the
            0-based epoch and the current rate; ``schedule(epoch)`` also works.
        verbose: 1 prints the rate set at each epoch.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise ValueError(
                f"LearningRateScheduler: schedule must be a function schedule(epoch, lr), got {schedule!r}"
            )
        self.schedule = schedule
        self.verbose = verbose

    def get_config(self):
        return {"schedule": self.schedule, "verbose": self.verbose}

    def _call_schedule(self, epoch, learning_rate):
        try:
            inspect.signature(self.schedule).bind(epoch, learning_rate)
        except TypeError:
            return self.schedule(epoch)
        except ValueError:
            pass
        return self.schedule(epoch, learning_rate)

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if not hasattr(optimizer, "learning_rate"):
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        learning_rate = self._call_schedule(epoch, float(optimizer.learning_rate))
        if not isinstance(learning_rate, (float, np.floating)):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {learning_rate}")
        optimizer.learning_rate = float(learning_rate)
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {learning_rate}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


_WEIGHTS_SUFFIXES = (".weights.h5", ".weights.npz")
_MODEL_SUFFIX = ".keras"


class ModelCheckpoint(_MonitorCallback):
    """Save the model or its weights every epoch or every ``save_freq`` batches.

    Args:
        filepath: Path of the file; may hold ``str.format`` fields filled
            from the 1-based ``epoch``, the 1-based ``batch`` (batch-level
            saving) and the logs, e.g. ``"ckpt-{epoch:02d}-{val_loss:.2f}.keras"``.
            Must end in ".weights.h5" or ".weights.npz" with
            ``save_weights_only=True``, else in ".keras".
        monitor: Metric compared when ``save_best_only=True``.
        verbose: 1 prints a message for each save.
        save_best_only: Only save when the monitored metric improves.
        save_weights_only: Save only the weights (``model.save_weights``).
        mode: "min", "max" or "auto".
        save_freq: "epoch", or an integer: save every that many batches.
        initial_value_threshold: The value the metric must beat for the first
            save with ``save_best_only=True``.
    """

    def __init__(
        self,
        filepath,
        monitor="val_loss",
        verbose=0,
        save_best_only=False,
        save_weights_only=False,
        mode="auto",
        save_freq="epoch",
        initial_value_threshold=None,
    ):
        super().__init__(monitor, mode, initial_value_threshold)
        self.filepath = os.fspath(filepath)
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = save_freq
        self.initial_value_threshold = initial_value_threshold
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = None
        self._current_epoch = 0
        is_count = isinstance(save_freq, (int, np.integer)) and not isinstance(save_freq, bool)
        if save_freq != "epoch" and not (is_count and save_freq >= 1):
            raise ValueError(
                f"Unrecognized save_freq: {save_freq}. Expected save_freq are 'epoch' or a positive integer"
            )
        if save_weights_only:
            if not self.filepath.endswith(_WEIGHTS_SUFFIXES):
                raise ValueError(
                    "When using `save_weights_only=True` in `ModelCheckpoint`, the filepath provided must end in "
                    "`.weights.h5` (Keras weights format) or `.weights.npz` (nkeras NumPy weights). "
                    f"Received: filepath={self.filepath}"
                )
        elif not self.filepath.endswith(_MODEL_SUFFIX):
            raise ValueError(
                "The filepath provided must end in `.keras` (Keras model format), or pass "
                "`save_weights_only=True` with a `.weights.h5` or `.weights.npz` filepath. "
                f"Received: filepath={self.filepath}"
            )

    def get_config(self):
        return {
            "filepath": self.filepath, "monitor": self.monitor, "verbose": self.verbose,
            "save_best_only": self.save_best_only, "save_weights_only": self.save_weights_only, "mode": self.mode,
            "save_freq": self.save_freq, "initial_value_threshold": self.initial_value_threshold,
        }

    def _uses_hook(self, name):
        if name == "on_train_batch_end" and not _is_overridden(self, name, ModelCheckpoint):
            return self.save_freq != "epoch"
        return super()._uses_hook(name)

    def on_train_begin(self, logs=None):
        check = getattr(self.model, "check_save_path", None)
        if check is not None:
            check(self.filepath, self.save_weights_only)

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch):
            self._save_model(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save_model(epoch, None, logs)

    def _should_save_on_batch(self, batch):
        if self.save_freq == "epoch":
            return False
        if self._last_batch_seen is None or batch <= self._last_batch_seen:
            self._batches_seen_since_last_saving += batch + 1
        else:
            self._batches_seen_since_last_saving += batch - self._last_batch_seen
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def _should_save_model(self, epoch, logs, filepath):
        if not self.save_best_only:
            if self.verbose > 0:
                print_msg(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=2)
            return True
        if np.ndim(current) > 0:
            warnings.warn(
                f"Can save best model only when `monitor` is a scalar value. Received: {current}. "
                "Falling back to `save_best_only=False`.",
                stacklevel=2,
            )
            return True
        if self.monitor_op is None:
            self._set_monitor_op()
        best_text = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print_msg(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_text} to {current:.5f}, "
                    f"saving model to {filepath}"
                )
            self.best = current
            return True
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best_text}")
        return False

    def _save_model(self, epoch, batch, logs):
        logs = logs or {}
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save_model(epoch, logs, filepath):
            return
        if os.path.isdir(filepath):
            raise IOError(
                f"Please specify a non-directory filepath for ModelCheckpoint. "
                f"Filepath used is an existing directory: {filepath}"
            )
        dirname = os.path.dirname(filepath)
        if dirname:
            os.makedirs(dirname, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(filepath, overwrite=True)
        else:
            self.model.save(filepath, overwrite=True)
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")

    def _get_file_path(self, epoch, batch, logs):
        fields = {key: value for key, value in logs.items() if key not in ("epoch", "batch")}
        fields["epoch"] = epoch + 1
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as error:
            raise KeyError(
                f'Failed to format this callback filepath: "{self.filepath}". Reason: {error}; '
                f"available fields: {', '.join(fields)}"
            ) from None


class CSVLogger(Callback):
    """Append each epoch's logs as a row of a CSV file.

    Args:
        filename: Path of the CSV file.
        separator: Field separator.
        append: Append to an existing file (the header is written only when
            the file is empty) instead of overwriting it.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = append
        self.writer = None
        self.keys = None
        self.append_header = True
        self.csv_file = None

    def get_config(self):
        return {"filename": self.filename, "separator": self.sep, "append": self.append}

    def on_train_begin(self, logs=None):
        self.append_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, "r", newline="") as existing:
                self.append_header = not existing.readline()
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="")
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys.extend(f"val_{key}" for key in list(self.keys))
        if self.writer is None:
            dialect = type("_Dialect", (csv.excel,), {"delimiter": self.sep})
            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys, dialect=dialect)
            if self.append_header:
                self.writer.writeheader()
        row = collections.OrderedDict(epoch=epoch)
        row.update((key, _csv_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


def _csv_value(value):
    if isinstance(value, str) or np.ndim(value) == 0:
        return value
    return f"\"[{', '.join(map(str, np.ravel(value)))}]\""


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite.

    Args:
        raise_error: Raise a ``RuntimeError`` instead of stopping quietly.
    """

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = raise_error

    def get_config(self):
        return {"raise_error": self.raise_error}

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(
                f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. Terminating training immediately."
            )
        print_msg(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True


_LAMBDA_HOOKS = (
    "on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end", "on_train_batch_begin", "on_train_batch_end",
    "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
    "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end",
)


class LambdaCallback(Callback):
    """A callback built from plain functions.

    Args:
        on_epoch_begin, on_epoch_end: ``f(epoch, logs)``.
        on_train_begin, on_train_end: ``f(logs)``.
        on_train_batch_begin, on_train_batch_end: ``f(batch, logs)``.
        **kwargs: Any other hook by name (``on_test_end=f``, ...).
    """

    def __init__(
        self,
        on_epoch_begin=None,
        on_epoch_end=None,
        on_train_begin=None,
        on_train_end=None,
        on_train_batch_begin=None,
        on_train_batch_end=None,
        **kwargs,
    ):
        super().__init__()
        unknown = sorted(set(kwargs) - set(_LAMBDA_HOOKS))
        if unknown:
            raise ValueError(f"LambdaCallback: unknown hook(s) {unknown}; valid hooks are {list(_LAMBDA_HOOKS)}")
        hooks = dict(
            kwargs,
            on_epoch_begin=on_epoch_begin,
            on_epoch_end=on_epoch_end,
            on_train_begin=on_train_begin,
            on_train_end=on_train_end,
            on_train_batch_begin=on_train_batch_begin,
            on_train_batch_end=on_train_batch_end,
        )
        for name, function in hooks.items():
            if function is None:
                continue
            if not callable(function):
                raise ValueError(f"LambdaCallback: {name} must be a function, got {function!r}")
            setattr(self, name, function)


__all__ = [
    "Callback", "CallbackList", "CSVLogger", "EarlyStopping", "History", "LambdaCallback", "LearningRateScheduler",
    "ModelCheckpoint", "ProgbarLogger", "ReduceLROnPlateau", "TerminateOnNaN",
]
