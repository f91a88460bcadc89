"""CIFAR-10: 60,000 32x32 color images in 10 classes.

Labels: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog,
7 horse, 8 ship, 9 truck. By Alex Krizhevsky, Vinod Nair and Geoffrey Hinton.

The official archive holds Python pickles. They are unpickled only after the
archive's SHA-256 matched, and then by an unpickler that can rebuild NumPy
arrays and nothing else.
"""

import gzip
import io
import pickle
import tarfile

import numpy as np

from nkeras.datasets._fetch import DataFile, fetch

DATASET = "cifar-10"
FILE = DataFile(
    "cifar-10-python.tar.gz",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
_MEMBER_DIR = "cifar-10-batches-py"


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, bytes and NumPy arrays; refuses every other global."""

    _ALLOWED = frozenset({
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    })

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a CIFAR-10 batch: only NumPy arrays are allowed"
            )
        return super().find_class(module, name)


def load_data():
    """Load CIFAR-10 (see ``nkeras.datasets`` for where files are looked for).

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 channels-last images
        of shape ``(50000, 32, 32, 3)`` and ``(10000, 32, 32, 3)``, uint8
        labels in 0..9 of shape ``(50000, 1)`` and ``(10000, 1)``.
    """
    archive = fetch(DATASET, FILE)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive)), mode="r:") as tar:
        train = [_load_batch(tar, name) for name in TRAIN_BATCHES]
        x_test, y_test = _load_batch(tar, TEST_BATCH)
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return (x_train, y_train), (x_test, y_test)


def _load_batch(tar, name):
    member_name = f"{_MEMBER_DIR}/{name}"
    try:
        member = tar.extractfile(member_name)
    except KeyError:
        raise ValueError(f"{FILE.name}: no member {member_name!r}") from None
    if member is None:
        raise ValueError(f"{FILE.name}: {member_name!r} is not a regular file")
    batch = _ArrayUnpickler(member, encoding="bytes").load()
    if not isinstance(batch, dict):
        raise ValueError(f"{member_name}: expected a dict, got {type(batch).__name__}")
    data, labels = batch.get(b"data"), np.asarray(batch.get(b"labels", []))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise ValueError(f"{member_name}: expected b'data', a uint8 array of shape (n, 3072)")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu" or np.any((labels < 0) | (labels > 9)):
        raise ValueError(f"{member_name}: expected b'labels', {len(data)} integers in 0..9")
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels.astype(np.uint8).reshape(-1, 1)
