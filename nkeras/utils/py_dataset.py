"""``PyDataset``: the base class for data that arrives batch by batch."""


class PyDataset:
    """Subclass it and define ``__len__`` (number of batches) and
    ``__getitem__(index)`` returning ``x``, ``(x, y)`` or
    ``(x, y, sample_weight)`` for batch ``index``.

    Args:
        workers, use_multiprocessing, max_queue_size: accepted for Keras
            compatibility; nkeras reads batches in the training thread.
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self.workers = workers
        self.use_multiprocessing = use_multiprocessing
        self.max_queue_size = max_queue_size

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index)")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__()")

    @property
    def num_batches(self):
        return len(self)

    def on_epoch_begin(self):
        """Called before each epoch."""

    def on_epoch_end(self):
        """Called after each epoch (shuffle here if you like)."""
