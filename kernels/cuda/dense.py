"""Dense layer kernels on the GPU: a tiled shared-memory GEMM with the bias
and activation fused into its epilogue, and the matching backward pass.

The GEMM computes a ``TILE x TILE`` block of the output per thread block:
``GEMM_THREADS x GEMM_THREADS`` threads, each accumulating a 4 x 4 grid of
outputs in 16 registers (written out by hand: a local array would live in
slow local memory), over slices of ``TILE_K`` columns of A and rows of B
staged through shared memory. A thread owns rows ``ty + GEMM_THREADS * r``
and columns ``tx + GEMM_THREADS * c``, so a warp's loads from shared memory
and stores to C touch consecutive columns.
Either operand may be read transposed (``x.T @ dz``, ``dz @ w.T``) without a
copy. Kernels are compiled per dtype: the accumulators and shared tiles use
the arrays' own float type, as BLAS does on the CPU.
"""

import math

import numba
import numpy as np
from numba import cuda

from nkeras.kernels.codes import LINEAR, RELU, SOFTMAX
from nkeras.kernels.cpu.activation import _act, _act_grad
from nkeras.kernels.cuda.activation import activation_backward, activation_forward

TILE = 64
TILE_K = 16
GEMM_THREADS = 16  # TILE // GEMM_THREADS == 4 outputs per thread and axis
# Bias/activation-gradient kernel: a block covers COLUMN_TILE columns with
# ROW_LANES threads walking down the rows of each.
COLUMN_TILE = 32
ROW_LANES = 8


@cuda.jit(device=True)
def _store(z, y, bias, use_bias, code, alpha, m, n, value):
    """The epilogue for one output: add the bias, write ``z`` and ``act(z)``."""
    rows, cols = z.shape
    if m < rows and n < cols:
        if use_bias:
            value += bias[n]
        z[m, n] = value
        y[m, n] = _act(value, code, alpha) if code != LINEAR else value


@cuda.jit(device=True, inline=True)
def _tile_position(load, contiguous_k):
    """(k, m) of element ``load`` of a TILE_K x TILE tile, numbered so that
    neighbouring threads read neighbouring addresses: along k when the
    operand is stored k-contiguous, along m otherwise."""
    if contiguous_k:
        return load % TILE_K, load // TILE_K
    return load // TILE, load % TILE


def _make_gemm(float_type):
    @cuda.jit
    def gemm(a, b, trans_a, trans_b, bias, use_bias, code, alpha, z, y):
        """``z = op(a) @ op(b) (+ bias)``, ``y = act(z)`` (``y`` may be ``z``)."""
        a_tile = cuda.shared.array((TILE_K, TILE), float_type)
        b_tile = cuda.shared.array((TILE_K, TILE), float_type)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row0 = cuda.blockIdx.y * TILE
        col0 = cuda.blockIdx.x * TILE
        rows, cols = z.shape
        depth = a.shape[0] if trans_a else a.shape[1]
        thread = ty * GEMM_THREADS + tx
        zero = float_type(0)
        c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = zero
        c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = zero
        for k0 in range(0, depth, TILE_K):
            for load in range(thread, TILE_K * TILE, GEMM_THREADS * GEMM_THREADS):
                kk, mm = _tile_position(load, not trans_a)
                k, m = k0 + kk, row0 + mm
                value = zero
                if k < depth and m < rows:
                    value = a[k, m] if trans_a else a[m, k]
                a_tile[kk, mm] = value
                kk, nn = _tile_position(load, trans_b)
                k, n = k0 + kk, col0 + nn
                value = zero
                if k < depth and n < cols:
                    value = b[n, k] if trans_b else b[k, n]
                b_tile[kk, nn] = value
            cuda.syncthreads()
            for kk in range(TILE_K):
                a0 = a_tile[kk, ty]
                a1 = a_tile[kk, ty + GEMM_THREADS]
                a2 = a_tile[kk, ty + 2 * GEMM_THREADS]
                a3 = a_tile[kk, ty + 3 * GEMM_THREADS]
                b0 = b_tile[kk, tx]
                b1 = b_tile[kk, tx + GEMM_THREADS]
                b2 = b_tile[kk, tx + 2 * GEMM_THREADS]
                b3 = b_tile[kk, tx + 3 * GEMM_THREADS]
                c00 += a0 * b0
                c01 += a0 * b1
                c02 += a0 * b2
                c03 += a0 * b3
                c10 += a1 * b0
                c11 += a1 * b1
                c12 += a1 * b2
                c13 += a1 * b3
                c20 += a2 * b0
                c21 += a2 * b1
                c22 += a2 * b2
                c23 += a2 * b3
                c30 += a3 * b0
                c31 += a3 * b1
                c32 += a3 * b2
                c33 += a3 * b3
            cuda.syncthreads()
        m0, n0 = row0 + ty, col0 + tx
        step = GEMM_THREADS
        _store(z, y, bias, use_bias, code, alpha, m0, n0, c00)
        _store(z, y, bias, use_bias, code, alpha, m0, n0 + step, c01)
        _store(z, y, bias, use_bias, code, alpha, m0, n0 + 2 * step, c02)
        _store(z, y, bias, use_bias, code, alpha, m0, n0 + 3 * step, c03)
        _store(z, y, bias, use_bias, code, alpha, m0 + step, n0, c10)
        _store(z, y, bias, use_bias, code, alpha, m0 + step, n0 + step, c11)
        _store(z, y, bias, use_bias, code, alpha, m0 + step, n0 + 2 * step, c12)
        _store(z, y, bias, use_bias, code, alpha, m0 + step, n0 + 3 * step, c13)
        _store(z, y, bias, use_bias, code, alpha, m0 + 2 * step, n0, c20)
        _store(z, y, bias, use_bias, code, alpha, m0 + 2 * step, n0 + step, c21)
        _store(z, y, bias, use_bias, code, alpha, m0 + 2 * step, n0 + 2 * step, c22)
        _store(z, y, bias, use_bias, code, alpha, m0 + 2 * step, n0 + 3 * step, c23)
        _store(z, y, bias, use_bias, code, alpha, m0 + 3 * step, n0, c30)
        _store(z, y, bias, use_bias, code, alpha, m0 + 3 * step, n0 + step, c31)
        _store(z, y, bias, use_bias, code, alpha, m0 + 3 * step, n0 + 2 * step, c32)
        _store(z, y, bias, use_bias, code, alpha, m0 + 3 * step, n0 + 3 * step, c33)

    return gemm


@cuda.jit(cache=True)
def _grad_and_bias(z, y, dy, code, alpha, dz, db):
    """``dz = dy * act'(z)`` (``dz`` may be ``dy``; for softmax ``dz`` is
    already written and only read) and ``db = sum(dz, rows)``."""
    partial = cuda.shared.array((ROW_LANES, COLUMN_TILE), numba.float64)
    lane = cuda.threadIdx.y
    column = cuda.threadIdx.x
    j = cuda.blockIdx.x * COLUMN_TILE + column
    rows, cols = dy.shape
    total = 0.0
    if j < cols:
        for i in range(lane, rows, ROW_LANES):
            if code == SOFTMAX:
                value = dz[i, j]
            elif code == RELU:
                value = dy[i, j] if y[i, j] > 0 else 0.0
                dz[i, j] = value
            elif code == LINEAR:
                value = dy[i, j]
                dz[i, j] = value
            else:
                value = dy[i, j] * _act_grad(z[i, j], y[i, j], code, alpha)
                dz[i, j] = value
            total += value
    partial[lane, column] = total
    cuda.syncthreads()
    if lane == 0 and j < cols:
        for other in range(1, ROW_LANES):
            total += partial[other, column]
        db[j] = total


_GEMMS = {}


def _gemm(dtype):
    kernel = _GEMMS.get(dtype)
    if kernel is None:
        kernel = _GEMMS[dtype] = _make_gemm(numba.from_dtype(dtype))
    return kernel


def _launch_gemm(a, b, trans_a, trans_b, bias, use_bias, code, alpha, z, y):
    rows, cols = z.shape
    grid = (math.ceil(cols / TILE) or 1, math.ceil(rows / TILE) or 1)
    _gemm(np.dtype(z.dtype))[grid, (GEMM_THREADS, GEMM_THREADS)](
        a, b, trans_a, trans_b, bias, use_bias, code, z.dtype.type(alpha), z, y
    )


def dense_forward(x, w, b, code, alpha, z, y):
    """``z = x @ w + b`` and ``y = act(z)``, as the CPU twin.

    x: (rows, in), w: (in, units), b: (units,); z, y: (rows, units) outputs.
    ``z`` may be the same array as ``y`` when the activation is linear.
    """
    if code == SOFTMAX:
        _launch_gemm(x, w, False, False, b, True, LINEAR, alpha, z, z)
        activation_forward(z, SOFTMAX, alpha, y)
    else:
        _launch_gemm(x, w, False, False, b, True, code, alpha, z, y)


def dense_backward(x, w, z, y, dy, code, alpha, dz, dw, db, dx, need_dx):
    """Gradients of ``y = act(x @ w + b)``, as the CPU twin: ``dz``, ``dw =
    x.T @ dz``, ``db = sum(dz, rows)`` and, when ``need_dx``, ``dx = dz @ w.T``."""
    if code == SOFTMAX:
        activation_backward(z, y, dy, SOFTMAX, alpha, dz)
    units = dy.shape[1]
    _grad_and_bias[math.ceil(units / COLUMN_TILE) or 1, (COLUMN_TILE, ROW_LANES)](
        z, y, dy, code, dz.dtype.type(alpha), dz, db
    )
    _launch_gemm(x, dz, True, False, db, False, LINEAR, alpha, dw, dw)
    if need_dx:
        _launch_gemm(dz, w, False, True, db, False, LINEAR, alpha, dx, dx)
