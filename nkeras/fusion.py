"""Fusion of neighbouring nodes into one kernel call, decided when a plan is
made.

One pattern is fused: a Conv2D (3x3 kernel, stride and dilation 1, relu or
no activation) whose only reader is a MaxPooling2D with 2x2 windows, stride
2 and padding "valid", as in both blocks of the classic MNIST convnet. The
pair runs as one kernel each way (``nkeras.kernels.cpu.conv_pool``), which
never stores the convolution's output:

- a convolution on the model's one-channel image input (padding "valid" or
  "same"), whose input needs no gradient (the plan computes no input
  gradients), as ``conv2d_max_pool_forward``/``_backward``;
- a convolution that runs by Winograd (``BaseConv._uses_winograd``), as
  ``conv2d_winograd_max_pool_forward``/``_backward``.

Nothing a user sees changes: the layers, their weights and the model's
outputs are the same, only the schedule differs.
"""

from nkeras.kernels.codes import LINEAR, RELU
from nkeras.layers.convolutional import Conv2D
from nkeras.layers.pooling import MaxPooling2D


class FusedNode:
    """A plan node standing for several graph nodes: what the plan reads of
    a ``graph.Node`` (``layer``, ``inputs``, ``data_inputs``, ``mask_input``,
    ``outputs``)."""

    def __init__(self, layer, first, last):
        self.layer = layer
        self.inputs = list(first.inputs)
        self.data_inputs = list(first.data_inputs)
        self.mask_input = None
        self.outputs = list(last.outputs)


class ConvMaxPooling:
    """A Conv2D and the MaxPooling2D that reads it, as one plan step.

    Args:
        conv: the Conv2D layer (its weights are this step's weights).
        pool: the MaxPooling2D layer.
        input_shape: the convolution's input shape.
    """

    def parallel_kernels(self, input_shapes):
        """Its CPU kernels split the batch over Numba's threads (see Layer)."""
        return True

    def __init__(self, conv, pool, input_shape):
        self.conv, self.pool = conv, pool
        self.name = f"{conv.name}+{pool.name}"
        self.dtype = conv.dtype
        self._rectify = conv._code == RELU
        self._padding = conv._padding(tuple(input_shape))
        self._winograd = conv._uses_winograd()

    @property
    def trainable_weights(self):
        return self.conv.trainable_weights

    def check_runs_on(self, device):
        self.conv.check_runs_on(device)

    def output_is_view(self, training):
        return False

    def make_state(self, device, inputs, outputs, training):
        conv = self.conv
        shapes = {"argmax": tuple(outputs[0].shape)}
        if self._winograd:
            input_shape = tuple(inputs[0].shape)
            shapes.update(conv._scratch_shapes(input_shape, conv.compute_output_shape(input_shape), training))
        if not conv.use_bias:
            shapes["zero_bias"] = shapes["bias_grad"] = (conv.filters,)
        return {name: device.zeros(shape, self.dtype) for name, shape in shapes.items()}

    def forward(self, ctx, inputs, outputs, state):
        conv = self.conv
        bias = conv.bias.value if conv.use_bias else state["zero_bias"]
        if self._winograd:
            ctx.ops.conv2d_winograd_max_pool_forward(
                inputs[0], conv.kernel.value, bias, self._padding, self._rectify, state["padded"], state["v"],
                state["u"], state["m"], outputs[0], state["argmax"],
            )
        else:
            ctx.ops.conv2d_max_pool_forward(
                inputs[0], conv.kernel.value, bias, self._padding, self._rectify, outputs[0], state["argmax"]
            )

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        conv = self.conv
        bias_grad = conv.bias.grad if conv.use_bias else state["bias_grad"]
        if self._winograd:
            need_dx = input_grads[0] is not None
            ctx.ops.conv2d_winograd_max_pool_backward(
                outputs[0], output_grads[0], state["argmax"], self._padding, self._rectify, state["padded"],
                state["v"], state["u"], state["m"], state["du"], conv.kernel.grad, bias_grad,
                input_grads[0] if need_dx else inputs[0], need_dx,
            )
        else:
            ctx.ops.conv2d_max_pool_backward(
                inputs[0], outputs[0], output_grads[0], state["argmax"], self._padding, self._rectify,
                conv.kernel.grad, bias_grad,
            )


def _fusible_conv(layer, tensor, graph_inputs, input_grads):
    if not (
        type(layer) is Conv2D
        and all(isinstance(length, int) for length in tensor.shape[1:])
        and layer.kernel_size == (3, 3)
        and layer.strides == (1, 1)
        and layer.dilation_rate == (1, 1)
        and layer._code in (LINEAR, RELU)
    ):
        return False
    if layer._uses_winograd():
        return True
    return tensor.shape[-1] == 1 and id(tensor) in graph_inputs and not input_grads


def _fusible_pool(layer):
    return (
        type(layer) is MaxPooling2D
        and layer.pool_size == (2, 2)
        and layer.strides == (2, 2)
        and layer.padding == "valid"
    )


def fuse(graph, input_grads):
    """The nodes a plan runs: ``graph.nodes`` with each fusible pair
    replaced by one ``FusedNode`` at the first one's place.

    Args:
        graph: the model's Graph.
        input_grads: whether the plan computes the gradients of the inputs.
    """
    graph_inputs = {id(t) for t in graph.inputs}
    graph_outputs = {id(t) for t in graph.outputs}
    fused, absorbed = {}, set()
    for node in graph.nodes:
        if len(node.inputs) != 1 or len(node.outputs) != 1:
            continue
        if not _fusible_conv(node.layer, node.inputs[0], graph_inputs, input_grads):
            continue
        (output,) = node.outputs
        readers = graph.consumers.get(id(output), ())
        if len(readers) != 1 or id(output) in graph_outputs:
            continue
        reader = graph.nodes[readers[0]]
        if len(reader.inputs) == 1 and _fusible_pool(reader.layer):
            layer = ConvMaxPooling(node.layer, reader.layer, node.inputs[0].shape)
            fused[id(node)] = FusedNode(layer, node, reader)
            absorbed.add(id(reader))
    return [fused.get(id(node), node) for node in graph.nodes if id(node) not in absorbed]
