"""Masking: marks the timesteps whose features all equal a padding value."""

from nkeras.layers.layer import Layer


class Masking(Layer):
    """Masks padded timesteps of a ``(batch, timesteps, features)`` input: a
    step whose features all equal ``mask_value`` gets mask 0.0 and is set to
    zeros; the mask (1.0 for the other steps) goes to the masking-aware
    layers downstream, so padded steps change neither the state of an RNN
    nor the loss.

    Args:
        mask_value: the padding value (0.0).
    """

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float)):
            raise TypeError(f"Masking '{self.name}': mask_value must be a number, got {mask_value!r}")
        self.mask_value = float(mask_value)

    def check_input_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"Masking '{self.name}': expected an input of shape (batch, timesteps, features), got {input_shape}"
            )

    def output_mask_shape(self, input_shape):
        return tuple(input_shape[:2])

    def _rows(self, array):
        return array.reshape(array.shape[0] * array.shape[1], array.shape[2])

    def forward(self, ctx, inputs, outputs, state):
        # Compared in the layer's dtype, as Keras compares.
        mask_value = self.dtype.type(self.mask_value)
        y, mask = outputs
        ctx.ops.masking_forward(self._rows(inputs[0]), mask_value, self._rows(y), mask.reshape(mask.size))

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            mask = outputs[1]
            ctx.ops.masking_backward(self._rows(output_grads[0]), mask.reshape(mask.size), self._rows(input_grads[0]))

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}
