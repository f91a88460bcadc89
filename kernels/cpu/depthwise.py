"""Depthwise 2-D convolution over NHWC arrays, with bias and activation
fused into the forward pass, and its backward pass.

x: (batch, rows, cols, channels); kernel: (kernel_rows, kernel_cols,
channels, multiplier); the output has ``channels * multiplier`` channels and
its channel ``c * multiplier + m`` is input channel ``c`` convolved with
``kernel[:, :, c, m]`` (Keras's order). ``strides``, ``dilation`` and
``padding`` are (rows, cols) pairs; ``padding`` holds the zeros before the
first row and column. Taps that fall in the padding are skipped by bounds
checks, so no padded copy of the input is made. The channel loops are the
innermost, over contiguous memory, so they vectorise.
"""

from numba import njit

from nkeras.kernels.codes import LINEAR
from nkeras.kernels.cpu.activation import activation_backward, activation_forward


@njit(cache=True, error_model="numpy", inline="always")
def _source(position, stride, pad, tap, dilation):
    """The input position an output ``position`` reads through ``tap``
    (negative or past the end when it falls in the padding)."""
    return position * stride - pad + tap * dilation


@njit(cache=True, error_model="numpy")
def depthwise_conv2d_forward(x, kernel, bias, strides, dilation, padding, code, alpha, z, y):
    """``z = depthwise_conv(x, kernel) + bias`` and ``y = act(z)``; softmax
    works over the channels.

    bias: (channels * multiplier,); z, y: (batch, out_rows, out_cols,
    channels * multiplier) outputs. ``z`` may be ``y`` when the activation
    is linear.
    """
    batch, rows, cols, channels = x.shape
    kernel_rows, kernel_cols, _, multiplier = kernel.shape
    out_rows, out_cols, out_channels = z.shape[1], z.shape[2], z.shape[3]
    z_rows = z.reshape(-1, out_channels)
    y_rows = y.reshape(-1, out_channels)
    for b in range(batch):
        for i in range(out_rows):
            for j in range(out_cols):
                pixel = (b * out_rows + i) * out_cols + j
                for q in range(out_channels):
                    z_rows[pixel, q] = bias[q]
                for ki in range(kernel_rows):
                    r = _source(i, strides[0], padding[0], ki, dilation[0])
                    if r < 0 or r >= rows:
                        continue
                    for kj in range(kernel_cols):
                        c = _source(j, strides[1], padding[1], kj, dilation[1])
                        if c < 0 or c >= cols:
                            continue
                        # The multiplier outside: the channel loop stays contiguous
                        # in x and the kernel, so it vectorises.
                        for m in range(multiplier):
                            for ch in range(channels):
                                z_rows[pixel, ch * multiplier + m] += x[b, r, c, ch] * kernel[ki, kj, ch, m]
                # The activation kernel per pixel, while its row is in cache; it
                # dispatches on the code once per row, not per element.
                activation_forward(z_rows[pixel:pixel + 1], code, alpha, y_rows[pixel:pixel + 1])


@njit(cache=True, error_model="numpy")
def depthwise_conv2d_backward(
    x, kernel, z, y, dy, strides, dilation, padding, code, alpha, dz, dkernel, dbias, dx, need_dx
):
    """Gradients of ``y = act(depthwise_conv(x, kernel) + bias)``.

    Writes ``dz = dy * act'(z)`` for a non-linear activation (``dz`` may be
    ``dy``; a linear one reads ``dy`` and leaves ``dz`` alone), ``dkernel``,
    ``dbias`` and, when ``need_dx``, ``dx`` (each fully; ``dx`` is not
    touched otherwise).
    """
    batch, rows, cols, channels = x.shape
    kernel_rows, kernel_cols, _, multiplier = kernel.shape
    out_rows, out_cols, out_channels = dy.shape[1], dy.shape[2], dy.shape[3]
    dz_rows = dy.reshape(-1, out_channels)
    if code != LINEAR:
        dz_rows = dz.reshape(-1, out_channels)
        activation_backward(z.reshape(-1, out_channels), y.reshape(-1, out_channels), dy.reshape(-1, out_channels),
                            code, alpha, dz_rows)
    dbias[:] = 0.0
    for pixel in range(dz_rows.shape[0]):
        for q in range(out_channels):
            dbias[q] += dz_rows[pixel, q]
    dkernel[:] = 0.0
    if need_dx:
        dx[:] = 0.0
    for b in range(batch):
        for i in range(out_rows):
            for j in range(out_cols):
                pixel = (b * out_rows + i) * out_cols + j
                for ki in range(kernel_rows):
                    r = _source(i, strides[0], padding[0], ki, dilation[0])
                    if r < 0 or r >= rows:
                        continue
                    for kj in range(kernel_cols):
                        c = _source(j, strides[1], padding[1], kj, dilation[1])
                        if c < 0 or c >= cols:
                            continue
                        # One loop per case: a test inside the channel loop stops it vectorising.
                        if need_dx:
                            for m in range(multiplier):
                                for ch in range(channels):
                                    grad = dz_rows[pixel, ch * multiplier + m]
                                    dkernel[ki, kj, ch, m] += x[b, r, c, ch] * grad
                                    dx[b, r, c, ch] += grad * kernel[ki, kj, ch, m]
                        else:
                            for m in range(multiplier):
                                for ch in range(channels):
                                    dkernel[ki, kj, ch, m] += x[b, r, c, ch] * dz_rows[pixel, ch * multiplier + m]
