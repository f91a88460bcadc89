"""``LearningRateScheduler``."""

import inspect

import numpy as np

from nkeras.callbacks.callback import Callback
from nkeras.utils.progbar import print_msg


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
