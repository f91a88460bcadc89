"""Pictures: the layer graph of a model (Graphviz) and training curves (matplotlib)."""

import os
import shutil
import subprocess

_IMAGE_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg", "gif")


def _quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _shape_text(tensors):
    shapes = [str(t.shape).replace(",)", ")") for t in tensors]
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def model_to_dot(model, show_shapes=False, show_dtype=False, show_layer_names=True, rankdir="TB",
                 expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False, **kwargs):
    """The model's layer graph in Graphviz's DOT language, as a string.

    Args:
        model: a built Sequential or functional model.
        show_shapes: show each layer's input and output shapes.
        show_dtype: show each layer's dtype.
        show_layer_names: show layer names (else only class names).
        rankdir: "TB" (top to bottom) or "LR" (left to right).
        expand_nested: accepted for Keras compatibility (nkeras models do
            not nest).
        dpi: the resolution of rendered images.
        show_layer_activations: show the activation of layers that have one.
        show_trainable: show whether each layer is trainable.
    """
    from nkeras import activations

    if kwargs:
        raise TypeError(f"model_to_dot: unexpected keyword argument(s) {sorted(kwargs)}")
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"model_to_dot: rankdir must be 'TB' or 'LR', got {rankdir!r}")
    if not model.built:
        raise ValueError(f"Model '{model.name}' is not built yet: give it a keras.Input(shape=...) or call it on data")
    lines = [
        f"digraph {_quote(model.name)} {{",
        f"  graph [rankdir={rankdir}, dpi={int(dpi)}, concentrate=true];",
        '  node [shape=record, fontname="Helvetica"];',
    ]
    inputs = model.inputs
    layers = [t.node.layer for t in inputs if t.node.layer not in model.layers] + list(model.layers)
    ids = {id(layer): f"layer{i}" for i, layer in enumerate(layers)}
    for layer in layers:
        title = f"{layer.name} ({type(layer).__name__})" if show_layer_names else type(layer).__name__
        fields = [title]
        activation = getattr(layer, "activation", None)
        if show_layer_activations and activation is not None:
            fields.append(f"activation: {activations.serialize(activation)}")
        if show_dtype:
            fields.append(f"dtype: {layer.dtype}")
        if show_trainable:
            fields.append(f"trainable: {layer.trainable}")
        nodes = layer._inbound_nodes
        if show_shapes and nodes:
            sources = [t for node in nodes for t in node.inputs]
            if sources:
                fields.append(f"input: {_shape_text(sources)}")
            fields.append(f"output: {_shape_text([t for node in nodes for t in node.outputs])}")
        label = "|".join(field.replace("{", "\\{").replace("}", "\\}").replace("|", "\\|").replace("<", "\\<")
                         .replace(">", "\\>") for field in fields)
        lines.append(f"  {ids[id(layer)]} [label={_quote('{' + label + '}')}];")
    for node in model._graph.nodes:
        for tensor in node.inputs:
            source = ids.get(id(tensor.node.layer))
            if source is not None:
                lines.append(f"  {source} -> {ids[id(node.layer)]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=True,
               rankdir="TB", expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False,
               **kwargs):
    """Draw the model's layer graph to ``to_file``.

    A ".dot" file gets the Graphviz source; ".png", ".svg", ".pdf", ".jpg"
    and ".gif" are rendered by Graphviz's ``dot`` program, which must be
    installed (e.g. ``apt-get install graphviz``).

    Args:
        model: a built Sequential or functional model.
        to_file: the output file; its extension picks the format.
        show_shapes, show_dtype, show_layer_names, rankdir, expand_nested,
        dpi, show_layer_activations, show_trainable: see ``model_to_dot``.
    """
    source = model_to_dot(
        model, show_shapes=show_shapes, show_dtype=show_dtype, show_layer_names=show_layer_names, rankdir=rankdir,
        expand_nested=expand_nested, dpi=dpi, show_layer_activations=show_layer_activations,
        show_trainable=show_trainable, **kwargs,
    )
    to_file = os.fspath(to_file)
    extension = os.path.splitext(to_file)[1].lower().lstrip(".")
    if extension in ("dot", "gv"):
        with open(to_file, "w", encoding="utf-8") as stream:
            stream.write(source)
        return
    if extension not in _IMAGE_FORMATS:
        raise ValueError(
            f"plot_model: cannot tell the format of {to_file!r}; use one of "
            f"{', '.join('.' + e for e in ('dot',) + _IMAGE_FORMATS)}"
        )
    program = shutil.which("dot")
    if program is None:
        raise RuntimeError(
            f"plot_model: writing {to_file!r} needs Graphviz's 'dot' program, which is not installed "
            "(e.g. `apt-get install graphviz` or `conda install graphviz`); or pass a '.dot' file name "
            "to get the graph's source"
        )
    result = subprocess.run(
        [program, f"-T{'jpeg' if extension == 'jpg' else extension}", "-o", to_file],
        input=source.encode("utf-8"), capture_output=True, timeout=120, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"plot_model: Graphviz failed to write {to_file!r}: {result.stderr.decode(errors='replace')}")


def plot_history(history, metrics=None, to_file=None):
    """Plot training curves, one panel per metric, training and validation.

    Needs matplotlib (``pip install matplotlib``), an optional extra.

    Args:
        history: the ``History`` returned by ``fit``, or its ``history`` dict.
        metrics: names to plot (default: every metric without "val_").
        to_file: optional image file to save the figure to.

    Returns:
        The matplotlib ``Figure``.
    """
    try:
        import matplotlib

        if to_file is not None:
            matplotlib.use("Agg", force=False)
        from matplotlib import pyplot
    except ImportError:
        raise ImportError(
            "plot_history needs matplotlib, which is not installed: pip install matplotlib"
        ) from None
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs:
        raise ValueError("plot_history: expected a History from fit() or a non-empty dict of per-epoch values")
    names = metrics or sorted(name for name in logs if not name.startswith("val_"))
    unknown = [name for name in names if name not in logs]
    if unknown:
        raise ValueError(f"plot_history: no values for {unknown}; available: {sorted(logs)}")
    figure, axes = pyplot.subplots(len(names), 1, figsize=(6, 3 * len(names)), squeeze=False)
    for axis, name in zip(axes[:, 0], names):
        epochs = range(1, len(logs[name]) + 1)
        axis.plot(epochs, logs[name], marker="o", label="training")
        if f"val_{name}" in logs:
            axis.plot(range(1, len(logs[f"val_{name}"]) + 1), logs[f"val_{name}"], marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.legend()
    figure.tight_layout()
    if to_file is not None:
        figure.savefig(os.fspath(to_file))
    return figure
