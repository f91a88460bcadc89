"""Custom layers and losses (docs/custom_layers.md): NumPy and @njit layers
train and match finite differences, save and load; ``check_gradients`` on
built-in and custom objects, and it catches a wrong backward; custom losses;
Lambda, plain-function losses and Keras-style ``call`` are refused with the
way out; a CPU-only layer is refused on the GPU; the example program runs
and its CUDA twin trains as on the CPU (simulator)."""

import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import njit

import nkeras as keras
from nkeras import layers
from nkeras.backend import get_device
from nkeras.testing import GradientCheckError, check_gradients

ROOT = Path(__file__).resolve().parents[1]
DOCS = "docs/custom_layers.md"


# ---- custom layers under test ------------------------------------------------------


class ScaledTanh(layers.Layer):
    """NumPy: ``alpha * tanh(x)`` with ``alpha`` per channel; keeps tanh(x) in a state buffer."""

    def __init__(self, alpha_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = alpha_initializer

    def build(self, input_shape):
        self.alpha = self.add_weight((input_shape[-1],), self.alpha_initializer, "alpha")

    def compute_output_shape(self, input_shape):
        return input_shape

    def state_shapes(self, input_shapes, training):
        return {"tanh": input_shapes[0]}

    def forward(self, ctx, inputs, outputs, state):
        np.tanh(inputs[0], out=state["tanh"])
        np.multiply(state["tanh"], self.alpha.value, out=outputs[0])

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dy, tanh = output_grads[0], state["tanh"]
        self.alpha.grad[...] = (dy * tanh).reshape(-1, tanh.shape[-1]).sum(axis=0)
        if input_grads[0] is not None:
            input_grads[0][...] = dy * self.alpha.value * (1.0 - tanh * tanh)

    def get_config(self):
        return {**super().get_config(), "alpha_initializer": self.alpha_initializer}


class WrongScaledTanh(ScaledTanh):
    """The input gradient forgets tanh's derivative."""

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        super().backward(ctx, inputs, outputs, state, output_grads, input_grads)
        input_grads[0][...] = output_grads[0] * self.alpha.value


class ForgetfulScaledTanh(ScaledTanh):
    """Writes the weight gradient but never the input gradient."""

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        self.alpha.grad[...] = (output_grads[0] * state["tanh"]).reshape(-1, state["tanh"].shape[-1]).sum(axis=0)


@njit(error_model="numpy")
def _gated_product_forward(a, b, w, y):
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            y[i, j] = a[i, j] * b[i, j] * w[j] + a[i, j]


@njit(error_model="numpy")
def _gated_product_backward(a, b, w, dy, da, db, dw):
    for j in range(a.shape[1]):
        dw[j] = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            dw[j] += dy[i, j] * a[i, j] * b[i, j]
            da[i, j] = dy[i, j] * (b[i, j] * w[j] + 1.0)
            db[i, j] = dy[i, j] * a[i, j] * w[j]


@keras.saving.register_keras_serializable(package="tests")
class GatedProduct(layers.Layer):
    """@njit, two inputs: ``a * b * w + a`` with ``w`` per channel."""

    def build(self, input_shape):
        self.w = self.add_weight((input_shape[0][-1],), "ones", "w")

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def state_shapes(self, input_shapes, training):
        # Stand-ins for input gradients nobody asked for.
        return {"scratch": input_shapes[0]}

    def forward(self, ctx, inputs, outputs, state):
        _gated_product_forward(inputs[0], inputs[1], self.w.value, outputs[0])

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        da = state["scratch"] if input_grads[0] is None else input_grads[0]
        db = state["scratch"] if input_grads[1] is None else input_grads[1]
        _gated_product_backward(inputs[0], inputs[1], self.w.value, output_grads[0], da, db, self.w.grad)


keras.saving.register_keras_serializable(package="tests")(ScaledTanh)


@keras.saving.register_keras_serializable(package="tests")
class LogCosh(keras.losses.Loss):
    """NumPy loss: mean over the last axis of ``log(cosh(y_pred - y_true))``."""

    def forward(self, y_true, y_pred):
        return np.mean(np.log(np.cosh(y_pred - y_true)), axis=-1)

    def backward(self, y_true, y_pred):
        return np.tanh(y_pred - y_true) / y_pred.shape[-1]


class WrongLogCosh(LogCosh):
    def backward(self, y_true, y_pred):
        return np.tanh(y_pred - y_true)


@functools.cache
def _example():
    spec = importlib.util.spec_from_file_location("custom_layer_example", ROOT / "examples" / "custom_layer.py")
    module = importlib.util.module_from_spec(spec)
    # Numba's cache records the kernels' module by name; it must be importable.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _data(rng, samples=48, features=6):
    x = rng.standard_normal((samples, features)).astype("float32")
    return x, (x[:, :3].sum(axis=1) > 0).astype("int64") + (x[:, 3:].sum(axis=1) > 0)


# ---- check_gradients ---------------------------------------------------------------


@pytest.mark.parametrize("layer, shape, training, weights", [
    (lambda: layers.Dense(3, activation="tanh"), (4, 5), True, ["kernel", "bias"]),
    (lambda: layers.Conv2D(2, 3, strides=2, padding="same"), (2, 5, 5, 2), True, ["kernel", "bias"]),
    (lambda: layers.BatchNormalization(), (5, 3), True, ["gamma", "beta"]),
    (lambda: layers.BatchNormalization(), (5, 3), False, ["gamma", "beta"]),
], ids=["dense", "conv2d", "batch_norm-training", "batch_norm-inference"])
def test_check_gradients_passes_on_built_in_layers(layer, shape, training, weights):
    # random_weights=False keeps the moving variance positive in inference mode.
    report = check_gradients(layer(), shape, training=training, random_weights=training)
    assert report.passed and [result.name for result in report.results] == ["input"] + weights
    assert all(result.max_abs_error < 1e-6 for result in report.results)


def test_check_gradients_covers_every_trainable_weight_and_leaves_the_layer_alone():
    layer = layers.Dense(3)
    layer.build((None, 4))
    before = [w.copy() for w in layer.get_weights()]
    report = check_gradients(layer, (2, 4))
    assert [r.name for r in report.results] == ["input", "kernel", "bias"]
    assert layer.dtype == np.float32 and all(np.array_equal(a, b) for a, b in zip(before, layer.get_weights()))


@pytest.mark.parametrize("loss", [
    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    keras.losses.CategoricalCrossentropy(),
    keras.losses.MeanSquaredError(),
], ids=lambda loss: loss.name)
def test_check_gradients_passes_on_built_in_losses(loss):
    report = check_gradients(loss, (5, 3))
    assert report.passed and report["y_pred"].shape == (5, 3)


def test_check_gradients_catches_a_wrong_backward():
    with pytest.raises(GradientCheckError) as caught:
        check_gradients(WrongScaledTanh(), (3, 4))
    report = caught.value.report
    assert isinstance(caught.value, AssertionError) and not report.passed
    assert not report["input"].passed and report["alpha"].passed
    message = str(caught.value)
    assert "WrongScaledTanh" in message and "1 of 2 do not match" in message
    assert "FAIL input" in message and "ok   alpha" in message


def test_check_gradients_catches_an_unwritten_gradient():
    with pytest.raises(GradientCheckError, match="NaN in an analytic gradient") as caught:
        check_gradients(ForgetfulScaledTanh(), (3, 4))
    assert caught.value.report["input"].max_abs_error == np.inf


def test_check_gradients_catches_a_wrong_loss_gradient():
    with pytest.raises(GradientCheckError, match="FAIL y_pred"):
        check_gradients(WrongLogCosh(), (4, 3))


def test_check_gradients_integer_inputs_get_no_input_check(rng):
    report = check_gradients(GatedProduct(), inputs=[rng.standard_normal((3, 4)), rng.integers(0, 3, (3, 4))])
    assert [r.name for r in report.results] == ["input 0", "w"]


class MaskedSquare(layers.Layer):
    """Reads the mask of padded steps: ``y = x * x * mask``, (batch, steps, features)."""

    reads_mask = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, ctx, inputs, outputs, state):
        keep = state["mask"][:, :, None] if "mask" in state else 1.0
        outputs[0][...] = inputs[0] * inputs[0] * keep

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        keep = state["mask"][:, :, None] if "mask" in state else 1.0
        input_grads[0][...] = 2.0 * inputs[0] * output_grads[0] * keep


class Blend(layers.Layer):
    """Called as ``Blend()(a, b)``: ``a + 2 * b``."""

    def __call__(self, a, b):
        return self._call_layer([a, b])

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def forward(self, ctx, inputs, outputs, state):
        outputs[0][...] = inputs[0] + 2.0 * inputs[1]

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        input_grads[0][...] = output_grads[0]
        input_grads[1][...] = 2.0 * output_grads[0]


def test_check_gradients_with_a_mask_and_a_call_of_several_arguments(rng):
    mask = np.ones((3, 4))
    mask[0, 2:] = 0.0
    report = check_gradients(MaskedSquare(), (3, 4, 2), mask=mask)
    assert np.all(report["input"].numeric[0, 2:] == 0.0) and np.any(report["input"].numeric[1] != 0.0)
    with pytest.raises(ValueError, match=r"mask must have shape \(batch, timesteps\) = \(3, 4\)"):
        check_gradients(MaskedSquare(), (3, 4, 2), mask=mask[:, :3])
    with pytest.raises(ValueError, match="reads no mask"):
        check_gradients(ScaledTanh(), (3, 4, 2), mask=mask)

    report = check_gradients(Blend(), [(2, 3), (2, 3)], call=lambda layer, tensors, mask: layer(*tensors))
    np.testing.assert_allclose(report["input 1"].analytic, 2.0 * report["input 0"].analytic)
    # One tensor passed twice: its gradient is the sum of both (3 * dy).
    shared = check_gradients(Blend(), [(2, 3)], call=lambda layer, tensors, mask: layer(tensors[0], tensors[0]))
    assert [result.name for result in shared.results] == ["input"]


def test_check_gradients_rejects_what_it_cannot_check():
    with pytest.raises(TypeError, match="Layer or a keras.losses.Loss"):
        check_gradients(lambda x: x, (2, 3))
    with pytest.raises(ValueError, match="batch size"):
        check_gradients(layers.Dense(2), (2, None))

    class NoConfig(ScaledTanh):
        def __init__(self, factor):
            super().__init__()

    with pytest.raises(TypeError, match="get_config.*docs/custom_layers.md"):
        check_gradients(NoConfig(2.0), (2, 3))


# ---- custom layers in models ------------------------------------------------------


def test_numpy_layer_matches_finite_differences_and_trains(rng):
    assert check_gradients(ScaledTanh(), (3, 2, 4)).passed
    x, y = _data(rng)
    model = keras.Sequential([keras.Input((6,)), layers.Dense(8), ScaledTanh(), layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    losses = model.fit(x, y, batch_size=16, epochs=25, verbose=0).history["loss"]
    assert losses[-1] < 0.7 * losses[0]
    hidden = keras.Model(model.inputs, model.layers[1].output).predict(x, verbose=0)
    before = keras.Model(model.inputs, model.layers[0].output).predict(x, verbose=0)
    np.testing.assert_allclose(hidden, model.layers[1].alpha.numpy() * np.tanh(before), rtol=1e-5, atol=1e-6)


def test_njit_layer_with_two_inputs_in_a_functional_model_saves_and_loads(rng, tmp_path):
    assert check_gradients(GatedProduct(), [(3, 4), (3, 4)]).passed
    a, b = keras.Input((6,), name="a"), keras.Input((6,), name="b")
    gated = GatedProduct(name="gated")([layers.Dense(6)(a), b])
    model = keras.Model([a, b], layers.Dense(3, activation="softmax")(ScaledTanh()(gated)))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    x, y = _data(rng)
    other = rng.standard_normal(x.shape).astype("float32")
    losses = model.fit([x, other], y, batch_size=16, epochs=20, verbose=0).history["loss"]
    assert losses[-1] < 0.8 * losses[0]
    evaluated = model.evaluate([x, other], y, verbose=0)

    model.save(tmp_path / "custom.keras")
    loaded = keras.models.load_model(tmp_path / "custom.keras")
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_array_equal(loaded.predict([x, other], verbose=0), model.predict([x, other], verbose=0))
    assert loaded.evaluate([x, other], y, verbose=0) == pytest.approx(evaluated)
    clone = ScaledTanh.from_config(model.layers[-2].get_config())
    assert clone.get_config() == model.layers[-2].get_config()


def test_an_unregistered_custom_layer_cannot_be_saved(tmp_path):
    class Unregistered(ScaledTanh):
        pass

    model = keras.Sequential([keras.Input((3,)), Unregistered()])
    with pytest.raises(ValueError, match="register_keras_serializable"):
        model.save(tmp_path / "unregistered.keras")


def test_custom_loss_matches_finite_differences_trains_and_saves(rng, tmp_path):
    assert check_gradients(LogCosh(), (4, 2, 3)).passed
    y_true, y_pred = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    weights = rng.uniform(0.5, 1.5, 5)
    per_sample = np.mean(np.log(np.cosh(y_pred - y_true)), axis=-1)
    assert LogCosh()(y_true, y_pred, sample_weight=weights) == pytest.approx(np.mean(per_sample * weights))
    np.testing.assert_allclose(LogCosh(reduction=None)(y_true, y_pred), per_sample, rtol=1e-6)

    x = rng.standard_normal((64, 4)).astype("float32")
    target = x @ rng.standard_normal((4, 2)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=LogCosh())
    losses = model.fit(x, target, batch_size=16, epochs=15, verbose=0).history["loss"]
    assert losses[-1] < 0.3 * losses[0]
    evaluated = model.evaluate(x, target, verbose=0)
    assert evaluated == pytest.approx(float(np.mean(np.log(np.cosh(model.predict(x, verbose=0) - target)))), rel=1e-4)
    model.save(tmp_path / "log_cosh.keras")
    loaded = keras.models.load_model(tmp_path / "log_cosh.keras")
    assert isinstance(loaded._losses[0], LogCosh) and loaded.evaluate(x, target, verbose=0) == evaluated


def test_custom_loss_output_shapes_are_checked(rng):
    class PerElement(LogCosh):
        def forward(self, y_true, y_pred):
            return np.log(np.cosh(y_pred - y_true))

    with pytest.raises(ValueError, match=r"one loss per row, shape \(4,\)"):
        PerElement()(rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))


# ---- what nkeras refuses, and where it points -------------------------------------


def test_lambda_is_configurable_but_calling_it_points_to_the_docs():
    layer = layers.Lambda(_double, output_shape=(3,), name="doubler")
    config = layer.get_config()
    assert config["function"]["config"] == "_double" and config["output_shape"] == (3,) and config["arguments"] == {}
    for inputs in (keras.Input((3,)), np.ones((2, 3))):
        with pytest.raises(NotImplementedError, match=f"Lambda 'doubler'.*'_double'.*{DOCS}"):
            layer(inputs)


def _double(x):
    return 2 * x


def test_lambda_config_has_keras_keys_and_a_keras_file_with_one_is_refused(real_keras, tmp_path):
    theirs = real_keras.layers.Lambda(_double, output_shape=(3,), name="doubler")
    ours = layers.Lambda(_double, output_shape=(3,), name="doubler")
    assert list(ours.get_config()) == list(theirs.get_config())
    assert ours.get_config()["function"] == theirs.get_config()["function"]

    inputs = real_keras.Input((3,))
    real_keras.Model(inputs, theirs(real_keras.layers.Dense(3)(inputs))).save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match=f"'doubler'.*Lambda layer cannot run in nkeras.*{DOCS}"):
        keras.models.load_model(tmp_path / "lambda.keras")


def test_a_custom_loss_reduces_as_the_same_loss_in_keras(real_keras, rng):
    class KerasLogCosh(real_keras.losses.Loss):
        def call(self, y_true, y_pred):
            return real_keras.ops.mean(real_keras.ops.log(real_keras.ops.cosh(y_pred - y_true)), axis=-1)

    y_true, y_pred = rng.standard_normal((2, 6, 4, 3)).astype("float32")
    weights = rng.uniform(0.5, 1.5, (6, 4)).astype("float32")
    for reduction in ("sum_over_batch_size", "sum"):
        want = float(KerasLogCosh(reduction=reduction)(y_true, y_pred, sample_weight=weights))
        got = LogCosh(reduction=reduction)(y_true, y_pred, sample_weight=weights)
        assert got == pytest.approx(want, rel=1e-5)


def test_plain_function_and_keras_call_losses_point_to_the_docs():
    model = keras.Sequential([keras.Input((3,)), layers.Dense(1)])
    with pytest.raises(ValueError, match=f"plain Python function.*{DOCS}"):
        model.compile(loss=lambda y_true, y_pred: (y_true - y_pred) ** 2)

    class KerasStyle(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return (y_true - y_pred) ** 2

    with pytest.raises(NotImplementedError, match=f"KerasStyle.*call\\(\\).*forward.*backward.*{DOCS}"):
        model.compile(loss=KerasStyle())

    class HalfDone(keras.losses.Loss):
        def forward(self, y_true, y_pred):
            return y_pred.sum(axis=-1)

    with pytest.raises(NotImplementedError, match=f"defines forward but not backward.*{DOCS}"):
        model.compile(loss=HalfDone)


class KerasStyleLayer(layers.Layer):
    def call(self, inputs):
        return inputs * 2


def test_a_layer_with_only_keras_call_is_refused_naming_it():
    with pytest.raises(NotImplementedError, match=f"Layer 'doubling' \\(KerasStyleLayer\\) defines Keras's call.*{DOCS}"):
        KerasStyleLayer(name="doubling").check_has_forward()
    with pytest.raises(NotImplementedError, match=f"defines no forward.*{DOCS}"):
        layers.Layer(name="empty").check_has_forward()
    for layer in (ScaledTanh(), layers.Dense(2), layers.Flatten()):
        layer.check_has_forward()


def test_calling_a_keras_style_layer_is_refused():
    with pytest.raises(NotImplementedError, match=DOCS):
        KerasStyleLayer()(keras.Input((3,)))


def test_a_cpu_only_layer_is_refused_on_the_gpu():
    cuda = get_device("cuda")
    with pytest.raises(RuntimeError, match=f"Layer 'scaled' \\(ScaledTanh\\).*runs on cpu.*device 'cuda'.*{DOCS}"):
        ScaledTanh(name="scaled").check_runs_on(cuda)
    ScaledTanh().check_runs_on(get_device("cpu"))
    _example().SwishBeta().check_runs_on(cuda)  # declares supported_devices

    class QuietDense(layers.Dense):  # nkeras's forward: runs anywhere
        pass

    for layer in (layers.Dense(2), QuietDense(2), layers.Conv2D(2, 3)):
        layer.check_runs_on(cuda)


def test_training_a_cpu_only_layer_on_cuda_is_refused(rng):
    with keras.device("cuda"):
        model = keras.Sequential([keras.Input((6,)), ScaledTanh(), layers.Dense(3)])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        with pytest.raises(RuntimeError, match=f"ScaledTanh.*device 'cuda'.*{DOCS}"):
            model.fit(*_data(rng, 8), verbose=0)
    with pytest.raises(RuntimeError, match=f"ScaledTanh.*device 'cuda'.*{DOCS}"):
        model.predict(np.ones((2, 6)), verbose=0)


def test_a_numpy_loss_on_cuda_is_refused_before_any_weight_changes(rng):
    x = rng.standard_normal((4, 3)).astype("float32")
    with keras.device("cuda"):
        model = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
        model.compile(optimizer="sgd", loss=LogCosh())
        before = model.get_weights()
        with pytest.raises(RuntimeError, match=f"LogCosh.*NumPy.*only on the CPU.*{DOCS}"):
            model.fit(x, x[:, :2], batch_size=4, verbose=0)
    for left, right in zip(before, model.get_weights()):
        np.testing.assert_array_equal(left, right)


# ---- the example program ----------------------------------------------------------


def test_the_example_trains_checks_and_round_trips():
    accuracy, same = _example().main()
    assert accuracy > 0.9 and same


def test_the_examples_cuda_twin_trains_as_on_the_cpu(rng):
    example = _example()
    x, y = _data(rng, samples=8, features=4)
    results = {}
    for device in ("cpu", "cuda"):
        keras.utils.set_random_seed(3)
        with keras.device(device):
            model = keras.Sequential([keras.Input((4,)), example.SwishBeta(beta_initializer="random_normal"),
                                      layers.Dense(3, activation="softmax")])
            model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
            initial_beta = model.get_weights()[0]
            history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]
            results[device] = history, model.get_weights()
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-5)
    for got, want in zip(results["cuda"][1], results["cpu"][1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert np.abs(results["cuda"][1][0] - initial_beta).min() > 1e-4, "every channel's beta was trained"
