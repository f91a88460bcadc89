"""Activation kernels: elementwise activations and softmax over the last axis.

``_act`` and ``_act_grad`` are the scalar forms other kernels inline into
their loops (the dense kernel fuses them into its GEMM epilogue). They cover
the elementwise codes; softmax needs a whole row and is handled by the
callers. Softmax sums accumulate in float64.

PReLU has a learned ``alpha`` per element (or per shared group) and its own
pair of ops.
"""

import math

import numpy as np
from numba import njit

from nkeras.kernels.codes import (
    ELU,
    GELU,
    GELU_TANH,
    LEAKY_RELU,
    LINEAR,
    RELU,
    SELU,
    SIGMOID,
    SILU,
    SOFTMAX,
    SOFTPLUS,
    TANH,
)

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
_SQRT_2_OVER_PI = 0.7978845608028654
_GELU_CUBIC = 0.044715


@njit(cache=True, error_model="numpy", inline="always")
def _sigmoid(z):
    e = math.exp(-abs(z))
    r = 1.0 / (1.0 + e)
    return r if z >= 0.0 else e * r


@njit(cache=True, error_model="numpy", inline="always")
def _softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


@njit(cache=True, error_model="numpy", inline="always")
def _tanh(z):
    # From exp (libm's tanh is ~3x slower here); expm1 near 0 keeps the
    # relative precision that (1 - e) / (1 + e) loses there.
    a = abs(z)
    if a < 0.125:
        e = math.expm1(-2.0 * a)
        t = -e / (2.0 + e)
    else:
        e = math.exp(-2.0 * a)
        t = (1.0 - e) / (1.0 + e)
    return t if z >= 0.0 else -t


@njit(cache=True, error_model="numpy", inline="always")
def _act(z, code, alpha):
    """``act(z)`` for an elementwise activation ``code``; ``alpha`` is
    leaky_relu's negative slope or elu's alpha. LINEAR (and any code without
    an elementwise form) returns ``z``."""
    if code == RELU:
        return max(z, 0.0)
    if code == SIGMOID:
        return _sigmoid(z)
    if code == TANH:
        return _tanh(z)
    if code == GELU:
        return 0.5 * z * (1.0 + math.erf(z * _SQRT_HALF))
    if code == GELU_TANH:
        # 0.5 * (1 + tanh(u)) == sigmoid(2u), without the cancellation near -1.
        return z * _sigmoid(2.0 * _SQRT_2_OVER_PI * (z + _GELU_CUBIC * z * z * z))
    if code == ELU:
        return z if z > 0.0 else alpha * math.expm1(z)
    if code == SELU:
        return _SELU_SCALE * (z if z > 0.0 else _SELU_ALPHA * math.expm1(z))
    if code == LEAKY_RELU:
        return z if z > 0.0 else alpha * z
    if code == SILU:
        return z * _sigmoid(z)
    if code == SOFTPLUS:
        return _softplus(z)
    return z


@njit(cache=True, error_model="numpy", inline="always")
def _act_grad(z, y, code, alpha):
    """``d act(z) / dz`` given the pre-activation ``z`` and the output
    ``y = act(z)`` (sigmoid and tanh use ``y``, the others ``z``)."""
    if code == RELU:
        return 1.0 if z > 0.0 else 0.0
    if code == SIGMOID:
        return y * (1.0 - y)
    if code == TANH:
        return 1.0 - y * y
    if code == GELU:
        return 0.5 * (1.0 + math.erf(z * _SQRT_HALF)) + z * _INV_SQRT_2PI * math.exp(-0.5 * z * z)
    if code == GELU_TANH:
        s = _sigmoid(2.0 * _SQRT_2_OVER_PI * (z + _GELU_CUBIC * z * z * z))
        return s + 2.0 * z * s * (1.0 - s) * _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * z * z)
    if code == ELU:
        return 1.0 if z > 0.0 else alpha * math.exp(z)
    if code == SELU:
        return _SELU_SCALE if z > 0.0 else _SELU_SCALE * _SELU_ALPHA * math.exp(z)
    if code == LEAKY_RELU:
        return 1.0 if z > 0.0 else alpha
    if code == SILU:
        s = _sigmoid(z)
        return s * (1.0 + z * (1.0 - s))
    if code == SOFTPLUS:
        return _sigmoid(z)
    return 1.0


@njit(cache=True, error_model="numpy", inline="always")
def _softmax_row(x, y, i):
    cols = x.shape[1]
    peak = x[i, 0]
    for j in range(1, cols):
        peak = max(peak, x[i, j])
    total = 0.0
    for j in range(cols):
        e = math.exp(x[i, j] - peak)
        y[i, j] = e
        total += e
    inv = 1.0 / total
    for j in range(cols):
        y[i, j] *= inv


@njit(cache=True, error_model="numpy", inline="always")
def _softmax_grad_row(y, dy, dx, i):
    cols = y.shape[1]
    dot = 0.0
    for j in range(cols):
        dot += dy[i, j] * y[i, j]
    for j in range(cols):
        dx[i, j] = y[i, j] * (dy[i, j] - dot)


@njit(cache=True, error_model="numpy", inline="always")
def _map_forward(x, code, alpha, y):
    rows, cols = x.shape
    for i in range(rows):
        for j in range(cols):
            y[i, j] = _act(x[i, j], code, alpha)


@njit(cache=True, error_model="numpy", inline="always")
def _map_backward(x, y, dy, code, alpha, dx):
    rows, cols = x.shape
    for i in range(rows):
        for j in range(cols):
            dx[i, j] = dy[i, j] * _act_grad(x[i, j], y[i, j], code, alpha)


@njit(cache=True, error_model="numpy")
def activation_forward(x, code, alpha, y):
    """``y = act(x)``; softmax works over the last axis.

    x, y: (rows, cols), C-contiguous, same dtype; ``y`` may be ``x``.
    code: an activation code from ``nkeras.kernels.codes``; alpha: its
    parameter (leaky_relu's negative slope, elu's alpha), else ignored.
    """
    # One loop per code, each with a constant code, so that the compiler
    # drops the per-element dispatch (relu runs ~10x faster this way).
    # Serial on purpose: parallel=True gained ~2x on two idle cores but cost
    # milliseconds per call whenever the cores were busy (OpenMP waits).
    if code == SOFTMAX:
        for i in range(x.shape[0]):
            _softmax_row(x, y, i)
    elif code == RELU:
        _map_forward(x, RELU, alpha, y)
    elif code == SIGMOID:
        _map_forward(x, SIGMOID, alpha, y)
    elif code == TANH:
        _map_forward(x, TANH, alpha, y)
    elif code == GELU:
        _map_forward(x, GELU, alpha, y)
    elif code == GELU_TANH:
        _map_forward(x, GELU_TANH, alpha, y)
    elif code == ELU:
        _map_forward(x, ELU, alpha, y)
    elif code == SELU:
        _map_forward(x, SELU, alpha, y)
    elif code == LEAKY_RELU:
        _map_forward(x, LEAKY_RELU, alpha, y)
    elif code == SILU:
        _map_forward(x, SILU, alpha, y)
    elif code == SOFTPLUS:
        _map_forward(x, SOFTPLUS, alpha, y)
    else:
        _map_forward(x, LINEAR, alpha, y)


@njit(cache=True, error_model="numpy")
def activation_backward(x, y, dy, code, alpha, dx):
    """``dx = dy * act'(x)``; for softmax ``dx = y * (dy - sum(dy * y, row))``.

    x: the pre-activation, y: the forward output, dy: the gradient of the
    output; dx: (rows, cols) output, which may be ``dy`` itself.
    """
    if code == SOFTMAX:
        for i in range(x.shape[0]):
            _softmax_grad_row(y, dy, dx, i)
    elif code == RELU:
        _map_backward(x, y, dy, RELU, alpha, dx)
    elif code == SIGMOID:
        _map_backward(x, y, dy, SIGMOID, alpha, dx)
    elif code == TANH:
        _map_backward(x, y, dy, TANH, alpha, dx)
    elif code == GELU:
        _map_backward(x, y, dy, GELU, alpha, dx)
    elif code == GELU_TANH:
        _map_backward(x, y, dy, GELU_TANH, alpha, dx)
    elif code == ELU:
        _map_backward(x, y, dy, ELU, alpha, dx)
    elif code == SELU:
        _map_backward(x, y, dy, SELU, alpha, dx)
    elif code == LEAKY_RELU:
        _map_backward(x, y, dy, LEAKY_RELU, alpha, dx)
    elif code == SILU:
        _map_backward(x, y, dy, SILU, alpha, dx)
    elif code == SOFTPLUS:
        _map_backward(x, y, dy, SOFTPLUS, alpha, dx)
    else:
        _map_backward(x, y, dy, LINEAR, alpha, dx)


@njit(cache=True, error_model="numpy", inline="always")
def _prelu(x, alpha):
    return x if x > 0.0 else alpha * x


@njit(cache=True, error_model="numpy", inline="always")
def _prelu_grads(x, alpha, dy):
    """``(dy * d y / d alpha, dy * d y / d x)`` at ``x``."""
    return dy * min(x, 0.0), dy if x > 0.0 else alpha * dy


@njit(cache=True, error_model="numpy", inline="always")
def _alpha_index(index, repeat, period):
    """The alpha row (or column) that input row (or column) ``index`` uses."""
    return (index // repeat) % period


@njit(cache=True, error_model="numpy")
def prelu_forward(x, alpha, row_repeat, col_repeat, y):
    """``y = x`` where ``x > 0``, else ``alpha * x``, with ``alpha`` broadcast.

    x, y: (rows, cols); alpha: (alpha_rows, alpha_cols). Element ``(i, j)``
    uses ``alpha[(i // row_repeat) % alpha_rows, (j // col_repeat) % alpha_cols]``,
    which covers Keras's ``shared_axes`` once the caller folds the axes
    into rows and columns.
    """
    rows, cols = x.shape
    alpha_rows, alpha_cols = alpha.shape
    for i in range(rows):
        a_i = _alpha_index(i, row_repeat, alpha_rows)
        if alpha_cols == cols:
            for j in range(cols):
                y[i, j] = _prelu(x[i, j], alpha[a_i, j])
            continue
        # Otherwise a row is runs of col_repeat columns, one alpha each.
        for start in range(0, cols, alpha_cols * col_repeat):
            for a_j in range(alpha_cols):
                a = alpha[a_i, a_j]
                first = start + a_j * col_repeat
                for j in range(first, first + col_repeat):
                    y[i, j] = _prelu(x[i, j], a)


@njit(cache=True, error_model="numpy")
def prelu_backward(x, alpha, dy, row_repeat, col_repeat, dalpha, dx, need_dx):
    """Gradients of ``prelu_forward``: ``dalpha`` sums ``dy * min(x, 0)`` over
    the elements sharing each alpha (in float64) and, when ``need_dx``,
    ``dx = dy`` where ``x > 0``, else ``alpha * dy``. ``dx`` may be ``dy``."""
    rows, cols = x.shape
    alpha_rows, alpha_cols = alpha.shape
    sums = np.zeros((alpha_rows, alpha_cols), np.float64)
    for i in range(rows):
        a_i = _alpha_index(i, row_repeat, alpha_rows)
        if alpha_cols == cols:
            for j in range(cols):
                d_alpha, d_x = _prelu_grads(x[i, j], alpha[a_i, j], dy[i, j])
                sums[a_i, j] += d_alpha
                if need_dx:
                    dx[i, j] = d_x
            continue
        for start in range(0, cols, alpha_cols * col_repeat):
            for a_j in range(alpha_cols):
                a = alpha[a_i, a_j]
                first = start + a_j * col_repeat
                total = 0.0
                for j in range(first, first + col_repeat):
                    d_alpha, d_x = _prelu_grads(x[i, j], a, dy[i, j])
                    total += d_alpha
                    if need_dx:
                        dx[i, j] = d_x
                sums[a_i, a_j] += total
    for a_i in range(alpha_rows):
        for a_j in range(alpha_cols):
            dalpha[a_i, a_j] = sums[a_i, a_j]
