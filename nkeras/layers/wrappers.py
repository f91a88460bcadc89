"""Wrappers around another layer: TimeDistributed and Bidirectional.

A wrapper holds its inner layers' weights (``weights`` lists theirs) and
runs their forward and backward kernels on views of its own buffers, so it
adds no kernel of its own beyond what combining the results takes. Model
files keep the inner layers' configs under ``layer`` (and
``backward_layer``) and their weights in the groups Keras uses
(``keras_weight_groups``).
"""

from nkeras.layers.layer import Layer


def _inner_layer(wrapper, value, argument):
    """A Layer from a Layer or its serialized form."""
    if isinstance(value, dict):
        from nkeras.saving.serialization import deserialize_layer

        return deserialize_layer(value, what=f"{type(wrapper).__name__} '{wrapper.name}' {argument}")
    if not isinstance(value, Layer):
        raise TypeError(
            f"{type(wrapper).__name__} '{wrapper.name}': {argument} must be a keras.layers.Layer instance, "
            f"got {type(value).__name__}"
        )
    return value


def _serialize(layer):
    from nkeras.saving.serialization import serialize_keras_object

    return serialize_keras_object(layer)


def _groups_under(prefix, layer):
    """The file groups of ``layer``'s weights, under ``prefix``."""
    from nkeras.saving.h5_store import file_groups

    return [(prefix + group, variables) for group, variables in file_groups(layer)]


class TimeDistributed(Layer):
    """Applies a layer to every timestep of its input: the inner layer runs
    once on the ``(batch * timesteps, ...)`` view of a ``(batch, timesteps,
    ...)`` input, with one set of weights for all steps. The mask of padded
    steps passes through.

    Args:
        layer: the layer to apply (a Layer instance; it must return one tensor).
    """

    nested_layer_keys = ("layer",)
    supports_masking = True

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = _inner_layer(self, layer, "layer")
        if not self.trainable:
            self.layer.trainable = False

    # ---- weights: the inner layer's ----------------------------------------

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        # As in Keras, freezing the wrapper freezes the layer it wraps.
        self._trainable = value
        if "layer" in vars(self):
            self.layer.trainable = value

    @property
    def weights(self):
        return self.layer.weights

    @property
    def trainable_weights(self):
        return self.layer.trainable_weights if self.trainable else []

    @property
    def non_trainable_weights(self):
        return self.layer.weights if not self.trainable else self.layer.non_trainable_weights

    def get_weights(self):
        return self.layer.get_weights()

    def set_weights(self, weights):
        self.layer.set_weights(weights)

    def count_params(self):
        return self.layer.count_params()

    def keras_weight_groups(self):
        return _groups_under("layer/", self.layer)

    def inner_layers(self):
        return [self.layer]

    # ---- shapes ------------------------------------------------------------

    def _step_shape(self, input_shape):
        # One shape starts with the batch dimension (None), a list of shapes with a shape.
        if input_shape[0] is not None or len(input_shape) < 3:
            raise ValueError(
                f"TimeDistributed '{self.name}': expected one input of shape (batch, timesteps, ...) with rank >= 3, "
                f"got {input_shape}"
            )
        return (None,) + tuple(input_shape[2:])

    def build(self, input_shape):
        step_shape = self._step_shape(input_shape)
        if not self.layer.built:
            self.layer.build(step_shape)
            self.layer.built = True
        self.built = True

    def check_input_shape(self, input_shape):
        self.layer.check_input_shape(self._step_shape(input_shape))

    def compute_output_shape(self, input_shape):
        step_output = self.layer.compute_output_shape(self._step_shape(input_shape))
        several_outputs = isinstance(step_output, list)
        if several_outputs:
            raise ValueError(
                f"TimeDistributed '{self.name}': the inner layer '{self.layer.name}' returns several tensors; "
                "TimeDistributed wraps layers with one output"
            )
        return tuple(input_shape[:2]) + tuple(step_output[1:])

    # ---- execution: the inner layer's kernels on (batch * timesteps, ...) views ----

    @staticmethod
    def _steps(array):
        return array.reshape((array.shape[0] * array.shape[1],) + tuple(array.shape[2:]))

    def output_is_view(self, training):
        return self.layer.output_is_view(training)

    def state_shapes(self, input_shapes, training):
        return self.layer.state_shapes([self._step_array_shape(s) for s in input_shapes], training)

    @staticmethod
    def _step_array_shape(shape):
        return (shape[0] * shape[1],) + tuple(shape[2:])

    def make_state(self, device, inputs, outputs, training):
        return self.layer.make_state(
            device, [self._steps(a) for a in inputs], [self._steps(a) for a in outputs], training
        )

    def forward(self, ctx, inputs, outputs, state):
        self.layer.forward(ctx, [self._steps(inputs[0])], [self._steps(outputs[0])], state)

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dx = input_grads[0]
        self.layer.backward(
            ctx, [self._steps(inputs[0])], [self._steps(outputs[0])], state, [self._steps(output_grads[0])],
            [None if dx is None else self._steps(dx)],
        )

    def get_config(self):
        return {**super().get_config(), "layer": _serialize(self.layer)}
