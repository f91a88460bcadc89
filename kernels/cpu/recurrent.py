"""Recurrent layer kernels (SimpleRNN, LSTM, GRU): the whole sequence in one
call per direction, the batch split into tasks over Numba's threads (see
"Tasks" below).

Each task works time-major inside: ``steps`` (timesteps, batch, features)
holds the inputs in processing order (reversed when ``go_backwards``, times
the input dropout mask when one is used), so that

- the input projection of every step is ONE BLAS GEMM
  ``steps (T * B, F) @ kernel (F, k * units)`` into ``gates (T, B, k * units)``;
- the time loop runs inside the kernel: per step one GEMM adds
  ``recurrent_inputs[t] (B, units) @ recurrent_kernel`` into ``gates[t]``
  (``_gemm`` with ``beta = 1``, which saves a scratch buffer and a pass over
  it: 9% of the LSTM forward), then short loops add the bias, apply the
  gate activations (over ``gates[t]``) and write the new state into
  ``carries[t + 1]`` (and ``cells[t + 1]``); the GRU's candidate keeps its
  recurrent product apart, in ``candidates[t]``, for the reset gate;
- the backward loop walks the steps in reverse, computing each step's gate
  gradients (written over ``gates[t]``) and adding the state gradient
  through one GEMM with the transposed recurrent kernel (copied once per
  call into ``transposed_recurrent_kernel``); then the weight gradients
  are ONE GEMM each over all steps: ``dkernel = steps^T dgates``,
  ``drecurrent_kernel = recurrent_inputs^T dgates`` (read from
  ``joint_inputs``, the two copied transposed one above the other; for the
  LSTM and SimpleRNN, whose two products share ``dgates``, ONE GEMM for
  both), and ``dsteps = dgates kernel^T`` (written over ``steps``) before
  it is scattered into ``dx``;
- GEMMs whose result cannot matter are skipped: the first step's recurrent
  GEMM when the initial state is all zeros (the default), and the state
  gradient through the first step unless the initial state's gradient is
  asked for.

So the backward reuses the forward's state buffers as scratch: call it once
per forward.

With recurrent dropout the recurrent GEMM reads ``recurrent_inputs[t] =
carries[t] * recurrent_mask`` (T, B, units), which the forward writes;
without it, ``carries[:T]`` itself, and ``recurrent_inputs`` is not touched
(a caller may pass any array of that shape, e.g. ``carries[:-1]``).

Masks (``mask``: (batch, timesteps), 1.0 keep, 0.0 skip, in the input's
order) follow Keras 3: a skipped step keeps the previous state; the output
at a skipped step is the output of the last kept step (zeros before the
first one), and so is the last output.

Gate order and weight layout are Keras's: LSTM ``i, f, c, o``; GRU ``z, r,
h`` with ``bias`` (2, 3 * units) holding the input and recurrent biases
(``reset_after=True``). ``activation`` and ``recurrent_activation`` are codes
from ``nkeras.kernels.codes`` whose derivative follows from the output
(linear, relu, sigmoid, tanh).
"""

import numpy as np
from numba import njit, prange

from nkeras.kernels.codes import RELU, SIGMOID, TANH
from nkeras.kernels.cpu.activation import _act
from nkeras.kernels.cpu.blas import _gemm
from nkeras.kernels.cpu.dropout import _dropout_constants, _uniform
from nkeras.kernels.cpu.tasks import _task_block


@njit(cache=True, error_model="numpy", inline="always")
def _grad_from_output(y, code):
    """``act'(z)`` from ``y = act(z)`` for linear, relu, sigmoid and tanh."""
    if code == SIGMOID:
        return y * (1.0 - y)
    if code == TANH:
        return 1.0 - y * y
    if code == RELU:
        return 1.0 if y > 0.0 else 0.0
    return 1.0


# float32 tanh as x * P(x^2) / Q(x^2) on [-9, 9] (tanh(9) rounds to 1 in
# float32), a least-squares fit of our own that minimises the largest error:
# within 4e-7 of tanh in float32 arithmetic. Unlike libm's exp it is plain
# arithmetic, so the gate loops vectorise (an LSTM step's gates: 5x faster).
_TANH_CLAMP = np.float32(9.0)
_P0 = np.float32(0.9999999689336411)
_P1 = np.float32(0.13079161955681115)
_P2 = np.float32(0.0030986523374646534)
_P3 = np.float32(1.1101800399027087e-05)
_P4 = np.float32(-2.0029457671847618e-08)
_P5 = np.float32(5.19263795291295e-11)
_P6 = np.float32(-8.291157812743776e-14)
_Q1 = np.float32(0.4641248220620069)
_Q2 = np.float32(0.02447375385782151)
_Q3 = np.float32(0.00025385981570982266)
_HALF = np.float32(0.5)

# The per-step gate loops let LLVM fuse a multiply and an add into one FMA
# (``contract`` alone of the fast-math flags: no reordering, no
# approximations; one rounding instead of two). The vectorised tanh runs
# 1.4x as fast so (a million float32 values: 362 -> 253 us, its largest
# error 3.2e-7 -> 3.1e-7); an LSTM task's 28 steps (64 rows, 128 units)
# went from 0.80-0.88 to 0.67-0.77 ms forward and from 0.39-0.48 to
# 0.37-0.44 ms backward (medians of 8 alternating blocks of 20).
_FMA = {"contract"}


@njit(cache=True, error_model="numpy", inline="always")
def _tanh32(x):
    """tanh of a float32, vectorisable (see the coefficients above)."""
    x = min(max(x, -_TANH_CLAMP), _TANH_CLAMP)
    s = x * x
    p = _P0 + s * (_P1 + s * (_P2 + s * (_P3 + s * (_P4 + s * (_P5 + s * _P6)))))
    q = np.float32(1.0) + s * (_Q1 + s * (_Q2 + s * _Q3))
    return x * p / q


@njit(cache=True, error_model="numpy", inline="always")
def _sigmoid32(x):
    """sigmoid of a float32 as ``(1 + tanh(x / 2)) / 2``, vectorisable."""
    return _HALF + _HALF * _tanh32(_HALF * x)


@njit(cache=True, error_model="numpy", inline="always")
def _gate_act(z, code, fast):
    """``recurrent_activation(z)``; ``fast`` (float32 with Keras's default
    activations; the callers pass it as a constant, so the branch folds
    away) takes the vectorisable sigmoid."""
    return _sigmoid32(z) if fast else _act(z, code, 0.0)


@njit(cache=True, error_model="numpy", inline="always")
def _cell_act(z, code, fast):
    """``activation(z)``; ``fast`` as in ``_gate_act``, with tanh."""
    return _tanh32(z) if fast else _act(z, code, 0.0)


@njit(cache=True, error_model="numpy", inline="always")
def _fast_path(steps, activation, recurrent_activation):
    """Whether the vectorisable float32 sigmoid and tanh apply."""
    return steps.itemsize == 4 and activation == TANH and recurrent_activation == SIGMOID


@njit(cache=True, error_model="numpy", inline="always")
def _input_time(step, timesteps, go_backwards):
    """The input timestep processed at ``step``."""
    return timesteps - 1 - step if go_backwards else step


@njit(cache=True, error_model="numpy", inline="always")
def _lstm_state(i, f, g, o, c_prev, activation, fast):
    """One LSTM unit's new cell and hidden values from its activated gates."""
    c = f * c_prev + i * g
    return c, o * _cell_act(c, activation, fast)


@njit(cache=True, error_model="numpy", inline="always")
def _lstm_output_grads(o, c, dh, dc, activation, recurrent_activation, fast):
    """The output gate's pre-activation gradient and the whole gradient of
    the new cell value, given those of the new hidden (``dh``) and cell
    (``dc``, from the next step) values."""
    a = _cell_act(c, activation, fast)
    return dh * a * _grad_from_output(o, recurrent_activation), dc + dh * o * _grad_from_output(a, activation)


@njit(cache=True, error_model="numpy", inline="always")
def _lstm_input_grads(i, f, g, c_prev, dc, activation, recurrent_activation):
    """The i, f, c gates' pre-activation gradients and the gradient of the
    previous cell value, given the new cell value's gradient ``dc``."""
    return (dc * g * _grad_from_output(i, recurrent_activation),
            dc * c_prev * _grad_from_output(f, recurrent_activation),
            dc * i * _grad_from_output(g, activation),
            dc * f)


@njit(cache=True, error_model="numpy", inline="always")
def _gru_state(z, r, xh, rh, h_prev, activation, fast):
    """One GRU unit (reset_after): the candidate and the new hidden value
    from the update and reset gates and the candidate's input (``xh``) and
    recurrent (``rh``) projections, biases included."""
    hh = _cell_act(xh + r * rh, activation, fast)
    return hh, z * h_prev + (1.0 - z) * hh


@njit(cache=True, error_model="numpy", inline="always")
def _gru_cell_grads(z, r, hh, rh, h_prev, dh, activation, recurrent_activation):
    """Gradients of the input-side pre-activations (``dxz, dxr, dxh``), of
    the recurrent candidate projection ``drh``, and the direct part of
    ``dh_prev`` (through ``z * h_prev``)."""
    dz = dh * (h_prev - hh) * _grad_from_output(z, recurrent_activation)
    dxh = dh * (1.0 - z) * _grad_from_output(hh, activation)
    dr = dxh * rh * _grad_from_output(r, recurrent_activation)
    return dz, dr, dxh, dxh * r, dh * z


@njit(cache=True, error_model="numpy")
def draw_dropout_mask(rate, seed, step, mask):
    """Fill ``mask`` (rows, cols) with 0 (probability ``rate``) or ``1 / (1 -
    rate)``, drawn from the counter-based hash of (seed, step) as the
    dropout kernels draw (element ``i * cols + j``)."""
    key, keep_scale = _dropout_constants(rate, seed, step)
    rows, cols = mask.shape
    for i in range(rows):
        for j in range(cols):
            mask[i, j] = 0.0 if _uniform(key, i * cols + j) < rate else keep_scale


# ---- tasks ---------------------------------------------------------------------------
#
# Each layer splits its batch into tasks of at most TASK_ROWS rows, run in
# ``prange``; each runs the whole sequence for its rows on a one-thread BLAS
# (the plan holds BLAS to one thread: docs/architecture.md, "Threads"). The
# split depends on the batch size alone, so the results do not depend on
# the thread count. A state array (leading, B, cols) is laid out task by
# task (kernels/cpu/tasks.py): one time-major block (leading, rows, cols)
# per task, so that a task's GEMMs over all its steps read one contiguous
# matrix; with one task (B <= TASK_ROWS) that is the time-major layout.

TASK_ROWS = 64


@njit(cache=True, error_model="numpy", inline="always")
def _task_count(batch):
    return max(1, -(-batch // TASK_ROWS))


@njit(cache=True, error_model="numpy", inline="always")
def _task_rows(batch, tasks, task):
    """Rows ``[first, last)`` of ``task``: the batch in near-equal parts."""
    return batch * task // tasks, batch * (task + 1) // tasks


@njit(cache=True, error_model="numpy", inline="always")
def _task_joint_grads(task_grads, task, dkernel, drecurrent_kernel, dbias):
    """Views of row ``task`` of ``task_grads``: the kernel's and the
    recurrent kernel's gradients stacked, (F + U, k * U), as
    ``_weight_grads`` writes them, and the bias gradient."""
    flat = task_grads[task]
    end = dkernel.size + drecurrent_kernel.size
    return (flat[:end].reshape(dkernel.shape[0] + drecurrent_kernel.shape[0], dkernel.shape[1]),
            flat[end:end + dbias.size].reshape(dbias.shape))


@njit(cache=True, error_model="numpy")
def _sum_task_grads(task_grads, tasks, dkernel, drecurrent_kernel, dbias, use_bias):
    """The weight gradients: every task's, added in task order."""
    features = dkernel.shape[0]
    for task in range(tasks):
        task_dweights, task_dbias = _task_joint_grads(task_grads, task, dkernel, drecurrent_kernel, dbias)
        if task == 0:
            dkernel[:] = task_dweights[:features]
            drecurrent_kernel[:] = task_dweights[features:]
            if use_bias:
                dbias[:] = task_dbias
        else:
            dkernel += task_dweights[:features]
            drecurrent_kernel += task_dweights[features:]
            if use_bias:
                dbias += task_dbias


@njit(cache=True, error_model="numpy")
def final_state(states, out):
    """A final state (B, U), ``h`` or ``c``, from a forward's state array
    ``carries`` or ``cells`` (T + 1, B, U): each task's last step."""
    batch = out.shape[0]
    tasks = _task_count(batch)
    for task in range(tasks):
        first, last = _task_rows(batch, tasks, task)
        block = _task_block(states, first, last)
        out[first:last] = block[block.shape[0] - 1]


@njit(cache=True, error_model="numpy")
def _gather_steps(x, input_mask, use_input_mask, go_backwards, steps):
    """``steps[t, b] = x[b, input_time(t)] (* input_mask[b])``."""
    batch, timesteps, features = x.shape
    for t in range(timesteps):
        source = _input_time(t, timesteps, go_backwards)
        for b in range(batch):
            if use_input_mask:
                for f in range(features):
                    steps[t, b, f] = x[b, source, f] * input_mask[b, f]
            else:
                for f in range(features):
                    steps[t, b, f] = x[b, source, f]


@njit(cache=True, error_model="numpy")
def _scatter_steps(dsteps, input_mask, use_input_mask, go_backwards, dx):
    """``dx[b, input_time(t)] = dsteps[t, b] (* input_mask[b])``: the inverse of ``_gather_steps``."""
    batch, timesteps, features = dx.shape
    for t in range(timesteps):
        target = _input_time(t, timesteps, go_backwards)
        for b in range(batch):
            if use_input_mask:
                for f in range(features):
                    dx[b, target, f] = dsteps[t, b, f] * input_mask[b, f]
            else:
                for f in range(features):
                    dx[b, target, f] = dsteps[t, b, f]


@njit(cache=True, error_model="numpy")
def _begin_sequence(x, kernel, h0, input_mask, use_input_mask, go_backwards, steps, gates, carries):
    """Gather the steps, project every step's input in one GEMM, start the state."""
    timesteps, batch, features = steps.shape
    _gather_steps(x, input_mask, use_input_mask, go_backwards, steps)
    np.dot(steps.reshape(timesteps * batch, features), kernel, gates.reshape(timesteps * batch, gates.shape[2]))
    carries[0] = h0


@njit(cache=True, error_model="numpy", inline="always")
def _recurrent_source(carries, recurrent_inputs, use_recurrent_mask):
    """What the recurrent GEMM reads: ``recurrent_inputs`` with recurrent
    dropout, else the hidden states ``carries[:T]`` themselves."""
    return recurrent_inputs if use_recurrent_mask else carries[:carries.shape[0] - 1]


@njit(cache=True, error_model="numpy")
def _all_zero(state):
    """Whether every element of ``state`` is zero: an initial state of zeros
    (the default) contributes nothing to the first step's recurrent GEMM,
    nor (GRU) that step's columns to the recurrent kernel's gradient, so
    both are skipped (1/T of each)."""
    for value in state.ravel():
        if value != 0.0:
            return False
    return True


@njit(cache=True, error_model="numpy")
def _recurrent_step_inputs(carries, recurrent_mask, use_recurrent_mask, t, recurrent_inputs):
    if use_recurrent_mask:
        batch, units = recurrent_mask.shape
        for b in range(batch):
            for j in range(units):
                recurrent_inputs[t, b, j] = carries[t, b, j] * recurrent_mask[b, j]


@njit(cache=True, error_model="numpy")
def _write_outputs(carries, keep, b, t, y):
    """Row ``b`` of the layer output at step ``t``: the new hidden value on
    a kept step, else the previous output (zeros before the first kept
    step). ``y`` is (B, T, U) for sequences or (B, 1, U) for the last
    output only."""
    units = carries.shape[2]
    slot = t if y.shape[1] > 1 else 0
    if keep:
        for j in range(units):
            y[b, slot, j] = carries[t + 1, b, j]
    elif t == 0:
        for j in range(units):
            y[b, slot, j] = 0.0
    elif slot > 0:
        for j in range(units):
            y[b, slot, j] = y[b, slot - 1, j]


@njit(cache=True, error_model="numpy")
def _add_output_grads(dy, keep, b, t, timesteps, pending, dh):
    """Route row ``b`` of the output gradient at step ``t`` (for the last
    output only at the last step): a kept step adds it, and what later
    skipped steps passed back in ``pending``, to ``dh``; a skipped step
    passes it on in ``pending`` to the last kept step before it."""
    units = dh.shape[1]
    target = dh if keep else pending
    if dy.shape[1] > 1:
        for j in range(units):
            target[b, j] += dy[b, t, j]
    elif t == timesteps - 1:
        for j in range(units):
            target[b, j] += dy[b, 0, j]
    if keep:
        for j in range(units):
            dh[b, j] += pending[b, j]
            pending[b, j] = 0.0


@njit(cache=True, error_model="numpy")
def _carry_state(states, b, t):
    """A skipped step keeps row ``b`` of the previous state."""
    for j in range(states.shape[2]):
        states[t + 1, b, j] = states[t, b, j]


@njit(cache=True, error_model="numpy", inline="always")
def _keep(mask, use_mask, b, t, timesteps, go_backwards):
    return mask[b, _input_time(t, timesteps, go_backwards)] != 0.0 if use_mask else True


@njit(cache=True, error_model="numpy", inline="always")
def _task_joint_inputs(joint_inputs, timesteps, first, last):
    """The block of rows ``[first, last)`` of ``joint_inputs`` (F + U, T * B),
    laid out task by task: (F + U, T * rows), its columns step by step."""
    width = joint_inputs.shape[0]
    flat = joint_inputs.reshape(joint_inputs.size)
    return flat[width * timesteps * first:width * timesteps * last].reshape(width, timesteps * (last - first))


@njit(cache=True, error_model="numpy")
def _weight_grads(steps, kernel, gate_grads, recurrent_gate_grads, shared, recurrent_inputs, zero_start, input_mask,
                  use_input_mask, go_backwards, joint_inputs, dweights, dx, need_dx):
    """The kernel's and the recurrent kernel's gradients over all steps at
    once, stacked in ``dweights`` (F + U, k * U): ``steps^T gate_grads``
    and ``recurrent_inputs^T recurrent_gate_grads``; when ``need_dx``,
    ``dx`` from ``gate_grads kernel^T`` (computed over ``steps``).

    The two inputs are first copied, transposed, into one task's
    ``joint_inputs`` (F + U, T * rows), so that the GEMMs read both
    operands as stored. For one 64-row LSTM task on one thread, the copy
    and the joint GEMM took 4.2 ms against 5.4 for two GEMMs reading
    ``steps`` and ``recurrent_inputs`` transposed. Where the two products share their gate gradients
    (``shared``: LSTM, SimpleRNN) they are ONE GEMM, the first step's
    recurrent inputs in it even when they are zeros (``zero_start``);
    otherwise that step is left out of the second GEMM."""
    timesteps, batch, features = steps.shape
    units = recurrent_inputs.shape[2]
    for t in range(timesteps):
        columns = joint_inputs[:, t * batch:(t + 1) * batch]
        for k in range(features):
            column = columns[k]
            for b in range(batch):
                column[b] = steps[t, b, k]
        for k in range(units):
            column = columns[features + k]
            for b in range(batch):
                column[b] = recurrent_inputs[t, b, k]
    flat_grads = gate_grads.reshape(timesteps * batch, gate_grads.shape[2])
    if shared:
        np.dot(joint_inputs, flat_grads, dweights)
    else:
        _gemm(joint_inputs[:features], flat_grads, dweights[:features])
        first = batch if zero_start else 0
        flat_recurrent = recurrent_gate_grads.reshape(timesteps * batch, recurrent_gate_grads.shape[2])
        _gemm(joint_inputs[features:, first:], flat_recurrent[first:], dweights[features:])
    if need_dx:
        np.dot(flat_grads, kernel.T, steps.reshape(timesteps * batch, features))
        _scatter_steps(steps, input_mask, use_input_mask, go_backwards, dx)


@njit(cache=True, error_model="numpy")
def _column_sums(grads, out):
    """``out[j] = sum of grads[:, :, j]``."""
    timesteps, batch, cols = grads.shape
    for j in range(cols):
        out[j] = 0.0
    for t in range(timesteps):
        for b in range(batch):
            for j in range(cols):
                out[j] += grads[t, b, j]


@njit(cache=True, error_model="numpy")
def _start_carry_grads(d_final, use_state_grads, carry_grad):
    batch, units = carry_grad.shape
    for b in range(batch):
        for j in range(units):
            carry_grad[b, j] = d_final[b, j] if use_state_grads else 0.0


@njit(cache=True, error_model="numpy")
def _transpose_into(matrix, out):
    """``out = matrix.T``, copied."""
    rows, cols = matrix.shape
    for i in range(rows):
        for j in range(cols):
            out[j, i] = matrix[i, j]


@njit(cache=True, error_model="numpy")
def _add_recurrent_grads(gate_grads, transposed_recurrent_kernel, recurrent_mask, use_recurrent_mask, through, dh):
    """``dh += (gate_grads @ recurrent_kernel^T) (* recurrent_mask)``: the
    state gradient through step ``t``'s recurrent GEMM. Skipped rows have
    zero gate gradients, so they pass ``dh`` on unchanged. Without
    recurrent dropout the GEMM adds into ``dh`` itself; ``through`` is
    scratch for the masked case. The GEMM reads the transposed kernel as
    stored, (k * units, units): OpenBLAS runs this shape 7-15% faster than
    with the kernel read transposed (64-row tasks, one thread)."""
    if not use_recurrent_mask:
        _gemm(gate_grads, transposed_recurrent_kernel, dh, False, False, 1.0)
        return
    _gemm(gate_grads, transposed_recurrent_kernel, through, False, False)
    batch, units = dh.shape
    for b in range(batch):
        for j in range(units):
            dh[b, j] += through[b, j] * recurrent_mask[b, j]


@njit(cache=True, error_model="numpy", fastmath=_FMA)
def _activate_gates(t, b, start, stop, code, fast, candidate, bias, use_bias, gates):
    """``gates[t, b, k] = act(gates[t, b, k] (+ bias[k]))`` for ``k`` in
    ``[start, stop)``, with ``activation`` for the ``candidate`` block, else
    ``recurrent_activation``: one short loop per gate block, which LLVM
    vectorises (one loop over every gate and state array does not). For
    that the loops index views of the block from 0 (with ``k`` from
    ``start``, Numba's negative-index wraparound keeps LLVM from
    vectorising, 4x slower) and hold no branch on ``fast`` or ``candidate``."""
    row = gates[t, b, start:stop]
    if use_bias:
        offset = bias[start:stop]
        for k in range(stop - start):
            row[k] += offset[k]
    if fast and candidate:
        for k in range(stop - start):
            row[k] = _tanh32(row[k])
    elif fast:
        for k in range(stop - start):
            row[k] = _sigmoid32(row[k])
    else:
        for k in range(stop - start):
            row[k] = _act(row[k], code, 0.0)


@njit(cache=True, error_model="numpy", fastmath=_FMA)
def _lstm_step(t, bias, use_bias, mask, use_mask, go_backwards, activation, recurrent_activation, fast,
               gates, carries, cells, y):
    """Step ``t`` after its recurrent GEMM: bias, gate activations, new state, output."""
    timesteps, batch, _ = gates.shape
    units = carries.shape[2]
    for b in range(batch):
        keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
        if keep:
            _activate_gates(t, b, 0, 2 * units, recurrent_activation, fast, False, bias, use_bias, gates)
            _activate_gates(t, b, 2 * units, 3 * units, activation, fast, True, bias, use_bias, gates)
            _activate_gates(t, b, 3 * units, 4 * units, recurrent_activation, fast, False, bias, use_bias, gates)
            for j in range(units):
                c, h = _lstm_state(gates[t, b, j], gates[t, b, units + j], gates[t, b, 2 * units + j],
                                   gates[t, b, 3 * units + j], cells[t, b, j], activation, fast)
                cells[t + 1, b, j] = c
                carries[t + 1, b, j] = h
        else:
            _carry_state(carries, b, t)
            _carry_state(cells, b, t)
        _write_outputs(carries, keep, b, t, y)


@njit(cache=True, error_model="numpy")
def _lstm_forward_task(x, kernel, recurrent_kernel, bias, use_bias, h0, c0, mask, use_mask, input_mask,
                       use_input_mask, recurrent_mask, use_recurrent_mask, go_backwards, activation,
                       recurrent_activation, steps, gates, carries, cells, recurrent_inputs, y):
    """``lstm_forward`` for one task's rows, its state arrays time-major."""
    timesteps = steps.shape[0]
    fast = _fast_path(steps, activation, recurrent_activation)
    _begin_sequence(x, kernel, h0, input_mask, use_input_mask, go_backwards, steps, gates, carries)
    zero_start = _all_zero(h0)
    cells[0] = c0
    source = _recurrent_source(carries, recurrent_inputs, use_recurrent_mask)
    for t in range(timesteps):
        _recurrent_step_inputs(carries, recurrent_mask, use_recurrent_mask, t, recurrent_inputs)
        if t > 0 or not zero_start:
            _gemm(source[t], recurrent_kernel, gates[t], False, False, 1.0)
        if fast:
            _lstm_step(t, bias, use_bias, mask, use_mask, go_backwards, activation, recurrent_activation, True,
                       gates, carries, cells, y)
        else:
            _lstm_step(t, bias, use_bias, mask, use_mask, go_backwards, activation, recurrent_activation, False,
                       gates, carries, cells, y)


@njit(cache=True, error_model="numpy", fastmath=_FMA)
def _lstm_step_grads(t, mask, use_mask, go_backwards, activation, recurrent_activation,
                     gates, cells, dy, dh, dc, pending):
    """Step ``t``'s gate gradients (over ``gates[t]``); ``dc`` becomes step
    ``t - 1``'s cell gradient and ``dh`` its direct part (zero on kept rows,
    which get theirs through the recurrent GEMM)."""
    timesteps, batch, _ = gates.shape
    units = cells.shape[2]
    for b in range(batch):
        keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
        _add_output_grads(dy, keep, b, t, timesteps, pending, dh)
        if keep:
            for j in range(units):
                dzo, dc_total = _lstm_output_grads(gates[t, b, 3 * units + j], cells[t + 1, b, j], dh[b, j],
                                                   dc[b, j], activation, recurrent_activation, False)
                gates[t, b, 3 * units + j] = dzo
                dc[b, j] = dc_total
                dh[b, j] = 0.0
            for j in range(units):
                dzi, dzf, dzc, dc_prev = _lstm_input_grads(gates[t, b, j], gates[t, b, units + j],
                                                           gates[t, b, 2 * units + j], cells[t, b, j], dc[b, j],
                                                           activation, recurrent_activation)
                gates[t, b, j] = dzi
                gates[t, b, units + j] = dzf
                gates[t, b, 2 * units + j] = dzc
                dc[b, j] = dc_prev
        else:
            for k in range(4 * units):
                gates[t, b, k] = 0.0


@njit(cache=True, error_model="numpy", fastmath=_FMA)
def _lstm_step_grads_fast(t, mask, use_mask, go_backwards, gates, cells, dy, dh, dc, pending):
    """``_lstm_step_grads`` for float32 with tanh and sigmoid (``_fast_path``):
    one loop over views of each gate block, indexed from 0, with the two
    derivatives written out, which LLVM vectorises (2.6x faster than the
    general loop; the shared helpers branch on the activation codes, and
    through them even a loop over views stays scalar)."""
    timesteps, batch, _ = gates.shape
    units = cells.shape[2]
    one = np.float32(1.0)
    for b in range(batch):
        keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
        _add_output_grads(dy, keep, b, t, timesteps, pending, dh)
        row = gates[t, b]
        if not keep:
            row[:] = 0.0
            continue
        gate_i, gate_f, gate_c, gate_o = row[:units], row[units:2 * units], row[2 * units:3 * units], row[3 * units:]
        cell, cell_prev, dh_row, dc_row = cells[t + 1, b], cells[t, b], dh[b], dc[b]
        for j in range(units):
            o, tanh_c, grad_h = gate_o[j], _tanh32(cell[j]), dh_row[j]
            grad_c = dc_row[j] + grad_h * o * (one - tanh_c * tanh_c)
            gate_o[j] = grad_h * tanh_c * o * (one - o)
            i, f, g = gate_i[j], gate_f[j], gate_c[j]
            gate_i[j] = grad_c * g * i * (one - i)
            gate_f[j] = grad_c * cell_prev[j] * f * (one - f)
            gate_c[j] = grad_c * i * (one - g * g)
            dc_row[j] = grad_c * f
            dh_row[j] = 0.0


@njit(cache=True, error_model="numpy")
def _lstm_backward_task(kernel, transposed_recurrent_kernel, use_bias, mask, use_mask, input_mask, use_input_mask,
                        recurrent_mask, use_recurrent_mask, go_backwards, activation, recurrent_activation, steps,
                        gates, carries, cells, recurrent_inputs, joint_inputs, dy, dh_final, dc_final,
                        use_state_grads, carry_grads, dweights, dbias, dx, need_dx, dh0, dc0, need_initial_grads):
    """``lstm_backward`` for one task's rows, into that task's weight
    gradients (``dweights``: the kernel's and recurrent kernel's, stacked)."""
    timesteps = steps.shape[0]
    fast = _fast_path(steps, activation, recurrent_activation)
    dh, dc, pending, through = carry_grads[0], carry_grads[1], carry_grads[2], carry_grads[3]
    _start_carry_grads(dh_final, use_state_grads, dh)
    _start_carry_grads(dc_final, use_state_grads, dc)
    pending[:, :] = 0.0
    for t in range(timesteps - 1, -1, -1):
        if fast:
            _lstm_step_grads_fast(t, mask, use_mask, go_backwards, gates, cells, dy, dh, dc, pending)
        else:
            _lstm_step_grads(t, mask, use_mask, go_backwards, activation, recurrent_activation,
                             gates, cells, dy, dh, dc, pending)
        if t > 0 or need_initial_grads:
            _add_recurrent_grads(gates[t], transposed_recurrent_kernel, recurrent_mask, use_recurrent_mask, through, dh)
    if need_initial_grads:
        dh0[:, :] = dh
        dc0[:, :] = dc
    if use_bias:
        _column_sums(gates, dbias)
    source = _recurrent_source(carries, recurrent_inputs, use_recurrent_mask)
    _weight_grads(steps, kernel, gates, gates, True, source, False, input_mask, use_input_mask, go_backwards,
                  joint_inputs, dweights, dx, need_dx)


@njit(cache=True, error_model="numpy", parallel=True)
def lstm_forward(x, kernel, recurrent_kernel, bias, use_bias, h0, c0, mask, use_mask, input_mask, use_input_mask,
                 recurrent_mask, use_recurrent_mask, go_backwards, activation, recurrent_activation,
                 steps, gates, carries, cells, recurrent_inputs, y):
    """An LSTM over the whole sequence, its batch split into tasks over
    Numba's threads (see "Tasks" above).

    x: (B, T, F); kernel: (F, 4U); recurrent_kernel: (U, 4U); bias: (4U,)
    (read when ``use_bias``); h0, c0: (B, U) initial states; mask: (B, T);
    input_mask: (B, F); recurrent_mask: (B, U) (each read only when its
    ``use_`` flag is set). State, laid out task by task: steps (T, B, F),
    gates (T, B, 4U) (the activated gates i, f, c, o), carries and cells
    (T + 1, B, U) (h_t and c_t, index 0 the initial state; read the final
    states with ``final_state``), recurrent_inputs (T, B, U) (see the
    module doc). Output y: (B, T, U) for the sequence or (B, 1, U) for the
    last output.
    """
    batch = x.shape[0]
    tasks = _task_count(batch)
    for task in prange(tasks):
        first, last = _task_rows(batch, tasks, task)
        _lstm_forward_task(
            x[first:last], kernel, recurrent_kernel, bias, use_bias, h0[first:last], c0[first:last],
            mask[first:last], use_mask, input_mask[first:last], use_input_mask, recurrent_mask[first:last],
            use_recurrent_mask, go_backwards, activation, recurrent_activation, _task_block(steps, first, last),
            _task_block(gates, first, last), _task_block(carries, first, last), _task_block(cells, first, last),
            _task_block(recurrent_inputs, first, last), y[first:last],
        )


@njit(cache=True, error_model="numpy", parallel=True)
def lstm_backward(kernel, recurrent_kernel, use_bias, mask, use_mask, input_mask, use_input_mask, recurrent_mask,
                  use_recurrent_mask, go_backwards, activation, recurrent_activation, steps, gates, carries, cells,
                  recurrent_inputs, dy, dh_final, dc_final, use_state_grads, carry_grads, task_grads,
                  transposed_recurrent_kernel, joint_inputs, dkernel, drecurrent_kernel, dbias, dx, need_dx, dh0,
                  dc0, need_initial_grads):
    """Gradients of ``lstm_forward`` through time, from its state.

    dy: like ``y``; dh_final, dc_final: (B, U) gradients of the final states
    (read when ``use_state_grads``); carry_grads: (4, B, U) scratch, laid
    out task by task; task_grads: (tasks, (F + U + 1) * 4U) scratch for
    each task's weight gradients, which are then added in task order;
    transposed_recurrent_kernel: (4U, U) and joint_inputs: (F + U, T * B)
    scratch, the latter laid out task by task. Writes dkernel,
    drecurrent_kernel, dbias (when ``use_bias``), dx (B, T, F) when
    ``need_dx`` and dh0, dc0 when ``need_initial_grads``.
    Overwrites ``gates`` and ``steps``.
    """
    batch = dy.shape[0]
    tasks = _task_count(batch)
    _transpose_into(recurrent_kernel, transposed_recurrent_kernel)
    for task in prange(tasks):
        first, last = _task_rows(batch, tasks, task)
        task_dweights, task_dbias = _task_joint_grads(task_grads, task, dkernel, drecurrent_kernel, dbias)
        _lstm_backward_task(
            kernel, transposed_recurrent_kernel, use_bias, mask[first:last], use_mask, input_mask[first:last],
            use_input_mask, recurrent_mask[first:last], use_recurrent_mask, go_backwards, activation,
            recurrent_activation, _task_block(steps, first, last), _task_block(gates, first, last),
            _task_block(carries, first, last), _task_block(cells, first, last),
            _task_block(recurrent_inputs, first, last), _task_joint_inputs(joint_inputs, steps.shape[0], first, last),
            dy[first:last], dh_final[first:last], dc_final[first:last], use_state_grads,
            _task_block(carry_grads, first, last), task_dweights, task_dbias, dx[first:last], need_dx,
            dh0[first:last], dc0[first:last], need_initial_grads,
        )
    _sum_task_grads(task_grads, tasks, dkernel, drecurrent_kernel, dbias, use_bias)


@njit(cache=True, error_model="numpy", fastmath=_FMA)
def _gru_step(t, bias, use_bias, mask, use_mask, go_backwards, activation, recurrent_activation, fast,
              gates, carries, candidates, y):
    """Step ``t`` after its recurrent GEMMs (z and r added into ``gates[t]``,
    the candidate's into ``candidates[t]``): biases, gates z and r, the
    candidate, new state, output."""
    timesteps, batch, _ = gates.shape
    units = carries.shape[2]
    for b in range(batch):
        keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
        if keep:
            if use_bias:
                for k in range(2 * units):
                    gates[t, b, k] = _gate_act(gates[t, b, k] + bias[0, k] + bias[1, k], recurrent_activation, fast)
                for j in range(units):
                    candidates[t, b, j] += bias[1, 2 * units + j]
                    gates[t, b, 2 * units + j] += bias[0, 2 * units + j]
            else:
                for k in range(2 * units):
                    gates[t, b, k] = _gate_act(gates[t, b, k], recurrent_activation, fast)
            for j in range(units):
                hh, h = _gru_state(gates[t, b, j], gates[t, b, units + j], gates[t, b, 2 * units + j],
                                   candidates[t, b, j], carries[t, b, j], activation, fast)
                gates[t, b, 2 * units + j] = hh
                carries[t + 1, b, j] = h
        else:
            _carry_state(carries, b, t)
        _write_outputs(carries, keep, b, t, y)


@njit(cache=True, error_model="numpy")
def _gru_forward_task(x, kernel, recurrent_kernel, bias, use_bias, h0, mask, use_mask, input_mask, use_input_mask,
                      recurrent_mask, use_recurrent_mask, go_backwards, activation, recurrent_activation,
                      steps, gates, carries, candidates, recurrent_inputs, y):
    """``gru_forward`` for one task's rows, its state arrays time-major."""
    timesteps = steps.shape[0]
    fast = _fast_path(steps, activation, recurrent_activation)
    _begin_sequence(x, kernel, h0, input_mask, use_input_mask, go_backwards, steps, gates, carries)
    zero_start = _all_zero(h0)
    source = _recurrent_source(carries, recurrent_inputs, use_recurrent_mask)
    units = carries.shape[2]
    for t in range(timesteps):
        _recurrent_step_inputs(carries, recurrent_mask, use_recurrent_mask, t, recurrent_inputs)
        if t > 0 or not zero_start:
            _gemm(source[t], recurrent_kernel[:, :2 * units], gates[t, :, :2 * units], False, False, 1.0)
            _gemm(source[t], recurrent_kernel[:, 2 * units:], candidates[t])
        else:
            candidates[t] = 0.0
        if fast:
            _gru_step(t, bias, use_bias, mask, use_mask, go_backwards, activation, recurrent_activation, True,
                      gates, carries, candidates, y)
        else:
            _gru_step(t, bias, use_bias, mask, use_mask, go_backwards, activation, recurrent_activation, False,
                      gates, carries, candidates, y)


@njit(cache=True, error_model="numpy", fastmath=_FMA)
def _gru_step_grads(t, mask, use_mask, go_backwards, activation, recurrent_activation, gates, carries, candidates,
                    recurrent_grads, dy, dh, pending):
    """Step ``t``'s gate gradients: the input side's over ``gates[t]``, the
    recurrent side's in ``recurrent_grads[t]``; ``dh`` becomes the direct
    part of step ``t - 1``'s hidden gradient."""
    timesteps, batch, _ = gates.shape
    units = carries.shape[2]
    for b in range(batch):
        keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
        _add_output_grads(dy, keep, b, t, timesteps, pending, dh)
        if keep:
            for j in range(units):
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
            for k in range(3 * units):
                gates[t, b, k] = 0.0
                recurrent_grads[t, b, k] = 0.0


@njit(cache=True, error_model="numpy", fastmath=_FMA)
def _gru_step_grads_fast(t, mask, use_mask, go_backwards, gates, carries, candidates, recurrent_grads, dy, dh,
                         pending):
    """``_gru_step_grads`` for float32 with tanh and sigmoid (``_fast_path``),
    as one loop over views of each gate block indexed from 0, which LLVM
    vectorises (see ``_lstm_step_grads_fast``)."""
    timesteps, batch, _ = gates.shape
    units = carries.shape[2]
    one = np.float32(1.0)
    for b in range(batch):
        keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
        _add_output_grads(dy, keep, b, t, timesteps, pending, dh)
        row, recurrent_row = gates[t, b], recurrent_grads[t, b]
        if not keep:
            row[:] = 0.0
            recurrent_row[:] = 0.0
            continue
        gate_z, gate_r, gate_h = row[:units], row[units:2 * units], row[2 * units:]
        grad_z, grad_r, grad_h = recurrent_row[:units], recurrent_row[units:2 * units], recurrent_row[2 * units:]
        candidate, h_prev, dh_row = candidates[t, b], carries[t, b], dh[b]
        for j in range(units):
            z, r, hh, d = gate_z[j], gate_r[j], gate_h[j], dh_row[j]
            dz = d * (h_prev[j] - hh) * z * (one - z)
            dxh = d * (one - z) * (one - hh * hh)
            dr = dxh * candidate[j] * r * (one - r)
            gate_z[j], gate_r[j], gate_h[j] = dz, dr, dxh
            grad_z[j], grad_r[j], grad_h[j] = dz, dr, dxh * r
            dh_row[j] = d * z


@njit(cache=True, error_model="numpy")
def _gru_backward_task(kernel, transposed_recurrent_kernel, use_bias, mask, use_mask, input_mask, use_input_mask,
                       recurrent_mask, use_recurrent_mask, go_backwards, activation, recurrent_activation, steps,
                       gates, carries, candidates, recurrent_inputs, recurrent_grads, joint_inputs, dy, dh_final,
                       use_state_grads, carry_grads, dweights, dbias, dx, need_dx, dh0, need_initial_grads):
    """``gru_backward`` for one task's rows, into that task's weight
    gradients (``dweights`` as in ``_lstm_backward_task``)."""
    timesteps = steps.shape[0]
    dh, pending, through = carry_grads[0], carry_grads[1], carry_grads[2]
    _start_carry_grads(dh_final, use_state_grads, dh)
    pending[:, :] = 0.0
    fast = _fast_path(steps, activation, recurrent_activation)
    for t in range(timesteps - 1, -1, -1):
        if fast:
            _gru_step_grads_fast(t, mask, use_mask, go_backwards, gates, carries, candidates, recurrent_grads,
                                 dy, dh, pending)
        else:
            _gru_step_grads(t, mask, use_mask, go_backwards, activation, recurrent_activation, gates, carries,
                            candidates, recurrent_grads, dy, dh, pending)
        if t > 0 or need_initial_grads:
            _add_recurrent_grads(recurrent_grads[t], transposed_recurrent_kernel, recurrent_mask, use_recurrent_mask,
                                 through, dh)
    if need_initial_grads:
        dh0[:, :] = dh
    if use_bias:
        _column_sums(gates, dbias[0])
        _column_sums(recurrent_grads, dbias[1])
    source = _recurrent_source(carries, recurrent_inputs, use_recurrent_mask)
    _weight_grads(steps, kernel, gates, recurrent_grads, False, source, _all_zero(carries[0]), input_mask,
                  use_input_mask, go_backwards, joint_inputs, dweights, dx, need_dx)


@njit(cache=True, error_model="numpy", fastmath=_FMA)
def _simple_rnn_step(t, bias, use_bias, mask, use_mask, go_backwards, activation, fast, gates, carries, y):
    timesteps, batch, _ = gates.shape
    units = carries.shape[2]
    for b in range(batch):
        keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
        if keep:
            _activate_gates(t, b, 0, units, activation, fast, True, bias, use_bias, gates)
            for j in range(units):
                carries[t + 1, b, j] = gates[t, b, j]
        else:
            _carry_state(carries, b, t)
        _write_outputs(carries, keep, b, t, y)


@njit(cache=True, error_model="numpy")
def _simple_rnn_forward_task(x, kernel, recurrent_kernel, bias, use_bias, h0, mask, use_mask, input_mask,
                             use_input_mask, recurrent_mask, use_recurrent_mask, go_backwards, activation,
                             steps, gates, carries, recurrent_inputs, y):
    """``simple_rnn_forward`` for one task's rows, its state arrays time-major."""
    timesteps = steps.shape[0]
    fast = _fast_path(steps, activation, SIGMOID)
    _begin_sequence(x, kernel, h0, input_mask, use_input_mask, go_backwards, steps, gates, carries)
    zero_start = _all_zero(h0)
    source = _recurrent_source(carries, recurrent_inputs, use_recurrent_mask)
    for t in range(timesteps):
        _recurrent_step_inputs(carries, recurrent_mask, use_recurrent_mask, t, recurrent_inputs)
        if t > 0 or not zero_start:
            _gemm(source[t], recurrent_kernel, gates[t], False, False, 1.0)
        if fast:
            _simple_rnn_step(t, bias, use_bias, mask, use_mask, go_backwards, activation, True, gates, carries, y)
        else:
            _simple_rnn_step(t, bias, use_bias, mask, use_mask, go_backwards, activation, False, gates, carries, y)


@njit(cache=True, error_model="numpy")
def _simple_rnn_backward_task(kernel, transposed_recurrent_kernel, use_bias, mask, use_mask, input_mask, use_input_mask,
                              recurrent_mask, use_recurrent_mask, go_backwards, activation, steps, gates, carries,
                              recurrent_inputs, joint_inputs, dy, dh_final, use_state_grads, carry_grads,
                              dweights, dbias, dx, need_dx, dh0, need_initial_grads):
    """``simple_rnn_backward`` for one task's rows, into that task's weight
    gradients (``dweights`` as in ``_lstm_backward_task``)."""
    timesteps, batch, _ = steps.shape
    units = carries.shape[2]
    dh, pending, through = carry_grads[0], carry_grads[1], carry_grads[2]
    _start_carry_grads(dh_final, use_state_grads, dh)
    pending[:, :] = 0.0
    for t in range(timesteps - 1, -1, -1):
        for b in range(batch):
            keep = _keep(mask, use_mask, b, t, timesteps, go_backwards)
            _add_output_grads(dy, keep, b, t, timesteps, pending, dh)
            if keep:
                for j in range(units):
                    gates[t, b, j] = dh[b, j] * _grad_from_output(gates[t, b, j], activation)
                    dh[b, j] = 0.0
            else:
                for j in range(units):
                    gates[t, b, j] = 0.0
        if t > 0 or need_initial_grads:
            _add_recurrent_grads(gates[t], transposed_recurrent_kernel, recurrent_mask, use_recurrent_mask, through, dh)
    if need_initial_grads:
        dh0[:, :] = dh
    if use_bias:
        _column_sums(gates, dbias)
    source = _recurrent_source(carries, recurrent_inputs, use_recurrent_mask)
    _weight_grads(steps, kernel, gates, gates, True, source, False, input_mask, use_input_mask, go_backwards,
                  joint_inputs, dweights, dx, need_dx)


@njit(cache=True, error_model="numpy", parallel=True)
def gru_forward(x, kernel, recurrent_kernel, bias, use_bias, h0, mask, use_mask, input_mask, use_input_mask,
                recurrent_mask, use_recurrent_mask, go_backwards, activation, recurrent_activation,
                steps, gates, carries, candidates, recurrent_inputs, y):
    """A GRU (reset_after=True, Keras 3's default) over the whole sequence,
    in tasks as ``lstm_forward``.

    As ``lstm_forward`` with 3U gate columns (z, r, h) and no cell state;
    bias: (2, 3U), the input and the recurrent bias. State ``gates`` ends as
    the activated z, r and candidate; ``candidates`` (T, B, U) keeps each
    step's recurrent candidate projection (bias included), which the reset
    gate multiplies.
    """
    batch = x.shape[0]
    tasks = _task_count(batch)
    for task in prange(tasks):
        first, last = _task_rows(batch, tasks, task)
        _gru_forward_task(
            x[first:last], kernel, recurrent_kernel, bias, use_bias, h0[first:last], mask[first:last], use_mask,
            input_mask[first:last], use_input_mask, recurrent_mask[first:last], use_recurrent_mask, go_backwards,
            activation, recurrent_activation, _task_block(steps, first, last), _task_block(gates, first, last),
            _task_block(carries, first, last), _task_block(candidates, first, last),
            _task_block(recurrent_inputs, first, last), y[first:last],
        )


@njit(cache=True, error_model="numpy", parallel=True)
def gru_backward(kernel, recurrent_kernel, use_bias, mask, use_mask, input_mask, use_input_mask, recurrent_mask,
                 use_recurrent_mask, go_backwards, activation, recurrent_activation, steps, gates, carries,
                 candidates, recurrent_inputs, recurrent_grads, dy, dh_final, use_state_grads, carry_grads,
                 task_grads, transposed_recurrent_kernel, joint_inputs, dkernel, drecurrent_kernel, dbias, dx,
                 need_dx, dh0, need_initial_grads):
    """Gradients of ``gru_forward`` through time, from its state.

    recurrent_grads: (T, B, 3U) scratch for the recurrent side's gate
    gradients (they differ from the input side's in the candidate block,
    by the reset gate); carry_grads: (3, B, U) scratch; task_grads: (tasks,
    (F + U) * 3U + 6U), transposed_recurrent_kernel: (3U, U) and
    joint_inputs: (F + U, T * B) scratch; dbias: (2, 3U). Otherwise as
    ``lstm_backward``, without the cell state.
    """
    batch = dy.shape[0]
    tasks = _task_count(batch)
    _transpose_into(recurrent_kernel, transposed_recurrent_kernel)
    for task in prange(tasks):
        first, last = _task_rows(batch, tasks, task)
        task_dweights, task_dbias = _task_joint_grads(task_grads, task, dkernel, drecurrent_kernel, dbias)
        _gru_backward_task(
            kernel, transposed_recurrent_kernel, use_bias, mask[first:last], use_mask, input_mask[first:last],
            use_input_mask, recurrent_mask[first:last], use_recurrent_mask, go_backwards, activation,
            recurrent_activation, _task_block(steps, first, last), _task_block(gates, first, last),
            _task_block(carries, first, last), _task_block(candidates, first, last),
            _task_block(recurrent_inputs, first, last), _task_block(recurrent_grads, first, last),
            _task_joint_inputs(joint_inputs, steps.shape[0], first, last), dy[first:last], dh_final[first:last],
            use_state_grads, _task_block(carry_grads, first, last), task_dweights, task_dbias, dx[first:last],
            need_dx, dh0[first:last], need_initial_grads,
        )
    _sum_task_grads(task_grads, tasks, dkernel, drecurrent_kernel, dbias, use_bias)


@njit(cache=True, error_model="numpy", parallel=True)
def simple_rnn_forward(x, kernel, recurrent_kernel, bias, use_bias, h0, mask, use_mask, input_mask, use_input_mask,
                       recurrent_mask, use_recurrent_mask, go_backwards, activation,
                       steps, gates, carries, recurrent_inputs, y):
    """A fully connected RNN, ``h_t = act(x_t @ kernel + h_{t-1} @
    recurrent_kernel + bias)``, over the whole sequence; as ``lstm_forward``
    with U gate columns (``gates`` ends as each step's new hidden value)
    and no cell state."""
    batch = x.shape[0]
    tasks = _task_count(batch)
    for task in prange(tasks):
        first, last = _task_rows(batch, tasks, task)
        _simple_rnn_forward_task(
            x[first:last], kernel, recurrent_kernel, bias, use_bias, h0[first:last], mask[first:last], use_mask,
            input_mask[first:last], use_input_mask, recurrent_mask[first:last], use_recurrent_mask, go_backwards,
            activation, _task_block(steps, first, last), _task_block(gates, first, last),
            _task_block(carries, first, last), _task_block(recurrent_inputs, first, last), y[first:last],
        )


@njit(cache=True, error_model="numpy", parallel=True)
def simple_rnn_backward(kernel, recurrent_kernel, use_bias, mask, use_mask, input_mask, use_input_mask,
                        recurrent_mask, use_recurrent_mask, go_backwards, activation, steps, gates, carries,
                        recurrent_inputs, dy, dh_final, use_state_grads, carry_grads, task_grads,
                        transposed_recurrent_kernel, joint_inputs, dkernel, drecurrent_kernel, dbias, dx, need_dx,
                        dh0, need_initial_grads):
    """Gradients of ``simple_rnn_forward`` through time, from its state;
    carry_grads: (3, B, U) scratch; task_grads: (tasks, (F + U + 1) * U)
    and transposed_recurrent_kernel: (U, U) and joint_inputs: (F + U, T * B)
    scratch. Otherwise as ``lstm_backward``."""
    batch = dy.shape[0]
    tasks = _task_count(batch)
    _transpose_into(recurrent_kernel, transposed_recurrent_kernel)
    for task in prange(tasks):
        first, last = _task_rows(batch, tasks, task)
        task_dweights, task_dbias = _task_joint_grads(task_grads, task, dkernel, drecurrent_kernel, dbias)
        _simple_rnn_backward_task(
            kernel, transposed_recurrent_kernel, use_bias, mask[first:last], use_mask, input_mask[first:last],
            use_input_mask, recurrent_mask[first:last], use_recurrent_mask, go_backwards, activation,
            _task_block(steps, first, last), _task_block(gates, first, last), _task_block(carries, first, last),
            _task_block(recurrent_inputs, first, last), _task_joint_inputs(joint_inputs, steps.shape[0], first, last),
            dy[first:last], dh_final[first:last], use_state_grads, _task_block(carry_grads, first, last),
            task_dweights, task_dbias, dx[first:last], need_dx, dh0[first:last], need_initial_grads,
        )
    _sum_task_grads(task_grads, tasks, dkernel, drecurrent_kernel, dbias, use_bias)
