"""Tools for testing layers and losses, above all custom ones.

``check_gradients(layer_or_loss, input_shape)`` compares the analytic
gradients a layer's ``backward`` (or a loss' ``compute``) writes with
central finite differences in float64 (see docs/custom_layers.md).
"""

from nkeras.testing.gradients import GradientCheckError, GradientReport, GradientResult, check_gradients

__all__ = ["GradientCheckError", "GradientReport", "GradientResult", "check_gradients"]
