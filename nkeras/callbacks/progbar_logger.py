"""``ProgbarLogger``: the progress bar of ``fit``, ``evaluate`` and ``predict``."""

from nkeras.callbacks.callback import (
    _BATCH_HOOKS,
    Callback,
    _is_overridden,
    _resolve_logs,
)
from nkeras.utils.progbar import Progbar, print_msg


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
