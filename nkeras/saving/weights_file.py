"""Weight files: a NumPy ``.npz`` archive of arrays plus a JSON manifest.

Reading never unpickles (``allow_pickle=False``), and writing goes to a
temporary file in the same folder that replaces the target only when it is
complete, so an interrupted save leaves the previous file whole.
"""

import json
import os
import tempfile

import numpy as np

SUFFIX = ".weights.npz"
_MANIFEST = "manifest"


def check_path(filepath):
    filepath = os.fspath(filepath)
    if not filepath.endswith(SUFFIX):
        raise ValueError(
            f"Weight files must end in '{SUFFIX}', got {filepath!r} "
            "(Keras's .weights.h5 format is not supported yet)"
        )
    return filepath


def _manifest(model):
    return [
        {"layer": layer.name, "name": variable.name, "shape": list(variable.shape)}
        for layer in model.layers
        for variable in layer.weights
    ]


def save(model, filepath, overwrite=True):
    """Write ``model``'s weights to ``filepath`` atomically."""
    filepath = check_path(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False")
    arrays = {f"w{i:05d}": value for i, value in enumerate(model.get_weights())}
    manifest = np.frombuffer(json.dumps(_manifest(model)).encode("utf-8"), dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(filepath))
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **{_MANIFEST: manifest}, **arrays)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, filepath)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def load(model, filepath):
    """Read weights saved by ``save`` into ``model``; nothing changes on error."""
    filepath = check_path(filepath)
    try:
        with np.load(filepath, allow_pickle=False) as archive:
            manifest = json.loads(archive[_MANIFEST].tobytes().decode("utf-8"))
            arrays = [archive[f"w{i:05d}"] for i in range(len(manifest))]
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as error:
        raise ValueError(f"Could not read weights from {filepath!r}: {error}") from None
    expected = _manifest(model)
    if len(manifest) != len(expected):
        raise ValueError(f"{filepath!r} holds {len(manifest)} weights; model '{model.name}' has {len(expected)}")
    for stored, wanted, array in zip(manifest, expected, arrays):
        if tuple(array.shape) != tuple(wanted["shape"]):
            raise ValueError(
                f"{filepath!r}: weight {stored['layer']}/{stored['name']} has shape {tuple(array.shape)}, "
                f"layer '{wanted['layer']}' expects {tuple(wanted['shape'])} for '{wanted['name']}'"
            )
    model.set_weights(arrays)
