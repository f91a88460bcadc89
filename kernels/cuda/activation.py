"""Activation kernels on the GPU: elementwise codes with one thread per
element, softmax with one thread per row.

Softmax rows are a model's classes, short in practice, so a thread walks its
row with the CPU twin's row helper instead of a block reducing it.
"""

from numba import cuda

from nkeras.kernels.codes import SOFTMAX
from nkeras.kernels.cpu.activation import _act, _act_grad, _softmax_grad_row, _softmax_row
from nkeras.kernels.cuda.launch import THREADS, blocks

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
