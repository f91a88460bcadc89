"""Utilities: label encoding, the progress bar, PyDataset, seeding."""

from nkeras.random import set_random_seed
from nkeras.utils.numerical import normalize, to_categorical
from nkeras.utils.progbar import Progbar
from nkeras.utils.py_dataset import PyDataset

__all__ = ["PyDataset", "Progbar", "normalize", "set_random_seed", "to_categorical"]
