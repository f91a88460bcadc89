"""Symbolic tensors, the layer graph and its buffer plan.

``Input(...)`` returns a ``KerasTensor``; calling a layer on KerasTensors
records a ``Node``. ``Graph`` walks back from a model's outputs, checks the
graph and orders its nodes. A ``Plan`` preallocates every buffer one batch
size needs (forward values, per-node state, gradients) and runs the forward
and backward kernels node by node over them.
"""

import contextlib

import numpy as np


class KerasTensor:
    """A symbolic tensor: a shape (batch dimension ``None``), a dtype, and
    the node that produces it.

    Args:
        shape: tuple of dimensions, ``None`` for the batch dimension.
        dtype: NumPy dtype of the values.
        name: a readable name, unique within its graph.
        node: the ``Node`` that computes it (set by ``Node``).
    """

    def __init__(self, shape, dtype, name, node=None, is_mask=False):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.name = name
        self.node = node
        self.is_mask = is_mask
        # The mask of padded timesteps that travels with this tensor (a
        # KerasTensor with ``is_mask``, shape (None, timesteps)), or None.
        self._keras_mask = None

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


class Node:
    """One call of a layer on symbolic tensors.

    Args:
        layer: the layer called.
        inputs: list of KerasTensors it was called on (empty for an InputLayer).
        output_shapes: list of the output shapes.
        mask_input: the mask the layer reads (``reads_mask`` layers), kept
            as the last of ``inputs`` so the plan knows its liveness; the
            layer's kernels get it as ``state["mask"]``.
        makes_mask: whether the last output is a mask the layer computes
            (Embedding with ``mask_zero``, Masking).
    """

    def __init__(self, layer, inputs, output_shapes, mask_input=None, makes_mask=False):
        self.layer = layer
        self.inputs = list(inputs) + ([mask_input] if mask_input is not None else [])
        self.data_inputs = list(inputs)
        self.mask_input = mask_input
        # Whether the layer was called on one tensor rather than a list.
        self.single_input = len(self.data_inputs) == 1
        suffix = f"_{len(layer._inbound_nodes)}" if layer._inbound_nodes else ""
        self.outputs = [
            KerasTensor(shape, layer.dtype, f"{layer.name}{suffix}" + (f"_{i}" if len(output_shapes) > 1 else ""), self)
            for i, shape in enumerate(output_shapes)
        ]
        if makes_mask:
            self.outputs[-1].is_mask = True
            self.outputs[-1].name = f"{layer.name}{suffix}_mask"
        layer._inbound_nodes.append(self)


class GraphError(ValueError):
    """A model's graph is malformed (disconnected, unused input, ...)."""


class Graph:
    """The nodes between ``inputs`` and ``outputs``, in execution order.

    Args:
        inputs: list of KerasTensors made by ``Input``.
        outputs: list of KerasTensors computed from them.
    """

    def __init__(self, inputs, outputs):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        for tensor in self.inputs:
            if tensor.node is None or tensor.node.inputs:
                raise GraphError(
                    f"Model inputs must come from keras.Input(); {tensor.name!r} was produced by "
                    f"layer '{tensor.node.layer.name if tensor.node else '?'}'"
                )
        self.nodes = self._order()
        self.consumers = self._consumers()
        self._check_inputs_used()

    def _order(self):
        input_ids = {id(t) for t in self.inputs}
        order, done = [], set()
        stack = [(t.node, False) for t in reversed(self.outputs)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in done:
                continue
            if expanded:
                done.add(id(node))
                order.append(node)
                continue
            stack.append((node, True))
            for tensor in reversed(node.inputs):
                producer = tensor.node
                if not producer.inputs and id(tensor) not in input_ids:
                    raise GraphError(
                        f"Graph disconnected: layer '{node.layer.name}' reads tensor {tensor.name!r}, "
                        f"which comes from an Input that is not among the model's inputs "
                        f"{[t.name for t in self.inputs]}"
                    )
                if id(producer) not in done:
                    stack.append((producer, False))
        return [node for node in order if node.inputs]

    def _consumers(self):
        consumers = {}
        for index, node in enumerate(self.nodes):
            for tensor in node.inputs:
                consumers.setdefault(id(tensor), []).append(index)
        return consumers

    def _check_inputs_used(self):
        output_ids = {id(t) for t in self.outputs}
        for tensor in self.inputs:
            if id(tensor) not in self.consumers and id(tensor) not in output_ids:
                raise GraphError(
                    f"Model input {tensor.name!r} is not used to compute any of the outputs "
                    f"{[t.name for t in self.outputs]}"
                )

    @property
    def layers(self):
        """Every layer once, input layers first, in execution order."""
        seen, layers = set(), []
        for layer in [t.node.layer for t in self.inputs] + [n.layer for n in self.nodes]:
            if id(layer) not in seen:
                seen.add(id(layer))
                layers.append(layer)
        return layers


class _Pool:
    """Reusable device arrays, keyed by shape and dtype."""

    def __init__(self, device):
        self.device = device
        self.free = {}

    def acquire(self, shape, dtype):
        stack = self.free.get((tuple(shape), np.dtype(dtype)))
        return stack.pop() if stack else self.device.empty(shape, dtype)

    def release(self, array):
        self.free.setdefault((tuple(array.shape), np.dtype(array.dtype)), []).append(array)


class ExecutionContext:
    """What a layer's kernels need besides their arrays: the device's ops,
    whether this is a training pass, and the step count (dropout seeds)."""

    def __init__(self, device, training):
        self.device = device
        self.ops = device.ops
        self.training = training
        self.step = 0


class _Step:
    __slots__ = ("layer", "inputs", "outputs", "state", "output_grads", "input_grads", "accumulate", "weight_scratch")

    def __init__(self, layer, inputs, outputs, state):
        self.layer, self.inputs, self.outputs, self.state = layer, inputs, outputs, state
        self.output_grads, self.input_grads, self.accumulate = None, None, ()
        # For a layer called at several nodes: (variable, scratch) pairs; this
        # node's weight gradients go to the scratch and are added to the
        # variable's gradient, so the calls' gradients sum.
        self.weight_scratch = ()


def _concrete(shape, batch_size):
    return tuple(batch_size if dim is None else dim for dim in shape)


def _as_2d(array):
    return array.reshape(-1, tuple(array.shape)[-1]) if array.ndim != 2 else array


class Plan:
    """Every buffer one batch size needs, allocated once and reused each step.

    Forward values are planned by liveness: in inference a buffer whose last
    reader has run is handed to a later node; in training they stay alive
    for the backward pass, and gradient buffers are reused instead. Layers
    that only reshape (Flatten, Reshape, and Dropout outside training) get a
    view of their input and run no kernel.

    A layer called at several nodes (a shared layer) sums the weight
    gradients of its calls. Neighbouring nodes that one kernel can run are
    fused first (``nkeras.fusion``); ``nodes`` is what the plan runs.

    Args:
        graph: the model's Graph.
        batch_size: rows per batch.
        device: the device that owns the buffers.
        training: whether to plan the backward pass.
        input_arrays: buffers to use as the graph's inputs (a model nested
            in another reads its caller's buffers); allocated when None.
        input_grads: whether to compute the gradients of the inputs too
            (``self.input_grads``; None for an input no gradient reaches).
    """

    def __init__(self, graph, batch_size, device, training, input_arrays=None, input_grads=False):
        from nkeras.fusion import fuse  # it reads layer classes, and they import this module

        self.graph = graph
        self.nodes = fuse(graph, input_grads)
        self.batch_size = batch_size
        self.device = device
        self.training = training
        self.context = ExecutionContext(device, training)
        self.values = {}
        self._step_of = {}
        self.forward_steps = []
        self.backward_steps = []
        self.output_grads = []
        self.input_grads = []
        self._plan_forward(input_arrays)
        if training:
            self._plan_backward(input_grads)
        # Steps whose CPU kernels split their work over Numba's threads run
        # with BLAS on one thread (``CpuDevice.parallel_kernel_scope``).
        self._parallel_kernels = any(
            s.layer.parallel_kernels([tuple(a.shape) for a in s.inputs]) for s in self.forward_steps
        )

    @property
    def input_buffers(self):
        return [self.values[id(t)] for t in self.graph.inputs]

    @property
    def output_buffers(self):
        return [self.values[id(t)] for t in self.graph.outputs]

    def _plan_forward(self, input_arrays):
        graph, pool = self.graph, _Pool(self.device)
        for k, tensor in enumerate(graph.inputs):
            shape = _concrete(tensor.shape, self.batch_size)
            given = None if input_arrays is None else input_arrays[k]
            self.values[id(tensor)] = self.device.empty(shape, tensor.dtype) if given is None else given.reshape(shape)
        output_masks = [t._keras_mask for t in graph.outputs]
        pinned = {id(t) for t in graph.inputs} | {id(t) for t in graph.outputs}
        pinned |= {id(m) for m in output_masks if m is not None}
        last_reader = {}
        for index, node in enumerate(self.nodes):
            for tensor in node.inputs:
                last_reader[id(tensor)] = index
        storage_of, readers_left = {}, {}

        for index, node in enumerate(self.nodes):
            layer = node.layer
            layer.check_runs_on(self.device)
            inputs = [self.values[id(t)] for t in node.data_inputs]
            if layer.output_is_view(self.training):
                (tensor,) = node.outputs
                view = inputs[0].reshape(_concrete(tensor.shape, self.batch_size))
                self.values[id(tensor)] = view
                root = storage_of.get(id(node.inputs[0]), id(node.inputs[0]))
                storage_of[id(tensor)] = root
                readers_left[root] = readers_left.get(root, 0) + 1
                if id(tensor) in pinned:
                    pinned.add(root)
            else:
                outputs = []
                for tensor in node.outputs:
                    shape = _concrete(tensor.shape, self.batch_size)
                    if self.training or id(tensor) in pinned:
                        array = self.device.empty(shape, tensor.dtype)
                    else:
                        array = pool.acquire(shape, tensor.dtype)
                    self.values[id(tensor)] = array
                    storage_of[id(tensor)] = id(tensor)
                    readers_left[id(tensor)] = 1
                    outputs.append(array)
                state = layer.make_state(self.device, inputs, outputs, self.training)
                if node.mask_input is not None:
                    state["mask"] = self.values[id(node.mask_input)]
                step = _Step(layer, inputs, outputs, state)
                self._step_of[id(node)] = step
                self.forward_steps.append(step)
            if not self.training:
                self._release_dead_inputs(node, index, last_reader, storage_of, readers_left, pinned, pool)
        # The masks of padded steps that travel with the outputs weight their losses.
        self.output_masks = [None if m is None else self.values.get(id(m)) for m in output_masks]

    def _release_dead_inputs(self, node, index, last_reader, storage_of, readers_left, pinned, pool):
        for tensor in {id(t): t for t in node.inputs}.values():
            if last_reader.get(id(tensor)) != index:
                continue
            root = storage_of.get(id(tensor), id(tensor))
            readers_left[root] = readers_left.get(root, 1) - 1
            if readers_left[root] <= 0 and root not in pinned:
                pool.release(self.values[root])

    def _plan_backward(self, input_grads):
        graph, pool = self.graph, _Pool(self.device)
        requires_grad = {id(t): input_grads for t in graph.inputs}
        for node in self.nodes:
            flows = bool(node.layer.trainable_weights) or any(requires_grad[id(t)] for t in node.data_inputs)
            for tensor in node.outputs:
                requires_grad[id(tensor)] = flows and not tensor.is_mask

        grads, written = {}, set()
        for tensor in graph.outputs:
            if id(tensor) not in grads:
                grads[id(tensor)] = self.device.zeros(self.values[id(tensor)].shape, tensor.dtype)
            written.add(id(tensor))
        self.output_grads = [grads[id(t)] for t in graph.outputs]
        pinned = {id(t) for t in graph.outputs}
        weights_written = set()

        for node in reversed(self.nodes):
            (out_grads, free_after) = self._output_grads(node, grads, requires_grad)
            if out_grads is None:
                continue
            layer = node.layer
            single_consumer = len(graph.consumers.get(id(node.inputs[0]), ())) == 1
            if layer.output_is_view(True) and single_consumer:
                source = node.inputs[0]
                if requires_grad[id(source)]:
                    grads[id(source)] = out_grads[0].reshape(self.values[id(source)].shape)
                    written.add(id(source))
                    if id(node.outputs[0]) in pinned:
                        pinned.add(id(source))
                continue
            step = self._step_of.get(id(node)) or _Step(
                layer, [self.values[id(t)] for t in node.data_inputs], [self.values[id(t)] for t in node.outputs], {}
            )
            input_grads, accumulate, scratches = [], [], []
            for tensor in node.data_inputs:
                if not requires_grad[id(tensor)]:
                    input_grads.append(None)
                    continue
                shape = self.values[id(tensor)].shape
                if id(tensor) not in written:
                    grads[id(tensor)] = pool.acquire(shape, tensor.dtype)
                    written.add(id(tensor))
                    input_grads.append(grads[id(tensor)])
                else:
                    scratch = pool.acquire(shape, tensor.dtype)
                    input_grads.append(scratch)
                    scratches.append(scratch)
                    accumulate.append((_as_2d(grads[id(tensor)]), _as_2d(scratch)))
            step.output_grads, step.input_grads, step.accumulate = out_grads, input_grads, tuple(accumulate)
            step.weight_scratch = self._weight_scratch(layer, weights_written)
            self.backward_steps.append(step)
            for scratch in scratches:
                pool.release(scratch)
            for tensor_id in free_after:
                if tensor_id not in pinned:
                    pool.release(grads[tensor_id])
        self.input_grads = [grads.get(id(t)) for t in graph.inputs]

    def _weight_scratch(self, layer, weights_written):
        """Scratch gradients for the weights an earlier-planned node of the
        same layer already writes (the first writer overwrites, later ones add)."""
        scratch = []
        for variable in layer.trainable_weights:
            if id(variable) in weights_written:
                scratch.append((variable, self.device.zeros(variable.shape, variable.dtype)))
            weights_written.add(id(variable))
        return tuple(scratch)

    def _output_grads(self, node, grads, requires_grad):
        """The gradient buffers of a node's outputs (None for a mask), or None
        when no gradient reaches it; also which of them may be reused once
        it has run."""
        if not any(requires_grad[id(t)] for t in node.outputs):
            return None, ()
        out_grads, free_after = [], []
        for tensor in node.outputs:
            if tensor.is_mask:
                out_grads.append(None)
                continue
            if id(tensor) not in grads:
                grads[id(tensor)] = self.device.zeros(self.values[id(tensor)].shape, tensor.dtype)
            else:
                free_after.append(id(tensor))
            out_grads.append(grads[id(tensor)])
        return out_grads, free_after

    def _kernel_scope(self):
        return self.device.parallel_kernel_scope() if self._parallel_kernels else contextlib.nullcontext()

    def forward(self, step):
        """Run every forward kernel over the current input buffers."""
        context = self.context
        context.step = step
        with self._kernel_scope():
            for s in self.forward_steps:
                s.layer.forward(context, s.inputs, s.outputs, s.state)

    def backward(self):
        """Run every backward kernel; the loss has filled ``output_grads``."""
        context = self.context
        add_into = context.ops.add_into
        with self._kernel_scope():
            for s in self.backward_steps:
                if s.weight_scratch:
                    self._backward_shared(context, s)
                else:
                    s.layer.backward(context, s.inputs, s.outputs, s.state, s.output_grads, s.input_grads)
                for target, scratch in s.accumulate:
                    add_into(target, scratch)

    @staticmethod
    def _backward_shared(context, s):
        """Run a shared layer's backward with its weight gradients pointed at
        scratch buffers, then add them to the real ones."""
        targets = [variable.grad for variable, _ in s.weight_scratch]
        for variable, scratch in s.weight_scratch:
            variable.grad = scratch
        try:
            s.layer.backward(context, s.inputs, s.outputs, s.state, s.output_grads, s.input_grads)
        finally:
            for (variable, _), target in zip(s.weight_scratch, targets):
                variable.grad = target
        for target, (_, scratch) in zip(targets, s.weight_scratch):
            context.ops.add_into(target.reshape(1, -1), scratch.reshape(1, -1))
