"""Recurrent kernels on the GPU, twins of ``kernels/cpu/recurrent.py``.

Each forward is three launches: a gather of the inputs into time-major
``steps`` (reversed, dropout-masked), the input projection of every step as
one tiled GEMM (``kernels/cuda/dense.py``'s), and ONE recurrent kernel that
runs the whole time loop. That kernel gives each batch row a block (the
state of a row depends on that row only, so blocks never wait on each
other): per step a thread per unit computes its unit's gate projections
``recurrent_inputs[t, b] @ recurrent_kernel[:, gate columns]``, the gates
and the new state, and a ``syncthreads`` publishes the new hidden row
before the next step reads it. The backward runs the time loop the same
way (gate gradients per unit, a barrier, the state gradient through the
transposed recurrent kernel per unit, a barrier), then the weight
gradients as GEMMs over all steps at once and a scatter into ``dx``.

The arithmetic is the CPU module's: the same scalar helpers, so both
devices round the same way (the float32 tanh/sigmoid approximations
included). Each thread keeps its projections in registers.
"""

import numpy as np
from numba import cuda

from nkeras.kernels.codes import LINEAR, SIGMOID, TANH
from nkeras.kernels.cpu.dropout import _dropout_constants, _uniform
from nkeras.kernels.cpu.recurrent import (
    _cell_act,
    _gate_act,
    _grad_from_output,
    _gru_cell_grads,
    _gru_state,
    _input_time,
    _lstm_input_grads,
    _lstm_output_grads,
    _lstm_state,
)
from nkeras.kernels.cuda.array import copy_into
from nkeras.kernels.cuda.dense import _launch_gemm
from nkeras.kernels.cuda.launch import THREADS, blocks

ROW_THREADS = 128
"""Threads per batch row in the recurrent kernels (each loops over units
``j, j + ROW_THREADS, ...``)."""


def _row_threads(units):
    return min(ROW_THREADS, max(32, units))


def _fast(dtype, activation, recurrent_activation):
    return np.dtype(dtype) == np.float32 and activation == TANH and recurrent_activation == SIGMOID


@cuda.jit(cache=True)
def _draw_mask(rate, key, keep_scale, mask):
    cols = mask.shape[1]
    for k in range(cuda.grid(1), mask.size, cuda.gridsize(1)):
        i = k // cols
        mask[i, k - i * cols] = 0.0 if _uniform(key, k) < rate else keep_scale


def draw_dropout_mask(rate, seed, step, mask):
    """Fill ``mask`` with 0 or ``1 / (1 - rate)``, the CPU twin's draws."""
    key, keep_scale = _dropout_constants(rate, seed, step)
    _draw_mask[blocks(mask.size), THREADS](float(rate), np.uint64(key), keep_scale, mask)


@cuda.jit(cache=True)
def _gather(x, input_mask, use_input_mask, go_backwards, steps):
    timesteps, batch, features = steps.shape
    for k in range(cuda.grid(1), steps.size, cuda.gridsize(1)):
        t = k // (batch * features)
        rest = k - t * batch * features
        b = rest // features
        f = rest - b * features
        value = x[b, _input_time(t, timesteps, go_backwards), f]
        steps[t, b, f] = value * input_mask[b, f] if use_input_mask else value


@cuda.jit(cache=True)
def _scatter(dsteps, input_mask, use_input_mask, go_backwards, dx):
    timesteps, batch, features = dsteps.shape
    for k in range(cuda.grid(1), dsteps.size, cuda.gridsize(1)):
        t = k // (batch * features)
        rest = k - t * batch * features
        b = rest // features
        f = rest - b * features
        value = dsteps[t, b, f]
        dx[b, _input_time(t, timesteps, go_backwards), f] = value * input_mask[b, f] if use_input_mask else value


@cuda.jit(cache=True)
def _column_sums(grads, out):
    rows, cols = grads.shape
    for j in range(cuda.grid(1), cols, cuda.gridsize(1)):
        total = 0.0
        for i in range(rows):
            total += grads[i, j]
        out[j] = total


def _recurrent_source(carries, recurrent_inputs, use_recurrent_mask):
    """As the CPU's: ``recurrent_inputs`` with recurrent dropout, else ``carries[:T]``."""
    return recurrent_inputs if use_recurrent_mask else carries[:carries.shape[0] - 1]


def _flat(array):
    return array.reshape(array.shape[0] * array.shape[1], array.shape[2])


# The GEMM's bias argument is unused here (use_bias False); a row of a weight
# stands in for it, as it must be a 1-D array.
def _begin_sequence(x, kernel, input_mask, use_input_mask, go_backwards, steps, gates):
    _gather[blocks(steps.size), THREADS](x, input_mask, bool(use_input_mask), bool(go_backwards), steps)
    _launch_gemm(_flat(steps), kernel, False, False, kernel[0], False, LINEAR, 0.0, _flat(gates), _flat(gates))


def _weight_grads(steps, kernel, gate_grads, recurrent_gate_grads, recurrent_inputs, input_mask, use_input_mask,
                  go_backwards, dkernel, drecurrent_kernel, dx, need_dx):
    flat_steps, flat_grads = _flat(steps), _flat(gate_grads)
    _launch_gemm(flat_steps, flat_grads, True, False, dkernel[0], False, LINEAR, 0.0, dkernel, dkernel)
    _launch_gemm(_flat(recurrent_inputs), _flat(recurrent_gate_grads), True, False, drecurrent_kernel[0], False, LINEAR,
                 0.0, drecurrent_kernel, drecurrent_kernel)
    if need_dx:
        _launch_gemm(flat_grads, kernel, False, True, kernel[0], False, LINEAR, 0.0, flat_steps, flat_steps)
        _scatter[blocks(steps.size), THREADS](steps, input_mask, bool(use_input_mask), bool(go_backwards), dx)


@cuda.jit(device=True)
def _keep(mask, use_mask, b, t, timesteps, go_backwards):
    return mask[b, _input_time(t, timesteps, go_backwards)] != 0.0 if use_mask else True


@cuda.jit(device=True)
def _start_row(carries, h0, b):
    for j in range(cuda.threadIdx.x, carries.shape[2], cuda.blockDim.x):
        carries[0, b, j] = h0[b, j]


@cuda.jit(device=True)
def _step_inputs(carries, recurrent_mask, use_recurrent_mask, b, t, recurrent_inputs):
    """Row ``b`` of what the recurrent product reads at step ``t`` (then a barrier)."""
    if use_recurrent_mask:
        for j in range(cuda.threadIdx.x, carries.shape[2], cuda.blockDim.x):
            recurrent_inputs[t, b, j] = carries[t, b, j] * recurrent_mask[b, j]
    cuda.syncthreads()


@cuda.jit(device=True)
def _recurrent_dot(recurrent_inputs, recurrent_kernel, t, b, column):
    total = recurrent_inputs[t, b, 0] * recurrent_kernel[0, column]
    for k in range(1, recurrent_kernel.shape[0]):
        total += recurrent_inputs[t, b, k] * recurrent_kernel[k, column]
    return total


@cuda.jit(device=True)
def _write_output(carries, keep, b, t, j, y):
    slot = t if y.shape[1] > 1 else 0
    if keep:
        y[b, slot, j] = carries[t + 1, b, j]
    elif t == 0:
        y[b, slot, j] = 0.0
    elif slot > 0:
        y[b, slot, j] = y[b, slot - 1, j]


@cuda.jit(device=True)
def _output_grad(dy, keep, b, t, j, timesteps, pending, dh):
    """As the CPU's ``_add_output_grads``, for unit ``j`` of row ``b``."""
    value = 0.0
    if dy.shape[1] > 1:
        value = dy[b, t, j]
    elif t == timesteps - 1:
        value = dy[b, 0, j]
    if keep:
        dh[b, j] += value + pending[b, j]
        pending[b, j] = 0.0
    else:
        pending[b, j] += value


@cuda.jit(device=True)
def _start_grads(d_final, use_state_grads, carry_grad, b):
    for j in range(cuda.threadIdx.x, carry_grad.shape[1], cuda.blockDim.x):
        carry_grad[b, j] = d_final[b, j] if use_state_grads else 0.0


@cuda.jit(device=True)
def _state_grad_step(gate_grads, recurrent_kernel, recurrent_mask, use_recurrent_mask, keep, t, b, dh):
    """``dh[b] += (gate_grads[t, b] @ recurrent_kernel.T) (* recurrent_mask[b])``
    on a kept step, a thread per unit; then a barrier."""
    cuda.syncthreads()
    if keep:
        columns = recurrent_kernel.shape[1]
        for k in range(cuda.threadIdx.x, recurrent_kernel.shape[0], cuda.blockDim.x):
            total = 0.0
            for j in range(columns):
                total += gate_grads[t, b, j] * recurrent_kernel[k, j]
            dh[b, k] += total * recurrent_mask[b, k] if use_recurrent_mask else total
    cuda.syncthreads()


@cuda.jit(device=True)
def _copy_row(source, b, target):
    for j in range(cuda.threadIdx.x, target.shape[1], cuda.blockDim.x):
        target[b, j] = source[b, j]


# ---- LSTM ----------------------------------------------------------------------


@cuda.jit(device=True)
def _gate_input(gates, recurrent_inputs, recurrent_kernel, bias, use_bias, t, b, column):
    """A gate's pre-activation: input projection + recurrent product (+ bias)."""
    value = gates[t, b, column] + _recurrent_dot(recurrent_inputs, recurrent_kernel, t, b, column)
    return value + bias[column] if use_bias else value


@cuda.jit(cache=True)
def _lstm_loop(recurrent_kernel, bias, use_bias, h0, c0, mask, use_mask, recurrent_mask, use_recurrent_mask,
               go_backwards, activation, recurrent_activation, fast, gates, carries, cells, recurrent_inputs, y):
    b = cuda.blockIdx.x
    timesteps = gates.shape[0]
    units = carries.shape[2]
    _start_row(carries, h0, b)
    _start_row(cells, c0, b)
    for t in range(timesteps):
        _step_inputs(carries, recurrent_mask, use_recurrent_mask, b, t, recurrent_inputs)
        keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
        for j in range(cuda.threadIdx.x, units, cuda.blockDim.x):
            if keep:
                i = _gate_act(_gate_input(gates, recurrent_inputs, recurrent_kernel, bias, use_bias, t, b, j),
                              recurrent_activation, fast)
                f = _gate_act(_gate_input(gates, recurrent_inputs, recurrent_kernel, bias, use_bias, t, b, units + j),
                              recurrent_activation, fast)
                g = _cell_act(_gate_input(gates, recurrent_inputs, recurrent_kernel, bias, use_bias, t, b,
                                          2 * units + j), activation, fast)
                o = _gate_act(_gate_input(gates, recurrent_inputs, recurrent_kernel, bias, use_bias, t, b,
                                          3 * units + j), recurrent_activation, fast)
                gates[t, b, j] = i
                gates[t, b, units + j] = f
                gates[t, b, 2 * units + j] = g
                gates[t, b, 3 * units + j] = o
                c, h = _lstm_state(gates[t, b, j], gates[t, b, units + j], gates[t, b, 2 * units + j],
                                   gates[t, b, 3 * units + j], cells[t, b, j], activation, fast)
                cells[t + 1, b, j] = c
                carries[t + 1, b, j] = h
            else:
                cells[t + 1, b, j] = cells[t, b, j]
                carries[t + 1, b, j] = carries[t, b, j]
            _write_output(carries, keep, b, t, j, y)
        cuda.syncthreads()


def lstm_forward(x, kernel, recurrent_kernel, bias, use_bias, h0, c0, mask, use_mask, input_mask, use_input_mask,
                 recurrent_mask, use_recurrent_mask, go_backwards, activation, recurrent_activation,
                 steps, gates, carries, cells, recurrent_inputs, y):
    """An LSTM over the whole sequence, as the CPU twin."""
    source = _recurrent_source(carries, recurrent_inputs, use_recurrent_mask)
    _begin_sequence(x, kernel, input_mask, use_input_mask, go_backwards, steps, gates)
    units = carries.shape[2]
    _lstm_loop[x.shape[0], _row_threads(units)](
        recurrent_kernel, bias, bool(use_bias), h0, c0, mask, bool(use_mask), recurrent_mask,
        bool(use_recurrent_mask), bool(go_backwards), int(activation), int(recurrent_activation),
        _fast(x.dtype, activation, recurrent_activation), gates, carries, cells, source, y,
    )


@cuda.jit(cache=True)
def _lstm_backward_loop(recurrent_kernel, mask, use_mask, recurrent_mask, use_recurrent_mask, go_backwards,
                        activation, recurrent_activation, fast, gates, cells, dy, dh_final, dc_final,
                        use_state_grads, carry_grads, dh0, dc0, need_initial_grads):
    b = cuda.blockIdx.x
    timesteps = gates.shape[0]
    units = cells.shape[2]
    dh, dc, pending = carry_grads[0], carry_grads[1], carry_grads[2]
    _start_grads(dh_final, use_state_grads, dh, b)
    _start_grads(dc_final, use_state_grads, dc, b)
    for j in range(cuda.threadIdx.x, units, cuda.blockDim.x):
        pending[b, j] = 0.0
    for t in range(timesteps - 1, -1, -1):
        keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
        for j in range(cuda.threadIdx.x, units, cuda.blockDim.x):
            _output_grad(dy, keep, b, t, j, timesteps, pending, dh)
            if keep:
                dzo, dc_total = _lstm_output_grads(gates[t, b, 3 * units + j], cells[t + 1, b, j], dh[b, j],
                                                   dc[b, j], activation, recurrent_activation, fast)
                dzi, dzf, dzc, dc_prev = _lstm_input_grads(gates[t, b, j], gates[t, b, units + j],
                                                           gates[t, b, 2 * units + j], cells[t, b, j], dc_total,
                                                           activation, recurrent_activation)
                gates[t, b, j] = dzi
                gates[t, b, units + j] = dzf
                gates[t, b, 2 * units + j] = dzc
                gates[t, b, 3 * units + j] = dzo
                dc[b, j] = dc_prev
                dh[b, j] = 0.0
            else:
                for g in range(4):
                    gates[t, b, g * units + j] = 0.0
        _state_grad_step(gates, recurrent_kernel, recurrent_mask, use_recurrent_mask, keep, t, b, dh)
    if need_initial_grads:
        _copy_row(dh, b, dh0)
        _copy_row(dc, b, dc0)


def lstm_backward(kernel, recurrent_kernel, use_bias, mask, use_mask, input_mask, use_input_mask, recurrent_mask,
                  use_recurrent_mask, go_backwards, activation, recurrent_activation, steps, gates, carries, cells,
                  recurrent_inputs, dy, dh_final, dc_final, use_state_grads, carry_grads, task_grads,
                  transposed_recurrent_kernel, joint_inputs, dkernel, drecurrent_kernel, dbias, dx, need_dx, dh0,
                  dc0, need_initial_grads):
    """Gradients of ``lstm_forward`` through time, as the CPU twin. The
    state is time-major here (one block per batch row runs the loop), and
    each thread reads the recurrent kernel as stored, so the CPU's scratch
    for its tasks and BLAS, ``task_grads``, ``transposed_recurrent_kernel``
    and ``joint_inputs``, is not used."""
    source = _recurrent_source(carries, recurrent_inputs, use_recurrent_mask)
    units = carries.shape[2]
    _lstm_backward_loop[steps.shape[1], _row_threads(units)](
        recurrent_kernel, mask, bool(use_mask), recurrent_mask, bool(use_recurrent_mask), bool(go_backwards),
        int(activation), int(recurrent_activation), _fast(steps.dtype, activation, recurrent_activation),
        gates, cells, dy, dh_final, dc_final, bool(use_state_grads), carry_grads, dh0, dc0,
        bool(need_initial_grads),
    )
    if use_bias:
        _column_sums[blocks(dbias.size), THREADS](_flat(gates), dbias)
    _weight_grads(steps, kernel, gates, gates, source, input_mask, use_input_mask, go_backwards,
                  dkernel, drecurrent_kernel, dx, need_dx)


def final_state(states, out):
    """A final state (B, U): step ``T`` of the time-major ``states``."""
    copy_into(out, states[states.shape[0] - 1])


# ---- GRU ----------------------------------------------------------------------------


@cuda.jit(cache=True)
def _gru_loop(recurrent_kernel, bias, use_bias, h0, mask, use_mask, recurrent_mask, use_recurrent_mask,
              go_backwards, activation, recurrent_activation, fast, gates, carries, candidates, recurrent_inputs, y):
    b = cuda.blockIdx.x
    timesteps = gates.shape[0]
    units = carries.shape[2]
    _start_row(carries, h0, b)
    for t in range(timesteps):
        _step_inputs(carries, recurrent_mask, use_recurrent_mask, b, t, recurrent_inputs)
        keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
        for j in range(cuda.threadIdx.x, units, cuda.blockDim.x):
            if keep:
                xz = gates[t, b, j]
                xr = gates[t, b, units + j]
                xh = gates[t, b, 2 * units + j]
                rz = _recurrent_dot(recurrent_inputs, recurrent_kernel, t, b, j)
                rr = _recurrent_dot(recurrent_inputs, recurrent_kernel, t, b, units + j)
                rh = _recurrent_dot(recurrent_inputs, recurrent_kernel, t, b, 2 * units + j)
                if use_bias:
                    xz = xz + bias[0, j] + rz + bias[1, j]
                    xr = xr + bias[0, units + j] + rr + bias[1, units + j]
                    rh = rh + bias[1, 2 * units + j]
                    xh = xh + bias[0, 2 * units + j]
                else:
                    xz = xz + rz
                    xr = xr + rr
                z = _gate_act(xz, recurrent_activation, fast)
                r = _gate_act(xr, recurrent_activation, fast)
                hh, h = _gru_state(z, r, xh, rh, carries[t, b, j], activation, fast)
                gates[t, b, j] = z
                gates[t, b, units + j] = r
                gates[t, b, 2 * units + j] = hh
                candidates[t, b, j] = rh
                carries[t + 1, b, j] = h
            else:
                carries[t + 1, b, j] = carries[t, b, j]
            _write_output(carries, keep, b, t, j, y)
        cuda.syncthreads()


def gru_forward(x, kernel, recurrent_kernel, bias, use_bias, h0, mask, use_mask, input_mask, use_input_mask,
                recurrent_mask, use_recurrent_mask, go_backwards, activation, recurrent_activation,
                steps, gates, carries, candidates, recurrent_inputs, y):
    """A GRU (reset_after=True) over the whole sequence, as the CPU twin."""
    source = _recurrent_source(carries, recurrent_inputs, use_recurrent_mask)
    _begin_sequence(x, kernel, input_mask, use_input_mask, go_backwards, steps, gates)
    _gru_loop[x.shape[0], _row_threads(carries.shape[2])](
        recurrent_kernel, bias, bool(use_bias), h0, mask, bool(use_mask), recurrent_mask, bool(use_recurrent_mask),
        bool(go_backwards), int(activation), int(recurrent_activation),
        _fast(x.dtype, activation, recurrent_activation), gates, carries, candidates, source, y,
    )


@cuda.jit(cache=True)
def _gru_backward_loop(recurrent_kernel, mask, use_mask, recurrent_mask, use_recurrent_mask, go_backwards,
                       activation, recurrent_activation, gates, carries, candidates, recurrent_grads, dy, dh_final,
                       use_state_grads, carry_grads, dh0, need_initial_grads):
    b = cuda.blockIdx.x
    timesteps = gates.shape[0]
    units = carries.shape[2]
    dh, pending = carry_grads[0], carry_grads[1]
    _start_grads(dh_final, use_state_grads, dh, b)
    for j in range(cuda.threadIdx.x, units, cuda.blockDim.x):
        pending[b, j] = 0.0
    for t in range(timesteps - 1, -1, -1):
        keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
        for j in range(cuda.threadIdx.x, units, cuda.blockDim.x):
            _output_grad(dy, keep, b, t, j, timesteps, pending, dh)
            if keep:
                dz, dr, dxh, drh, dh_direct = _gru_cell_grads(
                    gates[t, b, j], gates[t, b, units + j], gates[t, b, 2 * units + j], candidates[t, b, j],
                    carries[t, b, j], dh[b, j], activation, recurrent_activation,
                )
                gates[t, b, j] = dz
                gates[t, b, units + j] = dr
                gates[t, b, 2 * units + j] = dxh
                recurrent_grads[t, b, j] = dz
                recurrent_grads[t, b, units + j] = dr
                recurrent_grads[t, b, 2 * units + j] = drh
                dh[b, j] = dh_direct
            else:
                for g in range(3):
                    gates[t, b, g * units + j] = 0.0
                    recurrent_grads[t, b, g * units + j] = 0.0
        _state_grad_step(recurrent_grads, recurrent_kernel, recurrent_mask, use_recurrent_mask, keep, t, b, dh)
    if need_initial_grads:
        _copy_row(dh, b, dh0)


def gru_backward(kernel, recurrent_kernel, use_bias, mask, use_mask, input_mask, use_input_mask, recurrent_mask,
                 use_recurrent_mask, go_backwards, activation, recurrent_activation, steps, gates, carries,
                 candidates, recurrent_inputs, recurrent_grads, dy, dh_final, use_state_grads, carry_grads,
                 task_grads, transposed_recurrent_kernel, joint_inputs, dkernel, drecurrent_kernel, dbias, dx,
                 need_dx, dh0, need_initial_grads):
    """Gradients of ``gru_forward`` through time, as the CPU twin
    (``task_grads``, ``transposed_recurrent_kernel`` and ``joint_inputs``
    unused, as in ``lstm_backward``)."""
    source = _recurrent_source(carries, recurrent_inputs, use_recurrent_mask)
    _gru_backward_loop[steps.shape[1], _row_threads(carries.shape[2])](
        recurrent_kernel, mask, bool(use_mask), recurrent_mask, bool(use_recurrent_mask), bool(go_backwards),
        int(activation), int(recurrent_activation), gates, carries, candidates, recurrent_grads, dy, dh_final,
        bool(use_state_grads), carry_grads, dh0, bool(need_initial_grads),
    )
    if use_bias:
        _column_sums[blocks(dbias.shape[1]), THREADS](_flat(gates), dbias[0])
        _column_sums[blocks(dbias.shape[1]), THREADS](_flat(recurrent_grads), dbias[1])
    _weight_grads(steps, kernel, gates, recurrent_grads, source, input_mask, use_input_mask, go_backwards,
                  dkernel, drecurrent_kernel, dx, need_dx)


# ---- SimpleRNN ------------------------------------------------------------------------


@cuda.jit(cache=True)
def _simple_rnn_loop(recurrent_kernel, bias, use_bias, h0, mask, use_mask, recurrent_mask, use_recurrent_mask,
                     go_backwards, activation, fast, gates, carries, recurrent_inputs, y):
    b = cuda.blockIdx.x
    timesteps = gates.shape[0]
    units = carries.shape[2]
    _start_row(carries, h0, b)
    for t in range(timesteps):
        _step_inputs(carries, recurrent_mask, use_recurrent_mask, b, t, recurrent_inputs)
        keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
        for j in range(cuda.threadIdx.x, units, cuda.blockDim.x):
            if keep:
                h = _cell_act(_gate_input(gates, recurrent_inputs, recurrent_kernel, bias, use_bias, t, b, j),
                              activation, fast)
                gates[t, b, j] = h
                carries[t + 1, b, j] = h
            else:
                carries[t + 1, b, j] = carries[t, b, j]
            _write_output(carries, keep, b, t, j, y)
        cuda.syncthreads()


def simple_rnn_forward(x, kernel, recurrent_kernel, bias, use_bias, h0, mask, use_mask, input_mask, use_input_mask,
                       recurrent_mask, use_recurrent_mask, go_backwards, activation,
                       steps, gates, carries, recurrent_inputs, y):
    """A fully connected RNN over the whole sequence, as the CPU twin."""
    source = _recurrent_source(carries, recurrent_inputs, use_recurrent_mask)
    _begin_sequence(x, kernel, input_mask, use_input_mask, go_backwards, steps, gates)
    _simple_rnn_loop[x.shape[0], _row_threads(carries.shape[2])](
        recurrent_kernel, bias, bool(use_bias), h0, mask, bool(use_mask), recurrent_mask, bool(use_recurrent_mask),
        bool(go_backwards), int(activation), _fast(x.dtype, activation, SIGMOID), gates, carries,
        source, y,
    )


@cuda.jit(cache=True)
def _simple_rnn_backward_loop(recurrent_kernel, mask, use_mask, recurrent_mask, use_recurrent_mask, go_backwards,
                              activation, gates, dy, dh_final, use_state_grads, carry_grads, dh0,
                              need_initial_grads):
    b = cuda.blockIdx.x
    timesteps = gates.shape[0]
    units = recurrent_kernel.shape[0]
    dh, pending = carry_grads[0], carry_grads[1]
    _start_grads(dh_final, use_state_grads, dh, b)
    for j in range(cuda.threadIdx.x, units, cuda.blockDim.x):
        pending[b, j] = 0.0
    for t in range(timesteps - 1, -1, -1):
        keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
        for j in range(cuda.threadIdx.x, units, cuda.blockDim.x):
            _output_grad(dy, keep, b, t, j, timesteps, pending, dh)
            if keep:
                gates[t, b, j] = dh[b, j] * _grad_from_output(gates[t, b, j], activation)
                dh[b, j] = 0.0
            else:
                gates[t, b, j] = 0.0
        _state_grad_step(gates, recurrent_kernel, recurrent_mask, use_recurrent_mask, keep, t, b, dh)
    if need_initial_grads:
        _copy_row(dh, b, dh0)


def simple_rnn_backward(kernel, recurrent_kernel, use_bias, mask, use_mask, input_mask, use_input_mask,
                        recurrent_mask, use_recurrent_mask, go_backwards, activation, steps, gates, carries,
                        recurrent_inputs, dy, dh_final, use_state_grads, carry_grads, task_grads,
                        transposed_recurrent_kernel, joint_inputs, dkernel, drecurrent_kernel, dbias, dx, need_dx,
                        dh0, need_initial_grads):
    """Gradients of ``simple_rnn_forward`` through time, as the CPU twin
    (``task_grads``, ``transposed_recurrent_kernel`` and ``joint_inputs``
    unused, as in ``lstm_backward``)."""
    source = _recurrent_source(carries, recurrent_inputs, use_recurrent_mask)
    _simple_rnn_backward_loop[steps.shape[1], _row_threads(carries.shape[2])](
        recurrent_kernel, mask, bool(use_mask), recurrent_mask, bool(use_recurrent_mask), bool(go_backwards),
        int(activation), gates, dy, dh_final, bool(use_state_grads), carry_grads, dh0, bool(need_initial_grads),
    )
    if use_bias:
        _column_sums[blocks(dbias.size), THREADS](_flat(gates), dbias)
    _weight_grads(steps, kernel, gates, gates, source, input_mask, use_input_mask, go_backwards,
                  dkernel, drecurrent_kernel, dx, need_dx)
