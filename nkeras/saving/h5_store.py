"""Keras 3's HDF5 weights layout: ``model.weights.h5`` and ``.weights.h5``.

::

    layers/<key>/vars/0, 1, ...   each layer's weights, in creation order
    optimizer/vars/0              the step count (integer scalar)
    optimizer/vars/1              the learning rate (absent with a schedule)
    optimizer/vars/2, ...         the slots, per trainable variable
    vars/                         the model's own (none)

``<key>`` is the snake-case class name with ``_1``, ``_2``, ... in Keras's
layer order (``model_config.weight_groups``; a nested model's layers sit
under ``layers/<its key>/layers/``; a layer that Keras builds from
sublayers names their groups with ``keras_weight_groups()``, as
MultiHeadAttention's ``layers/<key>/query_dense/vars/0``). Slots come in
blocks: Adam's momentum and velocity alternate per variable, every other slot kind
(``velocity_hat``, RMSprop's ``momentum``, ...) is a block of its own.

Reading parses the HDF5 bytes in a forked child process where ``os.fork``
exists: the HDF5 C library can crash on malformed files, and the child's
crash becomes a ``ValueError`` here. The child accepts only plain numeric
datasets reached through hard links, without filters, external storage or
virtual sources, whose data fit in the file; the arrays come back as raw
bytes with a JSON index (never pickled).
"""

import io
import json
import math
import os
import select
import signal
import struct
import time
import warnings

import numpy as np

from nkeras.saving.model_config import weight_groups

MAX_OBJECTS = 200_000
MAX_DEPTH = 8
_HEADER = struct.Struct("<Q")


# ---- writing ---------------------------------------------------------------------


def _slot_blocks(optimizer):
    from nkeras.optimizers import Adam

    names = [name for name, _ in optimizer.slot_buffers()]
    paired = ("momentum", "velocity")
    if isinstance(optimizer, Adam) and names[:2] == list(paired):
        return [paired] + [(name,) for name in names[2:]]
    return [(name,) for name in names]


def _slot_slices(model):
    """``[(variable, start, stop)]`` of each trainable variable in the flat
    slot buffers, in Keras's variable order."""
    variables = model.trainable_weights
    offsets = np.concatenate([[0], np.cumsum([math.prod(v.shape) for v in variables])]).astype(np.int64)
    where = {id(v): (int(offsets[i]), int(offsets[i + 1])) for i, v in enumerate(variables)}
    ordered = []
    for _, layer in weight_groups(model):
        for variable in layer.trainable_weights if model.trainable else []:
            if id(variable) in where:
                ordered.append((variable, *where.pop(id(variable))))
    return ordered, int(offsets[-1])


def optimizer_arrays(model):
    """The optimizer's state as Keras lists it: step count, learning rate
    (unless a schedule), then the slots."""
    from nkeras.optimizers.schedules import LearningRateSchedule

    optimizer = model.optimizer
    arrays = [np.asarray(optimizer.iterations, dtype=np.int64)]
    if not isinstance(optimizer._learning_rate, LearningRateSchedule):
        arrays.append(np.asarray(optimizer.learning_rate, dtype=np.float64))
    if not optimizer.built:
        return arrays
    slots = {name: model._device.to_host(buffer) for name, buffer in optimizer.slot_buffers()}
    slices, total = _slot_slices(model)
    if slots and any(array.size != total for array in slots.values()):
        raise ValueError(
            f"Model '{model.name}': the optimizer's slots do not match the trainable weights; "
            "call compile() again after changing which layers are trainable"
        )
    for block in _slot_blocks(optimizer):
        for variable, start, stop in slices:
            arrays += [slots[name][start:stop].reshape(variable.shape) for name in block]
    return arrays


def weights_bytes(model, include_optimizer=True, extra=None):
    """The HDF5 weights file of ``model`` as bytes.

    Args:
        model: the model.
        include_optimizer: whether to write the optimizer state (when compiled).
        extra: optional ``{dataset path: array}`` written beside the weights
            (outside ``layers/`` and ``optimizer/``, which readers ignore).
    """
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle.create_group("layers")
        for path, layer in weight_groups(model):
            # A nested model's own (empty) vars group, as Keras writes it.
            for cut in range(len("layers/"), len(path) - 1):
                if path.startswith("/layers/", cut):
                    handle.require_group(path[:cut] + "/vars")
            handle.require_group(path + "vars").attrs["name"] = layer.name
            for subgroup, variables in file_groups(layer):
                group = handle.require_group(path + subgroup + "vars")
                for index, variable in enumerate(variables):
                    group.create_dataset(str(index), data=variable.numpy())
        if include_optimizer and model.compiled and model.optimizer is not None:
            group = handle.create_group("optimizer").create_group("vars")
            group.attrs["name"] = model.optimizer.name
            for index, array in enumerate(optimizer_arrays(model)):
                group.create_dataset(str(index), data=array)
        handle.create_group("vars").attrs["name"] = model.name
        for path, array in (extra or {}).items():
            handle.create_dataset(path, data=array)
    return buffer.getvalue()


# ---- reading: the child's side ---------------------------------------------------


def _extract(data):
    """Every dataset of an HDF5 file as ``header + raw bytes`` (runs in the
    child process)."""
    import h5py

    entries, chunks, total, seen = [], [], 0, 0
    with h5py.File(io.BytesIO(data), "r") as handle:
        stack = [(handle, "", 0)]
        while stack:
            group, prefix, depth = stack.pop()
            for name in group:
                seen += 1
                path = prefix + name
                if seen > MAX_OBJECTS:
                    raise ValueError(f"more than {MAX_OBJECTS} objects")
                if not isinstance(group.get(name, getlink=True), h5py.HardLink):
                    raise ValueError(f"'{path}' is a soft or external link; only plain groups and datasets are read")
                item = group[name]
                if isinstance(item, h5py.Group):
                    if depth >= MAX_DEPTH:
                        raise ValueError(f"groups nested deeper than {MAX_DEPTH} levels at '{path}'")
                    stack.append((item, path + "/", depth + 1))
                    continue
                if not isinstance(item, h5py.Dataset):
                    raise ValueError(f"'{path}' is neither a group nor a dataset")
                array = _read_dataset(item, path, len(data) - total)
                total += array.nbytes
                entries.append({"path": path, "dtype": array.dtype.str, "shape": list(array.shape),
                                "offset": sum(len(c) for c in chunks), "nbytes": array.nbytes})
                chunks.append(array.tobytes())
    header = json.dumps(entries).encode("utf-8")
    return _HEADER.pack(len(header)) + header + b"".join(chunks)


def _read_dataset(dataset, path, room):
    dtype = dataset.dtype
    if dtype.kind not in "fiu" or dtype.fields is not None or dtype.itemsize > 8:
        raise ValueError(f"dataset '{path}' has dtype {dtype}; weights must be plain numbers")
    if dataset.is_virtual or dataset.external:
        raise ValueError(f"dataset '{path}' keeps its data in other files")
    if dataset.id.get_create_plist().get_nfilters():
        raise ValueError(f"dataset '{path}' is compressed or filtered; nkeras reads plain datasets only")
    nbytes = math.prod(dataset.shape or ()) * dtype.itemsize
    if nbytes > room or nbytes > dataset.id.get_storage_size():
        raise ValueError(f"dataset '{path}' of shape {dataset.shape} holds more data than the file")
    array = np.asarray(dataset[()])
    return np.array(array, dtype=array.dtype.newbyteorder("="), order="C")


# ---- reading: the parent's side --------------------------------------------------


def _run_in_child(function, data, timeout, limit):
    """``function(data)`` (bytes in, bytes out) in a forked child; a crash,
    a hang past ``timeout`` seconds or more than ``limit`` bytes of output
    raise ValueError."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python and JAX warn that fork() in a threaded process may deadlock
        # the child; this child only parses bytes, and a stuck one is killed.
        warnings.filterwarnings("ignore", message=r".*fork\(\)")
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child process
        try:
            os.close(read_end)
            try:
                result = b"\x00" + function(data)
            except BaseException as error:
                result = b"\x01" + f"{type(error).__name__}: {error}".encode("utf-8", "replace")[:2000]
            view = memoryview(result)
            while view:
                view = view[os.write(write_end, view):]
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        result = _read_all(read_end, timeout, limit)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) or not result:
        raise ValueError("the HDF5 library crashed on this file")
    if result[:1] == b"\x01":
        raise ValueError(result[1:].decode("utf-8", "replace"))
    return result[1:]


def _read_all(descriptor, timeout, limit):
    chunks, size = [], 0
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ValueError(f"reading the HDF5 data took more than {timeout:.0f} s")
        if not select.select([descriptor], [], [], remaining)[0]:
            continue
        chunk = os.read(descriptor, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ValueError("the HDF5 data expands to more than the file could hold")
        chunks.append(chunk)


def _decode(payload, filename):
    if len(payload) < _HEADER.size:
        raise ValueError(f"{filename}: truncated answer from the HDF5 reader")
    (length,) = _HEADER.unpack_from(payload)
    body = memoryview(payload)[_HEADER.size + length:]
    try:
        entries = json.loads(bytes(payload[_HEADER.size:_HEADER.size + length]).decode("utf-8"))
    except ValueError as error:
        raise ValueError(f"{filename}: bad index from the HDF5 reader: {error}") from None
    arrays = {}
    for entry in entries:
        dtype = np.dtype(entry["dtype"])
        if dtype.kind not in "fiu" or dtype.hasobject:
            raise ValueError(f"{filename}: dataset {entry['path']!r} is not numeric")
        start, nbytes, shape = int(entry["offset"]), int(entry["nbytes"]), tuple(int(d) for d in entry["shape"])
        if start < 0 or start + nbytes > len(body) or math.prod(shape) * dtype.itemsize != nbytes:
            raise ValueError(f"{filename}: inconsistent dataset {entry['path']!r} from the HDF5 reader")
        arrays[entry["path"]] = np.frombuffer(body[start:start + nbytes], dtype=dtype).reshape(shape).copy()
    return arrays


def read_weights(data, filename):
    """``{dataset path: array}`` for the HDF5 file in ``data`` (bytes).

    Raises ValueError naming ``filename`` for anything that is not a plain
    HDF5 file of numeric datasets.
    """
    if not data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise ValueError(f"{filename}: not an HDF5 file (bad signature)")
    try:
        if hasattr(os, "fork"):
            payload = _run_in_child(_extract, data, timeout=10 + len(data) / 20e6, limit=2 * len(data) + (1 << 24))
        else:  # pragma: no cover - no fork on Windows: parse in this process
            payload = _extract(data)
    except ValueError as error:
        raise ValueError(f"{filename}: cannot read the HDF5 weights: {error}") from None
    except Exception as error:
        raise ValueError(f"{filename}: cannot read the HDF5 weights: {type(error).__name__}: {error}") from None
    return _decode(payload, filename)


# ---- assigning ---------------------------------------------------------------------


def file_groups(layer):
    """``[(subgroup, variables)]``: where ``layer``'s weights sit under its
    group, ``""`` for its own ``vars``. A layer that Keras builds from
    sublayers lists them with ``keras_weight_groups()`` (``"query_dense/"``, ...)."""
    groups = getattr(layer, "keras_weight_groups", None)
    return groups() if groups is not None else [("", layer.weights)]


def _layer_arrays(arrays, prefix, filename):
    """The arrays under ``prefix``: its own ``vars`` first, then nested
    groups' (sorted by path), each in index order."""
    groups = {}
    for path, array in arrays.items():
        if path.startswith(prefix):
            group, _, index = path.rpartition("/")
            if not index.isdigit() or not group.endswith("vars"):
                raise ValueError(f"{filename}: unexpected dataset '{path}' (weights are named vars/0, vars/1, ...)")
            groups.setdefault(group, {})[int(index)] = array
    own = prefix + "vars"
    result = []
    for group in sorted(groups, key=lambda g: (g != own, g)):
        indices = groups[group]
        if sorted(indices) != list(range(len(indices))):
            raise ValueError(f"{filename}: the datasets of '{group}' are not numbered 0, 1, ...")
        result += [indices[i] for i in range(len(indices))]
    return result


def _checked(array, variable, what, filename):
    if array.dtype.kind != "f":
        raise ValueError(f"{filename}: {what} has dtype {array.dtype}, expected floating point")
    if tuple(array.shape) != tuple(variable.shape):
        raise ValueError(f"{filename}: {what} has shape {tuple(array.shape)}, expected {tuple(variable.shape)}")
    return array.astype(variable.dtype, copy=False)


def plan_weights(model, arrays, filename, skip_mismatch=False):
    """``[(variable, array)]`` for every weight, checked against the model
    (a layer that does not match raises, or is skipped with a warning when
    ``skip_mismatch``)."""
    plan = []
    for path, layer in weight_groups(model):
        found = [array for subgroup, _ in file_groups(layer)
                 for array in _layer_arrays(arrays, path + subgroup, filename)]
        try:
            if len(found) != len(layer.weights):
                raise ValueError(
                    f"{filename}: layer '{layer.name}' ({path}) has {len(layer.weights)} weights, "
                    f"the file holds {len(found)}"
                )
            plan += [
                (variable, _checked(array, variable, f"weight '{variable.name}' of layer '{layer.name}'", filename))
                for variable, array in zip(layer.weights, found)
            ]
        except ValueError as error:
            if not skip_mismatch:
                raise
            warnings.warn(f"Skipping layer '{layer.name}': {error}", stacklevel=3)
    return plan


def plan_optimizer(model, arrays, filename):
    """The optimizer state in ``arrays`` as ``(iterations, learning_rate or
    None, {slot: flat host array} or None)``; None when the model has no
    built optimizer or the file none (a mismatch warns, as Keras does)."""
    optimizer = getattr(model, "optimizer", None) if model.compiled else None
    stored = [arrays[f"optimizer/vars/{i}"] for i in range(len(arrays)) if f"optimizer/vars/{i}" in arrays]
    if optimizer is None or not optimizer.built or not stored:
        return None
    if len(stored) != sum(1 for path in arrays if path.startswith("optimizer/")):
        raise ValueError(f"{filename}: the optimizer's datasets are not numbered optimizer/vars/0, 1, ...")
    slices, total = _slot_slices(model)
    blocks = _slot_blocks(optimizer)
    slot_count = sum(len(block) for block in blocks) * len(slices)
    for has_rate, has_slots in ((True, True), (False, True), (True, False), (False, False)):
        if len(stored) == 1 + has_rate + (slot_count if has_slots else 0) and _scalars_fit(stored, has_rate):
            break
    else:
        warnings.warn(
            f"Skipping the optimizer state in {filename}: it holds {len(stored)} variables, optimizer "
            f"'{optimizer.name}' ({type(optimizer).__name__}) has {2 + slot_count}",
            stacklevel=3,
        )
        return None
    iterations = int(stored[0])
    if iterations < 0:
        raise ValueError(f"{filename}: negative optimizer step count {iterations}")
    rate = float(stored[1]) if has_rate else None
    if rate is not None and not (math.isfinite(rate) and rate >= 0):
        raise ValueError(f"{filename}: the saved learning rate {rate} is not a finite non-negative number")
    if not has_slots:
        return iterations, rate, None
    dtype = model._params.dtype
    slots = {name: np.empty(total, dtype) for name, _ in optimizer.slot_buffers()}
    position = 1 + has_rate
    for block in blocks:
        for variable, start, stop in slices:
            for name in block:
                array = _checked(stored[position], variable, f"optimizer slot '{name}' of '{variable.name}'", filename)
                slots[name][start:stop] = array.reshape(-1)
                position += 1
    return iterations, rate, slots


def _scalars_fit(stored, has_rate):
    step = stored[0]
    if step.shape != () or step.dtype.kind not in "iu":
        return False
    return not has_rate or (stored[1].shape == () and stored[1].dtype.kind == "f")


def apply_state(model, weights_plan, optimizer_plan):
    """Write checked weights and optimizer state into the model."""
    for variable, array in weights_plan:
        variable.assign(array)
    if optimizer_plan is None:
        return
    from nkeras.optimizers.schedules import LearningRateSchedule

    optimizer = model.optimizer
    iterations, rate, slots = optimizer_plan
    optimizer.iterations = iterations
    if rate is not None and not isinstance(optimizer._learning_rate, LearningRateSchedule):
        optimizer.learning_rate = rate
    for name, buffer in optimizer.slot_buffers() if slots is not None else []:
        model._device.copy_from_host(slots[name], buffer)
