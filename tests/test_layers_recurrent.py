"""SimpleRNN, LSTM and GRU: finite-difference gradients through time (with
and without masks and initial states), Keras 3 parity (weights, configs,
forward with masks, return_sequences/return_state/go_backwards), errors
naming the layer, training on both devices, saving."""


import numpy as np
import pytest

import nkeras as keras
from devices import assert_trains_alike_on_both_devices
from nkeras.backend import get_device
from nkeras.graph import ExecutionContext
from nkeras.kernels.cpu.recurrent import TASK_ROWS
from nkeras.layers import GRU, LSTM, SimpleRNN
from tests.gradcheck import numerical_grad

LAYERS = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}


def _run(layer, inputs, mask, training=True):
    context = ExecutionContext(get_device("cpu"), training)
    context.step = 2
    shapes = [(None,) + a.shape[1:] for a in inputs]
    out_shapes = layer.compute_output_shape(shapes if len(inputs) > 1 else shapes[0])
    out_shapes = out_shapes if isinstance(out_shapes, list) else [out_shapes]
    outputs = [np.zeros((inputs[0].shape[0],) + tuple(s[1:])) for s in out_shapes]
    state = {k: np.zeros(s) for k, s in layer.state_shapes([a.shape for a in inputs], training).items()}
    if mask is not None:
        state["mask"] = mask
    layer.forward(context, inputs, outputs, state)
    return context, outputs, state


def _check_gradients(layer, rng, batch=3, timesteps=4, features=3, masked=False, initial=False, training=True):
    x = rng.standard_normal((batch, timesteps, features))
    inputs = [x] + ([rng.standard_normal((batch, layer.units)) for _ in range(layer._state_count)] if initial else [])
    layer.build([(None,) + a.shape[1:] for a in inputs] if initial else (None,) + x.shape[1:])
    for variable in layer.weights:
        variable.assign(rng.standard_normal(variable.shape) * 0.5)
        variable.grad = np.zeros(variable.shape)
    mask = (rng.random((batch, timesteps)) > 0.3).astype(float) if masked else None
    context, outputs, state = _run(layer, inputs, mask, training)
    probes = [rng.standard_normal(o.shape) for o in outputs]

    def objective(_):
        return sum(float(np.sum(o * p)) for o, p in zip(_run(layer, inputs, mask, training)[1], probes))

    input_grads = [np.zeros_like(a) for a in inputs]
    layer.backward(context, inputs, outputs, state, [p.copy() for p in probes], input_grads)
    for index, (got, array) in enumerate(zip(input_grads, inputs)):
        np.testing.assert_allclose(got, numerical_grad(objective, array), rtol=1e-5, atol=1e-7,
                                   err_msg=f"{layer.name}: input {index}")
    for variable in layer.trainable_weights:
        np.testing.assert_allclose(variable.grad, numerical_grad(objective, variable.value), rtol=1e-5, atol=1e-7,
                                   err_msg=f"{layer.name}: {variable.name}")


# ---- gradients through time ----------------------------------------------------------


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("options,masked,initial", [
    ({}, False, False),
    ({"return_sequences": True}, True, False),
    ({"return_state": True, "go_backwards": True}, True, True),
    ({"return_sequences": True, "return_state": True, "use_bias": False}, False, True),
])
def test_gradients_through_time(name, options, masked, initial, float64, rng):
    _check_gradients(LAYERS[name](3, **options), rng, masked=masked, initial=initial)


@pytest.mark.parametrize("name", list(LAYERS))
def test_gradients_with_dropout_masks(name, float64, rng):
    """The dropout masks are fixed by (seed, step), so the gradient is exact."""
    _check_gradients(LAYERS[name](2, dropout=0.3, recurrent_dropout=0.4, seed=5, return_sequences=True), rng,
                     masked=True)


# ---- Keras parity ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("options", [{}, {"return_sequences": True, "return_state": True},
                                     {"go_backwards": True, "return_sequences": True}])
# The CPU LSTM splits a batch of more than TASK_ROWS rows into tasks.
@pytest.mark.parametrize("batch", [3, TASK_ROWS + 6])
def test_forward_weights_and_config_match_keras(name, options, batch, real_keras, rng):
    x = rng.standard_normal((batch, 5, 4)).astype("float32")
    mask = rng.random((batch, 5)) > 0.3
    mask[:3] = [[1, 1, 0, 1, 1], [1, 1, 1, 0, 0], [0, 1, 1, 1, 1]]
    theirs = getattr(real_keras.layers, name)(3, **options)
    theirs.build((None, 5, 4))
    ours = LAYERS[name](3, **options)
    ours(keras.Input((5, 4)))
    assert [(w.name, w.shape) for w in ours.weights] == [(w.name, tuple(w.shape)) for w in theirs.weights]
    weights = [rng.uniform(-0.5, 0.5, w.shape).astype("float32") for w in ours.weights]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    for m in (None, mask):
        got = ours(x, mask=None if m is None else m.astype("float32"))
        want = theirs(x, mask=m)
        got, want = (list(v) if isinstance(v, (list, tuple)) else [v] for v in (got, want))
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)
    config = ours.get_config()
    their_config = getattr(real_keras.layers, name)(3, **options).get_config()
    assert set(config) <= set(their_config) | {"trainable"}
    rebuilt = getattr(real_keras.layers, name).from_config(config).get_config()
    for key in set(config) - {"name"}:
        assert rebuilt[key] == their_config[key], key
    flipped = type(ours).from_config({**config, "go_backwards": not ours.go_backwards, "name": "flipped"})
    assert flipped.go_backwards != ours.go_backwards and flipped.units == 3


def test_lstm_bias_starts_with_a_forget_gate_of_ones():
    layer = LSTM(4)
    layer(keras.Input((2, 3)))
    np.testing.assert_array_equal(layer.bias.numpy(), np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    assert LSTM(4, unit_forget_bias=False)(keras.Input((2, 3))) is not None


def test_initial_states_are_inputs_of_the_node(rng):
    inputs = keras.Input((4, 3))
    h0, c0 = keras.Input((2,)), keras.Input((2,))
    output, h, c = LSTM(2, return_state=True)(inputs, initial_state=[h0, c0])
    model = keras.Model([inputs, h0, c0], [output, h, c])
    x = rng.standard_normal((5, 4, 3)).astype("float32")
    states = [rng.standard_normal((5, 2)).astype("float32") for _ in range(2)]
    got = model.predict([x] + states, verbose=0)
    assert [g.shape for g in got] == [(5, 2)] * 3
    np.testing.assert_allclose(got[0], got[1])
    zero = model.predict([x, 0 * states[0], 0 * states[1]], verbose=0)
    assert np.abs(zero[0] - got[0]).max() > 1e-3


def test_masked_steps_change_neither_the_state_nor_the_loss(rng):
    x = rng.standard_normal((6, 5, 3)).astype("float32")
    padded = x.copy()
    padded[:, 3:] = 7.0
    mask = np.ones((6, 5), "float32")
    mask[:, 3:] = 0.0
    layer = GRU(4)
    np.testing.assert_allclose(layer(padded, mask=mask), layer(x[:, :3]), rtol=1e-6, atol=1e-7)


# ---- errors --------------------------------------------------------------------------


@pytest.mark.parametrize("make, error, message", [
    (lambda: LSTM(0), ValueError, "units must be a positive integer"),
    (lambda: LSTM(3, stateful=True), NotImplementedError, "stateful not supported"),
    (lambda: GRU(3, reset_after=False), NotImplementedError, "reset_after=False"),
    (lambda: SimpleRNN(3, activation="gelu"), NotImplementedError, "activation='gelu'"),
    (lambda: LSTM(3, dropout=1.0), ValueError, "dropout must be a float in \\[0, 1\\)"),
    (lambda: LSTM(3, kernel_regularizer="l2"), NotImplementedError, "kernel_regularizer not supported"),
])
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bad_inputs_name_the_layer():
    with pytest.raises(ValueError, match="'rnn'.*rank 3"):
        LSTM(2, name="rnn")(keras.Input((4,)))
    layer = LSTM(2, name="rnn")
    layer(keras.Input((4, 3)))
    with pytest.raises(ValueError, match="'rnn'.*3 features"):
        layer(keras.Input((4, 5)))
    with pytest.raises(ValueError, match="'rnn2'.*initial state must have shape \\(batch, 2\\)"):
        LSTM(2, name="rnn2")(keras.Input((4, 3)), initial_state=[keras.Input((3,)), keras.Input((2,))])
    with pytest.raises(ValueError, match="'rnn3'.*initial_state must hold 2"):
        LSTM(2, name="rnn3")(keras.Input((4, 3)), initial_state=[keras.Input((2,))])
    with pytest.raises(ValueError, match="'rnn4'.*mask of shape \\(batch, 4\\)"):
        LSTM(2, name="rnn4")(np.ones((2, 4, 3)), mask=np.ones((2, 5)))


# ---- training on both devices, saving ------------------------------------------------------


def _sequence_model(timesteps=4):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((timesteps, 3)),
        LSTM(3, return_sequences=True, dropout=0.2, recurrent_dropout=0.2),
        GRU(3, go_backwards=True, return_sequences=True),
        SimpleRNN(2),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    return model


def _sequence_data():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 4, 3)).astype("float32")
    return x, (x[:, :, 0].sum(axis=1) > 0).astype("int64")


def test_a_recurrent_model_learns_on_the_cpu():
    x, y = _sequence_data()
    losses = _sequence_model().fit(x, y, batch_size=8, epochs=20, verbose=0).history["loss"]
    assert losses[-1] < 0.6 * losses[0]


def test_training_on_cuda_matches_the_cpu():
    """Two steps on two sequences of two steps: the simulator runs every
    GPU thread in Python, and its time grows with batch and timesteps."""
    x, y = _sequence_data()
    x, y = x[:2, :2], y[:2]
    assert_trains_alike_on_both_devices(lambda: _sequence_model(timesteps=2), x, y, batch_size=2)


def test_models_round_trip_through_a_keras_file(tmp_path, rng):
    model = _sequence_model()
    x = rng.standard_normal((5, 4, 3)).astype("float32")
    model.save(tmp_path / "rnn.keras")
    loaded = keras.models.load_model(tmp_path / "rnn.keras")
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
