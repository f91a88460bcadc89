"""A custom layer from scratch: Swish with a learned slope per channel,
``y = x * sigmoid(beta * x)``, written as Numba kernels for the CPU and the
GPU, checked against finite differences, trained on the 8x8 digits that
ship with nkeras, saved and loaded again. Runs in well under 30 s.

    python3 examples/custom_layer.py

docs/custom_layers.md explains each step.
"""

import math
import os
import tempfile

import numpy as np
from numba import cuda, njit

import nkeras as keras
from nkeras import layers

# ---- the arithmetic, written once -------------------------------------------------
# inline="always" helpers: the CPU loops and the CUDA kernels both call them.


@njit(inline="always")
def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


@njit(inline="always")
def _swish_beta(x, beta):
    return x * _sigmoid(beta * x)


@njit(inline="always")
def _swish_beta_grads(x, beta, dy):
    """``(dy * dy/dx, dy * dy/dbeta)`` for ``y = x * sigmoid(beta * x)``."""
    s = _sigmoid(beta * x)
    slope = x * s * (1.0 - s)
    return dy * (s + beta * slope), dy * x * slope


# ---- CPU kernels: inputs first, then preallocated outputs -------------------------
# No cache=True here: Numba's cache names the module a kernel was compiled in,
# and this file runs both as a script (__main__) and imported by the tests. In
# a module of your own, which always has the same name, add cache=True.


@njit(error_model="numpy")
def swish_beta_forward(x, beta, y):
    """x, y: (rows, channels); beta: (channels,)."""
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            y[i, j] = _swish_beta(x[i, j], beta[j])


@njit(error_model="numpy")
def swish_beta_backward(x, beta, dy, dx, dbeta, need_dx):
    """Writes dbeta (channels,) and, when need_dx, dx (rows, channels)."""
    for j in range(x.shape[1]):
        dbeta[j] = 0.0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            grad_x, grad_beta = _swish_beta_grads(x[i, j], beta[j], dy[i, j])
            dbeta[j] += grad_beta
            if need_dx:
                dx[i, j] = grad_x


# ---- CUDA twins: same names and arguments; launch, allocate nothing, never wait -----


@cuda.jit
def _swish_beta_forward_cuda(x, beta, y):
    i = cuda.grid(1)
    if i < x.size:
        row, col = i // x.shape[1], i % x.shape[1]
        y[row, col] = _swish_beta(x[row, col], beta[col])


@cuda.jit
def _swish_beta_dx_cuda(x, beta, dy, dx):
    i = cuda.grid(1)
    if i < x.size:
        row, col = i // x.shape[1], i % x.shape[1]
        dx[row, col] = _swish_beta_grads(x[row, col], beta[col], dy[row, col])[0]


@cuda.jit
def _swish_beta_dbeta_cuda(x, beta, dy, dbeta):
    # One thread per channel sums over the rows: deterministic, no atomics.
    col = cuda.grid(1)
    if col < x.shape[1]:
        total = 0.0
        for row in range(x.shape[0]):
            total += _swish_beta_grads(x[row, col], beta[col], dy[row, col])[1]
        dbeta[col] = total


THREADS = 256


class _CudaKernels:
    @staticmethod
    def swish_beta_forward(x, beta, y):
        _swish_beta_forward_cuda[(x.size + THREADS - 1) // THREADS, THREADS](x, beta, y)

    @staticmethod
    def swish_beta_backward(x, beta, dy, dx, dbeta, need_dx):
        _swish_beta_dbeta_cuda[(x.shape[1] + THREADS - 1) // THREADS, THREADS](x, beta, dy, dbeta)
        if need_dx:
            _swish_beta_dx_cuda[(x.size + THREADS - 1) // THREADS, THREADS](x, beta, dy, dx)


class _CpuKernels:
    swish_beta_forward = staticmethod(swish_beta_forward)
    swish_beta_backward = staticmethod(swish_beta_backward)


def kernels_for(device):
    """The kernels of ``device`` ("cpu" or "cuda"), as ``ctx.device`` names it."""
    return _CudaKernels if device.name == "cuda" else _CpuKernels


# ---- the layer ---------------------------------------------------------------------


def _as_2d(array):
    # tuple(): the shape of a GPU array in numba's simulator takes no negative index.
    return array.reshape(-1, tuple(array.shape)[-1])


@keras.saving.register_keras_serializable(package="examples")
class SwishBeta(layers.Layer):
    """``x * sigmoid(beta * x)`` with a learned ``beta`` per channel (last axis).

    Args:
        beta_initializer: initializer of ``beta`` ("ones": plain Swish).
    """

    # Its kernels have CUDA twins, so a model may run it on the GPU.
    supported_devices = ("cpu", "cuda")

    def __init__(self, beta_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.beta_initializer = beta_initializer

    def build(self, input_shape):
        self.beta = self.add_weight((input_shape[-1],), self.beta_initializer, "beta")

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, ctx, inputs, outputs, state):
        kernels_for(ctx.device).swish_beta_forward(_as_2d(inputs[0]), self.beta.value, _as_2d(outputs[0]))

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dy = _as_2d(output_grads[0])
        dx = input_grads[0]  # None when nothing upstream needs it
        kernels_for(ctx.device).swish_beta_backward(
            _as_2d(inputs[0]), self.beta.value, dy, dy if dx is None else _as_2d(dx), self.beta.grad, dx is not None
        )

    def get_config(self):
        return {**super().get_config(), "beta_initializer": self.beta_initializer}


def main():
    keras.utils.set_random_seed(7)

    # 1. The analytic gradients against central differences, in float64.
    report = keras.testing.check_gradients(SwishBeta(), (5, 4))
    print(report)

    # 2. Train it in a model on the digits (1437 training images of 8x8).
    (x_train, y_train), (x_test, y_test) = keras.datasets.digits.load_data()
    x_train = x_train.reshape(-1, 64).astype("float32") / 16
    x_test = x_test.reshape(-1, 64).astype("float32") / 16
    model = keras.Sequential([
        keras.Input(shape=(64,)),
        layers.Dense(64),
        SwishBeta(name="swish_beta"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=15, verbose=0)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    beta = model.get_layer("swish_beta").beta.numpy()
    print(f"test accuracy {accuracy:.3f}, loss {loss:.3f}; beta in [{beta.min():.2f}, {beta.max():.2f}]")

    # 3. Save and load: the registered class is found by its name in the file.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "swish_beta.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
    same = np.array_equal(loaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0))
    print(f"loaded model predicts the same: {same}")
    return accuracy, same


if __name__ == "__main__":
    main()
