"""The ``Callback`` base class and the helpers that tell which hooks a callback uses."""

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
