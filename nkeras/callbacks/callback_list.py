"""``CallbackList``: runs a list of callbacks and knows whether any needs batch logs."""

from nkeras.callbacks.callback import (
    _BATCH_HOOKS,
    _TEST_BATCH_HOOKS,
    _TRAIN_BATCH_HOOKS,
    Callback,
    _flatten_callbacks,
    _is_overridden,
)
from nkeras.callbacks.history import History
from nkeras.callbacks.progbar_logger import ProgbarLogger


def _reads_logs_lazily(callback, name):
    return isinstance(callback, ProgbarLogger) and not _is_overridden(callback, name, ProgbarLogger)


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
