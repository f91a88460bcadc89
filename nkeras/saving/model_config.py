"""Models to and from the ``config.json`` of a ``.keras`` file.

A ``Sequential`` is written as its layers (an ``InputLayer`` first); a
functional model as its layers, each with the nodes that call it
(``inbound_nodes``: the tensors it was called on, as
``[layer name, node index, tensor index]``), and the model's input and
output tensors. Layers are listed in the order Keras gives them after it
rebuilds the model (``keras_layer_order``), which is also the order that
names their groups in the weights file (``weight_keys``).
"""

import re

from nkeras.graph import KerasTensor
from nkeras.saving.serialization import (
    _Budget,
    _short,
    deserialize_keras_object,
    deserialize_layer,
    dtype_policy,
    restore_initializers,
    serialize_keras_object,
)

MAX_LAYERS = 100_000


def _snake_case(name):
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def keras_layer_order(model):
    """The model's layers in the order Keras 3 lists them.

    Sequential: the stack. Functional: by decreasing depth (the longest
    path to an output), ties broken by the order in which a depth-first
    walk from the outputs, in order, first reaches each layer.
    """
    from nkeras.models.sequential import Sequential

    if isinstance(model, Sequential):
        return model.layers
    first_seen, finished, post_order = {}, set(), []
    input_ids = {id(t) for t in model.inputs}
    for output in model.outputs:
        stack = [(output, False)]
        while stack:
            tensor, expanded = stack.pop()
            node = tensor.node
            if expanded:
                if id(node) not in finished:
                    finished.add(id(node))
                    post_order.append(node)
                continue
            if id(node) in finished:
                continue
            first_seen.setdefault(id(node.layer), len(first_seen))
            stack.append((tensor, True))
            if id(tensor) not in input_ids:
                stack.extend((parent, False) for parent in reversed(node.inputs))
    node_depth, layer_depth, layers = {}, {}, {}
    for node in reversed(post_order):
        depth = max(node_depth.get(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        layers[id(node.layer)] = node.layer
        node_depth[id(node)] = depth
        for tensor in node.inputs:
            parent = id(tensor.node)
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    return sorted(layers.values(), key=lambda layer: (-layer_depth[id(layer)], first_seen[id(layer)]))


def weight_keys(model):
    """``[(key, layer), ...]``: the group each layer's weights live under in
    a Keras weights file (``layers/<key>/vars``): the snake-case class name
    (``functional`` for a nested functional model), with ``_1``, ``_2``, ...
    for repeats, in Keras's layer order."""
    from nkeras.models.model import Model
    from nkeras.models.sequential import Sequential

    used, result = set(), []
    for layer in keras_layer_order(model):
        if isinstance(layer, Model):
            base = "sequential" if isinstance(layer, Sequential) else "functional"
        else:
            base = _snake_case(type(layer).__name__)
        key, count = base, 0
        while key in used:
            count += 1
            key = f"{base}_{count}"
        used.add(key)
        result.append((key, layer))
    return result


def weight_groups(model, prefix="layers/"):
    """``[(group, layer), ...]`` for every layer that holds weights itself,
    with a nested model's layers under its own group, as Keras writes them
    (``layers/functional/layers/dense/``)."""
    from nkeras.models.model import Model

    result = []
    for key, layer in weight_keys(model):
        if isinstance(layer, Model):
            result += weight_groups(layer, f"{prefix}{key}/layers/")
        else:
            result.append((f"{prefix}{key}/", layer))
    return result


# ---- writing ---------------------------------------------------------------------


def _layer_entry(layer):
    from nkeras.models.model import Model

    entry = model_config(layer) if isinstance(layer, Model) else serialize_keras_object(layer)
    nodes = layer._inbound_nodes
    # Keras's operation layers (NotEqual, Any) have no build step.
    if layer.built and nodes and nodes[0].inputs and not hasattr(layer, "keras_module"):
        shapes = [list(t.shape) for t in nodes[0].data_inputs]  # not the mask a layer reads
        entry["build_config"] = {"input_shape": shapes[0] if len(shapes) == 1 else shapes}
        if hasattr(layer, "keras_build_config"):  # a layer whose Keras build() takes named shapes
            entry["build_config"] = layer.keras_build_config(nodes[0])
    return entry


def _history(tensor, node_index):
    return [tensor.node.layer.name, node_index[id(tensor.node)], tensor.node.outputs.index(tensor)]


def model_config(model):
    """The top-level ``config.json`` object of ``model`` (without compile state)."""
    from nkeras.models.model import Model
    from nkeras.models.sequential import Sequential

    if type(model) not in (Model, Sequential):
        raise ValueError(
            f"Cannot save model '{model.name}' of class {type(model).__name__}: only Sequential and functional "
            "Model files can be written"
        )
    if isinstance(model, Sequential):
        return _sequential_config(model)
    return _functional_config(model)


def _sequential_config(model):
    layers = []
    if model.built:
        layers.append(serialize_keras_object(model.inputs[0].node.layer))
    layers += [_layer_entry(layer) for layer in model.layers]
    config = {"name": model.name, "trainable": model.trainable, "dtype": dtype_policy(_model_dtype(model)), "layers": layers}
    entry = {"module": "keras", "class_name": "Sequential", "config": config, "registered_name": None}
    if model.built:
        shape = list(model.inputs[0].shape)
        config["build_input_shape"] = shape
        entry["build_config"] = {"input_shape": shape}
    return entry


def _model_dtype(model):
    from nkeras import config

    return getattr(model, "_dtype", None) and model._dtype.name or config.floatx()


def _functional_config(model):
    graph_nodes = {id(t.node) for t in model.inputs} | {id(n) for n in model._graph.nodes}
    node_index = {}
    layers = []
    for layer in keras_layer_order(model):
        own = [node for node in layer._inbound_nodes if id(node) in graph_nodes]
        for index, node in enumerate(own):
            node_index[id(node)] = index
        entry = _layer_entry(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = [_node_entry(node, node_index) for node in own if node.inputs]
        layers.append(entry)

    def refs(tensors):
        histories = [_history(t, node_index) for t in tensors]
        return histories[0] if len(histories) == 1 else histories

    config = {
        "name": model.name, "trainable": model.trainable, "layers": layers,
        "input_layers": refs(model.inputs), "output_layers": refs(model.outputs),
    }
    return {
        "module": "keras.src.models.functional", "class_name": "Functional", "config": config,
        "registered_name": "Functional", "build_config": {"input_shape": None},
    }


def _node_entry(node, node_index):
    args, kwargs = node.layer.call_arguments(node)

    def write(value):
        if isinstance(value, (list, tuple)):
            return [write(item) for item in value]
        return _tensor_arg(value, node_index) if isinstance(value, KerasTensor) else value

    return {"args": write(list(args)), "kwargs": {key: write(value) for key, value in kwargs.items()}}


def _tensor_arg(tensor, node_index):
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": list(tensor.shape), "dtype": tensor.dtype.name, "keras_history": _history(tensor, node_index)},
    }


# ---- reading -----------------------------------------------------------------------


def model_from_config(entry, custom_objects=None, weight_count=None, filename="config"):
    """Rebuild a Sequential or functional model from its ``config.json`` object.

    Args:
        entry: the parsed ``config.json`` object.
        custom_objects: optional dict of name to class.
        weight_count: when given, the layers may create at most this many
            weight values (those the weights file holds).
        filename: the file's name, for error messages.
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise ValueError(f"{filename}: config.json must hold an object with a 'config' object")
    layers = entry["config"].get("layers")
    if not isinstance(layers, list) or len(layers) > MAX_LAYERS:
        raise ValueError(f"{filename}: the model config needs a 'layers' list (at most {MAX_LAYERS} layers)")
    budget = None if weight_count is None else _Budget(weight_count, filename)
    return nested_model_from_config(entry, custom_objects, budget, filename)


def nested_model_from_config(entry, custom_objects, budget, filename):
    """A model from its config entry (the whole file's, or a layer's when
    one model is nested in another), charging ``budget`` for its weights."""
    if not isinstance(entry.get("config"), dict) or not isinstance(entry["config"].get("layers"), list):
        raise ValueError(f"{filename}: a model entry needs a 'config' object with a 'layers' list")
    class_name = entry.get("class_name")
    config = entry["config"]
    layers = config["layers"]
    if len(layers) > MAX_LAYERS:
        raise ValueError(f"{filename}: the model config has more than {MAX_LAYERS} layers")
    name = config.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"{filename}: the model's name must be a string, got {_short(name)}")
    if class_name == "Sequential":
        model = _sequential_from_config(config, layers, custom_objects, budget, filename)
    elif class_name in ("Functional", "Model") and "input_layers" in config:
        model = _functional_from_config(config, layers, custom_objects, budget, filename)
    else:
        raise ValueError(
            f"{filename}: cannot load a model of class {_short(class_name)}; nkeras loads Sequential and "
            "functional models"
        )
    for layer in model.layers:
        restore_initializers(layer)
    if config.get("trainable") is False:
        model.trainable = False
    return model


def _sequential_from_config(config, layers, custom_objects, budget, filename):
    from nkeras.layers import Input, InputLayer
    from nkeras.models.sequential import Sequential

    built = [deserialize_layer(item, custom_objects, budget, f"{filename}: layer {index}")
             for index, item in enumerate(layers)]
    stack = built
    if not any(isinstance(layer, InputLayer) for layer in built):
        shape = config.get("build_input_shape")
        if isinstance(shape, list) and len(shape) > 1:
            stack = [Input(shape=tuple(shape[1:]))] + built
    try:
        return Sequential(stack, name=config.get("name"))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{filename}: cannot rebuild Sequential model: {error}") from error


def _reference(value, filename):
    if (
        isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
        and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < MAX_LAYERS for i in value[1:])
    ):
        return tuple(value)
    raise ValueError(f"{filename}: bad tensor reference {_short(value)}; expected [layer name, node index, tensor index]")


def _references(value, filename):
    """Flatten ``input_layers``/``output_layers``: one reference, a list, or a dict of them."""
    if isinstance(value, dict):
        return {key: _reference(item, filename) for key, item in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [_reference(value, filename)]
    if isinstance(value, list) and value:
        return [_reference(item, filename) for item in value]
    raise ValueError(f"{filename}: a functional model needs its input and output tensors, got {_short(value)}")


def _tensor_reference(arg, filename):
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__" and isinstance(arg.get("config"), dict):
        return _reference(arg["config"].get("keras_history"), filename)
    raise ValueError(f"{filename}: a layer call argument must be a tensor, got {_short(arg)}")


_PLAIN = (bool, int, float, str, type(None))


def _node_call(node, filename, layer_name):
    """A saved call's arguments, with tensors as references: ``(args,
    kwargs, references)``."""
    if not isinstance(node, dict) or not isinstance(node.get("args"), list) or not node["args"]:
        raise ValueError(f"{filename}: layer {layer_name!r} has a call node nkeras cannot rebuild: {_short(node)}")
    kwargs = node.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"{filename}: layer {layer_name!r} has call keyword arguments that are not an object: {_short(kwargs)}")
    references = []

    def read(value, depth=0):
        if isinstance(value, dict):
            references.append(_tensor_reference(value, filename))
            return references[-1]
        if isinstance(value, list) and depth < 2:
            return [read(item, depth + 1) for item in value]
        if isinstance(value, _PLAIN):
            return value
        raise ValueError(f"{filename}: layer {layer_name!r} is called with an argument nkeras cannot rebuild: {_short(value)}")

    args = [read(arg) for arg in node["args"]]
    # Keras records the mode it traced the graph in (training=False) for
    # layers whose call takes one; it fixes nothing at run time.
    kwargs = {str(key): read(value) for key, value in kwargs.items() if not (key == "training" and value is False)}
    return args, kwargs, references


def _functional_from_config(config, layers, custom_objects, budget, filename):
    from nkeras.layers import InputLayer
    from nkeras.models.model import Model

    created, calls = {}, []
    for index, item in enumerate(layers):
        layer = deserialize_layer(item, custom_objects, budget, f"{filename}: layer {index}")
        if layer.name in created:
            raise ValueError(f"{filename}: two layers are named {layer.name!r}")
        created[layer.name] = layer
        nodes = item.get("inbound_nodes", [])
        if not isinstance(nodes, list):
            raise ValueError(f"{filename}: 'inbound_nodes' of layer {layer.name!r} must be a list")
        if isinstance(layer, InputLayer):
            continue
        for node in nodes:
            calls.append((layer, *_node_call(node, filename, layer.name)))
    outputs = {(name, 0): layer._inbound_nodes[0].outputs for name, layer in created.items()
               if isinstance(layer, InputLayer)}
    _run_calls(calls, outputs, filename)

    def pick(references):
        if isinstance(references, dict):
            return {key: _output(outputs, ref, filename) for key, ref in references.items()}
        tensors = [_output(outputs, ref, filename) for ref in references]
        return tensors[0] if len(tensors) == 1 else tensors

    inputs = pick(_references(config.get("input_layers"), filename))
    model_outputs = pick(_references(config.get("output_layers"), filename))
    try:
        return Model(inputs, model_outputs, name=config.get("name"))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{filename}: cannot rebuild functional model: {error}") from error


def _run_calls(calls, outputs, filename):
    """Call each layer on its inputs once they exist (Kahn's algorithm over
    the calls); a layer's calls run in their listed order, so node indices
    match the file's."""
    keys, counts = [], {}
    for layer, _, _, _ in calls:
        keys.append((layer.name, counts.get(layer.name, 0)))
        counts[layer.name] = counts.get(layer.name, 0) + 1
    position = {key: i for i, key in enumerate(keys)}
    waiting_on, dependents = [], {}
    for i, ((name, node), (_, _, _, refs)) in enumerate(zip(keys, calls)):
        needs = {(ref[0], ref[1]) for ref in refs if (ref[0], ref[1]) not in outputs}
        if node > 0:
            needs.add((name, node - 1))
        unknown = [key for key in needs if key not in position]
        if unknown:
            raise ValueError(f"{filename}: layer {name!r} reads tensors that no layer makes: {sorted(unknown)[:5]}")
        waiting_on.append(len(needs))
        for key in needs:
            dependents.setdefault(key, []).append(i)
    ready = [i for i, count in enumerate(waiting_on) if count == 0]
    done = 0
    while ready:
        i = ready.pop()
        layer, args, kwargs, _ = calls[i]

        def resolve(value):
            if isinstance(value, tuple):
                return _output(outputs, value, filename)
            return [resolve(item) for item in value] if isinstance(value, list) else value

        try:
            result = layer(*[resolve(arg) for arg in args], **{key: resolve(value) for key, value in kwargs.items()})
        except (TypeError, ValueError, NotImplementedError, MemoryError) as error:
            raise ValueError(f"{filename}: cannot call layer {layer.name!r} on its inputs: {error}") from error
        outputs[keys[i]] = result if isinstance(result, list) else [result]
        done += 1
        for j in dependents.get(keys[i], ()):
            waiting_on[j] -= 1
            if waiting_on[j] == 0:
                ready.append(j)
    if done < len(calls):
        stuck = sorted({keys[i][0] for i, count in enumerate(waiting_on) if count})
        raise ValueError(f"{filename}: the model graph has a cycle through layers {stuck[:10]}")


def _output(outputs, reference, filename):
    name, node, index = reference
    tensors = outputs.get((name, node))
    if tensors is None or index >= len(tensors):
        raise ValueError(f"{filename}: no tensor {list(reference)} in the model graph")
    return tensors[index]


def deserialize_compile_config(config, custom_objects, filename):
    """``compile`` keyword arguments from a saved ``compile_config``."""
    if not isinstance(config, dict):
        raise ValueError(f"{filename}: compile_config must be an object, got {_short(config)}")
    what = f"{filename}: compile_config"
    optimizer = config.get("optimizer", "rmsprop")
    if isinstance(optimizer, dict):
        optimizer = deserialize_keras_object(optimizer, custom_objects, "optimizer", f"{what} optimizer")
    arguments = {
        "optimizer": optimizer,
        "loss": _objects(config.get("loss"), custom_objects, "loss", f"{what} loss"),
        "loss_weights": config.get("loss_weights"),
        "metrics": _objects(config.get("metrics"), custom_objects, "metric", f"{what} metrics"),
        "weighted_metrics": _objects(config.get("weighted_metrics"), custom_objects, "metric", f"{what} weighted_metrics"),
    }
    return arguments


def _objects(value, custom_objects, category, what):
    """Deserialize the objects inside a loss or metrics structure (strings,
    lists and dicts keyed by output name stay as they are)."""
    if isinstance(value, dict) and "class_name" in value:
        return deserialize_keras_object(value, custom_objects, category, what)
    if isinstance(value, dict):
        return {key: _objects(item, custom_objects, category, what) for key, item in value.items()}
    if isinstance(value, list):
        return [_objects(item, custom_objects, category, what) for item in value]
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{what}: expected names or serialized objects, got {_short(value)}")


def compile_config(model):
    """The ``compile_config`` object of a compiled model."""
    names = model.output_names
    losses = model._losses
    if len(names) == 1:
        loss = serialize_keras_object(losses[0])
    else:
        loss = {name: serialize_keras_object(item) for name, item in zip(names, losses) if item is not None}
    weights = list(model._loss_weights)
    metrics, weighted = model._metric_request
    return {
        "optimizer": serialize_keras_object(model.optimizer),
        "loss": loss,
        "loss_weights": None if all(w == 1.0 for w in weights) else weights,
        "metrics": _per_output(metrics, names),
        "weighted_metrics": _per_output(weighted, names),
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": "auto",
    }


def _per_output(requests, names):
    if not any(requests):
        return None
    if len(names) == 1:
        return [serialize_keras_object(item) for item in requests[0]]
    return {name: [serialize_keras_object(item) for item in items] for name, items in zip(names, requests) if items}
