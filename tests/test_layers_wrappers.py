"""TimeDistributed and Bidirectional: float64 gradient checks, Keras 3
parity (weights, configs, outputs), masks, errors naming the layer,
training on both devices and .keras files both ways."""


import numpy as np
import pytest

import nkeras as keras
from devices import assert_trains_alike_on_both_devices
from nkeras import layers
from nkeras.testing import check_gradients


# ---- TimeDistributed ------------------------------------------------------------------


@pytest.mark.parametrize("make,shape", [
    (lambda: layers.Dense(3, activation="tanh"), (2, 4, 5)),
    (lambda: layers.Conv2D(2, 2, padding="same"), (2, 3, 4, 4, 2)),
    (lambda: layers.LayerNormalization(), (3, 2, 4)),
    (lambda: layers.Flatten(), (2, 3, 2, 2)),
])
def test_time_distributed_gradients(make, shape, float64):
    check_gradients(layers.TimeDistributed(make()), shape)


def test_time_distributed_matches_each_step_and_keras(real_keras, rng):
    x = rng.standard_normal((2, 5, 4)).astype("float32")
    ours = layers.TimeDistributed(layers.Dense(3, activation="relu"))
    theirs = real_keras.layers.TimeDistributed(real_keras.layers.Dense(3, activation="relu"))
    ours.build((None, 5, 4))
    theirs.build((None, 5, 4))
    assert [(w.name, w.shape) for w in ours.weights] == [(w.name, tuple(w.shape)) for w in theirs.weights]
    weights = [rng.standard_normal(w.shape).astype("float32") for w in ours.weights]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    y = ours(x)
    np.testing.assert_allclose(y, np.asarray(theirs(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y[:, 2], np.maximum(x[:, 2] @ weights[0] + weights[1], 0), rtol=1e-5, atol=1e-6)
    config = ours.get_config()
    their_config = theirs.get_config()
    assert set(config) == set(their_config)
    assert config["layer"]["class_name"] == their_config["layer"]["class_name"] == "Dense"
    rebuilt = layers.TimeDistributed.from_config(config)
    assert rebuilt.get_config() == config and rebuilt.layer is not ours.layer
    assert real_keras.layers.TimeDistributed.from_config(config).layer.units == 3


def test_time_distributed_passes_the_mask_so_padded_steps_leave_the_loss_alone(rng):
    inputs = keras.Input((4,))
    x = layers.Embedding(7, 3, mask_zero=True)(inputs)
    out = layers.TimeDistributed(layers.Dense(2))(x)
    assert out._keras_mask is not None
    model = keras.Model(inputs, out)
    model.compile(optimizer="sgd", loss="mse")
    tokens = rng.integers(1, 7, (5, 4)).astype("float32")
    tokens[:, 2:] = 0
    y = rng.standard_normal((5, 4, 2)).astype("float32")
    moved = y.copy()
    moved[:, 2:] -= 3.0
    assert model.evaluate(tokens, moved, verbose=0) == pytest.approx(model.evaluate(tokens, y, verbose=0), rel=1e-6)


def test_freezing_the_wrapper_freezes_the_inner_layer():
    wrapper = layers.TimeDistributed(layers.Dense(2))
    wrapper.build((None, 3, 4))
    wrapper.trainable = False
    assert not wrapper.layer.trainable and wrapper.trainable_weights == []
    assert len(wrapper.non_trainable_weights) == 2
    assert not layers.TimeDistributed(layers.Dense(2), trainable=False).layer.trainable


@pytest.mark.parametrize("make,shape,error,message", [
    (lambda: layers.TimeDistributed(layers.Dense(2), name="td"), (4,), ValueError,
     "TimeDistributed 'td': expected one input of shape \\(batch, timesteps, ...\\) with rank >= 3"),
    (lambda: layers.TimeDistributed(layers.Conv2D(2, 2), name="td"), (3, 4), ValueError, "rank"),
])
def test_time_distributed_rejects_bad_inputs_naming_the_layer(make, shape, error, message):
    with pytest.raises(error, match=message):
        make()(keras.Input(shape))


def test_time_distributed_takes_one_tensor():
    with pytest.raises(ValueError, match="TimeDistributed 'td': expected one input"):
        layers.TimeDistributed(layers.Dense(2), name="td")([keras.Input((3, 4)), keras.Input((3, 4))])


def test_time_distributed_needs_a_layer():
    with pytest.raises(TypeError, match="TimeDistributed 'td': layer must be a keras.layers.Layer instance"):
        layers.TimeDistributed("dense", name="td")


def test_a_built_time_distributed_rejects_another_step_shape():
    wrapper = layers.TimeDistributed(layers.Dense(2, name="inner"), name="td")
    wrapper(keras.Input((3, 4)))
    with pytest.raises(ValueError, match="Dense 'inner'"):
        wrapper(keras.Input((3, 5)))


def _time_distributed_model():
    keras.utils.set_random_seed(9)
    inputs = keras.Input((2, 3, 3, 1))
    x = layers.TimeDistributed(layers.Conv2D(2, 2, padding="same", activation="relu"))(inputs)
    x = layers.TimeDistributed(layers.Flatten())(x)
    x = layers.TimeDistributed(layers.Dense(2))(x)
    model = keras.Model(inputs, x)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def test_time_distributed_training_on_cuda_matches_the_cpu():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 3, 3, 1)).astype("float32")
    y = rng.standard_normal((3, 2, 2)).astype("float32")
    losses = assert_trains_alike_on_both_devices(_time_distributed_model, x, y, batch_size=3)
    assert losses[1] < losses[0]


def test_time_distributed_files_both_ways(real_keras, tmp_path, rng):
    x = rng.standard_normal((3, 2, 3, 3, 1)).astype("float32")
    ours = _time_distributed_model()
    ours.fit(x, rng.standard_normal((3, 2, 2)), verbose=0)
    ours.save(tmp_path / "ours.keras")
    loaded = keras.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), ours.predict(x, verbose=0))
    serialize = keras.saving.serialize_keras_object
    assert [serialize(layer) for layer in loaded.layers] == [serialize(layer) for layer in ours.layers]
    theirs = real_keras.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    theirs.save(tmp_path / "theirs.keras")
    back = keras.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


# ---- Bidirectional -----------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="wrapper_tests")
class StepRNN(keras.layers.Layer):
    """A small recurrent layer in NumPy to drive Bidirectional with:
    ``h_t = tanh(w * x_t + u * h_{t-1})`` per feature, Keras's options and
    masks (a padded step keeps the state and repeats the last output)."""

    reads_mask = True

    def __init__(self, return_sequences=False, return_state=False, go_backwards=False, **kwargs):
        super().__init__(**kwargs)
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        self.initial_state_given = None

    def __call__(self, inputs, initial_state=None, mask=None, training=None):
        self.initial_state_given = initial_state is not None
        return self._call_layer([inputs] + list(initial_state or []), mask=mask)

    def build(self, input_shape):
        features = (input_shape[0] if isinstance(input_shape, list) else input_shape)[-1]
        self.w = self.add_weight((features,), "ones", "w")
        self.u = self.add_weight((features,), "ones", "u")
        self.built = True

    def compute_output_shape(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape, list) else input_shape
        output = shape if self.return_sequences else (shape[0], shape[2])
        return [output, (shape[0], shape[2])] if self.return_state else output

    def state_shapes(self, input_shapes, training):
        batch, steps, features = input_shapes[0]
        return {"h_new": (steps, batch, features), "h_prev": (steps, batch, features)}

    def _order(self, steps):
        return range(steps - 1, -1, -1) if self.go_backwards else range(steps)

    def forward(self, ctx, inputs, outputs, state):
        x = inputs[0]
        h = inputs[1].copy() if len(inputs) > 1 else np.zeros((x.shape[0], x.shape[2]))
        for k, t in enumerate(self._order(x.shape[1])):
            state["h_prev"][k] = h
            state["h_new"][k] = np.tanh(self.w.value * x[:, t] + self.u.value * h)
            keep = state["mask"][:, t:t + 1] if "mask" in state else 1.0
            h = keep * state["h_new"][k] + (1 - keep) * h
            if self.return_sequences:
                outputs[0][:, k] = h
        if not self.return_sequences:
            outputs[0][...] = h
        if self.return_state:
            outputs[1][...] = h

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        x = inputs[0]
        dh = np.zeros((x.shape[0], x.shape[2]))
        if self.return_state:
            dh += output_grads[1]
        if not self.return_sequences:
            dh += output_grads[0]
        dw, du = np.zeros(self.w.shape), np.zeros(self.u.shape)
        dx = np.zeros(x.shape)
        for k, t in reversed(list(enumerate(self._order(x.shape[1])))):
            if self.return_sequences:
                dh = dh + output_grads[0][:, k]
            keep = state["mask"][:, t:t + 1] if "mask" in state else 1.0
            h_new, h_prev = state["h_new"][k], state["h_prev"][k]
            dz = keep * dh * (1 - h_new * h_new)
            dw += np.sum(dz * x[:, t], axis=0)
            du += np.sum(dz * h_prev, axis=0)
            dx[:, t] = dz * self.w.value
            dh = (1 - keep) * dh + dz * self.u.value
        self.w.grad[...] = dw
        self.u.grad[...] = du
        if input_grads[0] is not None:
            input_grads[0][...] = dx
        if len(input_grads) > 1 and input_grads[1] is not None:
            input_grads[1][...] = dh

    def get_config(self):
        return {**super().get_config(), "return_sequences": self.return_sequences,
                "return_state": self.return_state, "go_backwards": self.go_backwards}


def _padding_mask(batch, steps):
    mask = np.ones((batch, steps))
    mask[0, -2:] = 0.0
    mask[-1, 1] = 0.0
    return mask


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional_gradients_through_both_directions(merge_mode, return_sequences, float64):
    layer = layers.Bidirectional(StepRNN(return_sequences=return_sequences), merge_mode=merge_mode)
    check_gradients(layer, (3, 4, 2))
    check_gradients(layer, (3, 4, 2), mask=_padding_mask(3, 4))


def test_bidirectional_gradients_with_states_and_initial_states(float64):
    layer = layers.Bidirectional(StepRNN(return_sequences=True, return_state=True))

    def call(layer, inputs, mask):
        return layer(inputs[0], initial_state=inputs[1:], mask=mask)

    check_gradients(layer, [(2, 5, 3), (2, 3), (2, 3)], call=call)
    check_gradients(layer, [(2, 5, 3), (2, 3), (2, 3)], call=call, mask=_padding_mask(2, 5))


def test_bidirectional_reverses_the_backward_sequence_and_merges(float64, rng):
    x = rng.standard_normal((2, 4, 3))
    base = StepRNN(return_sequences=True, return_state=True, name="rnn")
    wrapper = layers.Bidirectional(base, merge_mode=None)
    y_forward, y_backward, h_forward, h_backward = wrapper(x)
    assert wrapper.forward_layer.name == "forward_rnn" and wrapper.backward_layer.name == "backward_rnn"
    assert wrapper.backward_layer.go_backwards and not wrapper.forward_layer.go_backwards
    forward_alone = StepRNN(return_sequences=True, return_state=True)(x)
    backward_alone = StepRNN(return_sequences=True, return_state=True, go_backwards=True)(x)
    np.testing.assert_allclose(y_forward, forward_alone[0])
    np.testing.assert_allclose(y_backward, backward_alone[0][:, ::-1])
    np.testing.assert_allclose(h_backward, backward_alone[1])
    np.testing.assert_allclose(h_forward, y_forward[:, -1])
    concat = layers.Bidirectional(StepRNN(return_sequences=True))(x)
    np.testing.assert_allclose(concat, np.concatenate([forward_alone[0], backward_alone[0][:, ::-1]], axis=-1))


def test_bidirectional_shapes_masks_and_weights():
    inputs = keras.Input((5, 3))
    masked = layers.Masking()(inputs)
    wrapper = layers.Bidirectional(StepRNN(return_sequences=True, return_state=True))
    out, h_forward, h_backward = wrapper(masked)
    assert out.shape == (None, 5, 6) and h_forward.shape == h_backward.shape == (None, 3)
    assert out._keras_mask is masked._keras_mask and h_forward._keras_mask is None
    assert [w.name for w in wrapper.weights] == ["w", "u", "w", "u"]
    assert wrapper.weights[:2] == wrapper.forward_layer.weights
    summed = layers.Bidirectional(StepRNN(), merge_mode="sum")(inputs)
    assert summed.shape == (None, 3) and summed._keras_mask is None
    pair = layers.Bidirectional(StepRNN(return_sequences=True), merge_mode=None)(inputs)
    assert [t.shape for t in pair] == [(None, 5, 3), (None, 5, 3)]


def test_bidirectional_weights_argument_and_config(rng):
    weights = [rng.standard_normal(3).astype("float32") for _ in range(4)]
    wrapper = layers.Bidirectional(StepRNN(), weights=weights, merge_mode="ave")
    wrapper(keras.Input((2, 3)))
    for got, want in zip(wrapper.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(got, want)
    config = wrapper.get_config()
    assert set(config) == {"name", "trainable", "dtype", "merge_mode", "layer", "backward_layer"}
    rebuilt = layers.Bidirectional.from_config(config)
    assert rebuilt.get_config() == config
    assert rebuilt.forward_layer.name == "forward_step_rnn" and rebuilt.backward_layer.go_backwards


@pytest.mark.parametrize("make,error,message", [
    (lambda: layers.Bidirectional(StepRNN(), merge_mode="max", name="b"), ValueError,
     "Bidirectional 'b': merge_mode must be one of"),
    (lambda: layers.Bidirectional(layers.Dense(3), name="b"), ValueError,
     "Bidirectional 'b': layer 'dense' \\(Dense\\) is not a recurrent layer"),
    (lambda: layers.Bidirectional(StepRNN(), backward_layer=StepRNN(), name="b"), ValueError,
     "Bidirectional 'b': the forward and backward layers need different go_backwards"),
    (lambda: layers.Bidirectional(StepRNN(), backward_layer=StepRNN(go_backwards=True, return_state=True),
                                  name="b"), ValueError, "need the same return_state"),
    (lambda: layers.Bidirectional("lstm", name="b"), TypeError, "Bidirectional 'b': layer must be a keras.layers"),
])
def test_bidirectional_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bidirectional_bad_calls():
    wrapper = layers.Bidirectional(StepRNN(), name="b")
    with pytest.raises(ValueError, match="Bidirectional 'b': initial_state must hold .* \\(an even number\\), got 1"):
        wrapper(keras.Input((2, 3)), initial_state=[keras.Input((3,))])
    with pytest.raises(TypeError, match="Bidirectional 'b': call it on one sequence"):
        wrapper([keras.Input((2, 3)), keras.Input((2, 3))])
    wrapper(keras.Input((2, 3)))
    with pytest.raises(ValueError, match="Bidirectional 'b' was first called with 0 initial states, now with 2"):
        wrapper(keras.Input((2, 3)), initial_state=[keras.Input((3,)), keras.Input((3,))])


def test_a_bidirectional_model_round_trips_through_a_keras_file(tmp_path, rng):
    inputs = keras.Input((4, 3))
    out = layers.Bidirectional(StepRNN(return_sequences=True), merge_mode="sum")(layers.Masking()(inputs))
    model = keras.Model(inputs, layers.Dense(1)(out))
    model.compile(optimizer="sgd", loss="mse")
    x = rng.standard_normal((5, 4, 3)).astype("float32")
    x[0, 2:] = 0.0
    model.fit(x, rng.standard_normal((5, 4, 1)), verbose=0)
    model.save(tmp_path / "b.keras")
    loaded = keras.models.load_model(tmp_path / "b.keras")
    assert [w.name for w in loaded.layers[2].weights] == ["w", "u", "w", "u"]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


# ---- Bidirectional over nkeras's recurrent layers -------------------------------------------


def _sequence_mask(batch, steps):
    mask = np.ones((batch, steps), bool)
    mask[0, -2:] = False
    mask[1, :1] = False
    return mask


@pytest.mark.parametrize("name,options,merge_mode", [
    ("LSTM", {"return_sequences": True}, "concat"),
    ("LSTM", {"return_state": True}, "sum"),
    ("LSTM", {"return_sequences": True, "return_state": True}, None),
    ("GRU", {"return_sequences": True}, "mul"),
    ("SimpleRNN", {}, "ave"),
])
@pytest.mark.parametrize("masked", [False, True])
def test_bidirectional_matches_keras(name, options, merge_mode, masked, real_keras, rng):
    x = rng.standard_normal((3, 5, 4)).astype("float32")
    ours = layers.Bidirectional(getattr(layers, name)(3, **options), merge_mode=merge_mode)
    theirs = real_keras.layers.Bidirectional(getattr(real_keras.layers, name)(3, **options), merge_mode=merge_mode)
    ours(keras.Input((5, 4)))
    theirs.build((None, 5, 4))
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    weights = [rng.uniform(-0.6, 0.6, w.shape).astype("float32") for w in ours.weights]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    mask = _sequence_mask(3, 5) if masked else None
    got = ours(x, mask=None if mask is None else mask.astype("float32"))
    want = theirs(x, mask=mask)
    got = got if isinstance(got, list) else [got]
    want = list(want) if isinstance(want, (list, tuple)) else [want]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, np.asarray(w), rtol=1e-5, atol=1e-5)
    config = ours.get_config()
    their_config = theirs.get_config()
    assert set(config) == set(their_config)
    assert config["layer"]["class_name"] == their_config["layer"]["class_name"] == name
    assert config["layer"]["config"]["name"].startswith("forward_")
    assert config["backward_layer"]["config"]["go_backwards"] is True
    rebuilt = real_keras.layers.Bidirectional.from_config(config)
    assert rebuilt.backward_layer.go_backwards and rebuilt.merge_mode == merge_mode


def test_bidirectional_lstm_gradients(float64):
    layer = layers.Bidirectional(layers.LSTM(2, return_sequences=True))
    check_gradients(layer, (2, 4, 3), mask=_sequence_mask(2, 4).astype("float64"))
    with_states = layers.Bidirectional(layers.GRU(2, return_state=True), merge_mode="sum")

    def call(layer, inputs, mask):
        return layer(inputs[0], initial_state=inputs[1:])

    check_gradients(with_states, [(2, 3, 3), (2, 2), (2, 2)], call=call)


def _bidirectional_model():
    keras.utils.set_random_seed(12)
    inputs = keras.Input((4, 3))
    x = layers.Bidirectional(layers.LSTM(2, return_sequences=True))(layers.Masking()(inputs))
    model = keras.Model(inputs, layers.Dense(1)(x))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def _bidirectional_data():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((3, 4, 3)).astype("float32")
    x[0, 3:] = 0.0
    return x, rng.standard_normal((3, 4, 1)).astype("float32")


def test_bidirectional_training_on_cuda_matches_the_cpu():
    x, y = _bidirectional_data()
    losses = assert_trains_alike_on_both_devices(_bidirectional_model, x, y, batch_size=3)
    assert losses[1] < losses[0]


def test_bidirectional_files_round_trip_and_keras_files_load(real_keras, tmp_path, rng):
    x, y = _bidirectional_data()
    ours = _bidirectional_model()
    ours.fit(x, y, verbose=0)
    ours.save(tmp_path / "ours.keras")
    loaded = keras.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), ours.predict(x, verbose=0))
    serialize = keras.saving.serialize_keras_object
    assert [serialize(layer) for layer in loaded.layers] == [serialize(layer) for layer in ours.layers]

    L = real_keras.layers
    inputs = real_keras.Input((4, 3))
    # return_sequences=False: Keras writes zero_output_for_mask=True into a
    # Bidirectional's layers when they return sequences (tests/test_saving_sequences.py
    # loads such a file).
    out = L.Bidirectional(L.GRU(2, return_state=True), merge_mode="ave")(inputs)
    out = L.Concatenate()([out[0], out[1], out[2]])
    theirs = real_keras.Model(inputs, L.Dense(1)(out))
    theirs.set_weights([rng.uniform(-0.5, 0.5, w.shape) for w in theirs.weights])
    theirs.save(tmp_path / "theirs.keras")
    mine = keras.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(mine.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_keras_loads_an_nkeras_bidirectional_file(real_keras, tmp_path):
    x, _ = _bidirectional_data()
    ours = _bidirectional_model()
    ours.save(tmp_path / "ours.keras")
    theirs = real_keras.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
