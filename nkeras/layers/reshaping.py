"""Flatten and Reshape: views of their input, no kernel on the hot path."""

import math

from nkeras.layers.layer import Layer


class _ViewLayer(Layer):
    """A layer whose output holds the input's values in another shape. The
    plan makes the output a view; ``backward`` copies only when the input
    also feeds other layers and its gradient must be summed."""

    def output_is_view(self, training):
        return True

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            dx = input_grads[0]
            ctx.ops.copy_into(dx.reshape(dx.shape[0], -1), output_grads[0].reshape(dx.shape[0], -1))


class Flatten(_ViewLayer):
    """Flattens every axis but the batch axis.

    Args:
        data_format: accepted for Keras compatibility ("channels_last").
    """

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Flatten '{self.name}': only data_format='channels_last' is supported, got {data_format!r}")
        self.data_format = data_format

    def compute_output_shape(self, input_shape):
        return (input_shape[0], math.prod(input_shape[1:]))

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(_ViewLayer):
    """Reshapes each sample to ``target_shape`` (one entry may be -1).

    Args:
        target_shape: the new shape of one sample, without the batch axis.
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target_shape = tuple(target_shape)
        if sum(1 for d in target_shape if d == -1) > 1 or any(d == 0 or d < -1 for d in target_shape):
            raise ValueError(
                f"Reshape '{self.name}': target_shape must hold positive integers and at most one -1, got {target_shape}"
            )
        self.target_shape = target_shape

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(f"Reshape '{self.name}': cannot reshape {input_shape[1:]} into {self.target_shape}")
            shape = tuple(size // known if d == -1 else d for d in self.target_shape)
        else:
            shape = self.target_shape
        if math.prod(shape) != size:
            raise ValueError(
                f"Reshape '{self.name}': cannot reshape an input of shape {input_shape[1:]} ({size} values) "
                f"into {self.target_shape}"
            )
        return (input_shape[0],) + shape

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}
