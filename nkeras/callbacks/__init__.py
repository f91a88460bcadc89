"""Callbacks: hooks into ``fit``, ``evaluate`` and ``predict``, as in Keras 3.

The training loop drives a :class:`CallbackList`. Batch hooks are costly
relative to a fast training step, so the list only calls the callbacks that
actually override a hook, and tells the loop through ``needs_batch_logs``
whether any batch hook is in use at all. Batch-end ``logs`` may be given as
a zero-argument callable returning the dict: it is called at most once, and
only when a callback reads the logs (the progress bar reads them only when
it redraws).
"""

from nkeras.callbacks.backup_and_restore import BackupAndRestore
from nkeras.callbacks.callback import Callback
from nkeras.callbacks.callback_list import CallbackList
from nkeras.callbacks.csv_logger import CSVLogger
from nkeras.callbacks.early_stopping import EarlyStopping
from nkeras.callbacks.history import History
from nkeras.callbacks.lambda_callback import LambdaCallback
from nkeras.callbacks.learning_rate_scheduler import LearningRateScheduler
from nkeras.callbacks.model_checkpoint import ModelCheckpoint
from nkeras.callbacks.progbar_logger import ProgbarLogger
from nkeras.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from nkeras.callbacks.terminate_on_nan import TerminateOnNaN

__all__ = ['BackupAndRestore', 'CSVLogger', 'Callback', 'CallbackList', 'EarlyStopping', 'History', 'LambdaCallback', 'LearningRateScheduler', 'ModelCheckpoint', 'ProgbarLogger', 'ReduceLROnPlateau', 'TerminateOnNaN']
