"""``History``: records each epoch's logs; ``fit`` returns it."""

from nkeras.callbacks.callback import Callback


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
