"""``Variable``: a named weight whose value is a device array.

Once a model is compiled, a trainable variable's value is a view into the
model's flat parameter buffer and ``grad`` a view into the flat gradient
buffer, so one optimizer kernel updates every weight in place.
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

    @property
    def value(self):
        return self._value

    @property
    def shape(self):
        return self._value.shape

    @property
    def dtype(self):
        return self._value.dtype

    def numpy(self):
        """A host copy of the value."""
        return np.array(self._value, copy=True)

    def assign(self, value):
        """Overwrite the value in place; the shape must match."""
        value = np.asarray(value)
        if value.shape != self._value.shape:
            raise ValueError(
                f"Variable '{self.name}': cannot assign a value of shape {value.shape}, expected {self._value.shape}"
            )
        self._value[...] = value

    def bind(self, storage, grad=None):
        """Move the value into ``storage`` (a view of a flat buffer) and keep
        ``grad`` as its gradient view."""
        storage[...] = self._value
        self._value = storage
        self.grad = grad

    def __repr__(self):
        return f"<Variable name={self.name} shape={self.shape} dtype={self.dtype}>"
