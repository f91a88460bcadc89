"""The first convolution and 2x2 max pooling of a grayscale image as one
kernel each way on the GPU, twins of ``nkeras.kernels.cpu.conv_pool``
(shapes and arguments as there).

Forward: one thread per pooled output, computing its window's four
convolution outputs. Backward: one block per filter, whose threads stride
over the pooled outputs and add, for each of the nine taps and the bias,
the gradient of the window's maximum times the input under that tap; float64
tree sums in shared memory write them, so there are no atomics.
"""

import numba
from numba import cuda

from nkeras.kernels.cuda.launch import THREADS, blocks
from nkeras.kernels.cuda.loss import _block_sums
from nkeras.kernels.cuda.pool import _nhwc_index


@cuda.jit(device=True, inline=True)
def _image_value(x, image, iy, ix):
    if 0 <= iy < x.shape[1] and 0 <= ix < x.shape[2]:
        return x[image, iy, ix, 0]
    return 0.0


@cuda.jit(device=True, inline=True)
def _window_output(x, w, bias, image, top, left, f):
    """One convolution output: the 3x3 taps from (top, left)."""
    total = bias[f]
    for ky in range(3):
        for kx in range(3):
            total += _image_value(x, image, top + ky, left + kx) * w[ky, kx, 0, f]
    return total


@cuda.jit(cache=True)
def _forward(x, w, b, top, left, rectify, y, argmax):
    _, out_rows, out_cols, filters = y.shape
    for k in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        image, i, j, f = _nhwc_index(k, out_rows, out_cols, filters)
        best = _window_output(x, w, b, image, 2 * i - top, 2 * j - left, f)
        where = 0
        for q in range(1, 4):
            value = _window_output(x, w, b, image, 2 * i - top + q // 2, 2 * j - left + q % 2, f)
            if value > best:
                best, where = value, q
        y[image, i, j, f] = max(best, 0.0) if rectify else best
        argmax[image, i, j, f] = where


@cuda.jit(cache=True)
def _backward(x, y, dy, argmax, top, left, rectify, dw, db):
    _, out_rows, out_cols, filters = y.shape
    f = cuda.blockIdx.x
    thread = cuda.threadIdx.x
    # Rows 0-8: the kernel taps' partial sums; row 9: the bias's.
    partial = cuda.shared.array((10, THREADS), numba.float64)
    for tap in range(10):
        partial[tap, thread] = 0.0
    for p in range(thread, y.size // filters, THREADS):
        image, i, j, _ = _nhwc_index(p * filters + f, out_rows, out_cols, filters)
        g = dy[image, i, j, f]
        if rectify and not y[image, i, j, f] > 0.0:
            g = 0.0
        where = int(argmax[image, i, j, f])
        top_row = 2 * i - top + where // 2
        left_col = 2 * j - left + where % 2
        for tap in range(9):
            partial[tap, thread] += g * _image_value(x, image, top_row + tap // 3, left_col + tap % 3)
        partial[9, thread] += g
    _block_sums(partial)
    if thread == 0:
        for tap in range(9):
            dw[tap // 3, tap % 3, 0, f] = partial[tap, 0]
        db[f] = partial[9, 0]


def conv2d_max_pool_forward(x, w, b, padding, rectify, y, argmax):
    """``y = max_pool_2x2(act(conv3x3(x, w) + b))``, as the CPU twin."""
    _forward[blocks(y.size), THREADS](x, w, b, padding[0], padding[1], bool(rectify), y, argmax)


def conv2d_max_pool_backward(x, y, dy, argmax, padding, rectify, dw, db):
    """Kernel and bias gradients of ``conv2d_max_pool_forward``, as the CPU twin."""
    _backward[y.shape[3], THREADS](x, y, dy, argmax, padding[0], padding[1], bool(rectify), dw, db)
