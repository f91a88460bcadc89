"""Keras's "simple MNIST convnet" on Fashion-MNIST: two Conv2D + MaxPooling2D
blocks, Dropout 0.5, Dense 10 softmax; Adam, batch 128, validation_split 0.1.

    python examples/fashion_mnist_convnet.py [--epochs 10] [--batchnorm]

``--batchnorm`` puts a BatchNormalization between each convolution and its
relu (the convolutions then need no bias).
"""

import argparse

import numpy as np

import nkeras as keras
from nkeras import layers


def conv_block(filters, batchnorm):
    if not batchnorm:
        return [layers.Conv2D(filters, kernel_size=(3, 3), activation="relu"), layers.MaxPooling2D(pool_size=(2, 2))]
    return [
        layers.Conv2D(filters, kernel_size=(3, 3), use_bias=False),
        layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
    ]


def build_model(batchnorm=False):
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        *conv_block(32, batchnorm),
        *conv_block(64, batchnorm),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batchnorm", action="store_true", help="BatchNormalization after each convolution")
    args = parser.parse_args()

    keras.utils.set_random_seed(42)
    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    # Scale images to [0, 1] and give them a channel axis: (n, 28, 28, 1).
    x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
    x_test = np.expand_dims(x_test.astype("float32") / 255, -1)

    model = build_model(args.batchnorm)
    model.summary()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, validation_split=0.1)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
