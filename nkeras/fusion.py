"""Fusion of neighbouring nodes into one kernel call, decided when a plan is
made.

One pattern is fused: a Conv2D on the model's one-channel image input (3x3
kernel, stride and dilation 1, relu or no activation, padding "valid" or
"same") whose only reader is a MaxPooling2D with 2x2 windows and stride 2,
padding "valid" — the first block of the classic MNIST convnet. The pair
runs as ``conv2d_max_pool_forward``/``_backward``
(``nkeras.kernels.cpu.conv_pool``), which never store the convolution's
output. Nothing a user sees changes: the layers, their weights and the
model's outputs are the same, only the schedule differs.

The convolution's input must need no gradient (it is the model's input and
the plan computes no input gradients): the fused backward computes the
kernel and bias gradients only.
"""

from nkeras.kernels.codes import LINEAR, RELU
from nkeras.layers.convolutional import Conv2D
from nkeras.layers.pooling import MaxPooling2D


class FusedNode:
    """A plan node standing for several graph nodes: read by the plan as a
    ``graph.Node`` (``layer``, ``inputs``, ``data_inputs``, ``outputs``)."""

    def __init__(self, layer, first, last):
        self.layer = layer
        self.inputs = list(first.inputs)
        self.data_inputs = list(first.data_inputs)
        self.mask_input = None
        self.single_input = first.single_input
        self.outputs = list(last.outputs)


class ConvMaxPooling:
    """A Conv2D and the MaxPooling2D that reads it, as one plan step.

    Args:
        conv: the Conv2D layer (its weights are this step's weights).
        pool: the MaxPooling2D layer.
        input_shape: the convolution's input shape.
    """

    def __init__(self, conv, pool, input_shape):
        self.conv, self.pool = conv, pool
        self.name = f"{conv.name}+{pool.name}"
        self.dtype = conv.dtype
        self._rectify = conv._code == RELU
        self._padding = conv._padding(tuple(input_shape))

    @property
    def trainable_weights(self):
        return self.conv.trainable_weights

    def check_runs_on(self, device):
        self.conv.check_runs_on(device)

    def output_is_view(self, training):
        return False

    def make_state(self, device, inputs, outputs, training):
        state = {"argmax": device.zeros(tuple(outputs[0].shape), self.dtype)}
        if not self.conv.use_bias:
            state["zero_bias"] = device.zeros((self.conv.filters,), self.dtype)
            state["bias_grad"] = device.zeros((self.conv.filters,), self.dtype)
        return state

    def forward(self, ctx, inputs, outputs, state):
        conv = self.conv
        bias = conv.bias.value if conv.use_bias else state["zero_bias"]
        ctx.ops.conv2d_max_pool_forward(
            inputs[0], conv.kernel.value, bias, self._padding, self._rectify, outputs[0], state["argmax"]
        )

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        conv = self.conv
        bias_grad = conv.bias.grad if conv.use_bias else state["bias_grad"]
        ctx.ops.conv2d_max_pool_backward(
            inputs[0], outputs[0], output_grads[0], state["argmax"], self._padding, self._rectify, conv.kernel.grad,
            bias_grad,
        )


def _fusible_conv(layer, tensor, graph_inputs, input_grads):
    return (
        type(layer) is Conv2D
        and id(tensor) in graph_inputs
        and not input_grads
        and all(isinstance(length, int) for length in tensor.shape[1:])
        and tensor.shape[-1] == 1
        and layer.kernel_size == (3, 3)
        and layer.strides == (1, 1)
        and layer.dilation_rate == (1, 1)
        and layer._code in (LINEAR, RELU)
    )


def _fusible_pool(layer):
    return type(layer) is MaxPooling2D and layer.pool_size == (2, 2) and layer.strides == (2, 2) and layer.padding == "valid"


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
