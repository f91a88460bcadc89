"""Model and weight files in Keras 3's formats, read without running code.

``model.save("m.keras")`` / ``load_model("m.keras")``: the whole model;
``model.save_weights("w.weights.h5")`` (or ``.weights.npz``) /
``model.load_weights(...)``: the weights. Custom classes load only when
registered with ``@register_keras_serializable`` or passed in
``custom_objects``. See docs/saving.md.
"""

from nkeras.saving.object_registration import (
    CustomObjectScope,
    custom_object_scope,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
)
from nkeras.saving.saving_lib import load_model, save_model
from nkeras.saving.serialization import deserialize_keras_object, serialize_keras_object


def save_weights(model, filepath, overwrite=True):
    """``model.save_weights(filepath, overwrite)``."""
    model.save_weights(filepath, overwrite=overwrite)


def load_weights(model, filepath, skip_mismatch=False):
    """``model.load_weights(filepath, skip_mismatch)``."""
    model.load_weights(filepath, skip_mismatch=skip_mismatch)


__all__ = [
    "CustomObjectScope", "custom_object_scope", "deserialize_keras_object", "get_custom_objects",
    "get_registered_name", "get_registered_object", "load_model", "load_weights", "register_keras_serializable",
    "save_model", "save_weights", "serialize_keras_object",
]
