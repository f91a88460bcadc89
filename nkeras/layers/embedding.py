"""Embedding: a trainable lookup table from integer indices to vectors."""

import warnings

import numpy as np

from nkeras.layers.core import _reject_unsupported, _serialize_initializer
from nkeras.layers.layer import Layer

# On a GPU, reading the bad-index counter waits for the GPU to finish the
# step; in training the layer reads it once every this many batches (the
# counter adds up, so no bad index goes unreported past the next read).
CUDA_TRAINING_CHECK_INTERVAL = 16


def _positive_int(layer, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"Embedding '{layer.name}': {name} must be a positive integer, got {value!r}")
    return int(value)


class Embedding(Layer):
    """Turns indices into dense vectors: ``output[..., :] = embeddings[index]``.

    The input holds integer indices (given as floats or ints) of any shape
    ``(batch, ...)``; the output adds an axis of ``output_dim``. An index
    outside ``[0, input_dim)`` raises a ValueError naming the layer: on the
    CPU at the batch that holds it; on a GPU at once in inference and within
    ``CUDA_TRAINING_CHECK_INTERVAL`` batches in training (reading the
    kernel's counter means waiting for the GPU). Until then such an index
    looks up a vector of zeros and reads no memory outside the table.

    Args:
        input_dim: the vocabulary size (largest index + 1).
        output_dim: the size of each vector.
        embeddings_initializer: initializer of the table ("uniform":
            uniform on [-0.05, 0.05]).
        mask_zero: whether index 0 is padding: the layer then outputs a mask
            (1.0 where the index is not 0) that masking-aware layers
            downstream use; the input must be ``(batch, timesteps)``.
        weights: optional list holding the initial table.
        input_length: Keras 2's argument, ignored with a warning as Keras 3
            does (the input's shape gives the length).
    """

    def __init__(
        self,
        input_dim,
        output_dim,
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        embeddings_constraint=None,
        mask_zero=False,
        weights=None,
        lora_rank=None,
        lora_alpha=None,
        quantization_config=None,
        activity_regularizer=None,
        input_length=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if input_length is not None:
            warnings.warn(
                f"Embedding '{self.name}': argument `input_length` is deprecated (Keras 3 ignores it too); "
                "just remove it", UserWarning, stacklevel=2,
            )
        self.input_dim = _positive_int(self, "input_dim", input_dim)
        self.output_dim = _positive_int(self, "output_dim", output_dim)
        _reject_unsupported(
            self.name,
            embeddings_regularizer=embeddings_regularizer,
            embeddings_constraint=embeddings_constraint,
            lora_rank=lora_rank,
            lora_alpha=lora_alpha,
            quantization_config=quantization_config,
            activity_regularizer=activity_regularizer,
        )
        self.embeddings_initializer = embeddings_initializer
        self.mask_zero = bool(mask_zero)
        self._initial_weights = weights
        self._unchecked_calls = 0

    def build(self, input_shape):
        self.check_input_shape(input_shape)
        self.embeddings = self.add_weight((self.input_dim, self.output_dim), self.embeddings_initializer, "embeddings")
        self.built = True
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def check_input_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                f"Embedding '{self.name}': expected indices of shape (batch, ...) with rank >= 2, got {input_shape}"
            )
        if self.mask_zero and len(input_shape) != 2:
            raise ValueError(
                f"Embedding '{self.name}': mask_zero=True needs indices of shape (batch, timesteps), got {input_shape}"
            )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def output_mask_shape(self, input_shape):
        return tuple(input_shape) if self.mask_zero else None

    def state_shapes(self, input_shapes, training):
        return {"bad_indices": (1,)}

    def forward(self, ctx, inputs, outputs, state):
        indices = inputs[0]
        ctx.ops.embedding_forward(
            indices.reshape(indices.size), self.embeddings.value, state["bad_indices"],
            outputs[0].reshape(indices.size, self.output_dim),
        )
        if self.mask_zero:
            ctx.ops.nonzero_mask(indices, outputs[1])
        self._check_indices(ctx, state["bad_indices"])

    def _check_indices(self, ctx, counter):
        if ctx.device.name != "cpu" and ctx.training:
            self._unchecked_calls += 1
            if self._unchecked_calls < CUDA_TRAINING_CHECK_INTERVAL:
                return
            self._unchecked_calls = 0
        count = int(ctx.device.to_host(counter)[0])
        if count:
            ctx.device.copy_from_host(np.zeros(1, counter.dtype), counter)
            raise ValueError(
                f"Embedding '{self.name}': {count} input value(s) outside [0, input_dim={self.input_dim}); "
                "indices must be integers from 0 to input_dim - 1"
            )

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        indices = inputs[0]
        if self.trainable and self.embeddings.grad is not None:
            ctx.ops.embedding_backward(
                indices.reshape(indices.size), output_grads[0].reshape(indices.size, self.output_dim),
                self.embeddings.grad,
            )
        if input_grads[0] is not None:
            # Indices are not differentiable: their gradient is zero.
            flat = indices.reshape(1, indices.size)
            ctx.ops.scaled_copy(flat, 0.0, input_grads[0].reshape(1, indices.size))

    def get_config(self):
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": _serialize_initializer(self.embeddings_initializer),
            "mask_zero": self.mask_zero,
        }
