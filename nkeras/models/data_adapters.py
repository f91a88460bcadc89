"""Turn what users pass to ``fit``/``evaluate``/``predict`` into batches.

Arrays (or lists and dicts of them) are cast to the model's dtype once and
gathered into the plan's buffers batch by batch by a kernel; a
``PyDataset`` or a generator yields batches that are copied in.
"""

import math
import types

import numpy as np

from nkeras.utils.py_dataset import PyDataset


def _name_list(what, tensors):
    return [t.name for t in tensors]


def to_array_list(data, tensors, what, dtype):
    """``data`` (array, list, tuple or dict keyed by name) as a list of
    contiguous arrays of ``dtype``, one per tensor, with clear errors."""
    names = _name_list(what, tensors)
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(names))
        missing = [n for n in names if n not in data]
        if unknown or missing:
            raise ValueError(
                f"{what}: dict keys must be the model's {what} names {names}; "
                f"missing {missing}, unexpected {unknown}"
            )
        data = [data[n] for n in names]
    elif isinstance(data, (list, tuple)) and (len(tensors) > 1 or all(hasattr(d, "shape") for d in data)):
        data = list(data)
    else:
        data = [data]
    if len(data) != len(tensors):
        raise ValueError(f"{what}: the model has {len(tensors)} {what} {names}, but {len(data)} arrays were given")
    arrays = []
    for name, value in zip(names, data):
        array = np.asarray(value)
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or (
            np.issubdtype(array.dtype, np.complexfloating)
        ):
            raise TypeError(f"{what} '{name}': expected an array of real numbers, got dtype {array.dtype}")
        arrays.append(np.ascontiguousarray(array, dtype=dtype))
    return arrays


def check_lengths(groups):
    """Every array in every group has the same, non-zero number of samples."""
    lengths = {(what, i): a.shape[0] if a.ndim else 0 for what, arrays in groups for i, a in enumerate(arrays)}
    sizes = set(lengths.values())
    if len(sizes) > 1:
        detail = ", ".join(f"{what}[{i}]: {n}" for (what, i), n in lengths.items())
        raise ValueError(f"All inputs and targets must have the same number of samples; got {detail}")
    if sizes == {0}:
        raise ValueError("Cannot run on empty data: the arrays hold 0 samples")
    return sizes.pop()


class ArrayData:
    """In-memory arrays, batched by index.

    Each batch is gathered into the plan's buffers by the ``gather_rows``
    kernel through the epoch's (shuffled) order. On a GPU the arrays are
    copied to the device once, when they fit in half of its free memory, and
    only the order goes up each epoch; otherwise each batch is gathered on
    the host into a staging buffer and copied up.

    Args:
        xs, ys: lists of arrays (ys may be empty for predict).
        sample_weight: (n,) array or None.
        batch_size: rows per batch.
        shuffle: reshuffle the order every epoch.
    """

    def __init__(self, xs, ys, sample_weight, batch_size, shuffle):
        self.xs = [a.reshape(a.shape[0], -1) for a in xs]
        self.ys = [a.reshape(a.shape[0], -1) for a in ys]
        self.sample_weight = None if sample_weight is None else sample_weight.reshape(-1, 1)
        self.size = xs[0].shape[0]
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.order = np.arange(self.size, dtype=np.int64)
        self._epoch = 0
        self._placed = None

    def batch_count(self):
        """Batches per epoch."""
        return math.ceil(self.size / self.batch_size)

    def batch_sizes(self):
        full, rest = divmod(self.size, self.batch_size)
        return [self.batch_size] * full + ([rest] if rest else [])

    def epoch(self, generator):
        """Yield ``(rows, load)``; ``load(device, x_bufs, y_bufs, sw_buf)``
        fills the buffers and says whether it wrote sample weights. With
        ``shuffle``, the order is a permutation drawn from ``generator``."""
        if self.shuffle:
            self.order[:] = np.arange(self.size)
            generator.shuffle(self.order)
            self._epoch += 1
        for start in range(0, self.size, self.batch_size):
            yield min(self.batch_size, self.size - start), self._loader(start)

    def _arrays(self):
        weights = [] if self.sample_weight is None else [self.sample_weight]
        return self.xs + self.ys + weights

    def _place(self, device):
        """The arrays and the order as ``device`` reads them."""
        placed = self._placed
        if placed is None or placed.device is not device:
            placed = self._placed = _Placement(device, self._arrays())
        if placed.epoch != self._epoch:
            placed.set_order(self.order)
            placed.epoch = self._epoch
        return placed

    def _loader(self, start):
        def load(device, x_bufs, y_bufs, sw_buf):
            placed = self._place(device)
            count = len(self.xs)
            for source, buf in zip(placed.arrays[:count], x_bufs):
                placed.gather(source, start, buf)
            for source, buf in zip(placed.arrays[count:count + len(self.ys)], y_bufs):
                placed.gather(source, start, buf)
            if sw_buf is not None and self.sample_weight is not None:
                placed.gather(placed.arrays[-1], start, sw_buf)
                return True
            return False

        return load


class _Placement:
    """ArrayData's arrays on one device: resident there, or left on the host
    and gathered into staging buffers that are copied up batch by batch."""

    def __init__(self, device, arrays):
        self.device = device
        self.epoch = -1
        nbytes = sum(a.nbytes for a in arrays)
        free = device.memory_info()[0] if hasattr(device, "memory_info") else None
        self.resident = free is None or nbytes <= free // 2
        self.arrays = [device.to_device(a) for a in arrays] if self.resident else arrays
        self.order = None
        self._staging = {}

    def set_order(self, order):
        if not self.resident:
            self.order = order
        elif self.order is None or self.order.shape != order.shape:
            self.order = self.device.to_device(order)
        else:
            self.device.copy_from_host(order, self.order)

    def gather(self, source, start, buf):
        if self.resident:
            self.device.ops.gather_rows(source, self.order, start, buf)
            return
        key = (buf.shape, np.dtype(buf.dtype).str)
        staging = self._staging.get(key)
        if staging is None:
            staging = self._staging[key] = self.device.host_empty(buf.shape, buf.dtype)
        _host_gather(source, self.order, start, staging)
        self.device.copy_from_host(staging, buf)


def _host_gather(source, order, start, out):
    from nkeras.backend import get_device

    get_device("cpu").ops.gather_rows(source, order, start, out)


class StreamData:
    """Batches from a ``PyDataset`` or a Python generator/iterator.

    Each item is ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``.

    Args:
        source: the PyDataset or iterator.
        inputs, outputs: the model's input and output tensors.
        dtype: the model's float dtype.
        steps: how many batches make an epoch (None: all of them).
    """

    def __init__(self, source, inputs, outputs, dtype, steps=None):
        self.source = source
        self.inputs, self.outputs = inputs, outputs
        self.dtype = dtype
        self.steps = steps
        self.is_dataset = isinstance(source, PyDataset)

    def batch_count(self):
        """Batches per epoch, or None for a generator that runs until it is exhausted."""
        if self.steps is not None:
            return self.steps
        return len(self.source) if self.is_dataset else None

    def _items(self):
        if self.is_dataset:
            count = len(self.source) if self.steps is None else min(self.steps, len(self.source))
            return (self.source[i] for i in range(count))
        iterator = iter(self.source)
        if self.steps is None:
            return iterator
        return (item for _, item in zip(range(self.steps), iterator))

    def epoch(self, generator):
        for item in self._items():
            x, y, sw = unpack(item)
            xs = to_array_list(x, self.inputs, "inputs", self.dtype)
            ys = [] if y is None else to_array_list(y, self.outputs, "targets", self.dtype)
            weights = None if sw is None else np.ascontiguousarray(sw, dtype=self.dtype).reshape(-1, 1)
            rows = check_lengths([("inputs", xs), ("targets", ys)] + ([("sample_weight", [weights])] if sw is not None else []))

            def load(device, x_bufs, y_bufs, sw_buf, xs=xs, ys=ys, weights=weights):
                for source, buf in zip(xs, x_bufs):
                    device.copy_from_host(source.reshape(buf.shape), buf)
                for source, buf in zip(ys, y_bufs):
                    device.copy_from_host(source.reshape(buf.shape), buf)
                if sw_buf is not None and weights is not None:
                    device.copy_from_host(weights, sw_buf)
                    return True
                return False

            yield rows, load
        if self.is_dataset:
            self.source.on_epoch_end()


def unpack(item):
    """Split a batch item into ``(x, y, sample_weight)``."""
    if isinstance(item, tuple):
        if len(item) == 1:
            return item[0], None, None
        if len(item) == 2:
            return item[0], item[1], None
        if len(item) == 3:
            return item
        raise ValueError(f"A batch must be x, (x,), (x, y) or (x, y, sample_weight); got a tuple of {len(item)}")
    return item, None, None


def is_stream(x):
    return isinstance(x, (PyDataset, types.GeneratorType)) or (
        hasattr(x, "__next__") and not isinstance(x, np.ndarray)
    )
