"""``.keras`` model files and ``.weights.h5`` weight files, as Keras 3 writes them.

A ``.keras`` file is a zip archive (members stored, not compressed) of
``metadata.json``, ``config.json`` (the model, and its compile arguments
under ``compile_config``) and ``model.weights.h5`` (``h5_store``).

Loading reads the archive's members into memory with size limits, checks
every name and value, builds a new model, and only then assigns the
weights; it never extracts files, imports modules named in the file or
unpickles anything.
"""

import datetime
import json
import os
import warnings
import zipfile

from nkeras.saving import h5_store, weights_file
from nkeras.saving.file_utils import atomic_write
from nkeras.saving.model_config import (
    compile_config,
    deserialize_compile_config,
    model_config,
    model_from_config,
)

MODEL_SUFFIX = ".keras"
H5_SUFFIX = ".weights.h5"
NPZ_SUFFIX = weights_file.SUFFIX
# The Keras release whose files this format was checked against.
KERAS_VERSION = "3.15.1"

_CONFIG = "config.json"
_METADATA = "metadata.json"
_WEIGHTS = "model.weights.h5"
_JSON_LIMIT = 64 << 20
_MAX_MEMBERS = 10_000


# ---- writing ---------------------------------------------------------------------


def _config_json(model):
    config = model_config(model)
    if model.compiled:
        config["compile_config"] = compile_config(model)
    return json.dumps(config).encode("utf-8")


def check_save_path(model, filepath, weights_only):
    """Raise now if ``model`` cannot be saved to ``filepath`` (a bad suffix,
    or a model whose config cannot be written)."""
    filepath = os.fspath(filepath)
    if weights_only:
        if not filepath.endswith((H5_SUFFIX, NPZ_SUFFIX)):
            raise ValueError(f"Weight files must end in '{H5_SUFFIX}' or '{NPZ_SUFFIX}', got {filepath!r}")
    else:
        if not filepath.endswith(MODEL_SUFFIX):
            raise ValueError(
                f"Model files must end in '{MODEL_SUFFIX}', got {filepath!r}; for weights only use "
                f"save_weights() with a '{H5_SUFFIX}' or '{NPZ_SUFFIX}' path"
            )
        _config_json(model)
    return filepath


def save_model(model, filepath, overwrite=True):
    """Write ``model`` (architecture, weights, compile state and optimizer
    state) to a ``.keras`` file, atomically.

    Args:
        model: a Sequential or functional model.
        filepath: the path, ending in ".keras".
        overwrite: when False, an existing file raises FileExistsError.
    """
    filepath = check_save_path(model, filepath, weights_only=False)
    from nkeras.version import __version__

    metadata = {
        "keras_version": KERAS_VERSION,
        "nkeras_version": __version__,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
    }
    members = [
        (_METADATA, json.dumps(metadata).encode("utf-8")),
        (_CONFIG, _config_json(model)),
        (_WEIGHTS, h5_store.weights_bytes(model)),
    ]

    def write(stream):
        with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, data in members:
                archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)

    atomic_write(filepath, write, overwrite)


def save_weights(model, filepath, overwrite=True):
    """Write ``model``'s weights to ``filepath`` (``.weights.h5``, with the
    optimizer state as Keras does, or ``.weights.npz``), atomically."""
    filepath = check_save_path(model, filepath, weights_only=True)
    if filepath.endswith(NPZ_SUFFIX):
        weights_file.save(model, filepath, overwrite)
    else:
        data = h5_store.weights_bytes(model)
        atomic_write(filepath, lambda stream: stream.write(data), overwrite)


# ---- reading -----------------------------------------------------------------------


def _read_member(archive, info, limit, filepath):
    if info.file_size > limit:
        raise ValueError(f"{filepath}: member '{info.filename}' is {info.file_size} bytes, more than the {limit} allowed")
    chunks, size = [], 0
    with archive.open(info) as stream:
        while True:
            chunk = stream.read(1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise ValueError(f"{filepath}: member '{info.filename}' expands beyond {limit} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


def _safe_name(name):
    parts = name.replace("\\", "/").split("/")
    return name and "\x00" not in name and not name.startswith("/") and ":" not in parts[0] and ".." not in parts


def read_archive(filepath):
    """``(config, weights bytes)`` from a ``.keras`` file, read in memory.

    Raises ValueError for anything but a well-formed archive: bad zip,
    encrypted, duplicate or unsafe member names (``../x``, absolute paths),
    missing members, members larger than the file allows, bad JSON.
    """
    try:
        with open(filepath, "rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            with zipfile.ZipFile(handle) as archive:
                infos = archive.infolist()
                if len(infos) > _MAX_MEMBERS:
                    raise ValueError(f"{filepath}: more than {_MAX_MEMBERS} archive members")
                names = [info.filename for info in infos]
                for name in names:
                    if not _safe_name(name):
                        raise ValueError(f"{filepath}: unsafe archive member name {name[:200]!r}")
                if len(set(names)) != len(names):
                    raise ValueError(f"{filepath}: the archive holds duplicate member names")
                found = {info.filename: info for info in infos}
                for name in (_CONFIG, _WEIGHTS):
                    if name not in found:
                        raise ValueError(f"{filepath}: not a Keras model file (no '{name}' in the archive)")
                for info in found.values():
                    if info.flag_bits & 0x1:
                        raise ValueError(f"{filepath}: encrypted archive members are not supported")
                config_text = _read_member(archive, found[_CONFIG], _JSON_LIMIT, filepath)
                if _METADATA in found:
                    _read_json(_read_member(archive, found[_METADATA], 1 << 20, filepath), _METADATA, filepath)
                info = found[_WEIGHTS]
                stored = info.compress_type == zipfile.ZIP_STORED
                weights = _read_member(archive, info, file_size if stored else 64 * info.compress_size + (1 << 20), filepath)
    except ValueError:
        raise
    except Exception as error:
        raise ValueError(f"{filepath}: not a readable .keras archive: {type(error).__name__}: {error}") from None
    return _read_json(config_text, _CONFIG, filepath), weights


def _read_json(data, name, filepath):
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{filepath}: '{name}' is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{filepath}: '{name}' must hold a JSON object")
    return value


def _weight_count(arrays):
    return sum(array.size for path, array in arrays.items() if path.startswith("layers/"))


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Load a model saved by ``model.save`` (nkeras or Keras 3).

    Args:
        filepath: path of a ".keras" file.
        custom_objects: optional dict of name to class, for custom layers,
            losses, metrics and optimizers in the file.
        compile: whether to compile the model with the saved compile
            arguments and restore the optimizer state.
        safe_mode: accepted for Keras compatibility; nkeras never runs code
            from a file, whatever its value.
    """
    filepath = os.fspath(filepath)
    if os.path.isdir(filepath) or not filepath.endswith(MODEL_SUFFIX):
        raise ValueError(
            f"load_model: {filepath!r} is not a '{MODEL_SUFFIX}' file; nkeras reads Keras 3's .keras "
            "format (legacy .h5 models and SavedModel folders are not supported)"
        )
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"load_model: no such file {filepath!r}")
    config, weights = read_archive(filepath)
    arrays = h5_store.read_weights(weights, f"{filepath}/{_WEIGHTS}")
    model = model_from_config(config, custom_objects, _weight_count(arrays), filepath)
    saved_compile = config.get("compile_config")
    if compile and saved_compile and saved_compile.get("loss") is None:
        warnings.warn(f"{filepath}: the saved compile_config has no loss; the model is loaded uncompiled", stacklevel=2)
    elif compile and saved_compile:
        arguments = deserialize_compile_config(saved_compile, custom_objects, filepath)
        try:
            model.compile(**arguments)
        except (TypeError, ValueError, NotImplementedError) as error:
            raise ValueError(
                f"{filepath}: cannot compile the model with its saved compile_config ({error}); "
                "pass compile=False to load it uncompiled"
            ) from error
    plan = h5_store.plan_weights(model, arrays, filepath)
    optimizer_plan = h5_store.plan_optimizer(model, arrays, filepath) if compile else None
    h5_store.apply_state(model, plan, optimizer_plan)
    return model


def load_weights(model, filepath, skip_mismatch=False):
    """Load weights into ``model`` from a ``.weights.h5``, ``.weights.npz``
    or ``.keras`` file; the model is unchanged if anything does not match.

    Args:
        model: the model to load into.
        filepath: the file.
        skip_mismatch: skip (with a warning) layers whose weights do not
            match instead of raising (".weights.h5" and ".keras" only).
    """
    filepath = os.fspath(filepath)
    if filepath.endswith(NPZ_SUFFIX):
        weights_file.load(model, filepath)
        return
    if filepath.endswith(MODEL_SUFFIX):
        data = read_archive(filepath)[1]
    elif filepath.endswith(H5_SUFFIX):
        limit = 16 * sum(w.dtype.itemsize * w.size for w in model.get_weights()) + (16 << 20)
        try:
            with open(filepath, "rb") as handle:
                data = handle.read(limit + 1)
        except OSError as error:
            raise ValueError(f"Could not read weights from {filepath!r}: {error}") from None
        if len(data) > limit:
            raise ValueError(f"{filepath}: {len(data)}+ bytes is far more than model '{model.name}' has weights")
    else:
        raise ValueError(
            f"load_weights: {filepath!r} must end in '{H5_SUFFIX}', '{NPZ_SUFFIX}' or '{MODEL_SUFFIX}'"
        )
    arrays = h5_store.read_weights(data, filepath)
    plan = h5_store.plan_weights(model, arrays, filepath, skip_mismatch)
    h5_store.apply_state(model, plan, h5_store.plan_optimizer(model, arrays, filepath))

