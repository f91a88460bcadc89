"""Utilities: label encoding, the progress bar, PyDataset, seeding, plots."""

from nkeras.random import set_random_seed
from nkeras.utils.numerical import normalize, to_categorical
from nkeras.utils.plotting import model_to_dot, plot_history, plot_model
from nkeras.utils.progbar import Progbar
from nkeras.utils.py_dataset import PyDataset

__all__ = [
    "Progbar",
    "PyDataset",
    "model_to_dot",
    "normalize",
    "plot_history",
    "plot_model",
    "set_random_seed",
    "to_categorical",
]
