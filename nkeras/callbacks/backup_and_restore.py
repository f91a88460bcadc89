"""``BackupAndRestore``: resume a ``fit`` that was interrupted."""

import os

import numpy as np

from nkeras.callbacks.callback import Callback, _is_overridden

_LATEST = "latest.weights.h5"
_PREVIOUS = "previous.weights.h5"
_EPOCH = "training_state/epoch"


class BackupAndRestore(Callback):
    """Back up the training state so that an interrupted ``fit`` resumes.

    At the end of every epoch (or every ``save_freq`` batches) the weights,
    the optimizer state (slots, step count, learning rate) and the epoch are
    written atomically to ``backup_dir``. When ``fit`` starts and a backup
    exists, the model is restored from it and training continues with the
    epoch after the last one backed up. After a ``fit`` that ends normally
    the backup is deleted (``delete_checkpoint=True``).

    With the same seed and data, a run that was killed
    and resumed ends with the same weights as one that was not. With
    ``save_freq`` in batches, a resumed run starts the interrupted epoch
    again from the state of its last backup.

    Args:
        backup_dir: folder for the backup (created if missing); a folder
            no other training run uses.
        save_freq: "epoch", an integer number of batches, or False (never
            back up, only restore).
        double_checkpoint: keep the previous backup too, and fall back to it
            when the latest cannot be read.
        delete_checkpoint: delete the backup when ``fit`` finishes.
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        is_count = isinstance(save_freq, (int, np.integer)) and not isinstance(save_freq, bool)
        if save_freq != "epoch" and save_freq is not False and not (is_count and save_freq >= 1):
            raise ValueError(
                f"Invalid value for argument `save_freq`. Received: save_freq={save_freq}. "
                "Expected either 'epoch', a positive integer, or False."
            )
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = double_checkpoint
        self.delete_checkpoint = delete_checkpoint
        self._latest = os.path.join(self.backup_dir, _LATEST)
        self._previous = os.path.join(self.backup_dir, _PREVIOUS)
        self._current_epoch = 0
        self._batches_since_backup = 0

    def get_config(self):
        return {
            "backup_dir": self.backup_dir, "save_freq": self.save_freq,
            "double_checkpoint": self.double_checkpoint, "delete_checkpoint": self.delete_checkpoint,
        }

    def _uses_hook(self, name):
        if name == "on_train_batch_end" and not _is_overridden(self, name, BackupAndRestore):
            return self.save_freq != "epoch" and self.save_freq is not False
        return super()._uses_hook(name)

    def on_train_begin(self, logs=None):
        from nkeras.saving import h5_store

        candidates = [self._latest] + ([self._previous] if self.double_checkpoint else [])
        errors = []
        for path in candidates:
            if not os.path.exists(path):
                continue
            try:
                with open(path, "rb") as handle:
                    arrays = h5_store.read_weights(handle.read(), path)
                epoch = arrays.get(_EPOCH)
                if epoch is None or epoch.shape != () or epoch.dtype.kind not in "iu" or int(epoch) < -1:
                    raise ValueError(f"{path}: no valid '{_EPOCH}' in the backup")
                weights = h5_store.plan_weights(self.model, arrays, path)
                optimizer = h5_store.plan_optimizer(self.model, arrays, path)
            except ValueError as error:
                errors.append(str(error))
                continue
            h5_store.apply_state(self.model, weights, optimizer)
            self._current_epoch = int(epoch) + 1
            self.model._initial_epoch = self._current_epoch
            return
        if errors:
            raise ValueError(f"BackupAndRestore: cannot restore from {self.backup_dir!r}: " + "; ".join(errors))

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._batches_since_backup += 1
        if self._batches_since_backup >= self.save_freq:
            self._batches_since_backup = 0
            self._backup(self._current_epoch - 1)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._backup(epoch)

    def on_train_end(self, logs=None):
        self.model.__dict__.pop("_initial_epoch", None)
        if self.delete_checkpoint:
            for path in (self._latest, self._previous):
                if os.path.exists(path):
                    os.remove(path)

    def _backup(self, finished_epoch):
        """Write the state; ``finished_epoch`` is the last epoch fully trained."""
        from nkeras.saving import h5_store
        from nkeras.saving.file_utils import atomic_write

        os.makedirs(self.backup_dir, exist_ok=True)
        data = h5_store.weights_bytes(self.model, extra={_EPOCH: np.int64(finished_epoch)})
        if self.double_checkpoint and os.path.exists(self._latest):
            os.replace(self._latest, self._previous)
        atomic_write(self._latest, lambda stream: stream.write(data))
