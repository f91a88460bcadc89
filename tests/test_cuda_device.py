"""The CUDA device: twins of every CPU op, device selection, and training on
the GPU (numba-cuda's simulator in CI) against the CPU.

These tests need numba-cuda (in the test extra). With the simulator they
check what the kernels compute; with NUMBA_ENABLE_CUDASIM=0 on a machine
with a GPU they run the same checks there.
"""

import importlib
import inspect

import numpy as np
import pytest

import nkeras as keras
from nkeras import backend
from nkeras.backend.kernel_set import FAMILIES
from nkeras.layers import Dense, Dropout, Flatten


def _public_ops(module):
    """The module's public functions (the Python function behind an @njit one)."""
    ops = {}
    for name, value in vars(module).items():
        function = getattr(value, "py_func", value)
        if not name.startswith("_") and inspect.isfunction(function) and function.__module__ == module.__name__:
            ops[name] = function
    return ops


@pytest.mark.parametrize("family", FAMILIES)
def test_every_cpu_op_has_a_cuda_twin_with_the_same_signature(family):
    cpu = _public_ops(importlib.import_module(f"nkeras.kernels.cpu.{family}"))
    cuda = _public_ops(importlib.import_module(f"nkeras.kernels.cuda.{family}"))
    assert cpu, family
    missing = sorted(set(cpu) - set(cuda))
    assert not missing, f"kernels/cuda/{family}.py lacks {missing}"
    for name, function in cpu.items():
        assert inspect.signature(cuda[name]) == inspect.signature(function), name


# ---- device selection ------------------------------------------------------


@pytest.fixture
def device_state(monkeypatch):
    """Undo set_device and environment changes made by a test."""
    monkeypatch.delenv("NKERAS_DEVICE", raising=False)
    yield monkeypatch
    backend.set_device(None)


def test_default_device_is_cpu_without_a_real_gpu(device_state):
    # The simulator is a test tool, not a GPU: it never becomes the default.
    assert not backend.cuda_available()
    assert keras.config.device() == "cpu"


def test_set_device_env_and_scope_choose_the_device(device_state):
    device_state.setenv("NKERAS_DEVICE", "cuda")
    assert keras.config.device() == "cuda"
    keras.config.set_device("cpu")
    assert keras.config.device() == "cpu"
    with keras.device("cuda"):
        assert keras.config.device() == "cuda"
        model = keras.Sequential([keras.Input(shape=(3,)), Dense(2)])
        with keras.device("cpu"):
            assert keras.config.device() == "cpu"
    assert model._device.name == "cuda"
    assert keras.config.device() == "cpu"


def test_device_names_are_checked(device_state):
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        keras.config.set_device("gpu")
    device_state.setenv("NKERAS_DEVICE", "tpu")
    with pytest.raises(ValueError, match="NKERAS_DEVICE: unknown device 'tpu'"):
        keras.config.device()


def test_cuda_without_a_gpu_is_a_clear_error(device_state):
    class NoGpu:
        @staticmethod
        def is_available():
            return False

    device_state.setattr(backend, "_numba_cuda", lambda: NoGpu)
    device_state.setattr(backend, "_simulated", lambda cuda: False)
    device_state.setattr(backend, "_DEVICES", {})
    with pytest.raises(RuntimeError, match="no usable CUDA GPU"):
        keras.config.set_device("cuda")
    with pytest.raises(RuntimeError, match="no usable CUDA GPU"):
        with keras.device("cuda"):
            pass
    device_state.setattr(backend, "_numba_cuda", lambda: None)
    with pytest.raises(RuntimeError, match="numba-cuda"):
        backend.get_device("cuda")


# ---- training on the device against the CPU ---------------------------------


def _data(rng, n=20):
    x = rng.standard_normal((n, 2, 3)).astype(np.float32)
    y = (x.reshape(n, -1) @ rng.standard_normal((6, 3))).argmax(axis=1)
    return x, y


def _mlp(optimizer="adam"):
    keras.utils.set_random_seed(7)
    model = keras.Sequential([
        keras.Input(shape=(2, 3)),
        Flatten(),
        Dense(8, activation="tanh"),
        Dropout(0.25),
        Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _on(device, build):
    with keras.device(device):
        return build()


def test_fit_evaluate_predict_on_cuda_match_the_cpu(rng):
    x, y = _data(rng)
    results = {}
    for device in ("cpu", "cuda"):
        model = _on(device, _mlp)
        history = model.fit(x, y, batch_size=8, epochs=2, validation_split=0.2, verbose=0)
        results[device] = (
            history.history, model.evaluate(x, y, batch_size=16, verbose=0), model.predict(x, batch_size=16, verbose=0),
            model.get_weights(),
        )
        assert model._device.name == device
    (cpu_history, cpu_eval, cpu_pred, cpu_weights), (gpu_history, gpu_eval, gpu_pred, gpu_weights) = (
        results["cpu"], results["cuda"]
    )
    assert sorted(cpu_history) == sorted(gpu_history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    for key in cpu_history:
        np.testing.assert_allclose(gpu_history[key], cpu_history[key], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gpu_eval, cpu_eval, rtol=1e-5, atol=1e-6)
    assert isinstance(gpu_pred, np.ndarray) and gpu_pred.shape == (20, 3)
    np.testing.assert_allclose(gpu_pred, cpu_pred, rtol=1e-5, atol=1e-6)
    for gpu, cpu in zip(gpu_weights, cpu_weights):
        assert isinstance(gpu, np.ndarray)
        np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-6)


def test_two_output_model_with_sample_weights_on_cuda_matches_the_cpu(rng):
    x = rng.standard_normal((12, 4)).astype(np.float32)
    y_class = rng.integers(0, 3, 12)
    y_value = rng.standard_normal((12, 2)).astype(np.float32)
    weights = rng.uniform(0.5, 2.0, 12).astype(np.float32)

    def build():
        keras.utils.set_random_seed(3)
        inputs = keras.Input(shape=(4,))
        hidden = Dense(5, activation="relu", name="hidden")(inputs)
        label = Dense(3, activation="softmax", name="label")(hidden)
        value = Dense(2, name="value")(hidden)
        model = keras.Model(inputs, [label, value])
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=["sparse_categorical_crossentropy", "mse"],
                      loss_weights=[1.0, 0.5], metrics=[["accuracy"], ["mae"]])
        return model

    histories = {}
    for device in ("cpu", "cuda"):
        model = _on(device, build)
        histories[device] = model.fit(x, [y_class, y_value], sample_weight=weights, batch_size=5, epochs=2,
                                      shuffle=False, verbose=0).history
    assert sorted(histories["cpu"]) == sorted(histories["cuda"])
    for key, values in histories["cpu"].items():
        np.testing.assert_allclose(histories["cuda"][key], values, rtol=1e-5, atol=1e-6, err_msg=key)


def test_generator_input_and_streamed_arrays_on_cuda(rng, monkeypatch):
    x, y = _data(rng, 16)
    reference = _on("cpu", _mlp)
    expected = reference.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history["loss"]

    model = _on("cuda", _mlp)
    batches = ((x[i:i + 8], y[i:i + 8]) for i in range(0, 16, 8))
    np.testing.assert_allclose(model.fit(batches, epochs=1, verbose=0).history["loss"], expected, rtol=1e-5)

    # Data that does not fit in device memory is gathered on the host and copied up per batch.
    from nkeras.backend.cuda import CudaDevice

    monkeypatch.setattr(CudaDevice, "memory_info", lambda self: (64, 1 << 30))
    model = _on("cuda", _mlp)
    np.testing.assert_allclose(model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history["loss"],
                               expected, rtol=1e-5)


def test_weights_round_trip_and_eager_layer_call_on_cuda(rng):
    model = _on("cuda", _mlp)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()]
    model.set_weights(weights)
    for got, want in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(got, want)
    dense = model.layers[1]
    x = rng.standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_allclose(dense(x), np.tanh(x @ weights[0] + weights[1]), rtol=1e-5, atol=1e-6)


def test_summary_reports_the_device():
    lines = []
    _on("cuda", _mlp).summary(print_fn=lines.append)
    assert any("Device: cuda" in line for line in lines)


def test_out_of_memory_during_fit_is_clear_and_keeps_the_last_step(rng, monkeypatch):
    from nkeras.backend.cuda import CudaDevice, DeviceMemoryError

    x, y = _data(rng, 20)
    steps_done = _on("cuda", _mlp)
    steps_done.fit(x[:16], y[:16], batch_size=8, epochs=1, shuffle=False, verbose=0)

    original = CudaDevice.empty

    def empty(self, shape, dtype):
        if isinstance(shape, tuple) and shape and shape[0] == 4:
            raise DeviceMemoryError("cuda: out of GPU memory (simulated)")
        return original(self, shape, dtype)

    model = _on("cuda", _mlp)
    monkeypatch.setattr(CudaDevice, "empty", empty)
    with pytest.raises(MemoryError, match="batch of 4 rows do not fit on device 'cuda'.*smaller batch_size"):
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for got, want in zip(model.get_weights(), steps_done.get_weights()):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bad", [np.array([["a", "b"]] * 4), np.ones((4, 2, 3), np.complex64)])
def test_host_arrays_of_the_wrong_dtype_are_rejected(bad):
    model = _on("cuda", _mlp)
    with pytest.raises(TypeError, match="inputs .*expected an array of real numbers"):
        model.fit(bad, np.zeros(4), verbose=0)


def test_fit_inside_a_device_block_moves_the_model_with_its_optimizer_state(rng):
    x, y = _data(rng, 16)
    straight = _on("cpu", _mlp)
    straight.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)

    moved = _on("cpu", _mlp)
    moved.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    with keras.device("cuda"):
        moved.fit(x, y, batch_size=8, epochs=2, initial_epoch=1, shuffle=False, verbose=0)
    assert moved._device.name == "cuda" and moved.optimizer.iterations == 4
    for got, want in zip(moved.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(moved.predict(x, verbose=0), straight.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
