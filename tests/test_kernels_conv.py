"""Convolution kernels against float64 NumPy references, on both devices."""

import numpy as np
import pytest

from devices import DEVICES, at_one_and_all_threads, ops_for
from nkeras.kernels import codes
from nkeras.layers.conv_utils import conv_output_length, padding_before

DTYPES = [np.float32, np.float64]


def _padded(x, padding, extent):
    """``x`` with ``padding`` zeros before each spatial axis and enough after
    to cover ``extent`` rows and columns."""
    batch, height, width, channels = x.shape
    (top, left), (rows, cols) = padding, extent
    out = np.zeros((batch, max(rows, top + height), max(cols, left + width), channels))
    out[:, top:top + height, left:left + width] = x
    return out


def _window(padded, ky, kx, strides, dilation, out_hw):
    """The padded input under tap (ky, kx) at every output position."""
    (sh, sw), (dh, dw), (oh, ow) = strides, dilation, out_hw
    return padded[:, ky * dh:ky * dh + (oh - 1) * sh + 1:sh, kx * dw:kx * dw + (ow - 1) * sw + 1:sw]


def _extent(kernel_hw, strides, dilation, out_hw):
    return tuple((o - 1) * s + (k - 1) * d + 1 for k, s, d, o in zip(kernel_hw, strides, dilation, out_hw))


def reference_conv(x, w, strides, dilation, padding, out_hw):
    """``out[b, oy, ox, f] = sum x[b, oy*sh - top + ky*dh, ox*sw - left + kx*dw, c] * w[ky, kx, c, f]``."""
    padded = _padded(x, padding, _extent(w.shape[:2], strides, dilation, out_hw))
    out = np.zeros((x.shape[0],) + tuple(out_hw) + (w.shape[3],))
    for ky in range(w.shape[0]):
        for kx in range(w.shape[1]):
            out += np.einsum("bhwc,cf->bhwf", _window(padded, ky, kx, strides, dilation, out_hw), w[ky, kx])
    return out


def reference_conv_grads(x, w, dout, strides, dilation, padding):
    """The input and kernel gradients of ``reference_conv`` given ``dout``."""
    out_hw = dout.shape[1:3]
    padded = _padded(x, padding, _extent(w.shape[:2], strides, dilation, out_hw))
    dpadded = np.zeros_like(padded)
    dw = np.zeros(w.shape)
    (sh, sw), (dh, dwid), (oh, ow) = strides, dilation, out_hw
    for ky in range(w.shape[0]):
        for kx in range(w.shape[1]):
            dw[ky, kx] = np.einsum("bhwc,bhwf->cf", _window(padded, ky, kx, strides, dilation, out_hw), dout)
            rows = slice(ky * dh, ky * dh + (oh - 1) * sh + 1, sh)
            cols = slice(kx * dwid, kx * dwid + (ow - 1) * sw + 1, sw)
            dpadded[:, rows, cols] += np.einsum("bhwf,cf->bhwc", dout, w[ky, kx])
    top, left = padding
    return dpadded[:, top:top + x.shape[1], left:left + x.shape[2]], dw


def _activate(z, name):
    if name == "linear":
        return z, np.ones_like(z)
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(z.dtype)
    if name == "tanh":
        return np.tanh(z), 1 - np.tanh(z) ** 2
    raise KeyError(name)


def _tolerance(dtype):
    return {"rtol": 2e-4, "atol": 2e-4} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}


def _geometry(case):
    """Output size and leading padding of a case, by Keras's rules."""
    (_batch, height, width, _channels, _filters), (kh, kw), strides, dilation, modes = case
    axes = list(zip((height, width), (kh, kw), modes, strides, dilation))
    out_hw = tuple(conv_output_length(n, k, mode, s, d) for n, k, mode, s, d in axes)
    padding = tuple(padding_before(n, k, mode, s, d) for n, k, mode, s, d in axes)
    return out_hw, padding


# (batch, height, width, channels, filters), kernel, strides, dilation, padding mode per axis.
CASES = [
    ((1, 1, 1, 1, 1), (1, 1), (1, 1), (1, 1), ("valid", "valid")),
    ((2, 5, 7, 3, 4), (3, 3), (1, 1), (1, 1), ("same", "same")),
    ((1, 7, 6, 1, 3), (3, 2), (2, 2), (1, 1), ("same", "same")),
    ((3, 9, 8, 2, 5), (3, 3), (1, 1), (2, 2), ("valid", "valid")),
    ((2, 6, 9, 3, 2), (2, 4), (2, 3), (1, 1), ("valid", "valid")),
    ((2, 5, 5, 3, 6), (1, 1), (2, 2), (1, 1), ("valid", "valid")),
    ((2, 1, 9, 3, 4), (1, 3), (1, 1), (1, 2), ("valid", "causal")),
    ((1, 4, 11, 3, 2), (2, 5), (1, 1), (1, 2), ("same", "same")),
    # Larger than a GPU tile and than the simulator runs quickly: CPU only.
    ((4, 13, 11, 32, 17), (3, 3), (1, 1), (1, 1), ("valid", "valid")),
    ((3, 28, 27, 1, 32), (3, 3), (1, 1), (1, 1), ("valid", "valid")),
    ((2, 12, 10, 5, 33), (5, 3), (2, 1), (1, 1), ("same", "same")),
    # 3x3 kernels over one channel (with relu or linear: the direct forward)
    # through padding, strides and dilation.
    ((1, 5, 9, 1, 5), (3, 3), (2, 2), (1, 1), ("same", "same")),
    ((1, 9, 10, 1, 3), (3, 3), (1, 1), (2, 2), ("same", "same")),
]


ACTIVATIONS = ["linear", "relu", "tanh"]
# The simulator runs each GPU thread as Python: a few small cases, each with
# one dtype and activation, cover the CUDA twins' code paths.
CUDA_CONV_RUNS = [(0, np.float64, "linear"), (2, np.float32, "relu"), (3, np.float64, "tanh"), (6, np.float32, "tanh"),
                  (7, np.float32, "linear")]
CUDA_TRANSPOSE_RUNS = [(2, np.float64, "tanh"), (4, np.float32, "relu"), (7, np.float32, "linear")]


def _runs(cuda_runs):
    """Every case, dtype and activation on the CPU; ``cuda_runs`` on CUDA."""
    runs = [
        ("cpu", index, dtype, activation)
        for index in range(len(CASES)) for dtype in DTYPES for activation in ACTIVATIONS
    ]
    runs += [("cuda",) + run for run in cuda_runs]
    return [
        pytest.param(
            device, CASES[index], dtype, activation, id=f"{device}-{index}-{np.dtype(dtype).name}-{activation}"
        )
        for device, index, dtype, activation in runs
    ]


def _check_conv2d(ops, case, dtype, activation, rng, in_place):
    """Forward and backward of ``case`` against the float64 references;
    ``in_place`` passes dy as dz, as the layer does."""
    (batch, height, width, channels, filters), (kh, kw), strides, dilation, _ = case
    out_hw, padding = _geometry(case)
    x = rng.standard_normal((batch, height, width, channels))
    w = rng.standard_normal((kh, kw, channels, filters)) / np.sqrt(kh * kw * channels)
    b = rng.standard_normal(filters)
    z_ref = reference_conv(x, w, strides, dilation, padding, out_hw) + b
    y_ref, slope = _activate(z_ref, activation)
    dy = rng.standard_normal(z_ref.shape)
    dz_ref = dy * slope
    dx_ref, dw_ref = reference_conv_grads(x, w, dz_ref, strides, dilation, padding)

    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)
    xs, ws, bs, dys = cast(x), cast(w), cast(b), cast(dy)
    code = codes.ACTIVATION_CODES[activation]
    cols = np.full((batch * out_hw[0] * out_hw[1], kh * kw * channels), np.nan, dtype)
    y = np.full(z_ref.shape, np.nan, dtype)
    # linear and relu pass y as z, as the layer does; tanh keeps its own z.
    z = y if activation != "tanh" else np.full(z_ref.shape, np.nan, dtype)
    ops.conv2d_forward(xs, ws, bs, strides, dilation, padding, code, 0.0, cols, z, y)
    np.testing.assert_allclose(y, y_ref, **_tolerance(dtype))

    dz = dys if in_place else np.full(z_ref.shape, np.nan, dtype)
    dw, db, dx = np.full(w.shape, np.nan, dtype), np.full(filters, np.nan, dtype), np.full(x.shape, np.nan, dtype)
    ops.conv2d_backward(xs, ws, z, y, dys, strides, dilation, padding, code, 0.0, cols, dz, dw, db, dx, True)
    np.testing.assert_allclose(dz, dz_ref, **_tolerance(dtype))
    np.testing.assert_allclose(dw, dw_ref, **_tolerance(dtype))
    np.testing.assert_allclose(db, dz_ref.sum(axis=(0, 1, 2)), **_tolerance(dtype))
    np.testing.assert_allclose(dx, dx_ref, **_tolerance(dtype))


@pytest.mark.parametrize("device,case,dtype,activation", _runs(CUDA_CONV_RUNS))
def test_conv2d_forward_backward_match_numpy(device, case, dtype, activation, rng):
    _check_conv2d(ops_for(device), case, dtype, activation, rng, in_place=False)


@pytest.mark.parametrize("device,case", [("cpu", CASES[9]), ("cpu", CASES[4]), ("cuda", CASES[4])])
def test_conv2d_backward_without_dx_leaves_it_alone(device, case, rng):
    """The first layer of a model needs no dx: the kernel skips it and still
    writes the weight gradients; dz may be dy itself."""
    ops = ops_for(device)
    (batch, height, width, channels, filters), (kh, kw), strides, dilation, _ = case
    out_hw, padding = _geometry(case)
    x = rng.standard_normal((batch, height, width, channels)).astype(np.float32)
    w = rng.standard_normal((kh, kw, channels, filters)).astype(np.float32)
    b = rng.standard_normal(filters).astype(np.float32)
    cols = np.empty((batch * out_hw[0] * out_hw[1], kh * kw * channels), np.float32)
    y = np.empty((batch,) + out_hw + (filters,), np.float32)
    ops.conv2d_forward(x, w, b, strides, dilation, padding, codes.RELU, 0.0, cols, y, y)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dz_ref = dy * (y > 0)
    _, dw_ref = reference_conv_grads(x.astype(np.float64), w, dz_ref, strides, dilation, padding)
    dx = np.full(x.shape, 7.0, np.float32)
    dw, db = np.empty_like(w), np.empty_like(b)
    ops.conv2d_backward(x, w, y, y, dy, strides, dilation, padding, codes.RELU, 0.0, cols, dy, dw, db, dx, False)
    np.testing.assert_allclose(dy, dz_ref, rtol=1e-6)
    np.testing.assert_allclose(dw, dw_ref, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(db, dz_ref.sum(axis=(0, 1, 2)), rtol=2e-4, atol=2e-4)
    np.testing.assert_array_equal(dx, 7.0)


@pytest.mark.parametrize("device,index", [("cpu", 1), ("cpu", 2), ("cpu", 6), ("cpu", 9), ("cpu", 10), ("cpu", 11),
                                          ("cpu", 12), ("cuda", 2)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_conv2d_gradient_in_place_matches_numpy(device, index, dtype, activation, rng):
    """dz passed as dy, as the layer does: thin im2col matrices (at most
    SMALL_DEPTH columns, cases 2, 6, 9, 11 and 12; the last three 3x3
    one-channel kernels, whose forward is the direct loop that writes the
    im2col rows) take the CPU's one-pass gradient loop, wider ones BLAS;
    row counts that are not a multiple of four exercise the loop's remainder."""
    _check_conv2d(ops_for(device), CASES[index], dtype, activation, rng, in_place=True)


@pytest.mark.parametrize("device,case,dtype,activation", _runs(CUDA_TRANSPOSE_RUNS))
def test_conv2d_transpose_forward_backward_match_numpy(device, case, dtype, activation, rng):
    """The transposed convolution of a case maps the case's output shape
    (here the input) back to its input shape, through the adjoint."""
    ops = ops_for(device)
    (batch, height, width, filters, channels), (kh, kw), strides, dilation, _ = case
    in_hw, padding = _geometry(case)
    x = rng.standard_normal((batch,) + in_hw + (channels,))
    w = rng.standard_normal((kh, kw, filters, channels)) / np.sqrt(kh * kw)
    b = rng.standard_normal(filters)
    z_ref, _ = reference_conv_grads(np.zeros((batch, height, width, filters)), w, x, strides, dilation, padding)
    z_ref = z_ref + b
    y_ref, slope = _activate(z_ref, activation)
    dy = rng.standard_normal(z_ref.shape)
    dz_ref = dy * slope
    dx_ref = reference_conv(dz_ref, w, strides, dilation, padding, in_hw)
    _, dw_ref = reference_conv_grads(dz_ref, w, x, strides, dilation, padding)

    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)
    xs, ws, bs, dys = cast(x), cast(w), cast(b), cast(dy)
    code = codes.ACTIVATION_CODES[activation]
    cols = np.full((batch * in_hw[0] * in_hw[1], kh * kw * filters), np.nan, dtype)
    y = np.full(z_ref.shape, np.nan, dtype)
    z = y if activation != "tanh" else np.full(z_ref.shape, np.nan, dtype)
    ops.conv2d_transpose_forward(xs, ws, bs, strides, dilation, padding, code, 0.0, cols, z, y)
    np.testing.assert_allclose(y, y_ref, **_tolerance(dtype))

    dz = dys if activation == "linear" else np.full(z_ref.shape, np.nan, dtype)
    dw, db, dx = np.full(w.shape, np.nan, dtype), np.full(filters, np.nan, dtype), np.full(x.shape, np.nan, dtype)
    ops.conv2d_transpose_backward(xs, ws, z, y, dys, strides, dilation, padding, code, 0.0, cols, dz, dw, db, dx, True)
    np.testing.assert_allclose(dz, dz_ref, **_tolerance(dtype))
    np.testing.assert_allclose(dw, dw_ref, **_tolerance(dtype))
    np.testing.assert_allclose(db, dz_ref.sum(axis=(0, 1, 2)), **_tolerance(dtype))
    np.testing.assert_allclose(dx, dx_ref, **_tolerance(dtype))


@pytest.mark.parametrize("device", DEVICES)
def test_softmax_over_filters(device, rng):
    """Softmax runs over the channel axis, as Keras applies it to a conv's output."""
    ops = ops_for(device)
    x = rng.standard_normal((2, 4, 5, 3))
    w = rng.standard_normal((2, 2, 3, 4))
    b = rng.standard_normal(4)
    z_ref = reference_conv(x, w, (1, 1), (1, 1), (0, 0), (3, 4)) + b
    e = np.exp(z_ref - z_ref.max(axis=-1, keepdims=True))
    y_ref = e / e.sum(axis=-1, keepdims=True)
    cols, z, y = np.empty((24, 12)), np.empty((2, 3, 4, 4)), np.empty((2, 3, 4, 4))
    ops.conv2d_forward(x, w, b, (1, 1), (1, 1), (0, 0), codes.SOFTMAX, 0.0, cols, z, y)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)

    wt = rng.standard_normal((2, 2, 4, 3))
    tcols, tz, ty = np.empty((40, 16)), np.empty((2, 5, 6, 4)), np.empty((2, 5, 6, 4))
    ops.conv2d_transpose_forward(x, wt, b, (1, 1), (1, 1), (0, 0), codes.SOFTMAX, 0.0, tcols, tz, ty)
    tz_ref, _ = reference_conv_grads(np.zeros((2, 5, 6, 4)), wt, x, (1, 1), (1, 1), (0, 0))
    tz_ref = tz_ref + b
    np.testing.assert_allclose(tz, tz_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ty, np.exp(tz_ref) / np.exp(tz_ref).sum(axis=-1, keepdims=True), rtol=1e-10)


# (batch, height, width, channels, filters), padding mode: 3x3 kernels, stride 1.
WINOGRAD_CASES = [
    ((1, 3, 3, 1, 1), "valid"),
    ((2, 1, 1, 2, 3), "same"),
    ((2, 6, 7, 3, 2), "same"),
    ((1, 9, 5, 2, 4), "same"),
    ((2, 10, 11, 2, 3), "valid"),
    # Larger than the simulator runs quickly: CPU only.
    ((4, 13, 13, 16, 33), "valid"),
    ((3, 12, 9, 17, 16), "same"),
    # Tasks of 16, 16 and 5 samples on the CPU.
    ((37, 7, 6, 3, 4), "same"),
]
CUDA_WINOGRAD_RUNS = [(1, np.float64, "tanh"), (3, np.float32, "relu"), (4, np.float32, "linear")]


def _winograd_runs():
    runs = [("cpu", index, dtype, activation) for index in range(len(WINOGRAD_CASES)) for dtype in DTYPES
            for activation in ACTIVATIONS]
    runs += [("cuda",) + run for run in CUDA_WINOGRAD_RUNS]
    return [
        pytest.param(device, WINOGRAD_CASES[index], dtype, activation,
                     id=f"{device}-{index}-{np.dtype(dtype).name}-{activation}")
        for device, index, dtype, activation in runs
    ]


def _winograd_buffers(shape, out_hw, dtype):
    (batch, _, _, channels, filters) = shape
    tiles_h, tiles_w = -(-out_hw[0] // 4), -(-out_hw[1] // 4)
    tiles = batch * tiles_h * tiles_w
    shapes = [(batch, 4 * tiles_h + 2, 4 * tiles_w + 2, channels), (36, tiles, channels), (36, channels, filters),
              (36, tiles, filters), (36, channels, filters)]
    return [np.full(s, np.nan, dtype) for s in shapes]


@pytest.mark.parametrize("device,case,dtype,activation", _winograd_runs())
def test_winograd_forward_backward_match_numpy(device, case, dtype, activation, rng):
    ops = ops_for(device)
    shape, mode = case
    batch, height, width, channels, filters = shape
    out_hw, padding = _geometry((shape, (3, 3), (1, 1), (1, 1), (mode, mode)))
    x = rng.standard_normal((batch, height, width, channels))
    w = rng.standard_normal((3, 3, channels, filters)) / np.sqrt(9 * channels)
    b = rng.standard_normal(filters)
    z_ref = reference_conv(x, w, (1, 1), (1, 1), padding, out_hw) + b
    y_ref, slope = _activate(z_ref, activation)
    dy = rng.standard_normal(z_ref.shape)
    dz_ref = dy * slope
    dx_ref, dw_ref = reference_conv_grads(x, w, dz_ref, (1, 1), (1, 1), padding)

    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)
    code = codes.ACTIVATION_CODES[activation]
    padded, v, u, m, du = _winograd_buffers(shape, out_hw, dtype)
    y = np.full(z_ref.shape, np.nan, dtype)
    z = y if activation != "tanh" else np.full(z_ref.shape, np.nan, dtype)
    ops.conv2d_winograd_forward(cast(x), cast(w), cast(b), padding, code, 0.0, padded, v, u, m, z, y)
    np.testing.assert_allclose(y, y_ref, **_tolerance(dtype))

    dz = np.full(z_ref.shape, np.nan, dtype)
    dw, db, dx = np.full(w.shape, np.nan, dtype), np.full(filters, np.nan, dtype), np.full(x.shape, np.nan, dtype)
    ops.conv2d_winograd_backward(z, y, cast(dy), padding, code, 0.0, padded, v, u, m, du, dz, dw, db, dx, True)
    np.testing.assert_allclose(dz, dz_ref, **_tolerance(dtype))
    np.testing.assert_allclose(dw, dw_ref, **_tolerance(dtype))
    np.testing.assert_allclose(db, dz_ref.sum(axis=(0, 1, 2)), **_tolerance(dtype))
    np.testing.assert_allclose(dx, dx_ref, **_tolerance(dtype))


def test_cpu_winograd_results_do_not_depend_on_the_thread_count(rng):
    """The CPU Winograd kernels split the batch into tasks of a fixed size,
    so one thread and every thread give the same bits."""
    ops = ops_for("cpu")
    shape = (37, 7, 6, 3, 4)
    x = rng.standard_normal(shape[:4]).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    dy = rng.standard_normal((37, 7, 6, 4)).astype(np.float32)

    def run():
        padded, v, u, m, du = _winograd_buffers(shape, (7, 6), np.float32)
        y = np.empty((37, 7, 6, 4), np.float32)
        ops.conv2d_winograd_forward(x, w, b, (1, 1), codes.RELU, 0.0, padded, v, u, m, y, y)
        dz, dw, db, dx = np.empty_like(y), np.empty_like(w), np.empty_like(b), np.empty_like(x)
        ops.conv2d_winograd_backward(y, y, dy, (1, 1), codes.RELU, 0.0, padded, v, u, m, du, dz, dw, db, dx, True)
        return y, dz, dw, db, dx

    results = at_one_and_all_threads(run)
    for one, many in zip(*results):
        np.testing.assert_array_equal(one, many)


def test_winograd_kernel_transform_matrix_is_the_cuda_helpers():
    """The CPU's GEMM kernel transform and the per-filter helpers the CUDA
    kernels use are one matrix G and its adjoint."""
    from nkeras.kernels.cpu.conv import _G, _winograd_filter, _winograd_filter_adjoint

    columns = np.array([_winograd_filter(*unit) for unit in np.eye(3)]).T
    np.testing.assert_allclose(columns, _G, rtol=1e-15)
    rows = np.array([_winograd_filter_adjoint(*unit) for unit in np.eye(6)]).T
    np.testing.assert_allclose(rows, _G.T, rtol=1e-15)


@pytest.mark.parametrize("device", DEVICES)
def test_winograd_softmax_and_no_dx(device, rng):
    """Softmax over the filters, dz in place of dy, and no input gradient."""
    ops = ops_for(device)
    shape = (1, 5, 6, 2, 3)
    x = rng.standard_normal(shape[:4])
    w = rng.standard_normal((3, 3, 2, 3))
    b = rng.standard_normal(3)
    z_ref = reference_conv(x, w, (1, 1), (1, 1), (1, 1), (5, 6)) + b
    e = np.exp(z_ref - z_ref.max(axis=-1, keepdims=True))
    y_ref = e / e.sum(axis=-1, keepdims=True)
    dy = rng.standard_normal(z_ref.shape)
    dz_ref = y_ref * (dy - (dy * y_ref).sum(axis=-1, keepdims=True))
    padded, v, u, m, du = _winograd_buffers(shape, (5, 6), np.float64)
    z, y = np.empty(z_ref.shape), np.empty(z_ref.shape)
    ops.conv2d_winograd_forward(x, w, b, (1, 1), codes.SOFTMAX, 0.0, padded, v, u, m, z, y)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
    dw, db, dx = np.empty(w.shape), np.empty(3), np.full(x.shape, 7.0)
    ops.conv2d_winograd_backward(z, y, dy, (1, 1), codes.SOFTMAX, 0.0, padded, v, u, m, du, dy, dw, db, dx, False)
    _, dw_ref = reference_conv_grads(x, w, dz_ref, (1, 1), (1, 1), (1, 1))
    np.testing.assert_allclose(dy, dz_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(dx, 7.0)
