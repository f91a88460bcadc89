"""MultiHeadAttention, with Keras 3's arguments, weights and call signature.

The query, key, value and output projections are GEMMs (``dense_forward``
on ``(batch * steps, features)`` views of the inputs and of Keras's 3-D
kernels); the attention between them is the ``attention`` kernel family.
Masks (an ``attention_mask`` input, the padding masks the inputs carry,
the causal mask) are combined into one keep-mask per call, as Keras ANDs
them. See docs/attention.md.
"""

import math

import numpy as np

from nkeras import initializers
from nkeras.initializers import Initializer
from nkeras.kernels.codes import LINEAR
from nkeras.layers.core import _reject_unsupported, _serialize_initializer
from nkeras.layers.layer import Layer
from nkeras.random import draw_seed

# The tensors a call may pass, in the order the layer's node keeps them.
_TENSOR_ARGUMENTS = ("query", "value", "key", "attention_mask", "query_mask", "value_mask", "key_mask")


class _KernelInitializer(Initializer):
    """Keras 3's EinsumDense fans for a projection kernel: the kernel is
    initialised as the 2-D ``(fan_in, fan_out)`` matrix it acts as."""

    def __init__(self, initializer, fan_in):
        self.initializer = initializers.get(initializer)
        self.fan_in = fan_in

    def __call__(self, shape, dtype=None):
        return self.initializer((self.fan_in, int(np.prod(shape)) // self.fan_in), dtype).reshape(shape)


def _matrix(array, cols):
    """A 2-D ``(-1, cols)`` view (sizes spelt out: device arrays take no -1)."""
    return array.reshape(array.size // cols, cols)


def _features(array):
    """The last dimension (device arrays' shapes take no negative index)."""
    return tuple(array.shape)[-1]


def _flat(array):
    return array.reshape(array.size)


def _positive_int(layer_name, name, value, optional=False):
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"MultiHeadAttention '{layer_name}': {name} must be a positive integer, got {value!r}")
    return int(value)


def _attention_axes(layer_name, axes):
    """nkeras attends over the steps axis of (batch, steps, features) inputs:
    axis 1 (-2 of the projected 4-D tensors), Keras's default."""
    if axes is None:
        return None
    listed = [axes] if isinstance(axes, (int, np.integer)) else list(axes) if isinstance(axes, (list, tuple)) else None
    if listed is None:
        raise ValueError(
            f"MultiHeadAttention '{layer_name}': attention_axes must be an int, list or tuple, got {axes!r}"
        )
    if [(-2 if axis == 1 else axis) for axis in listed] != [-2]:
        raise NotImplementedError(
            f"MultiHeadAttention '{layer_name}': only attention over the steps axis (attention_axes=None or (1,)) "
            f"is supported in nkeras, got attention_axes={axes!r}"
        )
    return (1,)


class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product attention (Vaswani et al., 2017), as Keras 3.

    ``mha(query, value)`` projects the query to ``num_heads`` heads of
    ``key_dim``, the key (the value unless given) likewise and the value to
    heads of ``value_dim``; each head's query steps attend to the value
    steps with ``softmax(q k^T / sqrt(key_dim))``; the heads' results are
    projected back to the query's feature size (or ``output_shape``).
    Self attention is ``mha(x, x)``. The output carries the query's mask.

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head for query and key.
        value_dim: size of each head for value (``key_dim`` when None).
        dropout: dropout rate on the attention probabilities in training.
        use_bias: whether the projections add biases.
        output_shape: the output's shape past the batch and steps axes (an
            int or tuple); the query's feature size when None.
        attention_axes: the axes attention runs over; only the steps axis
            (None or (1,)) is supported.
        kernel_initializer: initializer of the projection kernels
            ("glorot_uniform", with the fans of the 2-D GEMM each kernel is).
        bias_initializer: initializer of the biases ("zeros").
        seed: optional integer seed of the dropout.

    Call arguments:
        query: (batch, Tq, query features).
        value: (batch, Tv, value features).
        key: optional (batch, Tv, key features); ``value`` when None.
        attention_mask: optional (batch, Tq, Tv) tensor, nonzero where a
            query step may attend to a value step.
        query_mask, value_mask, key_mask: padding masks (batch, steps); taken
            from the tensors' own masks (Embedding with ``mask_zero``,
            Masking) when not given. A query step that may attend to nothing
            gets zero attention, as in Keras.
        return_attention_scores: also return the attention probabilities
            (batch, num_heads, Tq, Tv).
        training: not supported (fit trains, evaluate and predict infer).
        use_causal_mask: let query step ``i`` attend to value steps ``<= i`` only.
    """

    supports_masking = True

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        attention_axes=None,
        sliding_window=None,
        flash_attention=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        use_gate=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _reject_unsupported(
            self.name,
            sliding_window=sliding_window,
            flash_attention=flash_attention or None,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            use_gate=use_gate or None,
        )
        self.num_heads = _positive_int(self.name, "num_heads", num_heads)
        self.key_dim = _positive_int(self.name, "key_dim", key_dim)
        self.value_dim = _positive_int(self.name, "value_dim", value_dim, optional=True) or self.key_dim
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"MultiHeadAttention '{self.name}': dropout must be a float in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.use_bias = bool(use_bias)
        if output_shape:
            if isinstance(output_shape, (int, np.integer)):
                output_shape = (output_shape,)
            if not isinstance(output_shape, (list, tuple)):
                raise ValueError(
                    f"MultiHeadAttention '{self.name}': output_shape must be an int, list or tuple, "
                    f"got {output_shape!r}"
                )
            output_shape = tuple(_positive_int(self.name, "output_shape", dim) for dim in output_shape)
        self._output_shape = output_shape or None
        self.attention_axes = _attention_axes(self.name, attention_axes)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.seed = seed
        self._seed = draw_seed() if seed is None else int(seed)
        self._scale = 1.0 / math.sqrt(float(self.key_dim))
        self._layout = None
        self._options = None

    # ---- calling ---------------------------------------------------------------

    def __call__(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
    ):
        if training is not None:
            raise NotImplementedError(
                f"MultiHeadAttention '{self.name}': the `training` call argument is not supported in nkeras; "
                "fit runs layers in training mode, evaluate and predict in inference mode"
            )
        if query_mask is None:
            query_mask = getattr(query, "_keras_mask", None)
        if value_mask is None:
            value_mask = getattr(value, "_keras_mask", None)
        if key_mask is None and key is not None and key is not value:
            key_mask = getattr(key, "_keras_mask", None)
        given = {"query": query, "value": value, "key": key, "attention_mask": attention_mask,
                 "query_mask": query_mask, "value_mask": value_mask, "key_mask": key_mask}
        layout = tuple(name for name in _TENSOR_ARGUMENTS if given[name] is not None)
        options = (layout, bool(use_causal_mask), bool(return_attention_scores))
        if self._options is None:
            self._layout = layout
            self._options = options
        elif options != self._options:
            raise ValueError(
                f"MultiHeadAttention '{self.name}' was first called with tensors {self._options[0]}, "
                f"use_causal_mask={self._options[1]}, return_attention_scores={self._options[2]}; a shared layer "
                f"must be called alike, got tensors {layout}, use_causal_mask={bool(use_causal_mask)}, "
                f"return_attention_scores={bool(return_attention_scores)}"
            )
        return self._call_layer([given[name] for name in layout], single=False)

    @property
    def _use_causal_mask(self):
        return self._options[1]

    @property
    def _return_attention_scores(self):
        return self._options[2]

    def _shapes(self, input_shapes):
        """``{argument name: shape}`` of a call's tensors."""
        return dict(zip(self._layout, input_shapes))

    # ---- building ------------------------------------------------------------------

    def _check_shapes(self, shapes):
        name = f"MultiHeadAttention '{self.name}'"
        for argument in ("query", "value", "key"):
            if argument in shapes and len(shapes[argument]) != 3:
                raise NotImplementedError(
                    f"{name}: nkeras supports {argument} inputs of shape (batch, steps, features), "
                    f"got shape {tuple(shapes[argument])}"
                )
        query_steps, value_steps = shapes["query"][1], shapes["value"][1]
        if "key" in shapes and shapes["key"][1] != value_steps:
            raise ValueError(
                f"{name}: key and value must have the same number of steps, got key shape "
                f"{tuple(shapes['key'])} and value shape {tuple(shapes['value'])}"
            )
        expected = {
            "attention_mask": (query_steps, value_steps),
            "query_mask": (query_steps,),
            "value_mask": (value_steps,),
            "key_mask": (value_steps,),
        }
        for argument, steps in expected.items():
            if argument in shapes and tuple(shapes[argument][1:]) != steps:
                raise ValueError(
                    f"{name}: expected {argument} of shape (batch, {', '.join(map(str, steps))}) for query shape "
                    f"{tuple(shapes['query'])} and value shape {tuple(shapes['value'])}, got shape "
                    f"{tuple(shapes[argument])}"
                )

    def _kernel(self, shape, fan_in, name):
        return self.add_weight(shape, _KernelInitializer(self.kernel_initializer, fan_in), name)

    def build(self, input_shape):
        shapes = self._shapes(input_shape)
        self._check_shapes(shapes)
        heads = self.num_heads
        projections = (("query", "query", self.key_dim), ("key", "key" if "key" in shapes else "value", self.key_dim),
                       ("value", "value", self.value_dim))
        for prefix, source, head_dim in projections:
            features = shapes[source][-1]
            setattr(self, f"{prefix}_kernel", self._kernel((features, heads, head_dim), features, "kernel"))
            bias = self.add_weight((heads, head_dim), self.bias_initializer, "bias") if self.use_bias else None
            setattr(self, f"{prefix}_bias", bias)
        out_shape = self._output_shape or (shapes["query"][-1],)
        self.output_kernel = self._kernel((heads, self.value_dim) + out_shape, heads * self.value_dim, "kernel")
        self.output_bias = self.add_weight(out_shape, self.bias_initializer, "bias") if self.use_bias else None
        self._features = {name: shapes[name][-1] for name in ("query", "value", "key") if name in shapes}
        self.built = True

    def check_input_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        self._check_shapes(shapes)
        for argument, features in self._features.items():
            if shapes[argument][-1] != features:
                raise ValueError(
                    f"MultiHeadAttention '{self.name}': the layer was built for {argument} inputs with {features} "
                    f"features (last axis), got shape {tuple(shapes[argument])}"
                )

    def compute_output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        query_steps, value_steps = shapes["query"][1], shapes["value"][1]
        output = (shapes["query"][0], query_steps) + (self._output_shape or (shapes["query"][-1],))
        if self._return_attention_scores:
            return [output, (shapes["query"][0], self.num_heads, query_steps, value_steps)]
        return output

    # ---- kernels ---------------------------------------------------------------------

    def _sizes(self, input_shapes):
        shapes = self._shapes(input_shapes)
        batch, query_steps = shapes["query"][:2]
        return batch, query_steps, shapes["value"][1], shapes

    def _has_mask(self):
        return self._use_causal_mask or any(name.endswith("mask") for name in self._layout)

    def state_shapes(self, input_shapes, training):
        batch, query_steps, value_steps, shapes = self._sizes(input_shapes)
        heads, key_dim, value_dim = self.num_heads, self.key_dim, self.value_dim
        out_units = int(np.prod(self.output_kernel.shape[2:]))
        probs = (batch, heads, query_steps, value_steps)
        state = {
            "query_heads": (batch * query_steps, heads * key_dim),
            "key_heads": (batch * value_steps, heads * key_dim),
            "value_heads": (batch * value_steps, heads * value_dim),
            "context": (batch * query_steps, heads * value_dim),
            "scratch": (2 * (query_steps + value_steps) * key_dim + (2 * value_steps + query_steps) * value_dim
                        + query_steps * value_steps,),
            "keep_mask": (batch, query_steps, value_steps) if self._has_mask() else (1, 1, 1),
        }
        if not self._return_attention_scores:
            state["probs"] = probs
        if not self.use_bias:
            state["zero_key_bias"] = (heads * key_dim,)
            state["zero_value_bias"] = (heads * value_dim,)
            state["zero_output_bias"] = (out_units,)
        if training:
            state["dscores"] = probs
            state["dcontext"] = state["context"]
            state["dquery_heads"] = state["query_heads"]
            state["dkey_heads"] = state["key_heads"]
            state["dvalue_heads"] = state["value_heads"]
            if not self.use_bias:
                state["key_bias_grad"] = (heads * key_dim,)
                state["value_bias_grad"] = (heads * value_dim,)
                state["output_bias_grad"] = (out_units,)
            if "key" not in shapes:
                state["value_grad_from_key"] = (batch * value_steps, shapes["value"][-1])
            if "attention_mask" in shapes:
                state["attention_mask_grad"] = (batch * query_steps, value_steps)
        return state

    def _projections(self):
        """``(input name, kernel, bias, heads buffer, bias stand-in)`` per projection."""
        key_source = "key" if "key" in self._layout else "value"
        return [
            ("query", self.query_kernel, self.query_bias, "query_heads", "zero_key_bias", "key_bias_grad"),
            (key_source, self.key_kernel, self.key_bias, "key_heads", "zero_key_bias", "key_bias_grad"),
            ("value", self.value_kernel, self.value_bias, "value_heads", "zero_value_bias", "value_bias_grad"),
        ]

    def _four_d(self, state, name, steps, head_dim):
        array = state[name]
        return array.reshape(array.shape[0] // steps, steps, self.num_heads, head_dim)

    def _rate(self, ctx):
        return self.dropout if ctx.training else 0.0

    def forward(self, ctx, inputs, outputs, state):
        ops = ctx.ops
        tensors = dict(zip(self._layout, inputs))
        batch, query_steps = tuple(tensors["query"].shape)[:2]
        value_steps = tensors["value"].shape[1]
        for source, kernel, bias, heads_name, stand_in, _ in self._projections():
            x = tensors[source]
            ops.dense_forward(_matrix(x, _features(x)), _matrix(kernel.value, kernel.value.size // _features(x)),
                              state[stand_in] if bias is None else _flat(bias.value), LINEAR, 0.0,
                              state[heads_name], state[heads_name])
        keep_mask = state["keep_mask"]
        if self._has_mask():
            padding_stand_in = keep_mask[0]  # any 2-D array: the kernel reads none it is not told to
            ops.attention_keep_mask(
                tensors.get("attention_mask", keep_mask), "attention_mask" in tensors,
                tensors.get("query_mask", padding_stand_in), "query_mask" in tensors,
                tensors.get("value_mask", padding_stand_in), "value_mask" in tensors,
                tensors.get("key_mask", padding_stand_in), "key_mask" in tensors,
                self._use_causal_mask, keep_mask,
            )
        probs = outputs[1] if self._return_attention_scores else state["probs"]
        ops.attention_forward(
            self._four_d(state, "query_heads", query_steps, self.key_dim),
            self._four_d(state, "key_heads", value_steps, self.key_dim),
            self._four_d(state, "value_heads", value_steps, self.value_dim),
            keep_mask, self._has_mask(), self._scale, self._rate(ctx), self._seed, ctx.step, state["scratch"],
            probs, self._four_d(state, "context", query_steps, self.value_dim),
        )
        y = _matrix(outputs[0], outputs[0].size // (batch * query_steps))
        bias = _flat(self.output_bias.value) if self.use_bias else state["zero_output_bias"]
        ops.dense_forward(state["context"], _matrix(self.output_kernel.value, y.shape[1]), bias, LINEAR, 0.0, y, y)

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        ops = ctx.ops
        tensors = dict(zip(self._layout, inputs))
        grads = dict(zip(self._layout, input_grads))
        batch, query_steps = tuple(tensors["query"].shape)[:2]
        value_steps = tensors["value"].shape[1]
        y = _matrix(outputs[0], outputs[0].size // (batch * query_steps))
        dy = _matrix(output_grads[0], y.shape[1])
        ops.dense_backward(
            state["context"], _matrix(self.output_kernel.value, y.shape[1]), y, y, dy, LINEAR, 0.0, dy,
            _matrix(self.output_kernel.grad, y.shape[1]),
            _flat(self.output_bias.grad) if self.use_bias else state["output_bias_grad"], state["dcontext"], True,
        )
        probs = outputs[1] if self._return_attention_scores else state["probs"]
        dprobs = output_grads[1] if self._return_attention_scores else None
        ops.attention_backward(
            self._four_d(state, "query_heads", query_steps, self.key_dim),
            self._four_d(state, "key_heads", value_steps, self.key_dim),
            self._four_d(state, "value_heads", value_steps, self.value_dim),
            probs, self._four_d(state, "dcontext", query_steps, self.value_dim),
            probs if dprobs is None else dprobs, dprobs is not None,
            self._scale, self._rate(ctx), self._seed, ctx.step, state["scratch"], state["dscores"],
            self._four_d(state, "dquery_heads", query_steps, self.key_dim),
            self._four_d(state, "dkey_heads", value_steps, self.key_dim),
            self._four_d(state, "dvalue_heads", value_steps, self.value_dim),
        )
        for source, kernel, bias, heads_name, _, bias_grad_name in self._projections():
            x2d = _matrix(tensors[source], _features(tensors[source]))
            dx = grads[source]
            if dx is not None and source == "value" and heads_name == "key_heads":
                # The key projection reads the value too: its share is added below.
                dx = state["value_grad_from_key"]
            d_heads = state["d" + heads_name]
            units = d_heads.shape[1]
            ops.dense_backward(
                x2d, _matrix(kernel.value, units), d_heads, d_heads, d_heads, LINEAR, 0.0, d_heads,
                _matrix(kernel.grad, units), state[bias_grad_name] if bias is None else _flat(bias.grad),
                x2d if dx is None else _matrix(dx, x2d.shape[1]), dx is not None,
            )
        if grads["value"] is not None and "key" not in self._layout:
            ops.add_into(_matrix(grads["value"], _features(grads["value"])), state["value_grad_from_key"])
        if grads.get("attention_mask") is not None:
            # The mask only selects pairs (Keras casts it to bool): no gradient.
            ops.copy_into(_matrix(grads["attention_mask"], value_steps), state["attention_mask_grad"])

    def call_arguments(self, node):
        """``mha(query, value, key=..., attention_mask=..., ...)`` as Keras
        records the call; masks the tensors carry are not arguments."""
        tensors = dict(zip(self._layout, node.data_inputs))
        kwargs = {name: tensors[name] for name in ("key", "attention_mask") if name in tensors}
        for name, owner in (("query_mask", "query"), ("value_mask", "value"), ("key_mask", "key")):
            if name in tensors and tensors[name] is not getattr(tensors.get(owner), "_keras_mask", None):
                kwargs[name] = tensors[name]
        if self._use_causal_mask:
            kwargs["use_causal_mask"] = True
        if self._return_attention_scores:
            kwargs["return_attention_scores"] = True
        return [tensors["query"], tensors["value"]], kwargs

    def keras_build_config(self, node):
        """Keras builds the layer from the named shapes of its first call."""
        tensors = dict(zip(self._layout, node.data_inputs))
        return {"shapes_dict": {f"{name}_shape": list(tensors[name].shape)
                                for name in ("query", "value", "key") if name in tensors}}

    def keras_weight_groups(self):
        """Where Keras's weight files keep each weight: under the groups of
        the EinsumDense sublayers Keras builds the layer from."""
        groups = []
        for prefix in ("query", "key", "value", "output"):
            kernel, bias = getattr(self, f"{prefix}_kernel"), getattr(self, f"{prefix}_bias")
            groups.append((f"{prefix}_dense/", [kernel] + ([bias] if bias is not None else [])))
        return groups

    # ---- config ----------------------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "use_gate": False,
            "output_shape": self._output_shape,
            "attention_axes": self.attention_axes,
            "sliding_window": None,
            "kernel_initializer": _serialize_initializer(self.kernel_initializer),
            "bias_initializer": _serialize_initializer(self.bias_initializer),
            "kernel_regularizer": None,
            "bias_regularizer": None,
            "activity_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
            "seed": self.seed,
        }

