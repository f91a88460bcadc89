"""Pieces shared by the benchmark modules: devices, the Fashion-MNIST MLP,
convnet and LSTM, and synthetic data of Fashion-MNIST's shape."""

import numpy as np

import nkeras as keras
from nkeras import layers
from nkeras.backend import cuda_available, get_device

DEVICES = ["cpu", "cuda"]

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
MLP_UNITS = (IMAGE_SHAPE[0] * IMAGE_SHAPE[1], 512, 512, NUM_CLASSES)
MLP_PARAMETERS = sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(MLP_UNITS[:-1], MLP_UNITS[1:]))
BATCH_SIZE = 128
LSTM_UNITS = 128


def require_device(name):
    """The nkeras device called ``name``.

    Raises NotImplementedError, which asv reports as a skipped benchmark,
    when this build or machine has no such device (numba-cuda's simulator
    does not count as a GPU: it would time Python, not the GPU).
    """
    if name == "cuda" and not cuda_available():
        raise NotImplementedError("no CUDA GPU here")
    try:
        return get_device(name)
    except (ValueError, RuntimeError) as error:
        raise NotImplementedError(f"no {name!r} device here: {error}") from None


def build_mlp(device_name):
    """The compiled Fashion-MNIST MLP: Flatten, Dense 512 relu, Dense 512
    relu, Dense 10 softmax; Adam, sparse categorical cross-entropy, accuracy;
    placed on the device called ``device_name``.
    """
    require_device(device_name)
    keras.utils.set_random_seed(0)
    with keras.device(device_name):
        model = keras.Sequential([
            keras.Input(shape=IMAGE_SHAPE),
            layers.Flatten(),
            layers.Dense(MLP_UNITS[1], activation="relu"),
            layers.Dense(MLP_UNITS[2], activation="relu"),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_convnet(device_name):
    """The compiled Fashion-MNIST convnet (Keras's "simple MNIST convnet"):
    Conv2D 32 3x3 relu, MaxPooling2D 2, Conv2D 64 3x3 relu, MaxPooling2D 2,
    Flatten, Dropout 0.5, Dense 10 softmax; Adam; on ``device_name``.
    """
    require_device(device_name)
    keras.utils.set_random_seed(0)
    with keras.device(device_name):
        model = keras.Sequential([
            keras.Input(shape=IMAGE_SHAPE + (1,)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_lstm(device_name):
    """The compiled Fashion-MNIST LSTM of examples/fashion_mnist_lstm.py:
    each image as 28 steps of 28 pixels, LSTM 128, Dense 10 softmax; Adam;
    on ``device_name``.
    """
    require_device(device_name)
    keras.utils.set_random_seed(0)
    with keras.device(device_name):
        model = keras.Sequential([
            keras.Input(shape=IMAGE_SHAPE),
            layers.LSTM(LSTM_UNITS),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def synthetic_fashion_mnist(samples, seed=0, channels=None):
    """``(x, y)``: float32 images in [0, 1) of shape (samples, 28, 28), or
    (samples, 28, 28, channels) when ``channels`` is given, and integer
    labels in ``0..9`` (random, so only the timing is meaningful)."""
    rng = np.random.default_rng(seed)
    shape = IMAGE_SHAPE if channels is None else IMAGE_SHAPE + (channels,)
    x = rng.random((samples,) + shape, dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, samples)
    return x, y


def warm_up_samples(samples):
    """How many samples a warm-up pass needs to meet both batch sizes (the
    full one and the short last one) that an epoch over ``samples`` meets,
    so that it builds every plan and loads every kernel the timed pass uses."""
    return min(samples, BATCH_SIZE + samples % BATCH_SIZE)
