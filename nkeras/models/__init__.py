from nkeras.models.model import Model
from nkeras.models.sequential import Sequential
from nkeras.saving import load_model, save_model

__all__ = ["Model", "Sequential", "load_model", "save_model"]
