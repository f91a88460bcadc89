"""``Variable``: a named weight whose value is a device array.

A variable starts as a NumPy array. Once a model is compiled, a trainable
variable's value is a view into the model's flat parameter buffer on the
model's device and ``grad`` a view into the flat gradient buffer, so one
optimizer kernel updates every weight in place. ``numpy()`` and ``assign()``
copy across whatever device holds the value.
"""

import numpy as np


class Variable:
    """A layer weight.

    Args:
        value: initial value (array-like).
        name: the weight's name within its layer ("kernel", "bias", ...).
        trainable: whether the optimizer updates it.
    """

    def __init__(self, value, name, trainable=True):
        self._value = np.ascontiguousarray(value)
        self.name = name
        self.trainable = trainable
        self.grad = None
        self.device = None
        # The model whose flat buffers hold the value (see Trainer._pack_weights).
        self.owner = None

    @property
    def value(self):
        return self._value

    @property
    def shape(self):
        return tuple(self._value.shape)

    @property
    def dtype(self):
        return np.dtype(self._value.dtype)

    def numpy(self):
        """A host copy of the value."""
        if self.device is None:
            return np.array(self._value, copy=True)
        return self.device.to_host(self._value)

    def assign(self, value):
        """Overwrite the value in place; the shape must match."""
        value = np.asarray(value)
        if value.shape != self.shape:
            raise ValueError(
                f"Variable '{self.name}': cannot assign a value of shape {value.shape}, expected {self.shape}"
            )
        if self.device is None:
            self._value[...] = value
        else:
            self.device.copy_from_host(value, self._value)

    def bind(self, device, storage, grad=None, owner=None):
        """Move the value into ``storage`` (a view of a flat buffer on
        ``device``) and keep ``grad`` as its gradient view; ``owner`` marks
        whose buffers these are."""
        host = self.numpy()
        device.copy_from_host(host, storage)
        self._value = storage
        self.device = device
        self.grad = grad
        self.owner = owner

    def __repr__(self):
        return f"<Variable name={self.name} shape={self.shape} dtype={self.dtype}>"
