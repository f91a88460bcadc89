"""Wrappers around another layer: TimeDistributed and Bidirectional.

A wrapper holds its inner layers' weights (``weights`` lists theirs) and
runs their forward and backward kernels on views of its own buffers, so it
adds no kernel of its own beyond what combining the results takes. Model
files keep the inner layers' configs under ``layer`` (and
``backward_layer``) and their weights in the groups Keras uses
(``keras_weight_groups``).
"""

import numpy as np

from nkeras.kernels.cpu.merge import AVERAGE, CONCAT, PRODUCT, SUM
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

    def parallel_kernels(self, input_shapes):
        return self.layer.parallel_kernels([self._step_array_shape(s) for s in input_shapes])

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


# Bidirectional's merge modes, as the merge kernels number them.
_MERGE_MODES = {"concat": CONCAT, "sum": SUM, "ave": AVERAGE, "mul": PRODUCT}


def _copy(layer, config, **changes):
    """A new layer like ``layer`` (from its ``config``) with ``changes``;
    it takes ``layer``'s initializer objects as they are (those standing in
    while a file is read, too)."""
    for key in config:
        if key.endswith("_initializer") and key in vars(layer):
            config = {**config, key: getattr(layer, key)}
    return type(layer).from_config({**config, **changes})


def _as_steps(array):
    """A (batch, units) output as a one-step (batch, 1, units) sequence."""
    return array if array.ndim == 3 else array.reshape(array.shape[0], 1, array.shape[1])


class Bidirectional(Layer):
    """Runs a recurrent layer over the sequence in both directions and
    merges the two outputs.

    The forward layer is a copy of ``layer`` named ``forward_<name>``; the
    backward one is ``backward_layer`` or a copy of ``layer`` with
    ``go_backwards`` flipped, named ``backward_<name>``. With
    ``return_sequences`` the backward layer's sequence is reversed before
    the merge, so step ``t`` of both lines up, as in Keras; padded steps of
    a masked sequence output zeros (Keras sets ``zero_output_for_mask`` on
    both directions when they return sequences). Its weights are
    the forward layer's, then the backward layer's. Initial states given as
    ``initial_state`` are split in half: the forward layer's, then the
    backward layer's. A mask of padded steps reaches both layers.

    Args:
        layer: the recurrent layer (SimpleRNN, LSTM, GRU) to run forwards.
        merge_mode: how the outputs combine: "concat" (the default), "sum",
            "mul", "ave", or None for a list of both.
        weights: optional initial weights, the forward layer's then the
            backward layer's.
        backward_layer: optional recurrent layer to run backwards (its
            ``go_backwards`` must differ from ``layer``'s).
    """

    nested_layer_keys = ("layer", "backward_layer")
    reads_mask = True

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        super().__init__(**kwargs)
        layer = _inner_layer(self, layer, "layer")
        if backward_layer is not None:
            backward_layer = _inner_layer(self, backward_layer, "backward_layer")
        if merge_mode not in (*_MERGE_MODES, None):
            raise ValueError(
                f"Bidirectional '{self.name}': merge_mode must be one of 'concat', 'sum', 'mul', 'ave' or None, "
                f"got {merge_mode!r}"
            )
        config = layer.get_config()
        if not all(key in config for key in ("go_backwards", "return_sequences", "return_state")):
            raise ValueError(
                f"Bidirectional '{self.name}': layer '{layer.name}' ({type(layer).__name__}) is not a recurrent "
                "layer (its config has no go_backwards, return_sequences and return_state)"
            )
        self.forward_layer = _copy(layer, config, name="forward_" + layer.name.removeprefix("forward_"))
        if backward_layer is None:
            backward_layer = _copy(
                layer, config, go_backwards=not config["go_backwards"],
                name="backward_" + layer.name.removeprefix("backward_"),
            )
        self.backward_layer = backward_layer
        self._check_directions()
        if not self.trainable:
            for inner in self.inner_layers():
                inner.trainable = False
        self.merge_mode = merge_mode
        self.return_sequences = self.forward_layer.return_sequences
        self.return_state = self.forward_layer.return_state
        self._initial_weights = list(weights) if weights else None

    def _check_directions(self):
        forward, backward = self.forward_layer.get_config(), self.backward_layer.get_config()
        if forward["go_backwards"] == backward["go_backwards"]:
            raise ValueError(
                f"Bidirectional '{self.name}': the forward and backward layers need different go_backwards, "
                f"both have go_backwards={forward['go_backwards']}"
            )
        for key in ("return_sequences", "return_state"):
            if forward[key] != backward[key]:
                raise ValueError(
                    f"Bidirectional '{self.name}': the forward and backward layers need the same {key}, got "
                    f"{forward[key]} and {backward[key]}"
                )

    def inner_layers(self):
        return [self.forward_layer, self.backward_layer]

    # ---- weights: the forward layer's, then the backward layer's ------------------

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = value
        for inner in self.inner_layers() if "backward_layer" in vars(self) else ():
            inner.trainable = value

    @property
    def weights(self):
        return self.forward_layer.weights + self.backward_layer.weights

    @property
    def trainable_weights(self):
        return self.forward_layer.trainable_weights + self.backward_layer.trainable_weights if self.trainable else []

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return self.forward_layer.non_trainable_weights + self.backward_layer.non_trainable_weights

    def get_weights(self):
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights):
        weights = list(weights)
        count = len(self.forward_layer.weights)
        if len(weights) != len(self.weights):
            raise ValueError(f"Layer '{self.name}' expects {len(self.weights)} weight arrays, got {len(weights)}")
        self.forward_layer.set_weights(weights[:count])
        self.backward_layer.set_weights(weights[count:])

    def count_params(self):
        return self.forward_layer.count_params() + self.backward_layer.count_params()

    def keras_weight_groups(self):
        return _groups_under("forward_layer/", self.forward_layer) + _groups_under("backward_layer/", self.backward_layer)

    # ---- calls -------------------------------------------------------------

    def __call__(self, inputs, initial_state=None, mask=None, training=None, **kwargs):
        """Call on a sequence, with optional ``initial_state`` (a list: the
        forward layer's states, then the backward layer's) and ``mask``."""
        from nkeras.graph import KerasTensor
        from nkeras.layers.layer import Input

        if isinstance(inputs, (list, tuple)):
            raise TypeError(
                f"Bidirectional '{self.name}': call it on one sequence and pass initial states as initial_state=[...]"
            )
        states = [] if initial_state is None else (
            list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        )
        if len(states) % 2:
            raise ValueError(
                f"Bidirectional '{self.name}': initial_state must hold the forward layer's states then the "
                f"backward layer's (an even number), got {len(states)}"
            )
        if not self.forward_layer._inbound_nodes:
            # Call each direction once on symbolic stand-ins: it builds and
            # takes the call's options (which initial states are given).
            if isinstance(inputs, KerasTensor):
                probes = [inputs] + states
            else:
                probes = [Input(tuple(np.shape(a))[1:], dtype=self.dtype.name) for a in [inputs] + states]
            half = len(states) // 2
            self.forward_layer(probes[0], initial_state=probes[1:1 + half] or None)
            self.backward_layer(probes[0], initial_state=probes[1 + half:] or None)
        elif len(states) != self._state_count:
            raise ValueError(
                f"Bidirectional '{self.name}' was first called with {self._state_count} initial states, now with "
                f"{len(states)}; a shared layer must be called alike"
            )
        self._state_count = len(states)
        return super().__call__([inputs] + states if states else inputs, mask=mask, training=training, **kwargs)

    def build(self, input_shape):
        for inner in self.inner_layers():
            if not inner.built:
                inner.build(input_shape)
                inner.built = True
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None
        self.built = True

    def check_input_shape(self, input_shape):
        for inner in self.inner_layers():
            inner.check_input_shape(input_shape)

    def _direction_shapes(self, input_shape):
        """The forward layer's output shapes: its output, then its states."""
        shapes = self.forward_layer.compute_output_shape(input_shape)
        return shapes if isinstance(shapes, list) else [shapes]

    def compute_output_shape(self, input_shape):
        output, *states = self._direction_shapes(input_shape)
        if self.merge_mode == "concat":
            merged = [tuple(output[:-1]) + (2 * output[-1],)]
        elif self.merge_mode is None:
            merged = [tuple(output), tuple(output)]
        else:
            merged = [tuple(output)]
        shapes = merged + [tuple(s) for s in states] * 2
        return shapes if len(shapes) > 1 else shapes[0]

    def compute_mask(self, input_shape, mask):
        output_mask = mask if self.return_sequences else None
        masks = [output_mask] * (2 if self.merge_mode is None else 1)
        masks += [None] * (len(self._direction_shapes(input_shape)) - 1) * 2
        return masks if len(masks) > 1 else masks[0]

    # ---- execution ------------------------------------------------------------

    def _merged_count(self):
        return 2 if self.merge_mode is None else 1

    def _directions(self, inputs, outputs, state):
        """Per direction: its inputs, its outputs and its state dict."""
        sequence, *initial = inputs
        half = len(initial) // 2
        states = outputs[self._merged_count():]
        count = len(states) // 2
        forward_output = outputs[0] if self.merge_mode is None else state["forward_output"]
        directions = []
        for prefix, own_initial, own_output, own_states in (
            ("forward/", initial[:half], forward_output, states[:count]),
            ("backward/", initial[half:], state["backward_output"], states[count:]),
        ):
            own_state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
            if "mask" in state:
                own_state["mask"] = state["mask"]
            directions.append(([sequence] + own_initial, [own_output] + own_states, own_state))
        return directions

    def parallel_kernels(self, input_shapes):
        return any(inner.parallel_kernels(input_shapes[:1]) for inner in (self.forward_layer, self.backward_layer))

    def make_state(self, device, inputs, outputs, training):
        output_shape = (inputs[0].shape[0],) + tuple(self._direction_shapes(
            [(None,) + tuple(a.shape[1:]) for a in inputs] if len(inputs) > 1 else (None,) + tuple(inputs[0].shape[1:])
        )[0][1:])
        state = {"backward_output": device.zeros(output_shape, self.dtype)}
        if self.merge_mode is not None:
            state["forward_output"] = device.zeros(output_shape, self.dtype)
        if training:
            state["backward_output_grad"] = device.zeros(output_shape, self.dtype)
            state["backward_input_grad"] = device.zeros(tuple(inputs[0].shape), self.dtype)
            if self.merge_mode is not None:
                state["forward_output_grad"] = device.zeros(output_shape, self.dtype)
        for (prefix, inner), (own_inputs, own_outputs, _) in zip(
            (("forward/", self.forward_layer), ("backward/", self.backward_layer)),
            self._directions(inputs, outputs, state),
        ):
            for key, value in inner.make_state(device, own_inputs, own_outputs, training).items():
                state[prefix + key] = value
        return state

    def forward(self, ctx, inputs, outputs, state):
        (forward_args, backward_args) = self._directions(inputs, outputs, state)
        self.forward_layer.forward(ctx, *forward_args)
        self.backward_layer.forward(ctx, *backward_args)
        forward_output, backward_output = forward_args[1][0], backward_args[1][0]
        if self.merge_mode is None:
            self._reverse(ctx, backward_output, outputs[1])
        else:
            ctx.ops.merge_directions_forward(
                _as_steps(forward_output), _as_steps(backward_output), self.return_sequences,
                _MERGE_MODES[self.merge_mode], _as_steps(outputs[0]),
            )
        for output in outputs[:self._merged_count()]:
            self._zero_padded_steps(ctx, state, output)

    def _zero_padded_steps(self, ctx, state, sequence):
        """``sequence *= mask`` per step (in place) when a masked sequence is returned."""
        if self.return_sequences and "mask" in state:
            rows = sequence.reshape(sequence.shape[0] * sequence.shape[1], sequence.shape[2])
            mask = state["mask"]
            ctx.ops.masking_backward(rows, mask.reshape(mask.size), rows)

    def _reverse(self, ctx, source, target):
        """``target`` = ``source`` with its steps reversed (when they are a sequence)."""
        if self.return_sequences:
            ctx.ops.reverse_steps(source, target)
        else:
            ctx.ops.copy_into(target, source)

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        (forward_args, backward_args) = self._directions(inputs, outputs, state)
        merged = self._merged_count()
        for grad in output_grads[:merged]:
            self._zero_padded_steps(ctx, state, grad)
        state_grads = output_grads[merged:]
        count = len(state_grads) // 2
        backward_grad = state["backward_output_grad"]
        if self.merge_mode is None:
            forward_grad = output_grads[0]
            self._reverse(ctx, output_grads[1], backward_grad)
        else:
            forward_grad = state["forward_output_grad"]
            ctx.ops.merge_directions_backward(
                _as_steps(forward_args[1][0]), _as_steps(backward_args[1][0]), _as_steps(output_grads[0]),
                self.return_sequences, _MERGE_MODES[self.merge_mode], _as_steps(forward_grad), _as_steps(backward_grad),
            )
        dx, *initial_grads = input_grads
        half = len(initial_grads) // 2
        self.forward_layer.backward(
            ctx, *forward_args, [forward_grad] + state_grads[:count], [dx] + initial_grads[:half]
        )
        backward_dx = None if dx is None else state["backward_input_grad"]
        self.backward_layer.backward(
            ctx, *backward_args, [backward_grad] + state_grads[count:], [backward_dx] + initial_grads[half:]
        )
        if dx is not None:
            ctx.ops.add_into(dx.reshape(dx.shape[0], -1), backward_dx.reshape(dx.shape[0], -1))

    def get_config(self):
        return {
            **super().get_config(),
            "merge_mode": self.merge_mode,
            "layer": _serialize(self.forward_layer),
            "backward_layer": _serialize(self.backward_layer),
        }
