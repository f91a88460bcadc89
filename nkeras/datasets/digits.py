"""The UCI 8x8 handwritten digits, shipped with nkeras (CC BY 4.0).

1797 images of the digits 0..9, each pixel the count (0..16) of set pixels
in a 4x4 block of a 32x32 bitmap. E. Alpaydin and C. Kaynak, UCI Machine
Learning Repository; see ``nkeras/datasets/data/README.md``.
"""

import gzip
import numbers
from pathlib import Path

import numpy as np

DATA_PATH = Path(__file__).parent / "data" / "digits.csv.gz"
NUM_SAMPLES = 1797


def load_data(test_split=0.2, seed=113):
    """Load the 8x8 digits, shuffled and split the same way for a given seed.

    Args:
        test_split: fraction of the samples held out as the test set, in [0, 1).
        seed: seed of the shuffle before the split.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 images of shape
        ``(n, 8, 8)`` with values 0..16, uint8 labels 0..9 of shape ``(n,)``.
    """
    if isinstance(test_split, bool) or not isinstance(test_split, numbers.Real) or not 0 <= test_split < 1:
        raise ValueError(f"digits.load_data: test_split must be a number in [0, 1), got {test_split!r}")
    with gzip.open(DATA_PATH, "rt") as csv:
        table = np.loadtxt(csv, delimiter=",", dtype=np.uint8)
    if table.shape != (NUM_SAMPLES, 65):
        raise ValueError(f"{DATA_PATH}: expected {NUM_SAMPLES} rows of 64 pixels and a label, got shape {table.shape}")
    order = np.random.default_rng(seed).permutation(NUM_SAMPLES)
    images, labels = table[order, :64].reshape(-1, 8, 8), table[order, 64]
    num_train = int(NUM_SAMPLES * (1 - test_split))
    return (images[:num_train], labels[:num_train]), (images[num_train:], labels[num_train:])
