"""Dense layer kernels: GEMM on BLAS with bias and activation fused into the
epilogue, and the matching backward pass."""

import numpy as np
from numba import njit

from nkeras.kernels.codes import LINEAR, RELU, SOFTMAX
from nkeras.kernels.cpu.activation import _act, _act_grad, _softmax_row


@njit(cache=True, error_model="numpy")
def dense_forward(x, w, b, code, alpha, z, y):
    """``z = x @ w + b`` and ``y = act(z)``.

    x: (rows, in), w: (in, units), b: (units,); z, y: (rows, units) outputs.
    ``z`` may be the same array as ``y`` when the activation is linear.
    """
    np.dot(x, w, z)
    rows, units = z.shape
    # One loop per common code: a code test inside the loop stops it vectorising.
    # When z and y are one array, loops through one name vectorise; through
    # two they fall back to scalar code (LLVM must assume a partial overlap).
    if z.ctypes.data == y.ctypes.data and code == LINEAR:
        for i in range(rows):
            for j in range(units):
                y[i, j] += b[j]
    elif z.ctypes.data == y.ctypes.data and code == RELU:
        for i in range(rows):
            for j in range(units):
                y[i, j] = max(y[i, j] + b[j], 0.0)
    elif code == LINEAR:
        for i in range(rows):
            for j in range(units):
                v = z[i, j] + b[j]
                z[i, j] = v
                y[i, j] = v
    elif code == RELU:
        for i in range(rows):
            for j in range(units):
                v = z[i, j] + b[j]
                z[i, j] = v
                y[i, j] = max(v, 0.0)
    elif code == SOFTMAX:
        for i in range(rows):
            for j in range(units):
                z[i, j] += b[j]
            _softmax_row(z, y, i)
    else:
        for i in range(rows):
            for j in range(units):
                v = z[i, j] + b[j]
                z[i, j] = v
                y[i, j] = _act(v, code, alpha)


@njit(cache=True, error_model="numpy")
def dense_backward(x, w, z, y, dy, code, alpha, dz, dw, db, dx, need_dx):
    """Gradients of ``y = act(x @ w + b)``.

    Writes ``dz = dy * act'(z)``, ``dw = x.T @ dz``, ``db = sum(dz, rows)``
    and, when ``need_dx``, ``dx = dz @ w.T``. ``dz`` may be ``dy`` itself
    when the activation is linear.
    """
    rows, units = dy.shape
    in_place = dz.ctypes.data == dy.ctypes.data  # one name per array: see dense_forward
    if code == LINEAR and in_place:
        pass
    elif code == LINEAR:
        for i in range(rows):
            for j in range(units):
                dz[i, j] = dy[i, j]
    elif code == RELU and in_place:
        for i in range(rows):
            for j in range(units):
                if y[i, j] <= 0.0:
                    dz[i, j] = 0.0
    elif code == RELU:
        for i in range(rows):
            for j in range(units):
                dz[i, j] = dy[i, j] if y[i, j] > 0.0 else 0.0
    elif code == SOFTMAX:
        for i in range(rows):
            dot = 0.0
            for j in range(units):
                dot += dy[i, j] * y[i, j]
            for j in range(units):
                dz[i, j] = y[i, j] * (dy[i, j] - dot)
    else:
        for i in range(rows):
            for j in range(units):
                dz[i, j] = dy[i, j] * _act_grad(z[i, j], y[i, j], code, alpha)
    for j in range(units):
        db[j] = 0.0
    for i in range(rows):
        for j in range(units):
            db[j] += dz[i, j]
    np.dot(x.T, dz, dw)
    if need_dx:
        np.dot(dz, w.T, dx)
