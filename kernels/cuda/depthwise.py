"""Depthwise 2-D convolution on the GPU, twins of ``kernels/cpu/depthwise.py``
(the same NHWC layouts and arguments).

- forward: one thread per output element sums its taps, adds the bias and
  applies the activation; softmax runs as a row kernel afterwards, as in
  the dense twin;
- backward: ``dz`` by the activation kernel over 2-D views (a linear
  activation uses ``dy`` as it is); then one kernel writes the kernel and
  bias gradients: each gradient entry (tap, output channel), and one extra
  "tap" per channel for the bias, gets a column of ``POSITION_LANES``
  threads walking the (batch, row, col) positions with float64 partial
  sums, added in shared memory in a fixed order (deterministic, no
  atomics); a block holds ``ENTRY_TILE`` columns.
  ``dx``: one thread per input element gathers over the taps that read it,
  so no two threads write the same element.
"""

import math

import numba
from numba import cuda

from nkeras.kernels.codes import LINEAR, SOFTMAX
from nkeras.kernels.cpu.activation import _act
from nkeras.kernels.cpu.depthwise import _source
from nkeras.kernels.cuda.activation import activation_backward, activation_forward
from nkeras.kernels.cuda.launch import THREADS, blocks

# Kernel-gradient blocks: ENTRY_TILE gradient entries (tap, channel), the
# channels of a tap side by side for coalesced reads of NHWC rows, times
# POSITION_LANES threads down the positions.
ENTRY_TILE = 32
POSITION_LANES = 8


@cuda.jit(device=True, inline=True)
def _target(position, stride, pad, tap, dilation, length):
    """The output position that reads input ``position`` through ``tap``,
    or -1 when none does (the inverse of ``_source``)."""
    offset = position + pad - tap * dilation
    if offset < 0 or offset % stride != 0 or offset // stride >= length:
        return -1
    return offset // stride


@cuda.jit(cache=True)
def _forward(x, kernel, bias, stride_r, stride_c, dilation_r, dilation_c, pad_r, pad_c, code, alpha, z, y):
    batch, rows, cols, channels = x.shape
    kernel_rows, kernel_cols, _, multiplier = kernel.shape
    _, out_rows, out_cols, out_channels = z.shape
    for k in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        q = k % out_channels
        pixel = k // out_channels
        j = pixel % out_cols
        i = (pixel // out_cols) % out_rows
        b = pixel // (out_cols * out_rows)
        ch = q // multiplier
        m = q - ch * multiplier
        total = bias[q]
        for ki in range(kernel_rows):
            r = _source(i, stride_r, pad_r, ki, dilation_r)
            if 0 <= r < rows:
                for kj in range(kernel_cols):
                    c = _source(j, stride_c, pad_c, kj, dilation_c)
                    if 0 <= c < cols:
                        total += x[b, r, c, ch] * kernel[ki, kj, ch, m]
        z[b, i, j, q] = total
        y[b, i, j, q] = _act(total, code, alpha) if code != LINEAR else total


@cuda.jit(cache=True)
def _kernel_and_bias_grads(x, dz, stride_r, stride_c, dilation_r, dilation_c, pad_r, pad_c, dkernel, dbias):
    partial = cuda.shared.array((POSITION_LANES, ENTRY_TILE), numba.float64)
    lane = cuda.threadIdx.y
    column = cuda.threadIdx.x
    batch, rows, cols, channels = x.shape
    kernel_rows, kernel_cols, _, multiplier = dkernel.shape
    _, out_rows, out_cols, out_channels = dz.shape
    taps = kernel_rows * kernel_cols
    entry = cuda.blockIdx.x * ENTRY_TILE + column
    tap = entry // out_channels
    q = entry - tap * out_channels
    ki = tap // kernel_cols
    kj = tap - ki * kernel_cols
    ch = q // multiplier
    total = 0.0
    if tap <= taps:
        for pixel in range(lane, batch * out_rows * out_cols, POSITION_LANES):
            j = pixel % out_cols
            i = (pixel // out_cols) % out_rows
            b = pixel // (out_cols * out_rows)
            if tap == taps:
                total += dz[b, i, j, q]
            else:
                r = _source(i, stride_r, pad_r, ki, dilation_r)
                c = _source(j, stride_c, pad_c, kj, dilation_c)
                if 0 <= r < rows and 0 <= c < cols:
                    total += x[b, r, c, ch] * dz[b, i, j, q]
    partial[lane, column] = total
    cuda.syncthreads()
    if lane == 0 and tap <= taps:
        for other in range(1, POSITION_LANES):
            total += partial[other, column]
        if tap == taps:
            dbias[q] = total
        else:
            dkernel[ki, kj, ch, q - ch * multiplier] = total


@cuda.jit(cache=True)
def _input_grad(kernel, dz, stride_r, stride_c, dilation_r, dilation_c, pad_r, pad_c, dx):
    batch, rows, cols, channels = dx.shape
    kernel_rows, kernel_cols, _, multiplier = kernel.shape
    _, out_rows, out_cols, out_channels = dz.shape
    for k in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        ch = k % channels
        position = k // channels
        c = position % cols
        r = (position // cols) % rows
        b = position // (cols * rows)
        total = 0.0
        for ki in range(kernel_rows):
            i = _target(r, stride_r, pad_r, ki, dilation_r, out_rows)
            if i >= 0:
                for kj in range(kernel_cols):
                    j = _target(c, stride_c, pad_c, kj, dilation_c, out_cols)
                    if j >= 0:
                        for m in range(multiplier):
                            total += dz[b, i, j, ch * multiplier + m] * kernel[ki, kj, ch, m]
        dx[b, r, c, ch] = total


def depthwise_conv2d_forward(x, kernel, bias, strides, dilation, padding, code, alpha, z, y):
    """``z = depthwise_conv(x, kernel) + bias`` and ``y = act(z)``, as the
    CPU twin; ``z`` may be ``y`` when the activation is linear."""
    alpha = z.dtype.type(alpha)
    geometry = (*strides, *dilation, *padding)
    if code == SOFTMAX:
        _forward[blocks(z.size), THREADS](x, kernel, bias, *geometry, LINEAR, alpha, z, z)
        channels = z.shape[3]
        activation_forward(z.reshape(-1, channels), SOFTMAX, alpha, y.reshape(-1, channels))
    else:
        _forward[blocks(z.size), THREADS](x, kernel, bias, *geometry, code, alpha, z, y)


def depthwise_conv2d_backward(
    x, kernel, z, y, dy, strides, dilation, padding, code, alpha, dz, dkernel, dbias, dx, need_dx
):
    """Gradients of ``y = act(depthwise_conv(x, kernel) + bias)``, as the
    CPU twin: ``dz`` for a non-linear activation (which may be ``dy``),
    ``dkernel``, ``dbias`` and, when ``need_dx``, ``dx``."""
    channels = dy.shape[3]
    if code == LINEAR:
        dz = dy
    else:
        activation_backward(
            z.reshape(-1, channels), y.reshape(-1, channels), dy.reshape(-1, channels), code, alpha,
            dz.reshape(-1, channels),
        )
    geometry = (*strides, *dilation, *padding)
    entries = (kernel.shape[0] * kernel.shape[1] + 1) * channels  # every tap, and the bias
    grid = math.ceil(entries / ENTRY_TILE)
    _kernel_and_bias_grads[grid, (ENTRY_TILE, POSITION_LANES)](x, dz, *geometry, dkernel, dbias)
    if need_dx:
        _input_grad[blocks(dx.size), THREADS](kernel, dz, *geometry, dx)
