"""MultiHeadAttention: float64 gradient checks (self and cross attention,
masks, causal, dropout, attention scores as an output), Keras 3 parity
(weights, configs, forward with weights copied), errors naming the layer,
and training on both devices."""


import numpy as np
import pytest

import nkeras as keras
from devices import assert_trains_alike_on_both_devices
from nkeras.backend import get_device
from nkeras.graph import ExecutionContext
from nkeras.layers import Dense, GlobalAveragePooling1D, LayerNormalization
from nkeras.layers.attention import MultiHeadAttention
from nkeras.saving.serialization import deserialize_layer
from tests.gradcheck import numerical_grad


def _binary(rng, shape, keep=0.7):
    mask = (rng.uniform(size=shape) < keep).astype(np.float64)
    mask[..., 0] = 1.0
    return mask


def _call(layer, arrays, options):
    """Call ``layer`` on Inputs shaped like ``arrays`` (a dict by call
    argument) so that it records its call layout; returns the output(s)."""
    inputs = {name: keras.Input(array.shape[1:]) for name, array in arrays.items()}
    query, value = inputs.pop("query"), inputs.pop("value")
    return layer(query, value, **inputs, **options)


def _run(layer, inputs, training, step=3):
    context = ExecutionContext(get_device("cpu"), training)
    context.step = step
    shapes = [(None,) + a.shape[1:] for a in inputs]
    out_shapes = layer.compute_output_shape(shapes)
    out_shapes = out_shapes if isinstance(out_shapes, list) else [out_shapes]
    outputs = [np.empty((inputs[0].shape[0],) + tuple(s[1:])) for s in out_shapes]
    state = {k: np.zeros(s) for k, s in layer.state_shapes([a.shape for a in inputs], training).items()}
    layer.forward(context, inputs, outputs, state)
    return context, outputs, state


def _check_gradients(layer, arrays, rng, options=(), training=True):
    """Analytic input and weight gradients against central differences of
    ``sum(outputs * probes)``; mask inputs get no gradient."""
    _call(layer, arrays, dict(options))
    for variable in layer.weights:
        variable.assign(rng.standard_normal(variable.shape) * 0.5)
        variable.grad = np.zeros(variable.shape)
    names = layer._layout
    inputs = [arrays[name] for name in names]
    context, outputs, state = _run(layer, inputs, training)
    probes = [rng.standard_normal(o.shape) for o in outputs]

    def objective(_):
        return sum(float(np.sum(o * p)) for o, p in zip(_run(layer, inputs, training)[1], probes))

    grads = [None if name.endswith("mask") and name != "attention_mask" else np.full(a.shape, np.nan)
             for name, a in zip(names, inputs)]
    layer.backward(context, inputs, outputs, state, [p.copy() for p in probes], grads)
    totals = {}  # self attention reads one array as query and value: the plan sums their gradients
    for name, array, grad in zip(names, inputs, grads):
        if name == "attention_mask":
            np.testing.assert_array_equal(grad, 0.0)
        elif grad is not None:
            totals[id(array)] = (name, array, totals.get(id(array), ("", None, 0.0))[2] + grad)
    for name, array, grad in totals.values():
        np.testing.assert_allclose(grad, numerical_grad(objective, array), rtol=1e-5, atol=1e-7, err_msg=name)
    for index, variable in enumerate(layer.trainable_weights):
        np.testing.assert_allclose(variable.grad, numerical_grad(objective, variable.value), rtol=1e-5, atol=1e-7,
                                   err_msg=f"weight {index} ({variable.name})")
    return outputs


# ---- gradients ------------------------------------------------------------------


def test_self_attention_gradients(float64, rng):
    x = rng.standard_normal((2, 4, 5))
    _check_gradients(MultiHeadAttention(2, 3), {"query": x, "value": x}, rng)


def test_cross_attention_gradients_with_key_mask_and_output_shape(float64, rng):
    arrays = {
        "query": rng.standard_normal((2, 3, 4)),
        "value": rng.standard_normal((2, 5, 2)),
        "key": rng.standard_normal((2, 5, 3)),
        "attention_mask": _binary(rng, (2, 3, 5)),
    }
    layer = MultiHeadAttention(2, 2, value_dim=3, output_shape=(2, 3))
    outputs = _check_gradients(layer, arrays, rng)
    assert outputs[0].shape == (2, 3, 2, 3)


def test_gradients_with_padding_masks_causal_dropout_and_scores(float64, rng):
    x = rng.standard_normal((3, 4, 3))
    arrays = {"query": x, "value": x, "query_mask": _binary(rng, (3, 4)), "value_mask": _binary(rng, (3, 4))}
    arrays["query_mask"][0, 2] = 0.0
    layer = MultiHeadAttention(2, 2, dropout=0.3, seed=7, use_bias=False)
    _, scores = _check_gradients(layer, arrays, rng, {"use_causal_mask": True, "return_attention_scores": True})
    assert np.all(scores[0, :, 2] == 0)  # a masked query step attends to nothing
    assert np.all(np.triu(scores[1, 0], 1) == 0)


def test_value_only_gradients_sum_both_projections(float64, rng):
    arrays = {"query": rng.standard_normal((2, 2, 3)), "value": rng.standard_normal((2, 3, 4))}
    _check_gradients(MultiHeadAttention(3, 2, value_dim=1), arrays, rng)


# ---- Keras parity -----------------------------------------------------------------


PARITY = [
    ({"num_heads": 2, "key_dim": 3}, {}, "self"),
    ({"num_heads": 3, "key_dim": 2, "output_shape": 5}, {}, "key"),
    ({"num_heads": 2, "key_dim": 4, "use_bias": False}, {"use_causal_mask": True}, "cross"),
    # (Keras on JAX takes value_dim != key_dim only on its explicit path, which returning the scores takes.)
    ({"num_heads": 2, "key_dim": 2, "value_dim": 3, "output_shape": (2, 2)}, {"return_attention_scores": True}, "mask"),
    ({"num_heads": 2, "key_dim": 3, "dropout": 0.5}, {"use_causal_mask": True}, "value_mask"),
]


@pytest.mark.parametrize("options,call,inputs", PARITY)
def test_weights_configs_and_forward_match_keras(options, call, inputs, real_keras, rng):
    query = rng.standard_normal((3, 4, 6)).astype("float32")
    value = query if inputs == "self" else rng.standard_normal((3, 5, 3)).astype("float32")
    extra = {}
    if inputs == "key":
        extra["key"] = rng.standard_normal((3, 5, 2)).astype("float32")
    if inputs == "mask":
        extra["attention_mask"] = _binary(rng, (3, 4, 5)).astype("float32")
        extra["attention_mask"][1, 2] = 0.0
    if inputs == "value_mask":
        extra["value_mask"] = _binary(rng, (3, 5)).astype("float32")
    theirs = real_keras.layers.MultiHeadAttention(**options)
    expected = theirs(query, value, **extra, **call)
    layer = MultiHeadAttention(**options)
    _call(layer, {"query": query, "value": value, **extra}, call)
    assert [w.shape for w in layer.weights] == [tuple(w.shape) for w in theirs.weights]
    assert [w.name for w in layer.weights] == [w.name for w in theirs.weights]
    weights = [rng.uniform(-0.5, 0.5, w.shape).astype("float32") for w in layer.weights]
    layer.set_weights(weights)
    theirs.set_weights(weights)
    expected = theirs(query, value, **extra, **call)
    got = layer(query, value, **extra, **call)
    got, expected = (got, expected) if isinstance(got, list) else ([got], [expected])
    for ours, want in zip(got, expected):
        np.testing.assert_allclose(ours, np.asarray(want), rtol=1e-5, atol=1e-5)

    config = layer.get_config()
    their_config = theirs.get_config()
    assert set(config) == set(their_config)
    assert MultiHeadAttention.from_config(config).get_config() == config
    rebuilt = real_keras.layers.MultiHeadAttention.from_config(config).get_config()
    for key in set(config) - {"name", "attention_axes", "dtype"}:
        assert rebuilt[key] == their_config[key], key
    entry = real_keras.saving.serialize_keras_object(theirs)
    loaded = deserialize_layer(entry)
    assert type(loaded) is MultiHeadAttention and loaded.get_config().keys() == config.keys()


def _padded_model(lib, layers):
    tokens = lib.Input((5,))
    embedded = layers.Embedding(7, 4, mask_zero=True)(tokens)
    attended, scores = layers.MultiHeadAttention(2, 3)(embedded, embedded, return_attention_scores=True)
    return lib.Model(tokens, [attended, scores, layers.Add()([embedded, attended])])


def test_padding_masks_of_the_inputs_match_keras(real_keras, rng):
    """Embedding(mask_zero=True) masks padded steps as queries and as values,
    as Keras combines them; the output carries the query's mask. (Keras
    returns the scores here so that it takes its explicit softmax, which
    gives a query step with nothing to attend to zero attention, as nkeras
    does; its fused dot_product_attention spreads that step's attention
    evenly instead: docs/attention.md.)"""
    tokens = rng.integers(1, 7, (3, 5)).astype("float32")
    tokens[0, 3:] = 0
    tokens[1, 1] = 0
    tokens[2, :] = 0  # nothing to attend to: zero attention, the output is the bias
    theirs = _padded_model(real_keras, real_keras.layers)
    ours = _padded_model(keras, keras.layers)
    ours.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype("float32") for w in ours.weights])
    theirs.set_weights(ours.get_weights())
    for got, want in zip(ours.predict(tokens, verbose=0), theirs.predict(tokens, verbose=0)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    attended, embedded_mask = ours.layers[2].output[0], ours.layers[1]._inbound_nodes[0].outputs[-1]
    assert embedded_mask.is_mask and attended._keras_mask is embedded_mask


def test_padded_steps_change_nothing_at_the_others_and_train(rng):
    keras.utils.set_random_seed(2)
    padded = _padded_model(keras, keras.layers)
    tokens = rng.integers(1, 7, (4, 5)).astype("float32")
    tokens[:, 3:] = 0
    tokens_short = keras.Input((3,))
    embedded = padded.layers[1](tokens_short)
    short = keras.Model(tokens_short, padded.layers[2](embedded, embedded, return_attention_scores=True))
    long_outputs, short_outputs = padded.predict(tokens, verbose=0), short.predict(tokens[:, :3], verbose=0)
    np.testing.assert_allclose(long_outputs[0][:, :3], short_outputs[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(long_outputs[1][:, :, :3, :3], short_outputs[1], rtol=1e-5, atol=1e-6)
    trained = keras.Model(padded.inputs, padded.outputs[2])
    trained.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    history = trained.fit(tokens, np.ones((4, 5, 4)), epochs=3, verbose=0).history["loss"]
    assert history[-1] < history[0]


def test_glorot_fans_are_those_of_the_projection_matrices():
    layer = MultiHeadAttention(8, 4)
    _call(layer, {"query": np.zeros((1, 3, 16)), "value": np.zeros((1, 3, 16))}, {})
    query_kernel, output_kernel = layer.weights[0].numpy(), layer.weights[6].numpy()
    # Uniform on +-sqrt(6 / (fan_in + fan_out)) with fans (16, 8 * 4) and (8 * 4, 16).
    limit = np.sqrt(6 / (16 + 32))
    assert np.abs(query_kernel).max() <= limit and np.abs(query_kernel).max() > 0.9 * limit
    assert np.abs(output_kernel).max() <= limit and np.abs(output_kernel).max() > 0.9 * limit


def test_keras_files_round_trip_both_ways(real_keras, tmp_path, rng):
    """A .keras file nkeras writes loads in nkeras and in Keras 3, and the
    file Keras writes back loads in nkeras: configs, call arguments (key,
    attention_mask, use_causal_mask, return_attention_scores) and the
    weights under Keras's sublayer groups."""
    query, value, attention_mask = keras.Input((4, 6)), keras.Input((3, 5)), keras.Input((4, 3))
    hidden = MultiHeadAttention(2, 3, name="cross")(query, value, key=value, attention_mask=attention_mask,
                                                     use_causal_mask=True)
    last = MultiHeadAttention(2, 2, use_bias=False, output_shape=4)
    output, scores = last(hidden, hidden, return_attention_scores=True)
    model = keras.Model([query, value, attention_mask], [output, scores])
    arrays = [rng.standard_normal((3, 4, 6)).astype("float32"), rng.standard_normal((3, 3, 5)).astype("float32"),
              _binary(rng, (3, 4, 3)).astype("float32")]
    expected = model.predict(arrays, verbose=0)
    model.save(tmp_path / "ours.keras")
    theirs = real_keras.saving.load_model(tmp_path / "ours.keras")
    for got, want in zip(theirs.predict(arrays, verbose=0), expected):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    theirs.save(tmp_path / "theirs.keras")
    for path in ("ours.keras", "theirs.keras"):
        loaded = keras.saving.load_model(tmp_path / path)
        for got, want in zip(loaded.predict(arrays, verbose=0), expected):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=path)


# ---- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: MultiHeadAttention(0, 2), ValueError, "num_heads must be a positive integer"),
        (lambda: MultiHeadAttention(2, 2, dropout=1.0), ValueError, "dropout must be a float in \\[0, 1\\)"),
        (lambda: MultiHeadAttention(2, 2, attention_axes=(2,)), NotImplementedError, "only attention over the steps"),
        (lambda: MultiHeadAttention(2, 2, use_gate=True), NotImplementedError, "use_gate not supported"),
        (lambda: MultiHeadAttention(2, 2, sliding_window=3), NotImplementedError, "sliding_window not supported"),
        (lambda: MultiHeadAttention(2, 2, kernel_regularizer="l2"), NotImplementedError, "kernel_regularizer"),
    ],
)
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    "arrays, options, error, message",
    [
        ({"query": (4, 3), "value": (5, 3), "key": (6, 3)}, {}, ValueError, "'mha'.*same number of steps"),
        ({"query": (4, 3), "value": (5, 3), "attention_mask": (4, 4)}, {}, ValueError,
         "'mha'.*attention_mask of shape \\(batch, 4, 5\\).*got shape \\(None, 4, 4\\)"),
        ({"query": (4, 3), "value": (5, 3), "value_mask": (4,)}, {}, ValueError,
         "'mha'.*value_mask of shape \\(batch, 5\\)"),
        ({"query": (2, 4, 3), "value": (5, 3)}, {}, NotImplementedError, "'mha'.*shape \\(batch, steps, features\\)"),
        ({"query": (4, 3), "value": (5, 3)}, {"training": True}, NotImplementedError, "'mha'.*training"),
    ],
)
def test_bad_inputs_name_the_layer(arrays, options, error, message):
    with pytest.raises(error, match=message):
        _call(MultiHeadAttention(2, 2, name="mha"), {k: np.zeros((1,) + s) for k, s in arrays.items()}, options)


def test_a_shared_layer_rejects_other_shapes_and_call_options():
    layer = MultiHeadAttention(2, 2, name="mha")
    x = keras.Input((4, 3))
    layer(x, x)
    with pytest.raises(ValueError, match="'mha'.*built for query inputs with 3 features.*\\(None, 4, 5\\)"):
        wide = keras.Input((4, 5))
        layer(wide, x)
    with pytest.raises(ValueError, match="'mha'.*must be called alike.*use_causal_mask=True"):
        layer(x, x, use_causal_mask=True)
    assert layer(keras.Input((7, 3)), keras.Input((2, 3))).shape == (None, 7, 3)


# ---- models ----------------------------------------------------------------------------


def _encoder(with_masks, optimizer):
    keras.utils.set_random_seed(3)
    x = keras.Input((3, 4))
    mask = keras.Input((3, 3))
    attended = MultiHeadAttention(2, 2, dropout=0.25)(x, x, attention_mask=mask if with_masks else None,
                                                       use_causal_mask=with_masks)
    hidden = keras.layers.Add()([x, attended])
    if not with_masks:  # (LayerNormalization's CUDA twin has its own test: the simulator is slow)
        hidden = LayerNormalization()(hidden)
    outputs = Dense(2, activation="softmax")(GlobalAveragePooling1D()(hidden))
    model = keras.Model([x, mask] if with_masks else x, outputs)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return model


def _data():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 3, 4)).astype("float32")
    mask = _binary(rng, (8, 3, 3)).astype("float32")
    return x, mask, (x[:, 0].sum(axis=1) > x[:, 2].sum(axis=1)).astype("int64")


def test_an_encoder_block_learns():
    x, _, y = _data()
    losses = _encoder(False, keras.optimizers.Adam(0.05)).fit(x, y, batch_size=4, epochs=20, verbose=0).history["loss"]
    assert losses[-1] < 0.6 * losses[0]


def test_training_on_cuda_matches_the_cpu():
    """Two SGD steps with masks, causal attention and dropout (Adam would
    magnify the rounding noise in the key bias's gradient, which is zero in
    exact arithmetic: softmax ignores a shift shared by a whole row)."""
    x, mask, y = _data()
    assert_trains_alike_on_both_devices(
        lambda: _encoder(True, keras.optimizers.SGD(0.1)), [x, mask], y, batch_size=4, epochs=1, weight_atol=1e-6
    )
