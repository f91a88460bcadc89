"""A small Transformer encoder classifying Fashion-MNIST: each image is a
sequence of its 28 rows of 28 pixels.

Each row is projected to ``d_model`` features and a learned position
embedding is added; an encoder block (MultiHeadAttention with a residual
Add and LayerNormalization, then a feed-forward pair of Dense layers with
another residual Add and LayerNormalization) mixes the rows;
GlobalAveragePooling1D and a Dense softmax classify.

    python examples/transformer_classifier.py [--epochs 5] [--blocks 1]
"""

import argparse
import time

import nkeras as keras
from nkeras import layers
from nkeras.kernels.cpu.merge import ADD


class PositionEmbedding(layers.Layer):
    """Adds a learned vector per step: ``y[b, t] = x[b, t] + embedding[t]``.

    A custom layer (docs/custom_layers.md) written with nkeras's own kernels
    (``ctx.ops``), so it runs on the CPU and on a GPU: the embedding is
    repeated over the batch into a state buffer and added; its gradient is
    the output gradient summed over the batch.

    Args:
        embeddings_initializer: initializer of the (steps, features) weight.
    """

    supported_devices = ("cpu", "cuda")

    def __init__(self, embeddings_initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        self.embeddings_initializer = embeddings_initializer

    def build(self, input_shape):
        self.embeddings = self.add_weight(input_shape[1:], self.embeddings_initializer, "embeddings")

    def state_shapes(self, input_shapes, training):
        batch, steps, features = input_shapes[0]
        return {"repeated": (1, batch, steps * features)}

    def forward(self, ctx, inputs, outputs, state):
        repeated = state["repeated"]
        _, batch, size = repeated.shape
        ctx.ops.repeat_vector_forward(self.embeddings.value.reshape(1, size), repeated)
        ctx.ops.merge_pair(inputs[0].reshape(batch, size), repeated.reshape(batch, size), ADD, 1.0,
                           outputs[0].reshape(batch, size))

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        _, batch, size = state["repeated"].shape
        dy = output_grads[0].reshape(batch, size)
        ctx.ops.repeat_vector_backward(dy.reshape(1, batch, size), self.embeddings.grad.reshape(1, size))
        if input_grads[0] is not None:
            ctx.ops.copy_into(input_grads[0].reshape(batch, size), dy)

    def get_config(self):
        return {**super().get_config(), "embeddings_initializer": self.embeddings_initializer}


def encoder_block(x, num_heads, key_dim, feed_forward_dim, dropout):
    attended = layers.MultiHeadAttention(num_heads, key_dim, dropout=dropout)(x, x)
    x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, attended]))
    hidden = layers.Dense(feed_forward_dim, activation="relu")(x)
    hidden = layers.Dropout(dropout)(layers.Dense(x.shape[-1])(hidden))
    return layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, hidden]))


def build_model(d_model=64, num_heads=4, feed_forward_dim=128, blocks=1, dropout=0.1):
    """The classifier: (28, 28) images in, 10 class probabilities out."""
    inputs = keras.Input(shape=(28, 28))
    x = PositionEmbedding()(layers.Dense(d_model)(inputs))
    for _ in range(blocks):
        x = encoder_block(x, num_heads, d_model // num_heads, feed_forward_dim, dropout)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="transformer_classifier")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=1, help="number of encoder blocks")
    args = parser.parse_args()

    keras.utils.set_random_seed(42)
    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    x_train, x_test = x_train.astype("float32") / 255, x_test.astype("float32") / 255

    model = build_model(blocks=args.blocks)
    model.summary()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, validation_split=0.1)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f} ({args.epochs} epochs in {seconds:.0f} s)")


if __name__ == "__main__":
    main()
