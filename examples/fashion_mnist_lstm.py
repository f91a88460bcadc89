"""An LSTM classifier on Fashion-MNIST: each image read as 28 steps of 28
pixels (one row per step), LSTM(128) then Dense(10, softmax); Adam with
learning rate 0.01 (chosen by validation accuracy: docs/recurrent.md), batch
128, validation_split 0.1.

    python examples/fashion_mnist_lstm.py [--epochs 5]
"""

import argparse
import time

import nkeras as keras
from nkeras import layers

# Adam's default 0.001 reaches 0.863 test accuracy in 5 epochs (Keras 3 on
# JAX: 0.867); 0.01 reaches 0.884 (docs/recurrent.md, "Accuracy").
LEARNING_RATE = 0.01


def build_model():
    return keras.Sequential([
        keras.Input(shape=(28, 28)),
        layers.LSTM(128),
        layers.Dense(10, activation="softmax"),
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    keras.utils.set_random_seed(42)
    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    x_train = x_train.astype("float32") / 255  # (n, 28 steps, 28 pixels)
    x_test = x_test.astype("float32") / 255

    model = build_model()
    model.summary()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, validation_split=0.1)
    print(f"trained in {time.perf_counter() - start:.0f} s")
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"Test loss: {loss:.4f}")
    print(f"Test accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
