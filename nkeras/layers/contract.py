"""Whether a layer can run: it has a forward kernel, and its kernels run on
the model's device. Both checks name the layer and point to
docs/custom_layers.md, the path a custom layer follows."""

from nkeras.layers.layer import Layer

DOCS = "docs/custom_layers.md"


def _describe(layer):
    return f"Layer '{layer.name}' ({type(layer).__name__})"


def check_has_forward(layer):
    """Raise NotImplementedError when ``layer`` computes nothing nkeras can
    run: a Layer subclass that defines neither ``forward`` nor a view
    (Keras's ``call`` alone does not do: it has no backward pass).

    Args:
        layer: the layer about to be built and called.
    """
    cls = type(layer)
    if cls.forward is not Layer.forward or cls.output_is_view is not Layer.output_is_view:
        return
    defines_call = callable(getattr(cls, "call", None))
    found = "defines Keras's call(), which nkeras cannot run" if defines_call else "defines no forward()"
    raise NotImplementedError(
        f"{_describe(layer)} {found}. An nkeras layer supplies forward(ctx, inputs, outputs, state), which fills "
        "the preallocated outputs, and backward(ctx, inputs, outputs, state, output_grads, input_grads), which "
        f"writes the input and weight gradients, in NumPy or as Numba kernels; see {DOCS}"
    )


def _forward_owner(layer):
    return next(klass for klass in type(layer).__mro__ if "forward" in vars(klass) or klass is Layer)


def check_runs_on(layer, device):
    """Raise RuntimeError when ``layer`` is a custom layer written for the
    CPU and ``device`` is not the CPU.

    A layer whose ``forward`` comes from nkeras calls only ``ctx.ops``
    kernels, which every device has. A custom layer's NumPy or ``@njit`` code
    cannot read GPU arrays, so it runs only on the CPU unless its class
    declares ``supported_devices = ("cpu", "cuda")`` (it calls ``ctx.ops``
    kernels only, or launches its own CUDA kernels when ``ctx.device.name``
    is "cuda").

    Args:
        layer: a layer of the model.
        device: the device its plan runs on (``device.name``: "cpu", "cuda").
    """
    if device.name == "cpu" or _forward_owner(layer).__module__.split(".")[0] == "nkeras":
        return
    supported = tuple(getattr(layer, "supported_devices", ("cpu",)))
    if device.name in supported:
        return
    raise RuntimeError(
        f"{_describe(layer)} is a custom layer that runs on {', '.join(supported)}, but the model is on device "
        f"'{device.name}', whose arrays NumPy and @njit code cannot read. Build the model on the CPU "
        "(`with keras.device('cpu'):`), or give the layer kernels for the GPU and declare them with "
        f"`supported_devices = ('cpu', 'cuda')`; see {DOCS}"
    )
