"""Depthwise convolution kernels against a float64 NumPy reference, on the
CPU and the CUDA twin (numba-cuda's simulator in CI)."""

import numpy as np
import pytest
from scipy.special import erf

from devices import device_cases, ops_for
from nkeras.kernels import codes
from nkeras.layers.conv_utils import conv_output_length, padding_before

DTYPES = [np.float32, np.float64]

# (batch, rows, cols, channels, multiplier, kernel, strides, dilation, padding, activation)
CASES = [
    (1, 1, 1, 1, 1, (1, 1), (1, 1), (1, 1), "valid", "linear"),
    (1, 5, 6, 1, 1, (3, 3), (1, 1), (1, 1), "valid", "relu"),
    (2, 7, 5, 3, 2, (3, 2), (2, 2), (1, 1), "same", "tanh"),
    (1, 6, 7, 3, 1, (2, 3), (1, 1), (2, 2), "same", "softmax"),
    (3, 7, 7, 1, 2, (3, 3), (1, 1), (2, 1), "valid", "sigmoid"),
    (2, 4, 9, 3, 1, (4, 1), (2, 3), (1, 1), "same", "leaky_relu"),
    (1, 3, 3, 2, 3, (5, 5), (1, 1), (1, 1), "same", "gelu"),
    # CPU only: more channels than a GPU gradient block's 32 columns.
    (4, 13, 11, 37, 2, (5, 3), (2, 1), (1, 1), "same", "relu"),
]


def _case_id(case):
    batch, rows, cols, channels, multiplier, kernel, strides, dilation, padding, activation = case
    return (f"{batch}x{rows}x{cols}x{channels}*{multiplier}-k{kernel[0]}{kernel[1]}-s{strides[0]}{strides[1]}"
            f"-d{dilation[0]}{dilation[1]}-{padding}-{activation}")


def _output_elements(case):
    batch, rows, cols, channels, multiplier, kernel, strides, dilation, padding, _ = case
    out_rows, out_cols = (
        conv_output_length(length, size, padding, stride, rate)
        for length, size, stride, rate in zip((rows, cols), kernel, strides, dilation)
    )
    return batch * out_rows * out_cols * channels * multiplier


def _activation(z, name, alpha):
    """``act(z)`` and a function giving ``dz`` from ``dy``."""
    if name == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        y = e / e.sum(axis=-1, keepdims=True)
        return y, lambda dy: y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    if name == "linear":
        y, slope = z, np.ones_like(z)
    elif name == "relu":
        y, slope = np.maximum(z, 0), (z > 0) * 1.0
    elif name == "tanh":
        y = np.tanh(z)
        slope = 1 - y**2
    elif name == "sigmoid":
        y = 1 / (1 + np.exp(-z))
        slope = y * (1 - y)
    elif name == "leaky_relu":
        y, slope = np.where(z > 0, z, alpha * z), np.where(z > 0, 1.0, alpha)
    elif name == "gelu":
        cdf = 0.5 * (1 + erf(z / np.sqrt(2)))
        y, slope = z * cdf, cdf + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    else:
        raise KeyError(name)
    return y, lambda dy: dy * slope


def _windows(array, kernel, strides, dilation, pads, out_shape):
    """Zero-pad ``array`` (NHWC) and give, per tap, a view of the positions
    it reads for every output position, plus the padded array."""
    batch, rows, cols, channels = array.shape
    reach = [(out - 1) * s + (k - 1) * d + 1 for out, k, s, d in zip(out_shape, kernel, strides, dilation)]
    padded = np.zeros((batch, max(reach[0], rows + pads[0]), max(reach[1], cols + pads[1]), channels))
    padded[:, pads[0]:pads[0] + rows, pads[1]:pads[1] + cols] = array
    taps = {}
    for ki in range(kernel[0]):
        for kj in range(kernel[1]):
            r0, c0 = ki * dilation[0], kj * dilation[1]
            taps[ki, kj] = (
                slice(r0, r0 + (out_shape[0] - 1) * strides[0] + 1, strides[0]),
                slice(c0, c0 + (out_shape[1] - 1) * strides[1] + 1, strides[1]),
            )
    return padded, taps


def _reference(x, kernel, bias, dy, strides, dilation, pads, out_shape, activation, alpha):
    """float64 z, y and the gradients dz, dkernel, dbias, dx."""
    batch, rows, cols, channels = x.shape
    multiplier = kernel.shape[3]
    padded, taps = _windows(x, kernel.shape[:2], strides, dilation, pads, out_shape)
    z = np.zeros((batch,) + tuple(out_shape) + (channels, multiplier))
    for (ki, kj), (rs, cs) in taps.items():
        z += padded[:, rs, cs, :, None] * kernel[ki, kj]
    z = z.reshape(batch, *out_shape, channels * multiplier) + bias
    y, grad_of = _activation(z, activation, alpha)
    dz = grad_of(dy)
    dz5 = dz.reshape(batch, *out_shape, channels, multiplier)
    dkernel = np.zeros(kernel.shape)
    dpadded = np.zeros_like(padded)
    for (ki, kj), (rs, cs) in taps.items():
        dkernel[ki, kj] = np.einsum("bijc,bijcm->cm", padded[:, rs, cs], dz5)
        dpadded[:, rs, cs] += np.einsum("bijcm,cm->bijc", dz5, kernel[ki, kj])
    dx = dpadded[:, pads[0]:pads[0] + rows, pads[1]:pads[1] + cols]
    return z, y, dz, dkernel, dz.sum(axis=(0, 1, 2)), dx


def _geometry(case):
    batch, rows, cols, channels, multiplier, kernel, strides, dilation, padding, _ = case
    out_shape, pads = [], []
    for length, size, stride, rate in zip((rows, cols), kernel, strides, dilation):
        out_shape.append(conv_output_length(length, size, padding, stride, rate))
        pads.append(padding_before(length, size, padding, stride, rate))
    return tuple(out_shape), tuple(pads)


def _tolerance(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


def _run(ops, case, dtype, rng, need_dx=True):
    batch, rows, cols, channels, multiplier, kernel_size, strides, dilation, padding, activation = case
    out_shape, pads = _geometry(case)
    alpha = 0.2
    x = rng.standard_normal((batch, rows, cols, channels))
    kernel = rng.standard_normal(kernel_size + (channels, multiplier)) / np.sqrt(np.prod(kernel_size))
    bias = rng.standard_normal(channels * multiplier)
    dy = rng.standard_normal((batch,) + out_shape + (channels * multiplier,))
    expected = _reference(x, kernel, bias, dy, strides, dilation, pads, out_shape, activation, alpha)

    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)  # noqa: E731
    xs, kernels, biases, dys = cast(x), cast(kernel), cast(bias), cast(dy)
    code = codes.ACTIVATION_CODES[activation]
    z, y = np.empty(dy.shape, dtype), np.empty(dy.shape, dtype)
    ops.depthwise_conv2d_forward(xs, kernels, biases, strides, dilation, pads, code, alpha, z, y)
    dz, dkernel, dbias = np.empty(dy.shape, dtype), np.empty(kernel.shape, dtype), np.empty(bias.shape, dtype)
    dx = np.full(x.shape, 7.0, dtype)
    ops.depthwise_conv2d_backward(
        xs, kernels, z, y, dys, strides, dilation, pads, code, alpha, dz, dkernel, dbias, dx, need_dx
    )
    return expected, (z, y, dz, dkernel, dbias, dx)


@pytest.mark.parametrize("device,case", device_cases(CASES, size=_output_elements))
@pytest.mark.parametrize("dtype", DTYPES)
def test_depthwise_forward_backward_match_numpy(device, case, dtype, rng):
    expected, got = _run(ops_for(device), case, dtype, rng)
    for name, want, have in zip(("z", "y", "dz", "dkernel", "dbias", "dx"), expected, got):
        if name == "dz" and case[-1] == "linear":
            continue  # a linear activation reads dy and does not write dz
        np.testing.assert_allclose(have, want, err_msg=f"{_case_id(case)}: {name}", **_tolerance(dtype))


@pytest.mark.parametrize("activation", sorted(set(codes.ACTIVATION_CODES) - {"swish"}))
def test_every_activation_matches_on_both_devices(activation, rng):
    """Each fused activation code on one tiny case: the CPU against NumPy
    where the reference has the activation, the CUDA forward (where the
    code is fused) against the CPU; the CUDA backward runs the activation
    kernel, tested with its family."""
    x = rng.standard_normal((1, 3, 4, 2))
    kernel = rng.standard_normal((2, 2, 2, 2))
    bias = rng.standard_normal(4)
    dy = rng.standard_normal((1, 2, 3, 4))
    code = codes.ACTIVATION_CODES[activation]
    outputs = {}
    for device in ("cpu", "cuda"):
        z, y = np.empty(dy.shape), np.empty(dy.shape)
        ops_for(device).depthwise_conv2d_forward(x, kernel, bias, (1, 1), (1, 1), (0, 0), code, 0.3, z, y)
        outputs[device] = z, y
    z, y = outputs["cpu"]
    np.testing.assert_allclose(outputs["cuda"][0], z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(outputs["cuda"][1], y, rtol=1e-12, atol=1e-12)
    z_ref = _reference(x, kernel, bias, dy, (1, 1), (1, 1), (0, 0), (2, 3), "linear", 0.3)[0]
    np.testing.assert_allclose(z, z_ref, rtol=1e-12, atol=1e-12)
    if activation in ("linear", "relu", "tanh", "sigmoid", "softmax", "gelu", "leaky_relu"):
        y_ref, grad_of = _activation(z_ref, activation, 0.3)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        dz, dkernel, dbias, dx = np.empty(dy.shape), np.empty(kernel.shape), np.empty(bias.shape), np.empty(x.shape)
        ops_for("cpu").depthwise_conv2d_backward(
            x, kernel, z, y, dy, (1, 1), (1, 1), (0, 0), code, 0.3, dz, dkernel, dbias, dx, True
        )
        if activation != "linear":  # a linear backward reads dy and leaves dz alone
            np.testing.assert_allclose(dz, grad_of(dy), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_without_dx_leaves_it_untouched(ops, dtype, rng):
    case = (2, 5, 4, 3, 2, (3, 3), (2, 2), (1, 1), "same", "relu")
    expected, got = _run(ops, case, dtype, rng, need_dx=False)
    for want, have in zip(expected[:5], got[:5]):
        np.testing.assert_allclose(have, want, **_tolerance(dtype))
    np.testing.assert_array_equal(got[5], 7.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_variants(ops, dtype, rng):
    """Layers pass y as z for a linear activation and dy as dz; a linear
    backward leaves dz (here dy) as it was."""
    x = rng.standard_normal((2, 5, 6, 3)).astype(dtype)
    kernel = rng.standard_normal((3, 3, 3, 1)).astype(dtype)
    bias = rng.standard_normal(3).astype(dtype)
    dy = rng.standard_normal((2, 5, 6, 3)).astype(dtype)
    pads = (1, 1)
    want = _reference(x, kernel, bias, dy, (1, 1), (1, 1), pads, (5, 6), "linear", 0.0)
    y = np.empty(dy.shape, dtype)
    ops.depthwise_conv2d_forward(x, kernel, bias, (1, 1), (1, 1), pads, codes.LINEAR, 0.0, y, y)
    np.testing.assert_allclose(y, want[1], **_tolerance(dtype))
    dkernel, dbias, dx = np.empty_like(kernel), np.empty_like(bias), np.empty_like(x)
    ops.depthwise_conv2d_backward(x, kernel, y, y, dy, (1, 1), (1, 1), pads, codes.LINEAR, 0.0, dy, dkernel, dbias, dx,
                                  True)
    for have, expected in zip((dkernel, dbias, dx), want[3:]):
        np.testing.assert_allclose(have, expected, **_tolerance(dtype))
    np.testing.assert_allclose(dy, want[2], **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_linear_backward_writes_dz_over_dy(ops, dtype, rng):
    x = rng.standard_normal((1, 4, 5, 2)).astype(dtype)
    kernel = rng.standard_normal((2, 2, 2, 2)).astype(dtype)
    bias = rng.standard_normal(4).astype(dtype)
    dy = rng.standard_normal((1, 3, 4, 4)).astype(dtype)
    want = _reference(x, kernel, bias, dy, (1, 1), (1, 1), (0, 0), (3, 4), "tanh", 0.0)
    z, y = np.empty(dy.shape, dtype), np.empty(dy.shape, dtype)
    ops.depthwise_conv2d_forward(x, kernel, bias, (1, 1), (1, 1), (0, 0), codes.TANH, 0.0, z, y)
    dkernel, dbias, dx = np.empty_like(kernel), np.empty_like(bias), np.empty_like(x)
    ops.depthwise_conv2d_backward(x, kernel, z, y, dy, (1, 1), (1, 1), (0, 0), codes.TANH, 0.0, dy, dkernel, dbias, dx,
                                  True)
    for have, expected in zip((dy, dkernel, dbias, dx), want[2:]):
        np.testing.assert_allclose(have, expected, **_tolerance(dtype))
