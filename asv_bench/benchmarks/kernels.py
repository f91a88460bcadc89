"""Single kernels, called through ``device.ops`` as the layers call them.

Every ``setup`` allocates the inputs and outputs on the device and calls the
kernel once, so the timings exclude Numba's compilation (or cache load).
Arrays are float32 (nkeras's default floatx); each timed call ends with
``device.synchronize()`` so that asynchronous devices are timed fully.
"""

import numpy as np

from nkeras.kernels.codes import ACTIVATION_CODES

from .common import BATCH_SIZE, DEVICES, MLP_PARAMETERS, MLP_UNITS, require_device

DTYPE = np.float32
DENSE_SHAPES = ["128x784x512", "128x512x512", "1024x512x512", "128x512x10"]
ACTIVATION_SHAPE = (1024, 512)


def _parse_shape(text):
    return tuple(int(size) for size in text.split("x"))


class _Kernel:
    """The device, its ops and a random generator, with helpers that make
    float32 arrays on the device."""

    def _start(self, device_name):
        self.device = require_device(device_name)
        self.ops = self.device.ops
        self.rng = np.random.default_rng(0)

    def _random(self, shape, scale=1.0):
        return self.device.to_device((self.rng.standard_normal(shape) * scale).astype(DTYPE))

    def _empty(self, shape):
        return self.device.empty(shape, DTYPE)


class _Dense(_Kernel):
    """Arrays for a dense layer: a (rows x inputs) batch, an (inputs x units)
    kernel, and the forward outputs already computed."""

    params = (DEVICES, DENSE_SHAPES, ["relu", "softmax"])
    param_names = ["device", "rows_x_inputs_x_units", "activation"]

    def setup(self, device_name, shape, activation):
        self._start(device_name)
        rows, inputs, units = _parse_shape(shape)
        self.x = self._random((rows, inputs))
        self.w = self._random((inputs, units), scale=inputs**-0.5)
        self.b = self._random((units,), scale=0.1)
        self.z = self._empty((rows, units))
        self.y = self._empty((rows, units))
        self.code = ACTIVATION_CODES[activation]
        self._forward()
        self.dy = self._random((rows, units))
        self.dz = self._empty((rows, units))
        self.dw = self._empty((inputs, units))
        self.db = self._empty((units,))
        self.dx = self._empty((rows, inputs))
        self._backward()

    def _forward(self):
        self.ops.dense_forward(self.x, self.w, self.b, self.code, 0.0, self.z, self.y)
        self.device.synchronize()

    def _backward(self):
        self.ops.dense_backward(self.x, self.w, self.z, self.y, self.dy, self.code, 0.0,
                                self.dz, self.dw, self.db, self.dx, True)
        self.device.synchronize()


class DenseForward(_Dense):
    """``dense_forward``: ``z = x @ w + b`` and ``y = act(z)`` in one pass."""

    def time_dense_forward(self, device_name, shape, activation):
        self._forward()


class DenseBackward(_Dense):
    """``dense_backward``: ``dz``, ``dw = x.T @ dz``, ``db`` and ``dx = dz @ w.T``."""

    def time_dense_backward(self, device_name, shape, activation):
        self._backward()


class _Activation(_Kernel):
    params = (DEVICES, ["relu", "sigmoid", "tanh", "gelu", "softmax"])
    param_names = ["device", "activation"]

    def setup(self, device_name, activation):
        self._start(device_name)
        self.code = ACTIVATION_CODES[activation]
        self.x = self._random(ACTIVATION_SHAPE)
        self.y = self._empty(ACTIVATION_SHAPE)
        self.dy = self._random(ACTIVATION_SHAPE)
        self.dx = self._empty(ACTIVATION_SHAPE)
        self._forward()
        self._backward()

    def _forward(self):
        self.ops.activation_forward(self.x, self.code, 0.0, self.y)
        self.device.synchronize()

    def _backward(self):
        self.ops.activation_backward(self.x, self.y, self.dy, self.code, 0.0, self.dx)
        self.device.synchronize()


class ActivationForward(_Activation):
    """``activation_forward`` over a 1024 x 512 array."""

    def time_activation_forward(self, device_name, activation):
        self._forward()


class ActivationBackward(_Activation):
    """``activation_backward`` over a 1024 x 512 array."""

    def time_activation_backward(self, device_name, activation):
        self._backward()


class SoftmaxCrossEntropy(_Kernel):
    """The classifier head: softmax over logits, then the
    ``sparse_categorical_crossentropy`` loss kernel (loss sum and gradient)."""

    params = (DEVICES, ["128x10", "1024x1000"])
    param_names = ["device", "rows_x_classes"]

    def setup(self, device_name, shape):
        self._start(device_name)
        rows, classes = _parse_shape(shape)
        self.logits = self._random((rows, classes))
        self.probabilities = self._empty((rows, classes))
        self.labels = self.device.to_device(self.rng.integers(0, classes, rows).astype(DTYPE))
        self.sample_weight = self.device.to_device(np.ones(rows, DTYPE))
        self.grad = self._empty((rows, classes))
        self.loss_sum = self.device.zeros(1, np.float64)
        self.scale = 1.0 / rows
        self.time_softmax_crossentropy(device_name, shape)

    def time_softmax_crossentropy(self, device_name, shape):
        self.ops.activation_forward(self.logits, ACTIVATION_CODES["softmax"], 0.0, self.probabilities)
        self.ops.sparse_categorical_crossentropy(self.labels, self.probabilities, self.sample_weight, False, 1e-7,
                                                 self.scale, self.grad, self.loss_sum)
        self.device.synchronize()


class OptimizerUpdate(_Kernel):
    """One optimizer step over flat buffers the size of the Fashion-MNIST
    MLP's parameters (669,706 float32 values): Adam, and SGD with momentum."""

    params = DEVICES
    param_names = ["device"]

    def setup(self, device_name):
        self._start(device_name)
        self.weights = self._random(MLP_PARAMETERS, scale=0.05)
        self.grads = self._random(MLP_PARAMETERS, scale=1e-3)
        self.momentum = self.device.zeros(MLP_PARAMETERS, DTYPE)
        self.velocity = self.device.zeros(MLP_PARAMETERS, DTYPE)
        self.no_slot = self._empty(0)
        self.time_adam_update(device_name)
        self.time_sgd_momentum_update(device_name)

    def time_adam_update(self, device_name):
        self.ops.adam_update(self.weights, self.grads, self.momentum, self.velocity, self.no_slot,
                             1e-3, 0.9, 0.999, 1e-7, 10, False, 0.0)
        self.device.synchronize()

    def time_sgd_momentum_update(self, device_name):
        self.ops.sgd_update(self.weights, self.grads, self.momentum, 1e-2, 0.9, False, 0.0)
        self.device.synchronize()


class Dropout(_Kernel):
    """``dropout_forward`` at rate 0.5 over a batch of the MLP's hidden layer."""

    params = DEVICES
    param_names = ["device"]

    def setup(self, device_name):
        self._start(device_name)
        shape = (BATCH_SIZE, MLP_UNITS[1])
        self.x = self._random(shape)
        self.mask = self._empty(shape)
        self.y = self._empty(shape)
        self.time_dropout_forward(device_name)

    def time_dropout_forward(self, device_name):
        self.ops.dropout_forward(self.x, 0.5, 1234, 1, self.mask, self.y)
        self.device.synchronize()


class GatherRows(_Kernel):
    """``gather_rows``: copy a shuffled batch of 128 rows of 784 features out
    of a 10,000-sample training set (the first thing a training step does);
    each call takes the next batch of the shuffled order, as an epoch does."""

    params = DEVICES
    param_names = ["device"]

    def setup(self, device_name):
        self._start(device_name)
        samples = 10_000
        self.batches = samples // BATCH_SIZE
        self.step = 0
        self.source = self.device.to_device(self.rng.random((samples, MLP_UNITS[0]), dtype=DTYPE))
        self.order = self.device.to_device(self.rng.permutation(samples).astype(np.int64))
        self.batch = self._empty((BATCH_SIZE, MLP_UNITS[0]))
        self.time_gather_rows(device_name)

    def time_gather_rows(self, device_name):
        self.ops.gather_rows(self.source, self.order, self.step * BATCH_SIZE, self.batch)
        self.step = (self.step + 1) % self.batches
        self.device.synchronize()
