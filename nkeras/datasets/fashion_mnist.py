"""Fashion-MNIST: 70,000 28x28 grayscale images of 10 kinds of clothing.

Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal,
6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot. Copyright Zalando SE, MIT license.
"""

import math
import struct

import numpy as np

from nkeras.datasets._fetch import DataFile, fetch

DATASET = "fashion-mnist"
_BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_HINT = "install Debian's package (apt-get install dataset-fashion-mnist), or "


def _idx_file(name, sha256):
    return DataFile(name, _BASE_URL + name, sha256, gzipped=True)


# SHA-256 of the decompressed IDX files: the .gz wrappers differ between
# the original release and Debian's re-compressed copy, their content does not.
FILES = {
    "x_train": _idx_file(
        "train-images-idx3-ubyte.gz", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
    ),
    "y_train": _idx_file(
        "train-labels-idx1-ubyte.gz", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
    ),
    "x_test": _idx_file(
        "t10k-images-idx3-ubyte.gz", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
    ),
    "y_test": _idx_file(
        "t10k-labels-idx1-ubyte.gz", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
    ),
}


def load_data():
    """Load Fashion-MNIST (see ``nkeras.datasets`` for where files are looked for).

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 images of shape
        ``(60000, 28, 28)`` and ``(10000, 28, 28)``, uint8 labels in 0..9 of
        shape ``(60000,)`` and ``(10000,)``.
    """
    arrays = {
        key: parse_idx(fetch(DATASET, data_file, hint=_HINT), data_file.name, ndim=3 if key.startswith("x") else 1)
        for key, data_file in FILES.items()
    }
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise ValueError(
                f"Fashion-MNIST {split} split: expected images (n, 28, 28) and n labels, "
                f"got images {images.shape} and {len(labels)} labels"
            )
        if labels.size and labels.max() > 9:
            raise ValueError(f"Fashion-MNIST {split} split: labels must be in 0..9, found {labels.max()}")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def parse_idx(content, name, ndim):
    """Decode an IDX file of unsigned bytes.

    Args:
        content: the decompressed file.
        name: the file's name, for error messages.
        ndim: the number of dimensions the file must have.

    Returns:
        A writable uint8 array of the shape the header gives.
    """
    magic = content[:4]
    if len(magic) < 4 or magic[:3] != b"\x00\x00\x08" or magic[3] != ndim:
        raise ValueError(
            f"{name}: not an IDX file of {ndim}-d unsigned bytes: magic number {magic.hex() or 'missing'}, "
            f"expected 000008{ndim:02x}"
        )
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise ValueError(f"{name}: truncated IDX header ({len(content)} of {header_size} bytes)")
    shape = struct.unpack(f">{ndim}I", content[4:header_size])
    expected_size = header_size + math.prod(shape)
    if len(content) != expected_size:
        raise ValueError(
            f"{name}: the header gives shape {shape}, i.e. {expected_size} bytes, but the file has {len(content)}"
        )
    return np.frombuffer(content, np.uint8, offset=header_size).reshape(shape).copy()
