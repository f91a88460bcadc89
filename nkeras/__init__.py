"""nkeras: Keras 3's API over Numba kernels.

    import nkeras as keras
    model = keras.Sequential([keras.Input(shape=(28, 28)), keras.layers.Flatten(), ...])
"""

from nkeras import (
    activations,
    backend,
    callbacks,
    config,
    datasets,
    initializers,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    saving,
    testing,
    utils,
)
from nkeras.backend import device
from nkeras.layers import Input
from nkeras.models import Model, Sequential
from nkeras.variables import Variable
from nkeras.version import __version__

__all__ = [
    "__version__", "activations", "backend", "callbacks", "config", "datasets", "device", "initializers", "layers",
    "losses", "metrics", "models", "optimizers", "saving", "testing", "utils", "Input", "Model", "Sequential", "Variable",
]
