"""Objects to and from Keras 3's JSON form, without running code from files.

An object is written as ``{"module", "class_name", "config",
"registered_name"}``. Reading looks the class up by name among nkeras's own
classes of the expected kind (layer, loss, metric, initializer, optimizer,
learning-rate schedule), the registered classes and ``custom_objects``;
module paths in the file are never imported. Keras options that nkeras does
not have are dropped when they hold their "off" value (None or False) and
rejected otherwise, naming the object and the option.
"""

import inspect
import math

import numpy as np

from nkeras import initializers
from nkeras.config import floatx
from nkeras.initializers import Initializer
from nkeras.saving.object_registration import _REGISTERED_NAMES, get_registered_object


def _categories():
    from nkeras import layers, losses, metrics, optimizers
    from nkeras.optimizers import schedules

    return {
        "layer": (layers, layers.Layer, "keras.layers"),
        "loss": (losses, losses.Loss, "keras.losses"),
        "metric": (metrics, metrics.Metric, "keras.metrics"),
        "initializer": (initializers, Initializer, "keras.initializers"),
        "optimizer": (optimizers, optimizers.Optimizer, "keras.optimizers"),
        "schedule": (schedules, schedules.LearningRateSchedule, "keras.optimizers.schedules"),
    }


def _builtins(category):
    module, base, _ = _categories()[category]
    names = getattr(module, "__all__", None) or [name for name in vars(module) if not name.startswith("_")]
    table = {}
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, type) and issubclass(value, base) and value is not base and value.__module__.startswith("nkeras"):
            table[value.__name__] = value
    return table


def _category_of(obj):
    for category, (_, base, _) in _categories().items():
        if isinstance(obj, base):
            return category
    return None


# ---- writing ---------------------------------------------------------------------


def _jsonable(value, what):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, what) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item, what) for key, item in value.items()}
    if isinstance(value, np.dtype):
        return value.name
    if _category_of(value) is not None:
        return serialize_keras_object(value)
    raise TypeError(f"{what}: cannot save a value of type {type(value).__name__} ({value!r}) in a model file")


def dtype_policy(name):
    """Keras's serialized ``DTypePolicy`` for a dtype name."""
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}, "registered_name": None}


def _object_config(obj, category):
    from nkeras.layers import InputLayer
    from nkeras.optimizers.schedules import LearningRateSchedule

    name = getattr(obj, "name", None)
    what = f"{type(obj).__name__} {name!r}" if isinstance(name, str) else type(obj).__name__
    config = obj.get_config()
    if not isinstance(config, dict):
        raise TypeError(f"{what}: get_config() must return a dict, got {type(config).__name__}")
    result = {}
    for key, value in config.items():
        if category == "layer" and key == "dtype" and not isinstance(obj, InputLayer) and value is not None:
            value = dtype_policy(np.dtype(value).name)
        elif category == "layer" and key.endswith("_initializer") and value is not None:
            value = serialize_keras_object(initializers.get(value))
        elif category == "optimizer" and key == "learning_rate" and isinstance(obj._learning_rate, LearningRateSchedule):
            value = serialize_keras_object(obj._learning_rate)
        result[key] = _jsonable(value, what)
    return result


def serialize_keras_object(obj):
    """The Keras 3 JSON form of a layer, loss, metric, initializer, optimizer
    or schedule (plain values and lists/dicts of them pass through).

    Args:
        obj: the object to serialize.
    """
    category = _category_of(obj)
    if category is None:
        return _jsonable(obj, "serialize_keras_object")
    cls = type(obj)
    op_module = _keras_op_module(cls) if category == "layer" else None
    if op_module is not None:
        return {"module": op_module, "class_name": cls.__name__, "config": obj.get_config(),
                "registered_name": cls.__name__}
    registered = _REGISTERED_NAMES.get(cls)
    builtin = _builtins(category).get(cls.__name__) is cls
    if not builtin and registered is None:
        raise ValueError(
            f"Cannot save {cls.__name__}: custom classes must be registered with "
            "@nkeras.saving.register_keras_serializable() so that a file can name them"
        )
    return {
        "module": _categories()[category][2] if builtin else cls.__module__,
        "class_name": cls.__name__,
        "config": _object_config(obj, category),
        "registered_name": None if builtin else registered,
    }


def _keras_op_module(cls):
    """The Keras module of an op layer (``NotEqual``, ``Any``), else None."""
    from nkeras.layers.mask_ops import KERAS_OP_LAYERS

    return cls.keras_module if KERAS_OP_LAYERS.get(cls.__name__) is cls else None


# ---- reading -----------------------------------------------------------------------


def _accepted_arguments(cls):
    """The keyword arguments ``cls(...)`` accepts, following ``**kwargs`` up the MRO."""
    names = set()
    for klass in cls.__mro__[:-1]:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    names.discard("self")
    return names


def _checked_entry(entry, what):
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ValueError(f"{what}: expected an object with a 'class_name', got {_short(entry)}")
    config = entry.get("config", {})
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ValueError(f"{what}: the 'config' of {entry['class_name']!r} must be an object, got {_short(config)}")
    registered = entry.get("registered_name")
    module = entry.get("module")
    if registered is not None and not isinstance(registered, str) or module is not None and not isinstance(module, str):
        raise ValueError(f"{what}: 'module' and 'registered_name' must be strings")
    return entry["class_name"], config, registered, module


def _short(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def resolve_class(entry, category, custom_objects, what):
    """``(cls, config, builtin)`` for a serialized object of ``category``.

    Raises ValueError for names that are neither nkeras classes of that kind
    nor registered or passed in ``custom_objects``.
    """
    class_name, config, registered, module = _checked_entry(entry, what)
    base = _categories()[category][1]
    for name in (registered, class_name):
        if name is None:
            continue
        found = get_registered_object(name, custom_objects)
        if found is not None:
            if not (isinstance(found, type) and issubclass(found, base)):
                raise ValueError(f"{what}: custom object {name!r} is not a {base.__name__} subclass")
            return found, config, False
    builtin = _builtins(category).get(class_name)
    if builtin is not None and (module is None or module.split(".")[0] in ("keras", "nkeras")):
        return builtin, config, True
    if category == "layer" and module == "keras.src.ops.numpy":
        from nkeras.layers.mask_ops import KERAS_OP_LAYERS

        if class_name in KERAS_OP_LAYERS:
            return KERAS_OP_LAYERS[class_name], config, True
    known = ", ".join(sorted(_builtins(category)))
    raise ValueError(
        f"{what}: unknown {category} class {class_name!r}"
        + (f" (module {module!r} is never imported)" if module else "")
        + f". nkeras loads only its own classes ({known}) and classes registered with "
        "@nkeras.saving.register_keras_serializable() or passed in custom_objects"
    )


def clean_config(cls, config, what, builtin):
    """Drop the Keras-only options that are off; reject the others."""
    if not builtin:
        return dict(config)
    accepted = _accepted_arguments(cls)
    clean = {}
    for key, value in config.items():
        if key in accepted:
            clean[key] = value
        elif value is not None and value is not False:
            raise ValueError(f"{what}: option {key}={_short(value)} of {cls.__name__} is not supported by nkeras")
    return clean


def _construct(cls, config, what):
    try:
        return cls.from_config(config)
    except (TypeError, ValueError, NotImplementedError, OverflowError, KeyError, MemoryError) as error:
        raise ValueError(f"{what}: cannot make {cls.__name__} from the saved config: {error}") from error


def deserialize_keras_object(config, custom_objects=None, category=None, what="deserialize_keras_object"):
    """Rebuild an object from its Keras 3 JSON form.

    Args:
        config: a dict from ``serialize_keras_object`` (or a Keras file), or
            a plain value (returned as is).
        custom_objects: optional dict of name to class for custom classes.
        category: "layer", "loss", "metric", "initializer", "optimizer" or
            "schedule"; inferred from the ``module`` field when omitted.
        what: a description used in error messages.
    """
    if not isinstance(config, dict) or "class_name" not in config:
        return config
    if category is None:
        category = _category_from_module(config.get("module"), what)
    if category == "layer":
        return deserialize_layer(config, custom_objects, what=what)
    cls, raw, builtin = resolve_class(config, category, custom_objects, what)
    clean = clean_config(cls, raw, what, builtin)
    if category == "optimizer" and isinstance(clean.get("learning_rate"), dict):
        clean["learning_rate"] = deserialize_keras_object(
            clean["learning_rate"], custom_objects, "schedule", f"{what} learning_rate"
        )
    return _construct(cls, clean, what)


def _category_from_module(module, what):
    prefixes = [
        ("keras.optimizers.schedules", "schedule"), ("keras.optimizers", "optimizer"), ("keras.layers", "layer"),
        ("keras.losses", "loss"), ("keras.metrics", "metric"), ("keras.initializers", "initializer"),
    ]
    for prefix, category in prefixes:
        if isinstance(module, str) and module.replace("keras.src.", "keras.").startswith(prefix):
            return category
    raise ValueError(f"{what}: cannot tell what kind of object module {module!r} holds; pass `category`")


# ---- layers ------------------------------------------------------------------------


class _Budget:
    """How many weight values the file holds: layers being rebuilt from a
    config may not create more (a hostile config cannot make nkeras
    allocate gigabytes before the weights are checked)."""

    def __init__(self, limit, filename):
        self.left = limit
        self.filename = filename

    def take(self, shape, owner):
        count = math.prod(shape)
        if count > self.left:
            raise ValueError(
                f"{self.filename}: {owner} would create a weight of shape {tuple(shape)}, more values than "
                "the weights file holds"
            )
        self.left -= count


class _PlaceholderInitializer(Initializer):
    """Stands in for a layer's initializer while a model is rebuilt from a
    file: it returns zeros (the file's values replace them), charges the
    budget, and leaves the global random stream alone."""

    def __init__(self, original, budget, owner):
        self.original = original
        self.budget = budget
        self.owner = owner

    def __call__(self, shape, dtype=None):
        self.budget.take(shape, self.owner)
        return np.zeros(shape, dtype=np.dtype(dtype or floatx()))

    def get_config(self):
        return self.original.get_config()


def restore_initializers(layer):
    """Put back the initializers that placeholders stood in for (in the
    layers a wrapper holds, its ``inner_layers()``, too)."""
    for key, value in list(vars(layer).items()):
        if isinstance(value, _PlaceholderInitializer):
            setattr(layer, key, value.original)
    inner_layers = getattr(layer, "inner_layers", None)
    for inner in inner_layers() if inner_layers is not None else ():
        restore_initializers(inner)


def _policy_name(value, what):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy", "Policy"):
        name = (value.get("config") or {}).get("name")
        if isinstance(name, str):
            return name
    raise ValueError(f"{what}: unsupported dtype policy {_short(value)}")


def _input_layer(config, what):
    from nkeras.layers import InputLayer

    allowed = {"batch_shape", "batch_input_shape", "dtype", "name", "sparse", "ragged", "optional", "trainable"}
    for key, value in config.items():
        if key not in allowed or (key in ("sparse", "ragged", "optional") and value not in (None, False)):
            raise ValueError(f"{what}: option {key}={_short(value)} of InputLayer is not supported by nkeras")
    shape = config.get("batch_shape", config.get("batch_input_shape"))
    if not isinstance(shape, list) or not shape or not all(d is None or isinstance(d, int) for d in shape):
        raise ValueError(f"{what}: InputLayer needs 'batch_shape' as a list of integers, got {_short(shape)}")
    try:
        return InputLayer(shape=tuple(shape[1:]), batch_size=shape[0], dtype=config.get("dtype"), name=config.get("name"))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what}: {error}") from error


def deserialize_layer(entry, custom_objects=None, budget=None, what="layer"):
    """A layer from its Keras 3 JSON form (unbuilt: calling it builds it).

    Args:
        entry: the serialized layer.
        custom_objects: optional dict of name to class.
        budget: optional ``_Budget``; when given, the layer's initializers
            are replaced by placeholders that charge it (restore them with
            ``restore_initializers`` once built).
        what: a description used in error messages.
    """
    from nkeras.layers import InputLayer, Lambda

    if isinstance(entry, dict) and entry.get("class_name") in ("Functional", "Sequential", "Model"):
        from nkeras.saving.model_config import nested_model_from_config

        return nested_model_from_config(entry, custom_objects, budget, what)
    cls, raw, builtin = resolve_class(entry, "layer", custom_objects, what)
    name = raw.get("name")
    what = f"{what} {name!r}" if isinstance(name, str) else what
    if cls is InputLayer:
        return _input_layer(raw, what)
    if cls is Lambda:
        raise ValueError(
            f"{what}: a Lambda layer cannot run in nkeras (its Python function has no backward pass); "
            "rewrite it as a keras.layers.Layer subclass with forward and backward, see docs/custom_layers.md"
        )
    config = {}
    for key, value in raw.items():
        if key == "dtype":
            value = _policy_name(value, what)
        elif key.endswith("_initializer") and value is not None:
            value = _initializer(value, custom_objects, f"{what} {key}")
            if budget is not None:
                value = _PlaceholderInitializer(value, budget, f"layer {name!r}")
        elif key in getattr(cls, "nested_layer_keys", ()) and isinstance(value, dict):
            # A wrapper's inner layer (TimeDistributed, Bidirectional).
            value = deserialize_layer(value, custom_objects, budget, f"{what} {key}")
        elif builtin and isinstance(value, dict):
            raise ValueError(f"{what}: option {key}={_short(value)} of {cls.__name__} is not supported by nkeras")
        config[key] = value
    return _construct(cls, clean_config(cls, config, what, builtin), what)


def _initializer(value, custom_objects, what):
    if isinstance(value, dict):
        return deserialize_keras_object(value, custom_objects, "initializer", what)
    try:
        return initializers.get(value)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from error
