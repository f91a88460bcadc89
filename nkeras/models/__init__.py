from nkeras.models.model import Model
from nkeras.models.sequential import Sequential

__all__ = ["Model", "Sequential"]
