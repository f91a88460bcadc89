"""Pooling, padding, cropping and upsampling layers: float64 gradient checks,
Keras 3 parity (forward, tie-breaking gradients, configs), shapes, errors,
and a small model trained on the CPU and on the simulated CUDA device."""


import numpy as np
import pytest

import nkeras as keras
from nkeras.layers import Dense, Flatten
from nkeras.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from nkeras.layers.reshaping import Cropping1D, Cropping2D, UpSampling1D, UpSampling2D, ZeroPadding1D, ZeroPadding2D
from tests.layer_check import check_layer_gradients, run_layer


# (class name, constructor arguments, input shape): every layer, with
# overlapping, clipped ("same") and gapped (strides > pool) windows.
LAYER_CASES = [
    ("MaxPooling2D", {}, (2, 5, 5, 3)),
    ("MaxPooling2D", {"pool_size": 3, "strides": 2, "padding": "same"}, (2, 7, 6, 2)),
    ("MaxPooling2D", {"pool_size": (2, 3), "strides": 1}, (1, 4, 5, 2)),
    ("MaxPooling2D", {"pool_size": 2, "strides": 3}, (2, 7, 7, 1)),
    ("MaxPooling1D", {"pool_size": 3, "strides": 1, "padding": "same"}, (2, 7, 3)),
    ("MaxPooling1D", {}, (3, 5, 2)),
    ("AveragePooling2D", {"pool_size": 2}, (2, 5, 5, 3)),
    ("AveragePooling2D", {"pool_size": 3, "strides": (1, 2), "padding": "same"}, (2, 5, 6, 2)),
    ("AveragePooling1D", {"pool_size": 3, "strides": 2, "padding": "same"}, (2, 8, 3)),
    ("GlobalMaxPooling2D", {}, (2, 3, 4, 3)),
    ("GlobalMaxPooling2D", {"keepdims": True}, (2, 3, 4, 3)),
    ("GlobalMaxPooling1D", {}, (3, 5, 2)),
    ("GlobalAveragePooling2D", {"keepdims": True}, (2, 3, 4, 3)),
    ("GlobalAveragePooling1D", {}, (3, 5, 2)),
    ("ZeroPadding2D", {}, (2, 3, 4, 2)),
    ("ZeroPadding2D", {"padding": ((1, 2), (0, 3))}, (2, 3, 4, 2)),
    ("ZeroPadding1D", {"padding": (2, 1)}, (2, 3, 2)),
    ("Cropping2D", {"cropping": ((1, 0), (2, 1))}, (2, 5, 6, 2)),
    ("Cropping2D", {"cropping": 1}, (1, 4, 3, 3)),
    ("Cropping1D", {"cropping": (0, 2)}, (2, 5, 2)),
    ("UpSampling2D", {"size": (2, 3)}, (2, 3, 2, 2)),
    ("UpSampling1D", {"size": 3}, (2, 3, 2)),
]

LAYERS = {
    cls.__name__: cls
    for cls in (
        MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
        GlobalAveragePooling1D, GlobalAveragePooling2D, ZeroPadding1D, ZeroPadding2D, Cropping1D, Cropping2D,
        UpSampling1D, UpSampling2D,
    )
}


def _case_id(case):
    name, kwargs, shape = case
    return f"{name}-{kwargs}-{shape}"


@pytest.mark.parametrize("case", LAYER_CASES, ids=_case_id)
def test_gradients(case, float64, rng):
    name, kwargs, shape = case
    check_layer_gradients(LAYERS[name](**kwargs), shape, rng)


@pytest.mark.parametrize("case", LAYER_CASES, ids=_case_id)
def test_forward_output_shape_and_config_match_keras(case, real_keras, rng):
    name, kwargs, shape = case
    x = rng.standard_normal(shape).astype(np.float32)
    layer = LAYERS[name](**kwargs)
    reference = getattr(real_keras.layers, name)(**kwargs)
    expected = np.asarray(reference(x))
    np.testing.assert_allclose(layer(x), expected, rtol=1e-6, atol=1e-6)
    assert layer(keras.Input(shape[1:])).shape == (None,) + expected.shape[1:]
    ours, theirs = layer.get_config(), reference.get_config()
    assert sorted(ours) == sorted(theirs)
    assert {k: v for k, v in ours.items() if k not in ("name", "dtype")} == {
        k: v for k, v in theirs.items() if k not in ("name", "dtype")
    }


@pytest.mark.parametrize(
    "name,kwargs,shape",
    [
        ("MaxPooling2D", {}, (2, 4, 5, 3)),
        ("MaxPooling2D", {"pool_size": 3, "strides": 1, "padding": "same"}, (2, 5, 4, 2)),
        ("MaxPooling1D", {"pool_size": 3, "strides": 2}, (2, 9, 2)),
        ("GlobalMaxPooling2D", {}, (2, 3, 4, 3)),
    ],
)
def test_max_pooling_gradient_with_ties_matches_keras(name, kwargs, shape, real_keras, float64, rng):
    """Inputs from {0, 1, 2}: most windows hold several maxima. A pooling
    window's gradient goes to the first in row-major order (XLA's
    select-and-scatter); a global maximum's is shared by all of them."""
    import jax

    x = rng.integers(0, 3, shape).astype(np.float64)
    layer = LAYERS[name](**kwargs)
    context, outputs, state = run_layer(layer, [x])
    probe = rng.standard_normal(outputs[0].shape)
    dx = np.empty_like(x)
    layer.backward(context, [x], outputs, state, [probe], [dx])

    reference = getattr(real_keras.layers, name)(**kwargs, dtype="float32")
    expected = jax.grad(lambda v: (reference(v) * probe.astype(np.float32)).sum())(x.astype(np.float32))
    np.testing.assert_allclose(dx, np.asarray(expected), rtol=1e-6, atol=1e-6)


def _forward_backward(layer, x, probe, device_name):
    """The layer's output and input gradient, computed on ``device_name``."""
    from nkeras.backend import get_device
    from nkeras.graph import ExecutionContext

    device = get_device(device_name)
    context = ExecutionContext(device, training=True)
    state = {k: device.zeros(s, x.dtype) for k, s in layer.state_shapes([x.shape], True).items()}
    inputs, outputs = [device.to_device(x)], [device.empty(probe.shape, x.dtype)]
    layer.forward(context, inputs, outputs, state)
    dx = device.empty(x.shape, x.dtype)
    layer.backward(context, inputs, outputs, state, [device.to_device(probe)], [dx])
    return device.to_host(outputs[0]), device.to_host(dx)


# One case per layer class: the simulator runs every GPU thread in Python.
@pytest.mark.parametrize("case", list({case[0]: case for case in LAYER_CASES}.values()), ids=_case_id)
def test_layers_give_the_same_results_on_cuda(case, rng):
    name, kwargs, shape = case
    layer = LAYERS[name](**kwargs)
    x = rng.integers(0, 3, shape).astype(np.float32)  # ties: both devices must break them alike
    probe = rng.standard_normal((shape[0],) + layer.compute_output_shape((None,) + shape[1:])[1:]).astype(np.float32)
    (y_cpu, dx_cpu), (y_gpu, dx_gpu) = (_forward_backward(layer, x, probe, device) for device in ("cpu", "cuda"))
    np.testing.assert_array_equal(y_gpu, y_cpu)
    np.testing.assert_allclose(dx_gpu, dx_cpu, rtol=1e-6, atol=1e-7)


def test_configs_round_trip():
    for layer in [
        MaxPooling2D((3, 2), strides=1, padding="SAME", name="pool"),
        AveragePooling1D(3),
        GlobalAveragePooling2D(keepdims=True),
        ZeroPadding2D(((1, 2), (3, 4))),
        Cropping2D((2, 1)),
        UpSampling2D(3),
        UpSampling1D(4),
    ]:
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config


def test_normalised_arguments():
    assert MaxPooling2D(3).strides == (3, 3)
    assert MaxPooling2D(3, strides=(1, 2), padding="Same").padding == "same"
    assert ZeroPadding2D(2).padding == ((2, 2), (2, 2))
    assert ZeroPadding2D((1, 2)).padding == ((1, 1), (2, 2))
    assert Cropping2D([[0, 1], [2, 3]]).cropping == ((0, 1), (2, 3))
    assert ZeroPadding1D(3).padding == (3, 3)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: MaxPooling2D(0), ValueError, "'max_pooling2d'.*pool_size must be a positive"),
        (lambda: MaxPooling2D(2, strides=-1), ValueError, "strides must be a positive"),
        (lambda: AveragePooling1D((2, 2)), ValueError, "pool_size"),
        (lambda: MaxPooling2D(padding="full"), ValueError, "padding must be one of"),
        (lambda: MaxPooling2D(data_format="channels_first"), ValueError, "channels_last"),
        (lambda: GlobalAveragePooling2D(data_format="channels_first"), ValueError, "channels_last"),
        (lambda: ZeroPadding2D(-1), ValueError, "padding must be a non-negative"),
        (lambda: ZeroPadding2D(((1, -1), (0, 0))), ValueError, "padding along rows"),
        (lambda: ZeroPadding2D((1, 2, 3)), ValueError, "padding must be an int"),
        (lambda: ZeroPadding1D(-2), ValueError, "padding must be a non-negative"),
        (lambda: Cropping2D(-1), ValueError, "cropping must be a non-negative"),
        (lambda: Cropping2D(data_format="channels_first"), ValueError, "channels_last"),
        (lambda: UpSampling2D(0), ValueError, "size must be a positive"),
        (lambda: UpSampling1D(-1), ValueError, "size must be a positive"),
        (lambda: UpSampling2D(interpolation="bilinear"), NotImplementedError, "interpolation='bilinear' not supported"),
        (lambda: UpSampling2D(interpolation="cubic-ish"), ValueError, "interpolation must be one of"),
    ],
)
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    "layer, shape, message",
    [
        (MaxPooling2D(3, name="pool"), (2, 2, 1), "'pool'.*pool_size \\(3, 3\\).*larger than the input \\(2, 2\\)"),
        (AveragePooling1D(4, name="pool"), (3, 2), "'pool'.*pool_size"),
        (MaxPooling2D(name="pool"), (4, 4), "'pool'.*rank 4"),
        (MaxPooling1D(name="pool"), (4, 4, 2), "'pool'.*rank 3"),
        (GlobalMaxPooling2D(name="pool"), (4, 2), "'pool'.*rank 4"),
        (ZeroPadding2D(name="pad"), (4, 2), "'pad'.*rank 4"),
        (Cropping2D(((1, 1), (2, 2)), name="crop"), (5, 4, 1), "'crop'.*cropping \\(2, 2\\) removes all 4 cols"),
        (Cropping1D((2, 1), name="crop"), (3, 1), "'crop'.*removes all 3 steps"),
        (UpSampling1D(name="up"), (3, 4, 1), "'up'.*rank 3"),
    ],
)
def test_bad_inputs_are_clear_errors_at_build_time(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer(keras.Input(shape))


def test_same_padding_takes_no_part_in_max_or_average():
    """Padding never wins a maximum, and a clipped average divides by the real elements."""
    x = -np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(MaxPooling2D(padding="same")(x)[0, :, :, 0], [[-1, -3], [-7, -9]])
    np.testing.assert_array_equal(AveragePooling2D(2, padding="same")(x)[0, :, :, 0], [[-3, -4.5], [-7.5, -9]])


# ---- a model through every layer, on both devices ------------------------------


def _compiled(layers, input_shape=(6, 6, 2)):
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input(input_shape), Dense(3, activation="tanh"), *layers, Dense(3, "softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    return model


def _data(rng):
    x = rng.standard_normal((8, 6, 6, 2)).astype(np.float32)
    return x, (x[:, :3, :3, 0].sum(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 3:, 3:, 1].mean(axis=(1, 2)) > 0)


def test_model_through_every_2d_layer_trains(rng):
    """The first Dense makes gradients flow back through every layer."""
    x, y = _data(rng)
    model = _compiled([
        ZeroPadding2D(1),
        MaxPooling2D(2),
        Cropping2D(((1, 0), (0, 1))),
        UpSampling2D(2),
        AveragePooling2D(3, strides=2, padding="same"),
        GlobalMaxPooling2D(keepdims=True),
        Flatten(),
    ])
    losses = model.fit(x, y, batch_size=4, epochs=15, verbose=0).history["loss"]
    assert losses[-1] < 0.7 * losses[0]


def test_max_pooling_model_has_the_same_loss_history_on_cpu_and_cuda(rng):
    """Two steps on 4 x 4 images: the simulated GPU runs every thread in Python."""
    x, y = _data(rng)
    x = np.ascontiguousarray(x[:, 1:5, 1:5])
    results = {}
    for device in ("cpu", "cuda"):
        with keras.device(device):
            model = _compiled([MaxPooling2D(2), GlobalAveragePooling2D()], (4, 4, 2))
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history["loss"]
        results[device] = history, model.get_weights()
    (cpu_history, cpu_weights), (gpu_history, gpu_weights) = results["cpu"], results["cuda"]
    np.testing.assert_allclose(gpu_history, cpu_history, rtol=1e-5, atol=1e-6)
    for gpu, cpu in zip(gpu_weights, cpu_weights):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-6)


def test_one_dimensional_model_predicts_as_keras(real_keras, rng):
    specs = [
        ("Dense", {"units": 4, "activation": "relu"}),
        ("ZeroPadding1D", {"padding": (1, 2)}),
        ("MaxPooling1D", {"pool_size": 3, "strides": 2, "padding": "same"}),
        ("UpSampling1D", {"size": 2}),
        ("Cropping1D", {"cropping": (1, 0)}),
        ("AveragePooling1D", {"pool_size": 2, "strides": 1}),
        ("GlobalAveragePooling1D", {}),
        ("Dense", {"units": 2}),
    ]
    classes = {**LAYERS, "Dense": Dense}
    ours = keras.Sequential([keras.Input((9, 2))] + [classes[name](**kwargs) for name, kwargs in specs])
    theirs = real_keras.Sequential(
        [real_keras.Input((9, 2))] + [getattr(real_keras.layers, name)(**kwargs) for name, kwargs in specs]
    )
    theirs.set_weights(ours.get_weights())
    x = rng.standard_normal((5, 9, 2)).astype(np.float32)
    expected = np.asarray(theirs.predict(x, verbose=0))
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_global_average_pooling_1d_with_a_mask_matches_keras_and_finite_differences(real_keras, float64, rng):
    from tests.gradcheck import numerical_grad
    from tests.layer_check import run_layer

    x = rng.standard_normal((3, 6, 4))
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], dtype=np.float64)
    layer = GlobalAveragePooling1D()
    expected = np.asarray(real_keras.layers.GlobalAveragePooling1D()(x, mask=mask.astype(bool)))
    np.testing.assert_allclose(layer(x, mask=mask), expected, rtol=1e-6)

    context, _, state = run_layer(layer, [x], training=True)
    state["mask"] = mask
    output = np.empty((3, 4))
    layer.forward(context, [x], [output], state)
    np.testing.assert_allclose(output, expected, rtol=1e-6)
    probe = rng.standard_normal(output.shape)
    dx = np.empty_like(x)
    layer.backward(context, [x], [output], state, [probe], [dx])

    def objective(_):
        y = np.empty((3, 4))
        layer.forward(context, [x], [y], state)
        return float(np.sum(y * probe))

    np.testing.assert_allclose(dx, numerical_grad(objective, x), rtol=1e-6, atol=1e-9)


def test_global_average_pooling_1d_reads_the_mask_in_a_model(rng):
    from nkeras.layers import Layer

    class ZeroStepMask(Layer):
        def output_mask_shape(self, input_shape):
            return tuple(input_shape[:2])

        def forward(self, ctx, inputs, outputs, state):
            outputs[0][...] = inputs[0]
            outputs[1][...] = inputs[0][:, :, 0] != 0

    x = rng.standard_normal((4, 5, 3)).astype(np.float32)
    x[0, 2:] = 0.0
    x[3, 1:] = 0.0
    inputs = keras.Input(shape=(5, 3))
    model = keras.Model(inputs, GlobalAveragePooling1D()(ZeroStepMask()(inputs)))
    mask = (x[:, :, 0] != 0).astype(np.float32)
    expected = (x * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-6)
