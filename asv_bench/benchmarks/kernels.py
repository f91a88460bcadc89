"""Single kernels, called through ``device.ops`` as the layers call them.

Every ``setup`` allocates the inputs and outputs on the device and calls the
kernel once, so the timings exclude Numba's compilation (or cache load).
Arrays are float32 (nkeras's default floatx).
"""

import numpy as np

from nkeras.kernels.codes import ACTIVATION_CODES

from .common import BATCH_SIZE, DEVICES, MLP_PARAMETERS, MLP_UNITS, require_device

DTYPE = np.float32


def _parse_shape(text):
    return tuple(int(size) for size in text.split("x"))


class _KernelBenchmark:
    """Holds the device and a random generator; ``_random`` and ``_empty``
    make float32 arrays on the device."""

    def _start(self, device_name):
        self.device = require_device(device_name)
        self.ops = self.device.ops
        self.rng = np.random.default_rng(0)

    def _random(self, shape, scale=1.0):
        return self.device.to_device((self.rng.standard_normal(shape) * scale).astype(DTYPE))

    def _empty(self, shape):
        return self.device.empty(shape, DTYPE)


class DenseForward(_KernelBenchmark):
    """``dense_forward``: ``z = x @ w + b`` and ``y = act(z)`` for a
    (rows x inputs) batch and an (inputs x units) kernel."""

    params = (DEVICES, ["128x784x512", "128x512x512", "1024x512x512", "128x512x10"], ["relu", "softmax"])
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
        self.time_dense_forward(device_name, shape, activation)

    def time_dense_forward(self, device_name, shape, activation):
        self.ops.dense_forward(self.x, self.w, self.b, self.code, 0.0, self.z, self.y)
        self.device.synchronize()


class DenseBackward(DenseForward):
    """``dense_backward``: ``dz``, ``dw``, ``db`` and ``dx`` from ``dy``."""

    def setup(self, device_name, shape, activation):
        super().setup(device_name, shape, activation)
        rows, inputs, units = _parse_shape(shape)
        self.dy = self._random((rows, units))
        self.dz = self._empty((rows, units))
        self.dw = self._empty((inputs, units))
        self.db = self._empty((units,))
        self.dx = self._empty((rows, inputs))
        self.time_dense_backward(device_name, shape, activation)

    def time_dense_backward(self, device_name, shape, activation):
        self.ops.dense_backward(self.x, self.w, self.z, self.y, self.dy, self.code, 0.0,
                                self.dz, self.dw, self.db, self.dx, True)
        self.device.synchronize()


DenseBackward.time_dense_forward = None
