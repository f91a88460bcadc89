"""``model.summary()``: the Keras-style table of layers."""

import numpy as np

from nkeras.layers.layer import InputLayer


def readable_size(num_bytes):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if num_bytes < 1024:
            return f"{num_bytes:.2f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.2f} PB"


def _shape_text(tensors):
    shapes = [str(t.shape).replace(",)", ")") for t in tensors]
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def _rows(model, functional):
    rows = []
    nodes = {id(layer): [] for layer in model.layers}
    for tensor in model.inputs:
        nodes.setdefault(id(tensor.node.layer), []).append(tensor.node)
    for node in model._graph.nodes:
        nodes.setdefault(id(node.layer), []).append(node)
    for layer in model.layers:
        if isinstance(layer, InputLayer) and not functional:
            continue
        layer_nodes = nodes.get(id(layer), [])
        outputs = [t for node in layer_nodes for t in node.outputs]
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        row = [f"{layer.name} ({type(layer).__name__})", _shape_text(outputs) if outputs else "?", params]
        if functional:
            sources = [
                f"{t.node.layer.name}[{t.node.layer._inbound_nodes.index(t.node)}][{t.node.outputs.index(t)}]"
                for node in layer_nodes for t in node.inputs
            ]
            row.append(", ".join(sources) or "-")
        rows.append(row)
    return rows


def print_summary(model, line_length=None, print_fn=None):
    """Print (or pass line by line to ``print_fn``) the summary table."""
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' has not been built yet: give it a keras.Input(shape=...) "
            "or call it on data first"
        )
    emit = print_fn or print
    functional = type(model).__name__ != "Sequential"
    headers = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if functional else [])
    rows = _rows(model, functional)
    widths = [max(len(h), *(len(r[i]) for r in rows)) + 2 for i, h in enumerate(headers)]
    widths[0] = max(widths[0], 33 if not functional else 21)
    widths[1] = max(widths[1], 24 if not functional else 19)
    widths[2] = max(widths[2], 15 if not functional else 12)
    aligns = ["<", "<", ">", "<"]

    def line(cells, left, sep, right):
        return left + sep.join(f" {c:{a}{w - 2}} " for c, w, a in zip(cells, widths, aligns)) + right

    def rule(left, mid, right, fill):
        return left + mid.join(fill * w for w in widths) + right

    emit(f'Model: "{model.name}"')
    emit(rule("┏", "┳", "┓", "━"))
    emit(line(headers, "┃", "┃", "┃"))
    emit(rule("┡", "╇", "┩", "━"))
    for index, row in enumerate(rows):
        emit(line(row, "│", "│", "│"))
        emit(rule("├", "┼", "┤", "─") if index < len(rows) - 1 else rule("└", "┴", "┘", "─"))
    itemsize = np.dtype(model._dtype).itemsize
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    optimizer_params = 0
    if model.compiled and getattr(model.optimizer, "built", False):
        optimizer_params = sum(int(np.size(buf)) for _, buf in model.optimizer.slot_buffers()) + 2
    total = trainable + frozen + optimizer_params
    emit(f" Total params: {total:,} ({readable_size(total * itemsize)})")
    emit(f" Trainable params: {trainable:,} ({readable_size(trainable * itemsize)})")
    emit(f" Non-trainable params: {frozen:,} ({readable_size(frozen * itemsize)})")
    if optimizer_params:
        emit(f" Optimizer params: {optimizer_params:,} ({readable_size(optimizer_params * itemsize)})")
    emit(f" Device: {model._device.name}")
