"""Recurrent layers: SimpleRNN, LSTM and GRU, with Keras 3's arguments,
weights (``kernel``, ``recurrent_kernel``, ``bias``) and gate order.

Each call runs the whole sequence in one kernel call (kernels/cpu/recurrent.py
and its CUDA twin; docs/recurrent.md). Masks of padded steps (from
``Embedding(mask_zero=True)``, ``Masking`` or ``mask=``) keep the state and
the output of the last kept step, as in Keras; initial states are extra
inputs (``layer(x, initial_state=[h0, c0])``) and get gradients.
"""

import numpy as np

from nkeras import activations, initializers
from nkeras.kernels.codes import LINEAR, RELU, SIGMOID, TANH
from nkeras.kernels.cpu.recurrent import TASK_ROWS
from nkeras.layers.core import _reject_unsupported, _serialize_initializer
from nkeras.layers.layer import Layer
from nkeras.random import draw_seed

_STATE_ACTIVATIONS = {LINEAR, RELU, SIGMOID, TANH}


class _ForgetBiasOnes(initializers.Initializer):
    """LSTM's ``unit_forget_bias``: the bias initializer's values with the
    forget gate's block set to ones."""

    def __init__(self, initializer, units):
        self.initializer = initializers.get(initializer)
        self.units = units

    def __call__(self, shape, dtype=None):
        units = self.units
        return np.concatenate([
            np.asarray(self.initializer((units,), dtype)),
            np.ones((units,), dtype),
            np.asarray(self.initializer((2 * units,), dtype)),
        ])


def _check_rate(layer, name, rate):
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(f"{type(layer).__name__} '{layer.name}': {name} must be a float in [0, 1), got {rate!r}")
    return float(rate)


class _RNN(Layer):
    """What SimpleRNN, LSTM and GRU share: arguments, shapes, masks, initial
    states, dropout masks and the calls of their ops."""

    reads_mask = True
    _cell = None  # the kernels' prefix: "simple_rnn", "lstm" or "gru"
    _gate_count = 1
    _state_count = 1

    def __init__(self, units, activation, recurrent_activation, use_bias, kernel_initializer, recurrent_initializer,
                 bias_initializer, kernel_regularizer, recurrent_regularizer, bias_regularizer,
                 activity_regularizer, kernel_constraint, recurrent_constraint, bias_constraint, dropout,
                 recurrent_dropout, seed, return_sequences, return_state, go_backwards, stateful, unroll,
                 zero_output_for_mask, **kwargs):
        super().__init__(**kwargs)
        kind = type(self).__name__
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"{kind} '{self.name}': units must be a positive integer, got {units!r}")
        _reject_unsupported(
            self.name,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            stateful=stateful or None,
        )
        self.units = int(units)
        self.activation = activations.get(activation)
        self._activation_code = self._state_activation("activation", activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self._recurrent_code = self._state_activation("recurrent_activation", recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        self.dropout = _check_rate(self, "dropout", dropout)
        self.recurrent_dropout = _check_rate(self, "recurrent_dropout", recurrent_dropout)
        self.seed = seed
        self._seed = draw_seed() if seed is None else int(seed)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.unroll = bool(unroll)  # the time loop runs inside one kernel either way
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self._initial_state_count = None

    def _state_activation(self, argument, identifier):
        code, _ = activations.activation_code(identifier)
        if code not in _STATE_ACTIVATIONS:
            raise NotImplementedError(
                f"{type(self).__name__} '{self.name}': {argument}={identifier!r} is not supported in nkeras "
                "(the kernels take linear, relu, sigmoid or tanh)"
            )
        return code

    # ---- calls and shapes ------------------------------------------------------

    def __call__(self, sequences, initial_state=None, mask=None, training=None):
        if training is not None:
            raise NotImplementedError(
                f"{type(self).__name__} '{self.name}': the `training` call argument is not supported in nkeras; "
                "fit runs layers in training mode, evaluate and predict in inference mode"
            )
        if initial_state is not None and not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        states = list(initial_state or [])
        if states and len(states) != self._state_count:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': initial_state must hold {self._state_count} tensor(s) "
                f"({self._state_names()}), got {len(states)}"
            )
        if self._initial_state_count is None:
            self._initial_state_count = len(states)
        elif len(states) != self._initial_state_count:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' was first called with {self._initial_state_count} initial "
                f"state(s); a shared layer must be called alike, got {len(states)}"
            )
        return self._call_layer([sequences] + states, mask=mask, single=not states)

    def call_arguments(self, node):
        tensors = node.data_inputs
        if len(tensors) == 1:
            return [tensors[0]], {}
        return [tensors[0]], {"initial_state": list(tensors[1:])}

    def _state_names(self):
        return "h, c" if self._state_count == 2 else "h"

    @staticmethod
    def _split(input_shape):
        if isinstance(input_shape, list):
            return tuple(input_shape[0]), [tuple(s) for s in input_shape[1:]]
        return tuple(input_shape), []

    def _check_sequence_shape(self, shape):
        if len(shape) != 3:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': expected an input of rank 3 (batch, timesteps, features), "
                f"got shape {shape}"
            )

    def build(self, input_shape):
        shape, _ = self._split(input_shape)
        self._check_sequence_shape(shape)
        columns = self._gate_count * self.units
        self.kernel = self.add_weight((shape[-1], columns), self.kernel_initializer, "kernel")
        self.recurrent_kernel = self.add_weight((self.units, columns), self.recurrent_initializer, "recurrent_kernel")
        self.bias = self.add_weight(self._bias_shape(), self._bias_initializer(), "bias") if self.use_bias else None
        self.built = True

    def _bias_shape(self):
        return (self._gate_count * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def check_input_shape(self, input_shape):
        shape, states = self._split(input_shape)
        self._check_sequence_shape(shape)
        if shape[-1] != self.kernel.shape[0]:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': expected inputs with {self.kernel.shape[0]} features "
                f"(last axis), got shape {shape}"
            )
        for state in states:
            if len(state) != 2 or state[1] != self.units:
                raise ValueError(
                    f"{type(self).__name__} '{self.name}': an initial state must have shape (batch, {self.units}), "
                    f"got {state}"
                )

    def compute_output_shape(self, input_shape):
        shape, _ = self._split(input_shape)
        output = (shape[0], shape[1], self.units) if self.return_sequences else (shape[0], self.units)
        if self.return_state:
            return [output] + [(shape[0], self.units)] * self._state_count
        return output

    def compute_mask(self, input_shape, mask):
        output_mask = mask if self.return_sequences else None
        return [output_mask] + [None] * self._state_count if self.return_state else output_mask

    # ---- state and kernels --------------------------------------------------------

    def state_shapes(self, input_shapes, training):
        batch, timesteps, features = input_shapes[0]
        units, columns = self.units, self._gate_count * self.units
        state = {
            "steps": (timesteps, batch, features),
            "gates": (timesteps, batch, columns),
            "carries": (timesteps + 1, batch, units),
            "zeros": (batch, units),
        }
        state.update(self._cell_state_shapes(timesteps, batch, training))
        if training:
            state["carry_grads"] = (self._state_count + 2, batch, units)
            # Each CPU task's weight gradients, added after the time loops.
            weights = (features + units) * columns + int(np.prod(self._bias_shape()))
            state["task_grads"] = (max(1, -(-batch // TASK_ROWS)), weights)
            state["transposed_recurrent_kernel"] = (columns, units)
            state["joint_inputs"] = (features + units, timesteps * batch)
            if self.dropout > 0:
                state["input_mask"] = (batch, features)
            if self.recurrent_dropout > 0:
                state["recurrent_mask"] = (batch, units)
                state["recurrent_inputs"] = (timesteps, batch, units)
        if not self.use_bias:
            state["bias_stand_in"] = self._bias_shape()
        if self.zero_output_for_mask and self.go_backwards and self.return_sequences:
            state["reversed_mask"] = (batch, timesteps)
        return state

    def _cell_state_shapes(self, timesteps, batch, training):
        return {}

    def _masks(self, ctx, state):
        """(mask, use_mask, input_mask, use, recurrent_mask, use, recurrent_inputs),
        drawing this step's dropout masks in training."""
        zeros = state["zeros"]
        carries = state["carries"]
        if "input_mask" in state:
            ctx.ops.draw_dropout_mask(self.dropout, self._seed, ctx.step, state["input_mask"])
        if "recurrent_mask" in state:
            ctx.ops.draw_dropout_mask(self.recurrent_dropout, self._seed + 1, ctx.step, state["recurrent_mask"])
        return (
            state.get("mask", zeros), "mask" in state,
            state.get("input_mask", zeros), "input_mask" in state,
            state.get("recurrent_mask", zeros), "recurrent_mask" in state,
            state.get("recurrent_inputs", carries[:carries.shape[0] - 1]),
        )

    def _output_view(self, array):
        batch = array.shape[0]
        return array if self.return_sequences else array.reshape(batch, 1, self.units)

    def _initial_states(self, inputs, state):
        given = list(inputs[1:])
        return given if given else [state["zeros"]] * self._state_count

    def _bias(self, state):
        return self.bias.value if self.use_bias else state["bias_stand_in"]

    def forward(self, ctx, inputs, outputs, state):
        mask, use_mask, input_mask, use_input_mask, recurrent_mask, use_recurrent_mask, recurrent_inputs = \
            self._masks(ctx, state)
        flags = (mask, use_mask, input_mask, use_input_mask, recurrent_mask, use_recurrent_mask, self.go_backwards)
        self._run_forward(ctx, inputs[0], self._initial_states(inputs, state), flags, state, recurrent_inputs,
                          self._output_view(outputs[0]))
        self._zero_padded_steps(ctx, state, outputs[0])
        if self.return_state:
            for output, states in zip(outputs[1:], self._final_state_sources(state)):
                ctx.ops.final_state(states, output)

    def _final_state_sources(self, state):
        return [state["carries"]]

    def parallel_kernels(self, input_shapes):
        """The CPU kernels split a batch of more than ``TASK_ROWS`` rows over
        Numba's threads (docs/recurrent.md)."""
        return input_shapes[0][0] > TASK_ROWS

    def _zero_padded_steps(self, ctx, state, sequence):
        """With ``zero_output_for_mask``, ``sequence *= mask`` per step, in
        place (the returned sequence, or its gradient); the sequence runs in
        processing order, so with ``go_backwards`` the mask is reversed."""
        if not (self.zero_output_for_mask and self.return_sequences and "mask" in state):
            return
        mask = state["mask"]
        if self.go_backwards:
            ctx.ops.reverse_steps(mask.reshape(mask.shape + (1,)), state["reversed_mask"].reshape(mask.shape + (1,)))
            mask = state["reversed_mask"]
        rows = sequence.reshape(sequence.shape[0] * sequence.shape[1], sequence.shape[2])
        ctx.ops.masking_backward(rows, mask.reshape(mask.size), rows)

    def keras_weight_groups(self):
        # Keras keeps a recurrent layer's weights in its cell.
        return [("cell/", self.weights)]

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        mask, use_mask = state.get("mask", state["zeros"]), "mask" in state
        input_mask, use_input_mask = state.get("input_mask", state["zeros"]), "input_mask" in state
        recurrent_mask, use_recurrent_mask = state.get("recurrent_mask", state["zeros"]), "recurrent_mask" in state
        carries = state["carries"]
        recurrent_inputs = state.get("recurrent_inputs", carries[:carries.shape[0] - 1])
        state_grads = [g for g in output_grads[1:]] if self.return_state else []
        use_state_grads = bool(state_grads) and all(g is not None for g in state_grads)
        if not use_state_grads:
            state_grads = [state["zeros"]] * self._state_count
        self._zero_padded_steps(ctx, state, output_grads[0])
        dx = input_grads[0]
        initial_grads = list(input_grads[1:])
        need_initial = bool(initial_grads) and all(g is not None for g in initial_grads)
        if not need_initial:
            initial_grads = [state["zeros"]] * self._state_count
        dbias = self.bias.grad if self.use_bias else state["bias_stand_in"]
        common = (self.kernel.value, self.recurrent_kernel.value, self.use_bias, mask, use_mask, input_mask,
                  use_input_mask, recurrent_mask, use_recurrent_mask, self.go_backwards)
        grads = (self.kernel.grad, self.recurrent_kernel.grad, dbias, inputs[0] if dx is None else dx, dx is not None)
        self._run_backward(ctx, common, state, recurrent_inputs, self._output_view(output_grads[0]), state_grads,
                           use_state_grads, grads, initial_grads, need_initial)

    # ---- config ----------------------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": False,
            "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": _serialize_initializer(self.kernel_initializer),
            "recurrent_initializer": _serialize_initializer(self.recurrent_initializer),
            "bias_initializer": _serialize_initializer(self.bias_initializer),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
        }


class SimpleRNN(_RNN):
    """A fully connected RNN: ``h_t = activation(x_t @ kernel + h_{t-1} @
    recurrent_kernel + bias)``.

    Args:
        units: positive integer, the size of the state and output.
        activation: "tanh" (default), "relu", "sigmoid" or "linear"/None.
        use_bias: whether to add a bias.
        kernel_initializer: initializer of ``kernel`` ("glorot_uniform").
        recurrent_initializer: initializer of ``recurrent_kernel`` ("orthogonal").
        bias_initializer: initializer of ``bias`` ("zeros").
        dropout: fraction of the inputs dropped in training (one mask per
            sequence, reused at every step).
        recurrent_dropout: fraction of the state dropped in the recurrent
            product in training (one mask per sequence).
        seed: seed of the dropout masks.
        return_sequences: return the whole output sequence (batch,
            timesteps, units) instead of the last output.
        return_state: also return the final state.
        go_backwards: process the sequence in reverse (and return the
            output sequence reversed).
        stateful: only False is supported.
        unroll: accepted and ignored (the time loop runs inside one kernel).
    """

    _cell = "simple_rnn"

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, seed=None, zero_output_for_mask=False, **kwargs):
        super().__init__(units, activation, "sigmoid", use_bias, kernel_initializer, recurrent_initializer,
                         bias_initializer, kernel_regularizer, recurrent_regularizer, bias_regularizer,
                         activity_regularizer, kernel_constraint, recurrent_constraint, bias_constraint, dropout,
                         recurrent_dropout, seed, return_sequences, return_state, go_backwards, stateful, unroll,
                         zero_output_for_mask, **kwargs)

    def _run_forward(self, ctx, x, initial, flags, state, recurrent_inputs, y):
        ctx.ops.simple_rnn_forward(x, self.kernel.value, self.recurrent_kernel.value, self._bias(state), self.use_bias,
                                   initial[0], *flags, self._activation_code, state["steps"], state["gates"],
                                   state["carries"], recurrent_inputs, y)

    def _run_backward(self, ctx, common, state, recurrent_inputs, dy, state_grads, use_state_grads, grads,
                      initial_grads, need_initial):
        ctx.ops.simple_rnn_backward(*common, self._activation_code, state["steps"], state["gates"], state["carries"],
                                    recurrent_inputs, dy, state_grads[0], use_state_grads, state["carry_grads"],
                                    state["task_grads"], state["transposed_recurrent_kernel"],
                                    state["joint_inputs"], *grads, initial_grads[0], need_initial)


class LSTM(_RNN):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997), as Keras 3:
    gates ``i, f, c, o`` in the columns of ``kernel`` (F, 4 * units),
    ``recurrent_kernel`` (units, 4 * units) and ``bias`` (4 * units,).

    Args:
        units: positive integer, the size of the state and output.
        activation: of the candidate and the cell output: "tanh" (default),
            "relu", "sigmoid" or "linear"/None.
        recurrent_activation: of the gates: "sigmoid" (default) or another
            of those four.
        use_bias: whether to add a bias.
        kernel_initializer: initializer of ``kernel`` ("glorot_uniform").
        recurrent_initializer: initializer of ``recurrent_kernel`` ("orthogonal").
        bias_initializer: initializer of ``bias`` ("zeros").
        unit_forget_bias: start the forget gate's bias at 1 (as Keras).
        dropout: fraction of the inputs dropped in training (one mask per
            sequence, reused at every step and gate).
        recurrent_dropout: fraction of the state dropped in the recurrent
            product in training (one mask per sequence).
        seed: seed of the dropout masks.
        return_sequences: return the whole output sequence instead of the
            last output.
        return_state: return ``[output, h, c]``.
        go_backwards: process the sequence in reverse (and return the
            output sequence reversed).
        stateful: only False is supported.
        unroll: accepted and ignored (the time loop runs inside one kernel).
        use_cudnn: accepted ("auto", True, False) and ignored.
    """

    _cell = "lstm"
    _gate_count = 4
    _state_count = 2

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, use_cudnn="auto", zero_output_for_mask=False,
                 **kwargs):
        super().__init__(units, activation, recurrent_activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint, recurrent_constraint,
                         bias_constraint, dropout, recurrent_dropout, seed, return_sequences, return_state,
                         go_backwards, stateful, unroll, zero_output_for_mask, **kwargs)
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"LSTM '{self.name}': use_cudnn must be 'auto', True or False, got {use_cudnn!r}")
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_initializer(self):
        if self.unit_forget_bias:
            return _ForgetBiasOnes(self.bias_initializer, self.units)
        return self.bias_initializer

    def _cell_state_shapes(self, timesteps, batch, training):
        return {"cells": (timesteps + 1, batch, self.units)}

    def _final_state_sources(self, state):
        return [state["carries"], state["cells"]]

    def _run_forward(self, ctx, x, initial, flags, state, recurrent_inputs, y):
        ctx.ops.lstm_forward(x, self.kernel.value, self.recurrent_kernel.value, self._bias(state), self.use_bias,
                             initial[0], initial[1], *flags, self._activation_code, self._recurrent_code,
                             state["steps"], state["gates"], state["carries"], state["cells"], recurrent_inputs, y)

    def _run_backward(self, ctx, common, state, recurrent_inputs, dy, state_grads, use_state_grads, grads,
                      initial_grads, need_initial):
        ctx.ops.lstm_backward(*common, self._activation_code, self._recurrent_code, state["steps"], state["gates"],
                              state["carries"], state["cells"], recurrent_inputs, dy, state_grads[0], state_grads[1],
                              use_state_grads, state["carry_grads"], state["task_grads"],
                              state["transposed_recurrent_kernel"], state["joint_inputs"], *grads,
                              initial_grads[0], initial_grads[1], need_initial)

    def get_config(self):
        return {
            **super().get_config(),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "unit_forget_bias": self.unit_forget_bias,
            "seed": self.seed,
        }


class GRU(_RNN):
    """Gated recurrent unit (Cho et al., 2014), as Keras 3 with
    ``reset_after=True``: gates ``z, r, h`` in the columns of ``kernel``
    (F, 3 * units) and ``recurrent_kernel`` (units, 3 * units); ``bias``
    (2, 3 * units) holds the input and the recurrent bias, and the reset
    gate multiplies the recurrent candidate projection.

    Args:
        units: positive integer, the size of the state and output.
        activation: of the candidate: "tanh" (default), "relu", "sigmoid"
            or "linear"/None.
        recurrent_activation: of the gates: "sigmoid" (default) or another
            of those four.
        use_bias: whether to add the biases.
        kernel_initializer: initializer of ``kernel`` ("glorot_uniform").
        recurrent_initializer: initializer of ``recurrent_kernel`` ("orthogonal").
        bias_initializer: initializer of ``bias`` ("zeros").
        dropout: fraction of the inputs dropped in training (one mask per sequence).
        recurrent_dropout: fraction of the state dropped in the recurrent
            product in training (one mask per sequence).
        seed: seed of the dropout masks.
        return_sequences: return the whole output sequence instead of the
            last output.
        return_state: return ``[output, h]``.
        go_backwards: process the sequence in reverse (and return the
            output sequence reversed).
        stateful: only False is supported.
        unroll: accepted and ignored (the time loop runs inside one kernel).
        reset_after: only True (Keras 3's default) is supported.
        use_cudnn: accepted ("auto", True, False) and ignored.
    """

    _cell = "gru"
    _gate_count = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, reset_after=True, use_cudnn="auto", zero_output_for_mask=False,
                 **kwargs):
        super().__init__(units, activation, recurrent_activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint, recurrent_constraint,
                         bias_constraint, dropout, recurrent_dropout, seed, return_sequences, return_state,
                         go_backwards, stateful, unroll, zero_output_for_mask, **kwargs)
        if not reset_after:
            raise NotImplementedError(f"GRU '{self.name}': reset_after=False is not supported in nkeras")
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"GRU '{self.name}': use_cudnn must be 'auto', True or False, got {use_cudnn!r}")
        self.reset_after = True

    def _bias_shape(self):
        return (2, 3 * self.units)

    def _cell_state_shapes(self, timesteps, batch, training):
        state = {"candidates": (timesteps, batch, self.units)}
        if training:
            state["recurrent_grads"] = (timesteps, batch, 3 * self.units)
        return state

    def _run_forward(self, ctx, x, initial, flags, state, recurrent_inputs, y):
        ctx.ops.gru_forward(x, self.kernel.value, self.recurrent_kernel.value, self._bias(state), self.use_bias,
                            initial[0], *flags, self._activation_code, self._recurrent_code, state["steps"],
                            state["gates"], state["carries"], state["candidates"], recurrent_inputs, y)

    def _run_backward(self, ctx, common, state, recurrent_inputs, dy, state_grads, use_state_grads, grads,
                      initial_grads, need_initial):
        ctx.ops.gru_backward(*common, self._activation_code, self._recurrent_code, state["steps"], state["gates"],
                             state["carries"], state["candidates"], recurrent_inputs, state["recurrent_grads"], dy,
                             state_grads[0], use_state_grads, state["carry_grads"], state["task_grads"],
                             state["transposed_recurrent_kernel"], state["joint_inputs"], *grads, initial_grads[0],
                             need_initial)

    def get_config(self):
        return {
            **super().get_config(),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "reset_after": True,
            "seed": self.seed,
        }
