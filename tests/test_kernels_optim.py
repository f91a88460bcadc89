"""Optimizer update and gradient clipping kernels, on the CPU and the GPU,
against float64 NumPy references written from Keras 3's update rules."""

import numpy as np
import pytest

from devices import ops_for

SIZES = [1, 7, 1001]
# The CUDA simulator is slow: one size, more than one block of 256 threads
# and not a multiple of it.
CUDA_SIZES = [300]
DTYPES = [np.float32, np.float64]
STEPS = 5


def _device_cases(cpu_cases, cuda_cases):
    return [
        pytest.param(device, case, id=f"{device}-{case}")
        for device, cases in (("cpu", cpu_cases), ("cuda", cuda_cases))
        for case in cases
    ]


DEVICE_SIZES = _device_cases(SIZES, CUDA_SIZES)


def reference_sgd(w, g, state, lr, momentum, nesterov, weight_decay):
    w = w - w * weight_decay * lr
    if momentum == 0.0:
        return w - lr * g
    velocity = momentum * state["momentum"] - lr * g
    state["momentum"] = velocity
    return w + (momentum * velocity - lr * g if nesterov else velocity)


def reference_adam(w, g, state, lr, beta_1, beta_2, epsilon, step, amsgrad, weight_decay):
    w = w - w * weight_decay * lr
    state["momentum"] = state["momentum"] + (g - state["momentum"]) * (1 - beta_1)
    state["velocity"] = state["velocity"] + (g * g - state["velocity"]) * (1 - beta_2)
    second_moment = state["velocity"]
    if amsgrad:
        state["velocity_hat"] = np.maximum(state["velocity_hat"], state["velocity"])
        second_moment = state["velocity_hat"]
    alpha = lr * np.sqrt(1 - beta_2**step) / (1 - beta_1**step)
    return w - state["momentum"] * alpha / (np.sqrt(second_moment) + epsilon)


def reference_rmsprop(w, g, state, lr, rho, momentum, epsilon, centered, weight_decay):
    w = w - w * weight_decay * lr
    state["velocity"] = rho * state["velocity"] + (1 - rho) * g * g
    if centered:
        state["average_gradient"] = rho * state["average_gradient"] + (1 - rho) * g
        denominator = state["velocity"] - state["average_gradient"] ** 2 + epsilon
    else:
        denominator = state["velocity"] + epsilon
    increment = lr * g / np.sqrt(denominator)
    if momentum > 0:
        state["momentum"] = momentum * state["momentum"] + increment
        increment = state["momentum"]
    return w - increment


def reference_adagrad(w, g, state, lr, epsilon, weight_decay):
    w = w - w * weight_decay * lr
    state["accumulator"] = state["accumulator"] + g * g
    return w - lr * g / np.sqrt(state["accumulator"] + epsilon)


def reference_clip_by_segment_norm(g, segments, clipnorm):
    g = g.copy()
    for start, stop in zip(segments[:-1], segments[1:]):
        norm = np.sqrt(np.sum(g[start:stop] ** 2))
        g[start:stop] = g[start:stop] * clipnorm / max(norm, clipnorm)
    return g


def reference_clip_by_global_norm(g, clipnorm):
    norm = np.sqrt(np.sum(g**2))
    return g * clipnorm / max(norm, clipnorm), norm


def _tolerance(dtype):
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def _run(kernel_call, reference_call, slot_names, size, dtype, rng, slot_init=None):
    """Run ``STEPS`` updates through the kernel (in ``dtype``) and the float64
    reference from the same start; compare parameters and slots."""
    params = rng.standard_normal(size).astype(dtype)
    slots = {name: np.full(size, slot_init.get(name, 0.0) if slot_init else 0.0, dtype) for name in slot_names}
    w = params.astype(np.float64)
    state = {name: buf.astype(np.float64) for name, buf in slots.items()}
    for step in range(1, STEPS + 1):
        grads = rng.standard_normal(size).astype(dtype)
        kernel_call(params, grads, slots, step)
        w = reference_call(w, grads.astype(np.float64), state, step)
    np.testing.assert_allclose(params, w, **_tolerance(dtype))
    for name in slot_names:
        np.testing.assert_allclose(slots[name], state[name], err_msg=name, **_tolerance(dtype))


def _buffer(slots, name, dtype):
    return slots[name] if name in slots else np.empty(0, dtype)


@pytest.mark.parametrize("device,size", DEVICE_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov,weight_decay", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.01),
                                                            (0.0, True, 0.05)])
def test_sgd_update_matches_numpy(device, size, dtype, momentum, nesterov, weight_decay, rng):
    ops = ops_for(device)
    lr = 0.05
    names = ["momentum"] if momentum else []
    _run(
        lambda p, g, s, step: ops.sgd_update(p, g, _buffer(s, "momentum", dtype), lr, momentum, nesterov,
                                             weight_decay),
        lambda w, g, state, step: reference_sgd(w, g, state, lr, momentum, nesterov, weight_decay),
        names, size, dtype, rng,
    )


@pytest.mark.parametrize("device,size", DEVICE_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("amsgrad,weight_decay,betas", [(False, 0.0, (0.9, 0.999)), (True, 0.0, (0.9, 0.999)),
                                                        (False, 0.004, (0.5, 0.8)), (True, 0.1, (0.7, 0.9))])
def test_adam_update_matches_numpy(device, size, dtype, amsgrad, weight_decay, betas, rng):
    ops = ops_for(device)
    lr, epsilon = 0.01, 1e-7
    beta_1, beta_2 = betas
    names = ["momentum", "velocity"] + (["velocity_hat"] if amsgrad else [])
    _run(
        lambda p, g, s, step: ops.adam_update(p, g, s["momentum"], s["velocity"], _buffer(s, "velocity_hat", dtype),
                                              lr, beta_1, beta_2, epsilon, step, amsgrad, weight_decay),
        lambda w, g, state, step: reference_adam(w, g, state, lr, beta_1, beta_2, epsilon, step, amsgrad,
                                                 weight_decay),
        names, size, dtype, rng,
    )


@pytest.mark.parametrize("device,size", DEVICE_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,centered,weight_decay", [(0.0, False, 0.0), (0.5, False, 0.0), (0.0, True, 0.0),
                                                            (0.9, True, 0.02)])
def test_rmsprop_update_matches_numpy(device, size, dtype, momentum, centered, weight_decay, rng):
    ops = ops_for(device)
    lr, rho, epsilon = 0.01, 0.8, 1e-7
    names = ["velocity"] + (["momentum"] if momentum else []) + (["average_gradient"] if centered else [])
    _run(
        lambda p, g, s, step: ops.rmsprop_update(p, g, s["velocity"], _buffer(s, "average_gradient", dtype),
                                                 _buffer(s, "momentum", dtype), lr, rho, momentum, epsilon, centered,
                                                 weight_decay),
        lambda w, g, state, step: reference_rmsprop(w, g, state, lr, rho, momentum, epsilon, centered, weight_decay),
        names, size, dtype, rng,
    )


@pytest.mark.parametrize("device,size", DEVICE_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.03])
def test_adagrad_update_matches_numpy(device, size, dtype, weight_decay, rng):
    ops = ops_for(device)
    lr, epsilon = 0.1, 1e-7
    _run(
        lambda p, g, s, step: ops.adagrad_update(p, g, s["accumulator"], lr, epsilon, weight_decay),
        lambda w, g, state, step: reference_adagrad(w, g, state, lr, epsilon, weight_decay),
        ["accumulator"], size, dtype, rng, slot_init={"accumulator": 0.1},
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_unused_slot_buffers_are_not_touched(ops, dtype, rng):
    size = 9
    params = rng.standard_normal(size).astype(dtype)
    grads = rng.standard_normal(size).astype(dtype)
    sentinel = np.full(size, 7.0, dtype)
    full = [np.zeros(size, dtype) for _ in range(2)]
    unused = sentinel.copy()
    ops.sgd_update(params, grads, unused, 0.1, 0.0, True, 0.0)
    ops.adam_update(params, grads, full[0], full[1], unused, 0.1, 0.9, 0.999, 1e-7, 1, False, 0.0)
    average_grad, momentum_buf = sentinel.copy(), sentinel.copy()
    ops.rmsprop_update(params, grads, full[0], average_grad, momentum_buf, 0.1, 0.9, 0.0, 1e-7, False, 0.0)
    for buf in (unused, average_grad, momentum_buf):
        np.testing.assert_array_equal(buf, sentinel)


@pytest.mark.parametrize("device,size", DEVICE_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_by_value_matches_numpy(device, size, dtype, rng):
    ops = ops_for(device)
    grads = (3 * rng.standard_normal(size)).astype(dtype)
    expected = np.clip(grads.astype(np.float64), -1.5, 1.5)
    ops.clip_by_value(grads, 1.5)
    np.testing.assert_array_equal(grads, expected.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device,sizes", _device_cases([[1], [7], [3, 1, 1001, 0, 5]], [[3, 300, 0]]))
@pytest.mark.parametrize("clipnorm", [0.3, 1.0, 50.0])
def test_clip_by_segment_norm_matches_numpy(device, dtype, sizes, clipnorm, rng):
    ops = ops_for(device)
    segments = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    grads = (rng.standard_normal(segments[-1]) * rng.uniform(0.1, 2.0)).astype(dtype)
    expected = reference_clip_by_segment_norm(grads.astype(np.float64), segments, clipnorm)
    ops.clip_by_segment_norm(grads, segments, clipnorm)
    np.testing.assert_allclose(grads, expected, **_tolerance(dtype))
    for start, stop in zip(segments[:-1], segments[1:]):
        assert np.linalg.norm(grads[start:stop].astype(np.float64)) <= clipnorm * (1 + 1e-5)


@pytest.mark.parametrize("device,size", DEVICE_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clipnorm", [0.3, 1e3])
def test_clip_by_global_norm_matches_numpy(device, size, dtype, clipnorm, rng):
    ops = ops_for(device)
    grads = rng.standard_normal(size).astype(dtype)
    expected, norm = reference_clip_by_global_norm(grads.astype(np.float64), clipnorm)
    norm_out = np.zeros(1)
    ops.clip_by_global_norm(grads, clipnorm, norm_out)
    np.testing.assert_allclose(norm_out[0], norm, rtol=1e-12)
    np.testing.assert_allclose(grads, expected, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_clipping_edge_cases_follow_keras(ops, dtype):
    zeros = np.zeros(4, dtype)
    ops.clip_by_segment_norm(zeros, np.array([0, 2, 4], np.int64), 1.0)
    norm_out = np.zeros(1)
    ops.clip_by_global_norm(zeros, 1.0, norm_out)
    assert not np.any(zeros) and norm_out[0] == 0.0
    with_inf = np.array([np.inf, 1.0, 2.0], dtype)
    ops.clip_by_global_norm(with_inf, 1.0, norm_out)
    assert np.all(np.isnan(with_inf))
    with_nan = np.array([np.nan, 1.0, 3.0], dtype)
    ops.clip_by_value(with_nan, 2.0)
    np.testing.assert_array_equal(with_nan, np.array([np.nan, 1.0, 2.0], dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_divisor_gives_nan_as_in_keras(ops, dtype):
    params = np.ones(3, dtype)
    ops.adagrad_update(params, np.zeros(3, dtype), np.zeros(3, dtype), 0.1, 0.0, 0.0)
    assert np.all(np.isnan(params))
