"""Recurrent kernels (SimpleRNN, LSTM, GRU) against float64 NumPy references,
on the CPU and on the (simulated) GPU: forward over the whole sequence, and
gradients through time, with masks, go_backwards, initial states, dropout
masks, and the last output or the whole sequence."""

import numpy as np
import pytest

from devices import at_one_and_all_threads, ops_for
from nkeras.kernels.codes import LINEAR, RELU, SIGMOID, TANH
from nkeras.kernels.cpu.recurrent import TASK_ROWS
from tests.gradcheck import numerical_grad

GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def _act(z, code):
    if code == SIGMOID:
        return 1 / (1 + np.exp(-z))
    if code == TANH:
        return np.tanh(z)
    if code == RELU:
        return np.maximum(z, 0)
    return z


def reference(cell, x, kernel, recurrent_kernel, bias, initial, mask, input_mask, recurrent_mask, go_backwards,
              activation, recurrent_activation):
    """Keras 3's recurrence in float64 NumPy: the output sequence (in
    processing order), and the final states."""
    batch, timesteps, _ = x.shape
    units = recurrent_kernel.shape[0]
    states = [s.copy() for s in initial]
    output = np.zeros((batch, units))
    outputs = []
    for t in (range(timesteps - 1, -1, -1) if go_backwards else range(timesteps)):
        x_t = x[:, t] * input_mask
        h = states[0] * recurrent_mask
        if cell == "simple_rnn":
            new = [_act(x_t @ kernel + h @ recurrent_kernel + bias, activation)]
        elif cell == "lstm":
            z = x_t @ kernel + h @ recurrent_kernel + bias
            i, f, o = (_act(z[:, k * units:(k + 1) * units], recurrent_activation) for k in (0, 1, 3))
            c = f * states[1] + i * _act(z[:, 2 * units:3 * units], activation)
            new = [o * _act(c, activation), c]
        else:
            xz = x_t @ kernel + bias[0]
            rz = h @ recurrent_kernel + bias[1]
            z = _act(xz[:, :units] + rz[:, :units], recurrent_activation)
            r = _act(xz[:, units:2 * units] + rz[:, units:2 * units], recurrent_activation)
            hh = _act(xz[:, 2 * units:] + r * rz[:, 2 * units:], activation)
            new = [z * states[0] + (1 - z) * hh]
        keep = mask[:, t:t + 1]
        states = [keep * n + (1 - keep) * s for n, s in zip(new, states)]
        output = keep * new[0] + (1 - keep) * output
        outputs.append(output)
    return np.stack(outputs, axis=1), states


class Case:
    """The arrays of one kernel call, and a runner for both ops."""

    def __init__(self, cell, rng, batch, timesteps, features, units, dtype=np.float64, masked=False,
                 go_backwards=False, sequences=True, initial=False, dropout=False, state_grads=False,
                 use_bias=True, activation=TANH, recurrent_activation=SIGMOID, initial_grads=None):
        self.cell, self.dtype = cell, dtype
        # initial: random initial states (else zeros); initial_grads: their
        # gradients asked for (by default when they are random).
        self.go_backwards, self.sequences, self.initial = go_backwards, sequences, initial
        self.initial_grads = initial if initial_grads is None else initial_grads
        self.dropout, self.state_grads, self.use_bias = dropout, state_grads, use_bias
        self.activation, self.recurrent_activation = activation, recurrent_activation
        k = GATES[cell]
        self.shape = (batch, timesteps, features, units)
        self.x = rng.standard_normal((batch, timesteps, features))
        self.kernel = rng.standard_normal((features, k * units)) * 0.5
        self.recurrent_kernel = rng.standard_normal((units, k * units)) * 0.5
        self.bias = rng.standard_normal((2, 3 * units) if cell == "gru" else (k * units,)) * 0.5
        n_states = 2 if cell == "lstm" else 1
        self.initial_states = [rng.standard_normal((batch, units)) if initial else np.zeros((batch, units))
                               for _ in range(n_states)]
        self.mask = (rng.random((batch, timesteps)) > 0.35).astype(float) if masked else np.ones((batch, timesteps))
        self.input_mask = np.ones((batch, features))
        self.recurrent_mask = np.ones((batch, units))
        if dropout:
            self.input_mask = np.where(rng.random((batch, features)) < 0.3, 0.0, 1 / 0.7)
            self.recurrent_mask = np.where(rng.random((batch, units)) < 0.3, 0.0, 1 / 0.7)
        self.masked = masked
        self.dy = rng.standard_normal((batch, timesteps if sequences else 1, units))
        self.d_states = [rng.standard_normal((batch, units)) for _ in range(n_states)]

    def reference_outputs(self):
        sequence, states = reference(
            self.cell, self.x, self.kernel, self.recurrent_kernel, self.bias if self.use_bias else 0 * self.bias,
            self.initial_states, self.mask, self.input_mask, self.recurrent_mask, self.go_backwards,
            self.activation, self.recurrent_activation,
        )
        return (sequence if self.sequences else sequence[:, -1:]), states

    def reference_objective(self):
        y, states = self.reference_outputs()
        total = np.sum(y * self.dy)
        if self.state_grads:
            total += sum(np.sum(s * d) for s, d in zip(states, self.d_states))
        return total

    def _cast(self, array):
        return np.ascontiguousarray(array, dtype=self.dtype)

    def run(self, ops):
        """Forward and backward through ``ops``; returns (y, final states, gradients)."""
        batch, timesteps, features, units = self.shape
        k, cast, dtype = GATES[self.cell], self._cast, self.dtype
        x, kernel, recurrent_kernel, bias = cast(self.x), cast(self.kernel), cast(self.recurrent_kernel), cast(self.bias)
        initial = [cast(s) for s in self.initial_states]
        mask, input_mask, recurrent_mask = cast(self.mask), cast(self.input_mask), cast(self.recurrent_mask)
        steps = np.zeros((timesteps, batch, features), dtype)
        gates = np.zeros((timesteps, batch, k * units), dtype)
        carries = np.zeros((timesteps + 1, batch, units), dtype)
        cells = np.zeros_like(carries)
        recurrent_inputs = np.zeros((timesteps, batch, units), dtype)
        y = np.zeros(self.dy.shape, dtype)
        flags = (mask, self.masked, input_mask, self.dropout, recurrent_mask, self.dropout, self.go_backwards)
        if self.cell == "lstm":
            ops.lstm_forward(x, kernel, recurrent_kernel, bias, self.use_bias, initial[0], initial[1], *flags,
                             self.activation, self.recurrent_activation, steps, gates, carries, cells,
                             recurrent_inputs, y)
        elif self.cell == "gru":
            ops.gru_forward(x, kernel, recurrent_kernel, bias, self.use_bias, initial[0], *flags, self.activation,
                            self.recurrent_activation, steps, gates, carries, cells[:-1], recurrent_inputs, y)
        else:
            ops.simple_rnn_forward(x, kernel, recurrent_kernel, bias, self.use_bias, initial[0], *flags,
                                   self.activation, steps, gates, carries, recurrent_inputs, y)
        states = []
        for source in [carries, cells] if self.cell == "lstm" else [carries]:
            states.append(np.zeros((batch, units), dtype))
            ops.final_state(source, states[-1])

        grads = {"kernel": np.zeros_like(kernel), "recurrent_kernel": np.zeros_like(recurrent_kernel),
                 "bias": np.zeros_like(bias), "x": np.zeros_like(x)}
        initial_grads = [np.zeros_like(s) for s in initial]
        d_states = [cast(d) for d in self.d_states]
        dy = cast(self.dy)
        common = (kernel, recurrent_kernel, self.use_bias, mask, self.masked, input_mask, self.dropout,
                  recurrent_mask, self.dropout, self.go_backwards, self.activation)
        outs = (grads["kernel"], grads["recurrent_kernel"], grads["bias"], grads["x"], True)
        task_grads = np.zeros((-(-batch // TASK_ROWS), kernel.size + recurrent_kernel.size + bias.size), dtype)
        # NaN: the backward must write all of its transpose scratch before reading it.
        transposed = np.full(recurrent_kernel.shape[::-1], np.nan, dtype)
        joint_inputs = np.full((features + units, timesteps * batch), np.nan, dtype)
        if self.cell == "lstm":
            ops.lstm_backward(*common, self.recurrent_activation, steps, gates, carries, cells, recurrent_inputs, dy,
                              d_states[0], d_states[1], self.state_grads, np.zeros((4, batch, units), dtype),
                              task_grads, transposed, joint_inputs, *outs, initial_grads[0], initial_grads[1],
                              self.initial_grads)
        elif self.cell == "gru":
            ops.gru_backward(*common, self.recurrent_activation, steps, gates, carries, cells[:-1], recurrent_inputs,
                             np.zeros_like(gates), dy, d_states[0], self.state_grads,
                             np.zeros((3, batch, units), dtype), task_grads, transposed, joint_inputs, *outs,
                             initial_grads[0], self.initial_grads)
        else:
            ops.simple_rnn_backward(*common, steps, gates, carries, recurrent_inputs, dy, d_states[0],
                                    self.state_grads, np.zeros((3, batch, units), dtype), task_grads, transposed,
                                    joint_inputs, *outs,
                                    initial_grads[0], self.initial_grads)
        if self.initial_grads:
            grads.update({f"initial_{i}": g for i, g in enumerate(initial_grads)})
        return y, states, grads

    def reference_grads(self):
        objective = lambda _: self.reference_objective()  # noqa: E731
        grads = {name: numerical_grad(objective, getattr(self, name)) for name in ("kernel", "recurrent_kernel", "x")}
        grads["bias"] = numerical_grad(objective, self.bias) if self.use_bias else np.zeros_like(self.bias)
        if self.initial_grads:
            grads.update({f"initial_{i}": numerical_grad(objective, s) for i, s in enumerate(self.initial_states)})
        return grads


def _tolerance(dtype):
    return {"rtol": 2e-4, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-6, "atol": 1e-8}


OPTIONS = [
    {},
    {"masked": True},
    {"masked": True, "go_backwards": True, "sequences": False},
    {"go_backwards": True, "initial": True, "state_grads": True},
    {"masked": True, "initial": True, "state_grads": True, "sequences": False},
    {"dropout": True, "masked": True},
    {"use_bias": False, "sequences": False},
    # A random initial state without its gradient, and the gradient of a zero
    # one: the kernels skip the first step's GEMMs only where they add nothing.
    {"initial": True, "initial_grads": False, "masked": True},
    {"initial_grads": True, "state_grads": True},
]
# (batch, timesteps, features, units): one of each, odd sizes, more units than features.
CPU_SHAPES = [(1, 1, 1, 1), (3, 5, 4, 2), (2, 7, 3, 5)]
CUDA_SHAPE = (2, 3, 3, 2)
# The CPU kernels split a batch of more than TASK_ROWS rows into tasks: here
# 3 of 44, 44 and 43 rows.
TASKS_SHAPE = (2 * TASK_ROWS + 3, 3, 2, 3)


def _cases():
    params = []
    for cell in GATES:
        for shape in CPU_SHAPES:
            for index, options in enumerate(OPTIONS):
                params.append(pytest.param("cpu", cell, shape, options, id=f"cpu-{cell}-{shape}-{index}"))
        for index, options in enumerate(OPTIONS):
            params.append(pytest.param("cpu", cell, TASKS_SHAPE, options, id=f"cpu-{cell}-tasks-{index}"))
        for index in (2, 5) if cell == "lstm" else (3,):
            params.append(pytest.param("cuda", cell, CUDA_SHAPE, OPTIONS[index], id=f"cuda-{cell}-{index}"))
    return params


@pytest.mark.parametrize("device,cell,shape,options", _cases())
def test_forward_and_gradients_match_numpy(device, cell, shape, options, rng):
    case = Case(cell, rng, *shape, **options)
    y, states, grads = case.run(ops_for(device))
    y_ref, states_ref = case.reference_outputs()
    tolerance = _tolerance(np.float64)
    np.testing.assert_allclose(y, y_ref, **tolerance)
    for got, want in zip(states, states_ref):
        np.testing.assert_allclose(got, want, **tolerance)
    for name, want in case.reference_grads().items():
        np.testing.assert_allclose(grads[name], want, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("device,cell", [("cpu", cell) for cell in GATES] + [("cuda", "lstm")])
def test_float32_with_the_fast_activations_matches_float64(device, cell, rng):
    """float32 with tanh and sigmoid takes the vectorised approximations."""
    shape = (2, 3, 3, 4) if device == "cuda" else (5, 9, 6, 16)
    case32 = Case(cell, rng, *shape, dtype=np.float32, masked=True)
    case64 = Case(cell, np.random.default_rng(1234), *shape, masked=True)
    case64.__dict__.update({k: v for k, v in case32.__dict__.items() if isinstance(v, np.ndarray)})
    y32, states32, grads32 = case32.run(ops_for(device))
    y64, states64, grads64 = case64.run(ops_for("cpu"))
    tolerance = _tolerance(np.float32)
    np.testing.assert_allclose(y32, y64, **tolerance)
    for got, want in zip(states32, states64):
        np.testing.assert_allclose(got, want, **tolerance)
    for name in grads64:
        np.testing.assert_allclose(grads32[name], grads64[name], rtol=1e-3, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("cell,activation,recurrent_activation",
                         [("lstm", RELU, TANH), ("gru", LINEAR, SIGMOID), ("simple_rnn", RELU, SIGMOID)])
def test_other_activations(device, cell, activation, recurrent_activation, rng):
    case = Case(cell, rng, *CUDA_SHAPE, masked=True, activation=activation, recurrent_activation=recurrent_activation)
    y, _, grads = case.run(ops_for(device))
    np.testing.assert_allclose(y, case.reference_outputs()[0], **_tolerance(np.float64))
    for name, want in case.reference_grads().items():
        np.testing.assert_allclose(grads[name], want, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("cell", list(GATES))
@pytest.mark.parametrize("options", [OPTIONS[4], OPTIONS[5]])
def test_cpu_results_do_not_depend_on_the_thread_count(cell, options, rng):
    case = Case(cell, rng, *TASKS_SHAPE, dtype=np.float32, **options)
    one, every = at_one_and_all_threads(lambda: case.run(ops_for("cpu")))
    np.testing.assert_array_equal(one[0], every[0])
    for got, want in zip(one[1], every[1]):
        np.testing.assert_array_equal(got, want)
    for name in one[2]:
        np.testing.assert_array_equal(one[2][name], every[2][name], err_msg=name)


def test_fast_tanh_and_sigmoid_are_within_float32_rounding():
    from nkeras.kernels.cpu.recurrent import _sigmoid32, _tanh32

    x = np.linspace(-12, 12, 20001).astype(np.float32)
    tanh = np.array([_tanh32(v) for v in x])
    sigmoid = np.array([_sigmoid32(v) for v in x])
    np.testing.assert_allclose(tanh, np.tanh(x.astype(np.float64)), rtol=0, atol=5e-7)
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-x.astype(np.float64))), rtol=0, atol=5e-7)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_dropout_masks_are_the_counter_based_draws(device):
    mask = np.zeros((40, 50), np.float32)
    ops_for(device).draw_dropout_mask(0.25, 7, 3, mask)
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.75)}
    assert 0.2 < (mask == 0).mean() < 0.3
    from nkeras.kernels.cpu.dropout import dropout_forward

    expected = np.zeros_like(mask)
    dropout_forward(np.ones_like(mask), 0.25, 7, 3, expected, np.zeros_like(mask))
    np.testing.assert_array_equal(mask, expected)
