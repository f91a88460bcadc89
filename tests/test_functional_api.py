"""The functional API in full: shared layers, models nested as layers,
feature extraction, several inputs and outputs, and masks of padded steps
(how they travel through the graph and weight the loss)."""

import numpy as np
import pytest

import nkeras as keras
from nkeras import layers
from nkeras.layers import Layer
from tests.test_models import _flat_gradient_check


# ---- shared layers ---------------------------------------------------------


def test_shared_layer_sums_the_gradients_of_its_calls(float64, rng):
    """One Dense called at three places (twice in one branch): its kernel's
    gradient is the sum over the calls, checked against finite differences."""
    a = keras.Input(shape=(4,), name="a")
    b = keras.Input(shape=(4,), name="b")
    shared = layers.Dense(4, activation="tanh", name="shared")
    left = shared(shared(a))
    right = shared(b)
    head = layers.Dense(2, name="head")(left)
    model = keras.Model([a, b], [head, right])
    assert [layer.name for layer in model.layers].count("shared") == 1
    model._test_losses = ["mse", "huber"]
    model._test_weights = [1.0, 0.7]
    n = 5
    xs = [rng.standard_normal((n, 4)), rng.standard_normal((n, 4))]
    ys = [rng.standard_normal((n, 2)), rng.standard_normal((n, 4))]
    _flat_gradient_check(model, xs, ys, rng)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_shared_layer_trains_alike_on_both_devices(device, rng):
    x = rng.standard_normal((48, 6)).astype("float32")
    y = rng.standard_normal((48, 3)).astype("float32")

    def history(device_name):
        keras.utils.set_random_seed(7)
        with keras.device(device_name):
            inputs = keras.Input(shape=(6,))
            shared = layers.Dense(6, activation="relu")
            outputs = layers.Dense(3)(shared(shared(inputs)))
            model = keras.Model(inputs, outputs)
            model.compile("adam", "mse")
            return model.fit(x, y, batch_size=16, epochs=2, verbose=0).history["loss"]

    np.testing.assert_allclose(history(device), history("cpu"), rtol=1e-5)


def test_shared_layer_called_on_an_incompatible_shape_names_the_layer():
    shared = layers.Dense(3, name="shared_dense")
    shared(keras.Input(shape=(4,)))
    with pytest.raises(ValueError, match="shared_dense.*last dimension 4"):
        shared(keras.Input(shape=(5,)))


# ---- models as layers ---------------------------------------------------------


def test_model_nested_as_a_layer_matches_finite_differences(float64, rng):
    inner_input = keras.Input(shape=(3,))
    inner = keras.Model(inner_input, layers.Dense(4, activation="tanh")(inner_input), name="inner")
    x = keras.Input(shape=(3,))
    twice = layers.Dense(3)(inner(x))
    outputs = layers.Dense(2)(inner(twice))  # the nested model is shared too
    model = keras.Model(x, outputs)
    assert [layer.name for layer in model.layers][1] == "inner"
    assert model.count_params() == inner.count_params() + 4 * 3 + 3 + 4 * 2 + 2
    model._test_losses = ["mse"]
    model._test_weights = [1.0]
    _flat_gradient_check(model, [rng.standard_normal((6, 3))], [rng.standard_normal((6, 2))], rng)


def test_sequential_inside_sequential_trains_and_predicts(rng):
    block = keras.Sequential([keras.Input(shape=(5,)), layers.Dense(8, activation="relu"), layers.Dense(8)], name="block")
    model = keras.Sequential([keras.Input(shape=(5,)), block, layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    x = rng.standard_normal((64, 5)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    losses = model.fit(x, y, batch_size=16, epochs=10, verbose=0).history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    # The nested model's layers and the outer Dense, computed by hand.
    first, second = block.layers  # Sequential.layers leaves out the input, as in Keras
    hidden = np.maximum(x @ first.kernel.numpy() + first.bias.numpy(), 0)
    hidden = hidden @ second.kernel.numpy() + second.bias.numpy()
    expected = hidden @ model.layers[-1].kernel.numpy() + model.layers[-1].bias.numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(block(x), hidden, rtol=1e-4, atol=1e-5)


def test_model_called_on_the_wrong_shape_names_the_model():
    inner_input = keras.Input(shape=(3,))
    inner = keras.Model(inner_input, layers.Dense(2)(inner_input), name="encoder")
    with pytest.raises(ValueError, match="encoder.*expects inputs of shape"):
        inner(keras.Input(shape=(4,)))


# ---- feature extraction, structure --------------------------------------------


def test_feature_extractor_shares_weights_and_the_base_keeps_training(rng):
    base = keras.Sequential(
        [keras.Input(shape=(4,)), layers.Dense(8, activation="relu", name="hidden"), layers.Dense(2, name="out")]
    )
    base.compile("adam", "mse")
    features = keras.Model(base.inputs, base.get_layer("hidden").output)
    x = rng.standard_normal((64, 4)).astype("float32")
    y = rng.standard_normal((64, 2)).astype("float32")
    before = features.predict(x, verbose=0)
    first = base.fit(x, y, epochs=3, verbose=0).history["loss"]
    after = features.predict(x, verbose=0)
    assert not np.allclose(before, after), "the extractor must see the trained weights"
    second = base.fit(x, y, epochs=3, verbose=0).history["loss"]
    assert second[-1] < first[0], "the base model must still train after the extractor packed its weights"
    hidden = base.get_layer("hidden")
    np.testing.assert_allclose(
        features.predict(x, verbose=0), np.maximum(x @ hidden.kernel.numpy() + hidden.bias.numpy(), 0), rtol=1e-5, atol=1e-6
    )


def test_structure_accessors():
    a = keras.Input(shape=(3,), name="a")
    b = keras.Input(shape=(2,), name="b")
    left = layers.Dense(4, name="left")(a)
    right = layers.Dense(4, name="right")(b)
    model = keras.Model({"a": a, "b": b}, {"left": left, "right": right})
    assert model.inputs == [a, b] and model.input == [a, b]
    assert model.outputs == [left, right]
    assert model.get_layer("right") is right.node.layer
    assert [layer.name for layer in model.layers] == ["a", "b", "left", "right"]


def test_multi_output_losses_and_weights_as_dicts(rng):
    a = keras.Input(shape=(3,), name="a")
    b = keras.Input(shape=(2,), name="b")
    joined = layers.Dense(6, activation="relu")(a)
    joined = layers.Dense(6)(joined)
    score = layers.Dense(1, name="score")(joined)
    label = layers.Dense(3, activation="softmax", name="label")(layers.Dense(4)(b))
    model = keras.Model([a, b], [score, label])
    model.compile(
        "adam", loss={"score": "mse", "label": "sparse_categorical_crossentropy"},
        loss_weights={"score": 0.5, "label": 2.0}, metrics={"label": ["accuracy"]},
    )
    n = 40
    xs = [rng.standard_normal((n, 3)).astype("float32"), rng.standard_normal((n, 2)).astype("float32")]
    ys = {"score": rng.standard_normal((n, 1)).astype("float32"), "label": rng.integers(0, 3, n)}
    logs = model.evaluate(xs, ys, verbose=0, return_dict=True, batch_size=n)
    assert np.isclose(logs["loss"], 0.5 * logs["score_loss"] + 2.0 * logs["label_loss"], rtol=1e-5)
    assert set(logs) == {"loss", "score_loss", "label_loss", "label_accuracy"}


# ---- masks -----------------------------------------------------------------------


class _ZeroStepMask(Layer):
    """Test layer: passes its input on and masks the steps whose first
    feature is 0 (what Masking does), written with NumPy."""

    def output_mask_shape(self, input_shape):
        return tuple(input_shape[:2])

    def forward(self, ctx, inputs, outputs, state):
        outputs[0][...] = inputs[0]
        outputs[1][...] = inputs[0][:, :, 0] != 0

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        assert output_grads[1] is None, "a mask gets no gradient"
        if input_grads[0] is not None:
            input_grads[0][...] = output_grads[0]


class _MaskedSum(Layer):
    """Test layer: sums the unmasked steps (reads the mask)."""

    reads_mask = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def forward(self, ctx, inputs, outputs, state):
        mask = state.get("mask", np.ones(inputs[0].shape[:2]))
        outputs[0][...] = np.einsum("btf,bt->bf", inputs[0], mask)

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        mask = state.get("mask", np.ones(inputs[0].shape[:2]))
        if input_grads[0] is not None:
            input_grads[0][...] = output_grads[0][:, None, :] * mask[:, :, None]


def _padded_sequences(rng, n=12, steps=5, features=3):
    x = rng.standard_normal((n, steps, features)).astype("float32")
    lengths = rng.integers(1, steps + 1, n)
    for i, length in enumerate(lengths):
        x[i, length:] = 0.0
    return x, (np.arange(steps)[None, :] < lengths[:, None]).astype("float32")


def test_mask_travels_through_masking_aware_layers_to_a_reader(rng):
    x, mask = _padded_sequences(rng)
    inputs = keras.Input(shape=x.shape[1:])
    masker = _ZeroStepMask()
    masked = masker(inputs)
    assert masked._keras_mask is not None and masked._keras_mask.shape == (None, 5)
    assert masker.output is masked, "a layer's output is its data tensor, not the mask"
    hidden = layers.Dense(4, activation="tanh")(masked)
    assert hidden._keras_mask is masked._keras_mask, "Dense passes the mask on"
    summed = _MaskedSum()(hidden)
    assert summed._keras_mask is None
    model = keras.Model(inputs, summed)
    dense = model.layers[2]
    hidden_values = np.tanh(x @ dense.kernel.numpy() + dense.bias.numpy())
    expected = np.einsum("btf,bt->bf", hidden_values, mask)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_masked_steps_count_for_nothing_in_the_loss_and_metrics(rng):
    """A per-step output carrying a mask: loss and accuracy are means over
    the unmasked steps (Keras's rule), and padded steps get no gradient."""
    x, mask = _padded_sequences(rng)
    inputs = keras.Input(shape=x.shape[1:])
    probs = layers.Dense(4, activation="softmax")(_ZeroStepMask()(inputs))
    model = keras.Model(inputs, probs)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    labels = rng.integers(0, 4, x.shape[:2])
    logs = model.evaluate(x, labels, verbose=0, return_dict=True, batch_size=len(x))
    p = model.predict(x, verbose=0)
    nll = -np.log(np.take_along_axis(p, labels[..., None], axis=-1)[..., 0])
    np.testing.assert_allclose(logs["loss"], (nll * mask).sum() / mask.sum(), rtol=1e-5)
    correct = (p.argmax(-1) == labels).astype(float)
    np.testing.assert_allclose(logs["accuracy"], (correct * mask).sum() / mask.sum(), rtol=1e-6)
    # Changing the labels of padded steps changes nothing.
    relabelled = np.where(mask > 0, labels, (labels + 1) % 4)
    again = model.evaluate(x, relabelled, verbose=0, return_dict=True, batch_size=len(x))
    np.testing.assert_allclose(again["loss"], logs["loss"], rtol=1e-6)


def test_mask_of_the_wrong_shape_names_the_layer(rng):
    reader = _MaskedSum(name="masked_sum")
    with pytest.raises(ValueError, match="masked_sum.*mask of shape"):
        reader(keras.Input(shape=(5, 3)), mask=keras.Input(shape=(4,)))
    with pytest.raises(ValueError, match="masked_sum.*mask of shape"):
        reader(rng.standard_normal((2, 5, 3)), mask=np.ones((2, 6)))
    # An eager call with a fitting mask uses it.
    x = rng.standard_normal((2, 5, 3))
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=float)
    np.testing.assert_allclose(reader(x, mask=mask), np.einsum("btf,bt->bf", x, mask), rtol=1e-6)


# ---- nested models in model files -------------------------------------------------


def _keras():
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def _nested(k, rng):
    """A functional model and a Sequential nested in a functional model,
    built with the given API (nkeras or Keras)."""
    inner_input = k.Input(shape=(3,))
    inner = k.Model(inner_input, k.layers.Dense(2, activation="tanh")(inner_input), name="inner")
    block = k.Sequential([k.Input(shape=(2,)), k.layers.Dense(4)], name="block")
    x = k.Input(shape=(3,))
    return k.Model(x, k.layers.Dense(1)(block(inner(x))))


def test_nested_models_round_trip_and_open_in_keras_both_ways(rng, tmp_path):
    k = _keras()
    x = rng.standard_normal((5, 3)).astype("float32")
    model = _nested(keras, rng)
    model.compile("adam", "mse")
    model.fit(x, rng.standard_normal((5, 1)), verbose=0)
    model.save(tmp_path / "nested.keras")
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "nested.keras").predict(x, verbose=0), expected, rtol=1e-6)
    theirs = k.saving.load_model(tmp_path / "nested.keras")
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), expected, rtol=1e-5, atol=1e-6)

    keras_model = _nested(k, rng)
    keras_model.save(tmp_path / "from_keras.keras")
    ours = keras.saving.load_model(tmp_path / "from_keras.keras")
    assert [type(layer).__name__ for layer in ours.layers] == ["InputLayer", "Model", "Sequential", "Dense"]
    np.testing.assert_allclose(ours.predict(x, verbose=0), np.asarray(keras_model.predict(x, verbose=0)), rtol=1e-5, atol=1e-6)
