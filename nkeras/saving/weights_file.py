"""Weight files: a NumPy ``.npz`` archive of arrays plus a JSON manifest.

Reading never unpickles (``allow_pickle=False``), and writing goes to a
temporary file in the same folder that replaces the target only when it is
complete, so an interrupted save leaves the previous file whole.
"""

import json
import os
import zipfile
import zlib

import numpy as np

from nkeras.saving.file_utils import atomic_write

SUFFIX = ".weights.npz"
_MANIFEST = "manifest"
_MAX_MANIFEST = 1 << 26


def _manifest(model):
    return [
        {"layer": layer.name, "name": variable.name, "shape": list(variable.shape)}
        for layer in model.layers
        for variable in layer.weights
    ]


def save(model, filepath, overwrite=True):
    """Write ``model``'s weights to ``filepath`` atomically."""
    arrays = {f"w{i:05d}": value for i, value in enumerate(model.get_weights())}
    manifest = np.frombuffer(json.dumps(_manifest(model)).encode("utf-8"), dtype=np.uint8)
    atomic_write(filepath, lambda stream: np.savez(stream, **{_MANIFEST: manifest}, **arrays), overwrite)


def _read_npy(archive, name, check):
    """The array ``name`` of the archive, after ``check(shape, dtype)`` has
    accepted the shape and dtype its header declares (so a hostile header
    cannot make NumPy allocate before the check)."""
    with archive.open(name + ".npy") as stream:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(stream)
    check(shape, dtype)
    with archive.open(name + ".npy") as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def load(model, filepath):
    """Read weights saved by ``save`` into ``model``; nothing changes on error."""
    filepath = os.fspath(filepath)
    expected = _manifest(model)

    def manifest_check(shape, dtype):
        if dtype != np.uint8 or len(shape) != 1 or shape[0] > _MAX_MANIFEST:
            raise ValueError(f"bad manifest (shape {shape}, dtype {dtype})")

    try:
        with zipfile.ZipFile(filepath) as archive:
            manifest = json.loads(_read_npy(archive, _MANIFEST, manifest_check).tobytes().decode("utf-8"))
            if not isinstance(manifest, list) or not all(
                isinstance(item, dict) and isinstance(item.get("layer"), str) and isinstance(item.get("name"), str)
                for item in manifest
            ):
                raise ValueError("the manifest must list {layer, name, shape} objects")
            if len(manifest) != len(expected):
                raise ValueError(f"it holds {len(manifest)} weights; model '{model.name}' has {len(expected)}")
            arrays = []
            for index, (stored, wanted) in enumerate(zip(manifest, expected)):

                def check(shape, dtype, stored=stored, wanted=wanted):
                    if tuple(shape) != tuple(wanted["shape"]) or dtype.kind != "f":
                        raise ValueError(
                            f"weight {stored['layer']}/{stored['name']} has shape {tuple(shape)} and dtype {dtype}, "
                            f"layer '{wanted['layer']}' expects {tuple(wanted['shape'])} floats for '{wanted['name']}'"
                        )

                arrays.append(_read_npy(archive, f"w{index:05d}", check))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"Could not read weights from {filepath!r}: {error}") from None
    model.set_weights(arrays)
