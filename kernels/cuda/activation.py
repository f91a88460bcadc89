"""Activation kernels on the GPU: elementwise codes with one thread per
element, softmax with one thread per row.

Softmax rows are a model's classes, short in practice, so a thread walks its
row with the CPU twin's row helper instead of a block reducing it. PReLU's
alpha gradient sums each alpha's inputs as the normalisation kernels sum a
channel: a block per tile of alpha elements, lanes down their inputs,
float64 partial sums added in a fixed tree order.
"""

import math

import numba
from numba import cuda

from nkeras.kernels.codes import SOFTMAX
from nkeras.kernels.cpu.activation import (
    _act,
    _act_grad,
    _alpha_index,
    _prelu,
    _prelu_grads,
    _softmax_grad_row,
    _softmax_row,
)
from nkeras.kernels.cuda.launch import THREADS, blocks
from nkeras.kernels.cuda.norm import COLUMN_TILE, ROW_LANES, _sum_lanes

# The row helpers take arrays, which a CPU-compiled helper cannot receive from
# a kernel on numba's CUDA simulator: build device functions from their source.
_softmax_row_device = cuda.jit(device=True)(_softmax_row.py_func)
_softmax_grad_row_device = cuda.jit(device=True)(_softmax_grad_row.py_func)


@cuda.jit(cache=True)
def _forward(x, code, alpha, y):
    cols = x.shape[1]
    for k in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        y[i, j] = _act(x[i, j], code, alpha)


@cuda.jit(cache=True)
def _backward(x, y, dy, code, alpha, dx):
    cols = x.shape[1]
    for k in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        dx[i, j] = dy[i, j] * _act_grad(x[i, j], y[i, j], code, alpha)


@cuda.jit(cache=True)
def _softmax_forward(x, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        _softmax_row_device(x, y, i)


@cuda.jit(cache=True)
def _softmax_backward(y, dy, dx):
    for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        _softmax_grad_row_device(y, dy, dx, i)


def activation_forward(x, code, alpha, y):
    """``y = act(x)``, softmax over the last axis, as the CPU twin.

    x, y: (rows, cols) device arrays of one dtype; ``y`` may be ``x``.
    """
    if code == SOFTMAX:
        _softmax_forward[blocks(x.shape[0]), THREADS](x, y)
    else:
        _forward[blocks(x.size), THREADS](x, int(code), float(alpha), y)


def activation_backward(x, y, dy, code, alpha, dx):
    """``dx = dy * act'(x)``; for softmax ``dx = y * (dy - sum(dy * y, row))``.
    ``dx`` may be ``dy``."""
    if code == SOFTMAX:
        _softmax_backward[blocks(x.shape[0]), THREADS](y, dy, dx)
    else:
        _backward[blocks(x.size), THREADS](x, y, dy, int(code), float(alpha), dx)


@cuda.jit(device=True, inline=True)
def _alpha_member(t, owner, repeat, period):
    """The ``t``-th input row (or column) that uses alpha row (or column)
    ``owner``: the inverse of ``_alpha_index``."""
    return ((t // repeat) * period + owner) * repeat + t % repeat


@cuda.jit(cache=True)
def _prelu_forward(x, alpha, row_repeat, col_repeat, y):
    cols = x.shape[1]
    alpha_rows, alpha_cols = alpha.shape
    for k in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        a = alpha[_alpha_index(i, row_repeat, alpha_rows), _alpha_index(j, col_repeat, alpha_cols)]
        y[i, j] = _prelu(x[i, j], a)


@cuda.jit(cache=True)
def _prelu_input_grad(x, alpha, dy, row_repeat, col_repeat, dx):
    cols = x.shape[1]
    alpha_rows, alpha_cols = alpha.shape
    for k in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        a = alpha[_alpha_index(i, row_repeat, alpha_rows), _alpha_index(j, col_repeat, alpha_cols)]
        dx[i, j] = _prelu_grads(x[i, j], a, dy[i, j])[1]


@cuda.jit(cache=True)
def _prelu_alpha_grad(x, dy, row_repeat, col_repeat, dalpha):
    """A block per tile of ``COLUMN_TILE`` alpha elements, ``ROW_LANES``
    threads summing ``dy * min(x, 0)`` over the inputs that share each."""
    partial = cuda.shared.array((ROW_LANES, COLUMN_TILE), numba.float64)
    slot = cuda.threadIdx.x
    lane = cuda.threadIdx.y
    owner = cuda.blockIdx.x * COLUMN_TILE + slot
    rows, cols = x.shape
    alpha_rows, alpha_cols = dalpha.shape
    member_cols = cols // alpha_cols
    a_i = owner // alpha_cols
    a_j = owner - a_i * alpha_cols
    total = 0.0
    if owner < dalpha.size:
        for t in range(lane, (rows // alpha_rows) * member_cols, ROW_LANES):
            t_i = t // member_cols
            i = _alpha_member(t_i, a_i, row_repeat, alpha_rows)
            j = _alpha_member(t - t_i * member_cols, a_j, col_repeat, alpha_cols)
            total += _prelu_grads(x[i, j], 0.0, dy[i, j])[0]
    partial[lane, slot] = total
    _sum_lanes(partial, lane, slot, ROW_LANES)
    if lane == 0 and owner < dalpha.size:
        dalpha[a_i, a_j] = partial[0, slot]


def prelu_forward(x, alpha, row_repeat, col_repeat, y):
    """``y = x`` where ``x > 0``, else ``alpha * x``, alpha broadcast as in the CPU twin."""
    _prelu_forward[blocks(x.size), THREADS](x, alpha, int(row_repeat), int(col_repeat), y)


def prelu_backward(x, alpha, dy, row_repeat, col_repeat, dalpha, dx, need_dx):
    """Gradients of ``prelu_forward``, as the CPU twin."""
    _prelu_alpha_grad[math.ceil(dalpha.size / COLUMN_TILE), (COLUMN_TILE, ROW_LANES)](
        x, dy, int(row_repeat), int(col_repeat), dalpha
    )
    if need_dx:
        _prelu_input_grad[blocks(x.size), THREADS](x, alpha, dy, int(row_repeat), int(col_repeat), dx)
