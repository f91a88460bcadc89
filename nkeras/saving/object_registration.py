"""Custom objects: the only way a saved file can name a class that is not
built into nkeras.

A file refers to classes by name. Loading looks a name up, in this order, in
the innermost ``custom_object_scope``, the ``custom_objects`` argument, the
classes registered with ``@register_keras_serializable``, and nkeras's own
classes. Nothing is ever imported from a module named in a file.
"""

_REGISTERED = {}
_REGISTERED_NAMES = {}
_SCOPES = []


def register_keras_serializable(package="Custom", name=None):
    """Decorator registering a class (or function) under ``"package>name"``.

    Args:
        package: the package part of the registered name.
        name: the name part (the class's ``__name__`` by default).
    """
    if not isinstance(package, str) or ">" in package:
        raise ValueError(f"register_keras_serializable: package must be a string without '>', got {package!r}")

    def decorator(obj):
        registered_name = f"{package}>{name or obj.__name__}"
        if isinstance(obj, type) and not hasattr(obj, "get_config"):
            raise ValueError(f"Cannot register {obj.__name__}: a class must define get_config() to be serialized")
        _REGISTERED[registered_name] = obj
        _REGISTERED_NAMES[obj] = registered_name
        return obj

    return decorator


def get_registered_name(obj):
    """The name ``obj`` is registered under, or its ``__name__``."""
    return _REGISTERED_NAMES.get(obj, getattr(obj, "__name__", type(obj).__name__))


def get_registered_object(name, custom_objects=None, module_objects=None):
    """The object called ``name`` in the active scopes, ``custom_objects``,
    the registry or ``module_objects``; None when there is none.

    Args:
        name: a class name or a registered ``"package>name"``.
        custom_objects: optional dict of name to object.
        module_objects: optional dict of built-in name to object, looked at last.
    """
    for scope in reversed(_SCOPES):
        if name in scope:
            return scope[name]
    for table in (custom_objects or {}, _REGISTERED, module_objects or {}):
        if name in table:
            return table[name]
    return None


def get_custom_objects():
    """The live dict of registered objects (``"package>name"`` to object)."""
    return _REGISTERED


class CustomObjectScope:
    """``with CustomObjectScope({"MyLayer": MyLayer}):`` makes those names
    resolvable by ``load_model`` inside the block.

    Args:
        custom_objects: a dict of name to object (several dicts may be given).
    """

    def __init__(self, *custom_objects):
        self._objects = {}
        for objects in custom_objects:
            if not isinstance(objects, dict):
                raise TypeError(f"CustomObjectScope expects dicts of name to object, got {type(objects).__name__}")
            self._objects.update(objects)

    def __enter__(self):
        _SCOPES.append(self._objects)
        return self

    def __exit__(self, *exc_info):
        _SCOPES.remove(self._objects)


def custom_object_scope(*custom_objects):
    """``with custom_object_scope({"MyLayer": MyLayer}):`` (see ``CustomObjectScope``)."""
    return CustomObjectScope(*custom_objects)

