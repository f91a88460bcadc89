"""``ModelCheckpoint``."""

import os
import warnings

import numpy as np

from nkeras.callbacks.callback import _is_overridden
from nkeras.callbacks.monitor_callback import _MonitorCallback
from nkeras.utils.progbar import print_msg

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
            raise OSError(
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
