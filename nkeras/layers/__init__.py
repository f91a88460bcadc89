"""Layers with Keras 3's names and arguments."""

from nkeras.layers.core import Activation, Dense, Dropout
from nkeras.layers.layer import Input, InputLayer, Layer
from nkeras.layers.reshaping import Flatten, Reshape

__all__ = ["Activation", "Dense", "Dropout", "Flatten", "Input", "InputLayer", "Layer", "Reshape"]
