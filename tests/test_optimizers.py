"""Optimizer classes, learning rate schedules, and parity with Keras 3."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from nkeras import optimizers
from nkeras.backend import get_device
from nkeras.optimizers import schedules
from tests.test_kernels_optim import (
    reference_adagrad,
    reference_adam,
    reference_clip_by_global_norm,
    reference_clip_by_segment_norm,
    reference_rmsprop,
    reference_sgd,
)

SHAPES = [(3, 4), (4,), (1,), (7,)]


def _flat_problem(rng, dtype, steps):
    sizes = [math.prod(shape) for shape in SHAPES]
    segments = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    params = rng.standard_normal(segments[-1]).astype(dtype)
    grads = [(2 * rng.standard_normal(segments[-1])).astype(dtype) for _ in range(steps)]
    return params, segments, grads


def _run_nkeras(optimizer, params, segments, grad_steps):
    device = get_device("cpu")
    params = params.copy()
    grads = np.zeros_like(params)
    optimizer.build(device, params, segments)
    for step_grads in grad_steps:
        grads[...] = step_grads
        optimizer.apply(device.ops, params, grads)
    return params


# ---- optimizers vs the float64 NumPy references --------------------------------

CASES = [
    ("SGD", {"learning_rate": 0.1}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01, "clipnorm": 0.5}),
    ("Adam", {"learning_rate": 0.01, "amsgrad": True, "clipvalue": 0.3}),
    ("AdamW", {"learning_rate": 0.01, "global_clipnorm": 1.0}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
    ("Adagrad", {"learning_rate": 0.1, "weight_decay": 0.02}),
]


def _reference_run(class_name, kwargs, params, segments, grad_steps, learning_rates):
    """The same steps in float64 NumPy: Keras's clipping, then the update."""
    defaults = optimizers.ALL_OBJECTS_DICT[class_name.lower()]().get_config()
    config = {**defaults, **kwargs}
    w = params.astype(np.float64)
    names = {"SGD": ["momentum"], "Adagrad": ["accumulator"]}.get(class_name, ["momentum", "velocity", "velocity_hat",
                                                                               "average_gradient"])
    state = {name: np.zeros_like(w) for name in names}
    if class_name == "Adagrad":
        state["accumulator"] += config["initial_accumulator_value"]
    weight_decay = config["weight_decay"] or 0.0
    for step, (step_grads, lr) in enumerate(zip(grad_steps, learning_rates), start=1):
        g = step_grads.astype(np.float64)
        if config["clipnorm"]:
            g = reference_clip_by_segment_norm(g, segments, config["clipnorm"])
        elif config["global_clipnorm"]:
            g = reference_clip_by_global_norm(g, config["global_clipnorm"])[0]
        elif config["clipvalue"]:
            g = np.clip(g, -config["clipvalue"], config["clipvalue"])
        if class_name == "SGD":
            w = reference_sgd(w, g, state, lr, config["momentum"], config["nesterov"], weight_decay)
        elif class_name in ("Adam", "AdamW"):
            w = reference_adam(w, g, state, lr, config["beta_1"], config["beta_2"], config["epsilon"], step,
                               config["amsgrad"], weight_decay)
        elif class_name == "RMSprop":
            w = reference_rmsprop(w, g, state, lr, config["rho"], config["momentum"], config["epsilon"],
                                  config["centered"], weight_decay)
        else:
            w = reference_adagrad(w, g, state, lr, config["epsilon"], weight_decay)
    return w


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("class_name,kwargs", CASES)
def test_optimizer_steps_match_numpy(class_name, kwargs, dtype, rng):
    params, segments, grad_steps = _flat_problem(rng, dtype, steps=4)
    optimizer = getattr(optimizers, class_name)(**kwargs)
    result = _run_nkeras(optimizer, params, segments, grad_steps)
    expected = _reference_run(class_name, kwargs, params, segments, grad_steps, [kwargs["learning_rate"]] * 4)
    tolerance = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(result, expected, **tolerance)
    assert optimizer.iterations == 4


def test_schedule_is_evaluated_at_iterations_before_the_increment(rng):
    schedule = schedules.PiecewiseConstantDecay([0, 2], [0.3, 0.1, 0.02])
    params, segments, grad_steps = _flat_problem(rng, np.float64, steps=4)
    optimizer = optimizers.SGD(learning_rate=schedule, momentum=0.5, weight_decay=0.1)
    assert optimizer.learning_rate == 0.3
    result = _run_nkeras(optimizer, params, segments, grad_steps)
    expected = _reference_run("SGD", {"momentum": 0.5, "weight_decay": 0.1}, params, segments, grad_steps,
                              [0.3, 0.1, 0.1, 0.02])
    np.testing.assert_allclose(result, expected, rtol=1e-12)
    assert optimizer.learning_rate == 0.02


# ---- engine API ---------------------------------------------------------------


@pytest.mark.parametrize(
    "optimizer,names",
    [
        (optimizers.SGD(), []),
        (optimizers.SGD(momentum=0.9), ["momentum"]),
        (optimizers.Adam(), ["momentum", "velocity"]),
        (optimizers.AdamW(amsgrad=True), ["momentum", "velocity", "velocity_hat"]),
        (optimizers.RMSprop(), ["velocity"]),
        (optimizers.RMSprop(momentum=0.1, centered=True), ["velocity", "momentum", "average_gradient"]),
        (optimizers.Adagrad(initial_accumulator_value=0.25), ["accumulator"]),
    ],
)
def test_slot_buffers_follow_the_options(optimizer, names):
    params = np.ones(11, np.float32)
    optimizer.build(get_device("cpu"), params, np.array([0, 4, 11]))
    slots = optimizer.slot_buffers()
    assert [name for name, _ in slots] == names
    for name, buffer in slots:
        assert buffer.shape == (11,) and buffer.dtype == np.float32
        np.testing.assert_array_equal(buffer, 0.25 if name == "accumulator" else 0.0)


def test_set_slot_buffers_round_trip_and_errors(rng):
    params, segments, grad_steps = _flat_problem(rng, np.float32, steps=2)
    trained = optimizers.Adam()
    _run_nkeras(trained, params, segments, grad_steps)
    saved = [(name, buffer.copy()) for name, buffer in trained.slot_buffers()]
    fresh = optimizers.Adam()
    fresh.build(get_device("cpu"), params.copy(), segments)
    fresh.set_slot_buffers(saved)
    for (_, loaded), (_, original) in zip(fresh.slot_buffers(), saved):
        np.testing.assert_array_equal(loaded, original)
    with pytest.raises(ValueError, match="expected slot buffers"):
        fresh.set_slot_buffers(saved[:1])
    with pytest.raises(ValueError, match="shape"):
        fresh.set_slot_buffers([(name, buffer[:3]) for name, buffer in saved])
    with pytest.raises(ValueError, match="built"):
        optimizers.Adam().set_slot_buffers(saved)


def test_rebuild_keeps_state_for_the_same_layout_only(rng):
    params, segments, grad_steps = _flat_problem(rng, np.float32, steps=2)
    optimizer = optimizers.RMSprop()
    _run_nkeras(optimizer, params, segments, grad_steps)
    velocity = optimizer.slot_buffers()[0][1]
    optimizer.build(get_device("cpu"), params.copy(), segments)
    assert optimizer.slot_buffers()[0][1] is velocity and optimizer.iterations == 2
    optimizer.build(get_device("cpu"), params[:5].copy(), np.array([0, 5]))
    assert optimizer.slot_buffers()[0][1].shape == (5,) and not np.any(optimizer.slot_buffers()[0][1])


def test_apply_before_build_and_bad_segments_raise():
    with pytest.raises(RuntimeError, match="build"):
        optimizers.SGD().apply(get_device("cpu").ops, np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="segments"):
        optimizers.SGD().build(get_device("cpu"), np.ones(3), np.array([0, 2]))
    with pytest.raises(ValueError, match="1-D"):
        optimizers.SGD().build(get_device("cpu"), np.ones((3, 1)), np.array([0, 3]))


def test_learning_rate_is_settable_unless_a_schedule_was_given():
    optimizer = optimizers.Adam(learning_rate=0.01)
    optimizer.learning_rate = 0.5
    assert optimizer.learning_rate == 0.5 and optimizer.get_config()["learning_rate"] == 0.5
    optimizer.learning_rate = schedules.ExponentialDecay(0.1, 10, 0.5)
    assert optimizer.learning_rate == pytest.approx(0.1)
    with pytest.raises(TypeError, match="not settable"):
        optimizer.learning_rate = 0.2
    with pytest.raises(ValueError, match="learning_rate"):
        optimizer.learning_rate = "fast"


def test_defaults_and_names_follow_keras():
    assert [optimizers.Adam().name, optimizers.Adam().name, optimizers.AdamW().name, optimizers.RMSprop().name] == [
        "adam", "adam_1", "adam_w", "rm_sprop"]
    assert optimizers.SGD(name="mine").name == "mine"
    assert optimizers.SGD().learning_rate == 0.01
    adam = optimizers.Adam()
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon, adam.amsgrad) == (
        0.001, 0.9, 0.999, 1e-7, False)
    assert optimizers.AdamW().weight_decay == 0.004
    rmsprop = optimizers.RMSprop()
    assert (rmsprop.learning_rate, rmsprop.rho, rmsprop.momentum, rmsprop.epsilon, rmsprop.centered) == (
        0.001, 0.9, 0.0, 1e-7, False)
    assert optimizers.Adagrad().initial_accumulator_value == 0.1


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: optimizers.SGD(clipnorm=1.0, clipvalue=1.0), "Only one of"),
        (lambda: optimizers.Adam(global_clipnorm=1.0, clipnorm=2.0), "Only one of"),
        (lambda: optimizers.AdamW(weight_decay=None), "weight_decay"),
        (lambda: optimizers.SGD(momentum=1.5), "momentum"),
        (lambda: optimizers.Adam(beta_1=1.0), "beta_1"),
        (lambda: optimizers.RMSprop(rho=-0.1), "rho"),
        (lambda: optimizers.Adagrad(initial_accumulator_value=-1.0), "initial_accumulator_value"),
        (lambda: optimizers.SGD(clipnorm=-1.0), "clipnorm"),
        (lambda: optimizers.SGD(learning_rate="0.1"), "learning_rate"),
        (lambda: optimizers.Adam(use_ema=True), "use_ema"),
        (lambda: optimizers.Adam(gradient_accumulation_steps=4), "gradient_accumulation_steps"),
        (lambda: optimizers.Adam(betta_1=0.5), "not recognized"),
    ],
)
def test_bad_arguments_raise_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_get_resolves_names_configs_and_instances():
    assert isinstance(optimizers.get("adam"), optimizers.Adam)
    assert isinstance(optimizers.get("RMSprop"), optimizers.RMSprop)
    assert type(optimizers.get("ADAMW")) is optimizers.AdamW
    assert isinstance(optimizers.get({"class_name": "SGD", "config": {"momentum": 0.5}}), optimizers.SGD)
    instance = optimizers.Adagrad()
    assert optimizers.get(instance) is instance
    assert optimizers.get(None) is None
    with pytest.raises(ValueError, match=r"valid names: \['adagrad', 'adam', 'adamw', 'rmsprop', 'sgd'\]"):
        optimizers.get("adamm")
    with pytest.raises(ValueError, match="Could not interpret"):
        optimizers.get(3)


@pytest.mark.parametrize(
    "optimizer",
    [
        optimizers.SGD(learning_rate=0.2, momentum=0.8, nesterov=True, clipnorm=1.0),
        optimizers.Adam(learning_rate=schedules.ExponentialDecay(0.1, 5, 0.9, staircase=True), amsgrad=True),
        optimizers.AdamW(learning_rate=schedules.CosineDecay(0.1, 100, warmup_target=0.2, warmup_steps=10),
                         global_clipnorm=2.0),
        optimizers.RMSprop(learning_rate=schedules.PiecewiseConstantDecay([10, 20], [0.1, 0.01, 0.001]),
                           centered=True, clipvalue=0.5),
        optimizers.Adagrad(initial_accumulator_value=0.3, epsilon=1e-6, weight_decay=0.01),
    ],
)
def test_get_config_round_trip(optimizer):
    config = optimizer.get_config()
    json.dumps(config)
    restored = type(optimizer).from_config(config)
    assert restored.get_config() == config
    via_serialize = optimizers.deserialize(json.loads(json.dumps(optimizers.serialize(optimizer))))
    assert type(via_serialize) is type(optimizer) and via_serialize.get_config() == config
    for step in (0, 7, 15, 150):
        optimizer.iterations = restored.iterations = step
        assert restored.learning_rate == optimizer.learning_rate


# ---- schedules ---------------------------------------------------------------

STEPS = np.array([0, 1, 3, 5, 9, 10, 11, 40, 99, 100, 101, 250])


def test_exponential_decay_formula():
    smooth = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    stairs = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    np.testing.assert_allclose([smooth(s) for s in STEPS], 0.1 * 0.5 ** (STEPS / 10), rtol=1e-14)
    np.testing.assert_allclose([stairs(s) for s in STEPS], 0.1 * 0.5 ** (STEPS // 10), rtol=1e-14)


def test_piecewise_constant_decay_formula():
    schedule = schedules.PiecewiseConstantDecay([10, 100], [1.0, 0.5, 0.1])
    expected = np.where(STEPS <= 10, 1.0, np.where(STEPS <= 100, 0.5, 0.1))
    np.testing.assert_array_equal([schedule(s) for s in STEPS], expected)


def test_cosine_decay_formula():
    schedule = schedules.CosineDecay(0.2, decay_steps=100, alpha=0.1)
    fraction = np.minimum(STEPS, 100) / 100
    expected = 0.2 * (0.9 * 0.5 * (1 + np.cos(np.pi * fraction)) + 0.1)
    np.testing.assert_allclose([schedule(s) for s in STEPS], expected, rtol=1e-14)
    warm = schedules.CosineDecay(0.0, decay_steps=100, warmup_target=0.4, warmup_steps=10)
    fraction = np.clip(STEPS - 10, 0, 100) / 100
    expected = np.where(STEPS < 10, 0.4 * STEPS / 10, 0.4 * 0.5 * (1 + np.cos(np.pi * fraction)))
    np.testing.assert_allclose([warm(s) for s in STEPS], expected, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: schedules.ExponentialDecay(0.1, 0, 0.5), "decay_steps"),
        (lambda: schedules.ExponentialDecay(0.1, 10, -0.5), "decay_rate"),
        (lambda: schedules.ExponentialDecay("0.1", 10, 0.5), "initial_learning_rate"),
        (lambda: schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2]), "1 less than"),
        (lambda: schedules.PiecewiseConstantDecay([5, 2], [0.1, 0.2, 0.3]), "non-decreasing"),
        (lambda: schedules.CosineDecay(0.1, -5), "decay_steps"),
        (lambda: schedules.CosineDecay(0.1, 5, warmup_target=0.2, warmup_steps=-1), "warmup_steps"),
        (lambda: schedules.deserialize({"class_name": "Nope", "config": {}}), "valid names"),
    ],
)
def test_schedule_bad_arguments_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_schedule_config_round_trip():
    for schedule in (
        schedules.ExponentialDecay(0.1, 7, 0.3, staircase=True, name="exp"),
        schedules.PiecewiseConstantDecay([3, 8], [0.3, 0.2, 0.1]),
        schedules.CosineDecay(0.05, 30, alpha=0.2, warmup_target=0.1, warmup_steps=4),
    ):
        restored = schedules.deserialize(json.loads(json.dumps(schedules.serialize(schedule))))
        assert type(restored) is type(schedule) and restored.get_config() == schedule.get_config()
        assert [restored(s) for s in STEPS] == [schedule(s) for s in STEPS]


# ---- parity with Keras 3 -------------------------------------------------------------

_KERAS_SCRIPT = r"""
import json, sys
import numpy as np
import keras

spec = json.load(sys.stdin)
result = {"optimizers": [], "schedules": []}
for case in spec["optimizers"]:
    kwargs = dict(case["kwargs"])
    if case["schedule"]:
        kwargs["learning_rate"] = getattr(keras.optimizers.schedules, case["schedule"]["class_name"])(
            **case["schedule"]["config"])
    optimizer = getattr(keras.optimizers, case["class_name"])(**kwargs)
    variables = [keras.Variable(np.array(v, dtype="float32")) for v in case["initial"]]
    for step_grads in case["grads"]:
        optimizer.apply([np.array(g, dtype="float32") for g in step_grads], variables)
    result["optimizers"].append({
        "values": [np.asarray(v.value).ravel().tolist() for v in variables],
        "serialized": keras.optimizers.serialize(optimizer),
    })
for case in spec["schedules"]:
    schedule = getattr(keras.optimizers.schedules, case["class_name"])(**case["config"])
    result["schedules"].append([float(schedule(step)) for step in spec["steps"]])
print(json.dumps(result))
"""

PARITY_CASES = [
    ("SGD", {"learning_rate": 0.1}, None),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.9}, None),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, None),
    ("SGD", {"momentum": 0.5, "clipvalue": 0.5},
     {"class_name": "CosineDecay", "config": {"initial_learning_rate": 0.1, "decay_steps": 3, "alpha": 0.1,
                                              "warmup_target": 0.2, "warmup_steps": 2}}),
    ("Adam", {"learning_rate": 0.01}, None),
    ("Adam", {"learning_rate": 0.01, "amsgrad": True, "clipnorm": 0.5}, None),
    ("Adam", {"weight_decay": 0.1},
     {"class_name": "ExponentialDecay", "config": {"initial_learning_rate": 0.02, "decay_steps": 2,
                                                   "decay_rate": 0.5}}),
    ("AdamW", {"learning_rate": 0.01}, None),
    ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.05, "amsgrad": True, "global_clipnorm": 1.0}, None),
    ("RMSprop", {"learning_rate": 0.01}, None),
    ("RMSprop", {"learning_rate": 0.01, "centered": True, "momentum": 0.5, "clipvalue": 0.1}, None),
    ("RMSprop", {"rho": 0.8, "momentum": 0.9, "weight_decay": 0.02},
     {"class_name": "PiecewiseConstantDecay", "config": {"boundaries": [1, 3], "values": [0.1, 0.05, 0.01]}}),
    ("Adagrad", {"learning_rate": 0.1}, None),
    ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.5, "global_clipnorm": 1.0}, None),
]

PARITY_SCHEDULES = [
    {"class_name": "ExponentialDecay", "config": {"initial_learning_rate": 0.1, "decay_steps": 10,
                                                  "decay_rate": 0.96}},
    {"class_name": "ExponentialDecay", "config": {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5,
                                                  "staircase": True}},
    {"class_name": "PiecewiseConstantDecay", "config": {"boundaries": [10, 100], "values": [1.0, 0.5, 0.1]}},
    {"class_name": "CosineDecay", "config": {"initial_learning_rate": 0.2, "decay_steps": 100, "alpha": 0.1}},
    {"class_name": "CosineDecay", "config": {"initial_learning_rate": 0.01, "decay_steps": 100, "warmup_target": 0.4,
                                             "warmup_steps": 10}},
]


@pytest.fixture(scope="module")
def keras_parity():
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("jax") is None:
        pytest.skip("keras 3 with the jax backend is not installed")
    rng = np.random.default_rng(7)
    cases = []
    for class_name, kwargs, schedule in PARITY_CASES:
        initial = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]
        grads = [[(2 * rng.standard_normal(shape)).astype(np.float32) for shape in SHAPES] for _ in range(6)]
        cases.append({"class_name": class_name, "kwargs": kwargs, "schedule": schedule,
                      "initial": [v.tolist() for v in initial],
                      "grads": [[g.tolist() for g in step] for step in grads]})
    spec = {"optimizers": cases, "schedules": PARITY_SCHEDULES, "steps": STEPS.tolist()}
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run([sys.executable, "-c", _KERAS_SCRIPT], input=json.dumps(spec), capture_output=True,
                               text=True, env=env, timeout=300)
    if completed.returncode != 0:
        pytest.fail(f"the Keras reference run failed:\n{completed.stderr[-3000:]}")
    return cases, json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("index", range(len(PARITY_CASES)))
def test_optimizer_matches_keras(keras_parity, index):
    cases, result = keras_parity
    case, keras_result = cases[index], result["optimizers"][index]
    kwargs = dict(case["kwargs"])
    if case["schedule"]:
        kwargs["learning_rate"] = schedules.deserialize(case["schedule"])
    optimizer = getattr(optimizers, case["class_name"])(**kwargs)
    params = np.concatenate([np.asarray(v, np.float32).ravel() for v in case["initial"]])
    sizes = [math.prod(shape) for shape in SHAPES]
    segments = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    grad_steps = [np.concatenate([np.asarray(g, np.float32).ravel() for g in step]) for step in case["grads"]]
    result = _run_nkeras(optimizer, params, segments, grad_steps)
    expected = np.concatenate([np.asarray(v, np.float32) for v in keras_result["values"]])
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("index", range(len(PARITY_CASES)))
def test_keras_optimizer_configs_load(keras_parity, index):
    cases, result = keras_parity
    serialized = result["optimizers"][index]["serialized"]
    restored = optimizers.deserialize(serialized)
    assert type(restored).__name__ == cases[index]["class_name"]
    keras_config = serialized["config"]
    for key, value in restored.get_config().items():
        if key == "name":
            continue
        if isinstance(value, dict):
            assert value["class_name"] == keras_config[key]["class_name"]
        elif isinstance(value, float):
            assert value == pytest.approx(keras_config[key], rel=1e-6)
        else:
            assert value == keras_config[key], key


@pytest.mark.parametrize("index", range(len(PARITY_SCHEDULES)))
def test_schedule_matches_keras(keras_parity, index):
    _, result = keras_parity
    schedule = schedules.deserialize(PARITY_SCHEDULES[index])
    np.testing.assert_allclose([schedule(s) for s in STEPS], result["schedules"][index], rtol=2e-6, atol=1e-9)
