"""SpatialDropout1D and SpatialDropout2D: dropout of whole channels."""

from nkeras.layers.conv_utils import check_data_format, check_spatial_input
from nkeras.layers.core import Dropout


class _SpatialDropout(Dropout):
    """Drops each channel of each sample, at every position at once, with
    probability ``rate`` in training (scaling the rest by ``1 / (1 - rate)``);
    does nothing at inference."""

    _rank = None

    def __init__(self, rate, seed=None, name=None, dtype=None):
        super().__init__(rate, seed=seed, name=name, dtype=dtype)

    def check_input_shape(self, input_shape):
        check_spatial_input(self.name, input_shape, self._rank)

    def state_shapes(self, input_shapes, training):
        shape = input_shapes[0]
        return {"mask": (shape[0], shape[-1])}

    @staticmethod
    def _as_3d(array):
        shape = tuple(array.shape)
        return array.reshape(shape[0], -1, shape[-1])

    def forward(self, ctx, inputs, outputs, state):
        ctx.ops.spatial_dropout_forward(
            self._as_3d(inputs[0]), self.rate, self._seed, ctx.step, state["mask"], self._as_3d(outputs[0])
        )

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dx = input_grads[0]
        if dx is None:
            return
        if self.rate == 0.0:
            # The plan made the output a view, but the input has other readers.
            ctx.ops.copy_into(dx.reshape(dx.shape[0], -1), output_grads[0].reshape(dx.shape[0], -1))
        else:
            ctx.ops.spatial_dropout_backward(self._as_3d(output_grads[0]), state["mask"], self._as_3d(dx))

    def get_config(self):
        # Keras's spatial dropout layers take no `trainable` argument.
        return {"name": self.name, "dtype": self.dtype.name, "rate": self.rate, "seed": self.seed}


class SpatialDropout1D(_SpatialDropout):
    """Dropout of whole channels of ``(batch, steps, channels)`` inputs.

    Args:
        rate: float in [0, 1), the fraction of channels to drop.
        seed: optional integer seed (drawn from the global stream otherwise).
    """

    supports_masking = True

    _rank = 1


class SpatialDropout2D(_SpatialDropout):
    """Dropout of whole feature maps of ``(batch, rows, cols, channels)`` inputs.

    Args:
        rate: float in [0, 1), the fraction of channels to drop.
        data_format: only "channels_last" (the default) is supported.
        seed: optional integer seed (drawn from the global stream otherwise).
    """

    _rank = 2

    def __init__(self, rate, data_format=None, seed=None, name=None, dtype=None):
        super().__init__(rate, seed=seed, name=name, dtype=dtype)
        self.data_format = check_data_format(data_format, self.name)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}
