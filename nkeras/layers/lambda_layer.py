"""``Lambda``: accepted for Keras's sake, refused when called.

nkeras trains with the gradient every layer's ``backward`` writes, and a
plain Python function has none, so a ``Lambda`` layer cannot run. It can be
constructed (Keras code that makes one fails at the call, with the way out)
and gives Keras's config.
"""

from nkeras.layers.layer import Layer

DOCS = "docs/custom_layers.md"


class Lambda(Layer):
    """Keras's layer that wraps a Python function; calling it raises
    NotImplementedError pointing to docs/custom_layers.md, which shows how to
    write the same computation as a Layer subclass with ``forward`` and
    ``backward``.

    Args:
        function: the function Keras would call on the inputs.
        output_shape: the output shape Keras would use (kept in the config).
        mask: Keras's mask argument (kept in the config).
        arguments: keyword arguments Keras would pass to ``function``.
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        self.function = function
        self.output_shape = output_shape
        self.mask = mask
        self.arguments = dict(arguments or {})

    def __call__(self, inputs, **kwargs):
        name = getattr(self.function, "__name__", type(self.function).__name__)
        raise NotImplementedError(
            f"Lambda '{self.name}': nkeras cannot run the Python function {name!r} as a layer, because training "
            "needs the gradient a layer's backward writes and a function has none. Write a keras.layers.Layer "
            f"subclass with forward and backward (in NumPy or as Numba kernels) instead; see {DOCS}"
        )

    def get_config(self):
        function = self.function
        if callable(function):
            # Keras's form for a named function; nkeras never loads code from a file.
            function = {"module": "builtins", "class_name": "function", "config": function.__name__,
                        "registered_name": "function"}
        config = {**super().get_config(), "function": function}
        if self.output_shape is not None:
            config["output_shape"] = self.output_shape
        if self.mask is not None:
            config["mask"] = self.mask
        return {**config, "arguments": self.arguments}
