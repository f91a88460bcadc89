"""MNIST: 70,000 28x28 grayscale images of handwritten digits.

Yann LeCun and Corinna Cortes hold the copyright; CC BY-SA 3.0.
"""

import io
import zipfile

import numpy as np

from nkeras.datasets._fetch import DataFile, fetch

DATASET = "mnist"
FILE = DataFile(
    "mnist.npz",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
    "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
)
_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_data(path="mnist.npz"):
    """Load MNIST (see ``nkeras.datasets`` for where files are looked for).

    Args:
        path: where to cache ``mnist.npz``, relative to
            ``$NKERAS_HOME/datasets/mnist/`` (an absolute path is used as is).

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 images of shape
        ``(60000, 28, 28)`` and ``(10000, 28, 28)``, uint8 labels in 0..9 of
        shape ``(60000,)`` and ``(10000,)``.
    """
    content = fetch(DATASET, FILE, filename=path)
    try:
        with np.load(io.BytesIO(content), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ValueError(f"{FILE.name}: not a readable .npz archive of plain arrays ({error})") from None
    missing = [key for key in _KEYS if key not in arrays]
    if missing:
        raise ValueError(f"{FILE.name}: missing arrays {missing}; it holds {sorted(arrays)}")
    x_train, y_train, x_test, y_test = (arrays[key] for key in _KEYS)
    return (x_train, y_train), (x_test, y_test)
