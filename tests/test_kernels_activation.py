"""Activation kernels, on the CPU and the GPU, against float64 NumPy
references and finite differences, and the nkeras.activations front end."""

import os

import numpy as np
import pytest
from scipy.special import erf

from devices import ops_for
from gradcheck import numerical_grad
from nkeras import activations
from nkeras.kernels import codes

SHAPES = [(1, 1), (1, 7), (5, 1), (13, 17), (64, 130)]
# The CUDA simulator is slow: a single row, and more rows and elements than
# one block of 256 threads covers.
CUDA_SHAPES = [(1, 7), (260, 2)]
DTYPES = [np.float32, np.float64]
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _reference(name, x, alpha):
    """(act(x), act'(x)) in float64, straight from the definitions."""
    if name == "linear":
        return x.copy(), np.ones_like(x)
    if name == "relu":
        return np.maximum(x, 0.0), (x > 0).astype(float)
    if name == "sigmoid":
        s = _sigmoid(x)
        return s, s * (1.0 - s)
    if name == "tanh":
        t = np.tanh(x)
        return t, 1.0 - t * t
    if name == "gelu":
        cdf = 0.5 * (1.0 + erf(x / np.sqrt(2.0)))
        return x * cdf, cdf + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
    if name == "gelu_tanh":
        c = np.sqrt(2.0 / np.pi)
        inner = c * (x + 0.044715 * x**3)
        t = np.tanh(inner)
        return 0.5 * x * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x)
    if name == "elu":
        return np.where(x > 0, x, alpha * (np.exp(x) - 1.0)), np.where(x > 0, 1.0, alpha * np.exp(x))
    if name == "selu":
        return (
            SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1.0)),
            SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(x)),
        )
    if name == "leaky_relu":
        return np.where(x > 0, x, alpha * x), np.where(x > 0, 1.0, alpha)
    if name == "silu":
        s = _sigmoid(x)
        return x * s, s + x * s * (1.0 - s)
    if name == "softplus":
        return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0), _sigmoid(x)
    raise KeyError(name)


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


ELEMENTWISE = {
    "linear": (codes.LINEAR, 0.0),
    "relu": (codes.RELU, 0.0),
    "sigmoid": (codes.SIGMOID, 0.0),
    "tanh": (codes.TANH, 0.0),
    "gelu": (codes.GELU, 0.0),
    "gelu_tanh": (codes.GELU_TANH, 0.0),
    "elu": (codes.ELU, 0.7),
    "selu": (codes.SELU, 0.0),
    "leaky_relu": (codes.LEAKY_RELU, 0.3),
    "silu": (codes.SILU, 0.0),
    "softplus": (codes.SOFTPLUS, 0.0),
}
ALL = [*ELEMENTWISE, "softmax"]


def _tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


def _inputs(rng, shape):
    """Random inputs spread over [-6, 6], kept away from the kink at 0."""
    x = 2.5 * rng.standard_normal(shape)
    return np.where(np.abs(x) < 1e-2, 0.5, x)


def _code(name):
    return (codes.SOFTMAX, 0.0) if name == "softmax" else ELEMENTWISE[name]


def _device_cases(cpu_cases, cuda_cases):
    return [
        pytest.param(device, case, id=f"{device}-{case}")
        for device, cases in (("cpu", cpu_cases), ("cuda", cuda_cases))
        for case in cases
    ]


@pytest.mark.parametrize("device,shape", _device_cases(SHAPES, CUDA_SHAPES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ALL)
def test_forward_backward_match_numpy(device, shape, dtype, name, rng):
    ops = ops_for(device)
    code, alpha = _code(name)
    x = _inputs(rng, shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    if name == "softmax":
        y_ref = _softmax(x64)
        dx_ref = y_ref * (dy64 - (dy64 * y_ref).sum(axis=1, keepdims=True))
    else:
        y_ref, slope = _reference(name, x64, alpha)
        dx_ref = dy64 * slope

    y = np.empty(shape, dtype)
    ops.activation_forward(x, code, alpha, y)
    np.testing.assert_allclose(y, y_ref, **_tolerance(dtype))
    dx = np.empty(shape, dtype)
    ops.activation_backward(x, y, dy, code, alpha, dx)
    np.testing.assert_allclose(dx, dx_ref, **_tolerance(dtype))


# A forward launch per perturbed element: the simulator gets a smaller input.
@pytest.mark.parametrize("device,shape", _device_cases([(4, 7)], [(1, 4)]))
@pytest.mark.parametrize("name", ALL)
def test_backward_matches_finite_differences(device, shape, name, rng):
    ops = ops_for(device)
    code, alpha = _code(name)
    x = _inputs(rng, shape)
    dy = rng.standard_normal(x.shape)
    y = np.empty_like(x)

    def objective(values):
        ops.activation_forward(values, code, alpha, y)
        return np.sum(dy * y)

    numeric = numerical_grad(objective, x)
    ops.activation_forward(x, code, alpha, y)
    dx = np.empty_like(x)
    ops.activation_backward(x, y, dy, code, alpha, dx)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_inputs_stay_finite(ops, dtype):
    x = np.array([[-1000.0, -80.0, -1e-9, 0.0, 1e-9, 80.0, 1000.0]], dtype)
    big = np.array([[1000.0, 999.0, -1000.0]], dtype)
    y = np.empty_like(x)
    for name in ELEMENTWISE:
        code, alpha = ELEMENTWISE[name]
        ops.activation_forward(x, code, alpha, y)
        assert np.all(np.isfinite(y)), name
        dx = np.empty_like(x)
        ops.activation_backward(x, y, np.ones_like(x), code, alpha, dx)
        assert np.all(np.isfinite(dx)), name
    ops.activation_forward(x, codes.SIGMOID, 0.0, y)
    np.testing.assert_allclose(y[0, [0, -1]], [0.0, 1.0])
    ops.activation_forward(x, codes.SOFTPLUS, 0.0, y)
    np.testing.assert_allclose(y[0, [0, -1]], [0.0, 1000.0])
    ops.activation_forward(x, codes.TANH, 0.0, y)
    np.testing.assert_allclose(y[0, 2:5], [-1e-9, 0.0, 1e-9], rtol=1e-6)
    soft = np.empty_like(big)
    ops.activation_forward(big, codes.SOFTMAX, 0.0, soft)
    np.testing.assert_allclose(soft, _softmax(big.astype(np.float64)), rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("name", ["relu", "tanh", "softmax"])
def test_in_place_forward_and_backward(ops, name, rng):
    code, alpha = _code(name)
    x = _inputs(rng, (9, 11))
    dy = rng.standard_normal(x.shape)
    y = np.empty_like(x)
    ops.activation_forward(x, code, alpha, y)
    dx = np.empty_like(x)
    ops.activation_backward(x, y, dy, code, alpha, dx)
    in_place = x.copy()
    ops.activation_forward(in_place, code, alpha, in_place)
    np.testing.assert_array_equal(in_place, y)
    ops.activation_backward(x, y, dy, code, alpha, dy)
    np.testing.assert_array_equal(dy, dx)


# ---- nkeras.activations --------------------------------------------------


FRONT_END = {
    "linear": lambda x: x,
    "relu": lambda x: _reference("relu", x, 0.0)[0],
    "sigmoid": lambda x: _reference("sigmoid", x, 0.0)[0],
    "tanh": np.tanh,
    "softmax": lambda x: _softmax(x.reshape(-1, x.shape[-1])).reshape(x.shape),
    "gelu": lambda x: _reference("gelu", x, 0.0)[0],
    "elu": lambda x: _reference("elu", x, 1.0)[0],
    "selu": lambda x: _reference("selu", x, 0.0)[0],
    "leaky_relu": lambda x: _reference("leaky_relu", x, 0.2)[0],
    "silu": lambda x: _reference("silu", x, 0.0)[0],
    "swish": lambda x: _reference("silu", x, 0.0)[0],
    "softplus": lambda x: _reference("softplus", x, 0.0)[0],
}


@pytest.mark.parametrize("name", sorted(FRONT_END))
@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 5)])
def test_functions_by_name_match_references(name, shape, rng):
    x = _inputs(rng, shape) if shape else np.float64(0.7)
    if name == "softmax" and not shape:
        with pytest.raises(ValueError, match="rank"):
            activations.softmax(x)
        return
    y = activations.get(name)(x)
    assert y.shape == np.shape(x) and y.dtype == np.float64
    np.testing.assert_allclose(y, FRONT_END[name](np.asarray(x, np.float64)), rtol=1e-10, atol=1e-12)


def test_functions_keep_float32_and_cast_integers():
    assert activations.relu(np.ones((2, 3), np.float32)).dtype == np.float32
    assert activations.tanh(np.arange(4)).dtype == np.float32


def test_function_parameters(rng):
    x = _inputs(rng, (4, 6))
    np.testing.assert_allclose(activations.elu(x, alpha=0.5), _reference("elu", x, 0.5)[0], rtol=1e-12)
    np.testing.assert_allclose(activations.leaky_relu(x, negative_slope=0.1), np.where(x > 0, x, 0.1 * x))
    np.testing.assert_allclose(
        activations.gelu(x, approximate=True), _reference("gelu_tanh", x, 0.0)[0], rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(activations.relu(x, negative_slope=0.1), np.where(x > 0, x, 0.1 * x))
    np.testing.assert_allclose(activations.relu(x, max_value=1.5), np.clip(x, 0.0, 1.5))
    np.testing.assert_allclose(activations.relu(x, threshold=0.5), np.where(x > 0.5, x, 0.0))
    np.testing.assert_allclose(
        activations.relu(x, negative_slope=0.1, max_value=2.0, threshold=0.5),
        np.where(x > 0.5, np.minimum(x, 2.0), 0.0) - 0.1 * np.maximum(0.5 - x, 0.0),
    )
    e = np.exp(x - x.max(axis=0))
    np.testing.assert_allclose(activations.softmax(x, axis=0), e / e.sum(axis=0), rtol=1e-12)


def test_get_serialize_and_codes():
    assert activations.get(None) is activations.linear
    assert activations.get("swish") is activations.silu
    custom = lambda x: x
    assert activations.get(custom) is custom
    assert activations.serialize(activations.swish) == "silu"
    assert activations.serialize(activations.get("leaky_relu")) == "leaky_relu"
    for name, code in codes.ACTIVATION_CODES.items():
        expected_alpha = {"leaky_relu": 0.2, "elu": 1.0}.get(name, 0.0)
        assert activations.activation_code(name) == (code, expected_alpha)
        assert activations.activation_code(activations.get(name)) == (code, expected_alpha)
    assert activations.activation_code(None) == (codes.LINEAR, 0.0)


def test_errors_list_valid_names():
    with pytest.raises(ValueError, match="valid names: .*'relu'.*'softplus'"):
        activations.get("relu7")
    with pytest.raises(ValueError, match="valid names: .*'gelu'"):
        activations.activation_code("mish")
    with pytest.raises(ValueError, match="must be one of"):
        activations.activation_code(lambda x: x)
    with pytest.raises(ValueError, match="Could not interpret"):
        activations.get(3)


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


@pytest.mark.parametrize("name", sorted(FRONT_END))
def test_functions_match_keras(name, rng):
    keras = _keras()
    x = _inputs(rng, (3, 8)).astype(np.float32)
    expected = np.asarray(keras.activations.get(name)(x))
    np.testing.assert_allclose(activations.get(name)(x), expected, rtol=2e-5, atol=2e-6)
