"""Finite-difference gradient check of one layer, driven through its
forward/backward kernels in float64."""

import numpy as np

from nkeras.backend import get_device
from nkeras.graph import ExecutionContext
from tests.gradcheck import numerical_grad


def run_layer(layer, inputs, training=True, step=3):
    """Forward ``layer`` on ``inputs`` (list of arrays); returns outputs and state."""
    context = ExecutionContext(get_device("cpu"), training)
    context.step = step
    out_shape = layer.compute_output_shape([(None,) + a.shape[1:] for a in inputs] if len(inputs) > 1 else (None,) + inputs[0].shape[1:])
    outputs = [np.empty((inputs[0].shape[0],) + tuple(out_shape[1:]), np.float64)]
    state = {k: np.zeros(s, np.float64) for k, s in layer.state_shapes([a.shape for a in inputs], training).items()}
    if layer.output_is_view(training):
        outputs[0][...] = inputs[0].reshape(outputs[0].shape)
    else:
        layer.forward(context, inputs, outputs, state)
    return context, outputs, state


def check_layer_gradients(layer, input_shape, rng, eps=1e-6, rtol=1e-5, atol=1e-7, training=True):
    """Compare the layer's analytic input and weight gradients with central
    differences of ``sum(output * probe)``. The layer must use float64."""
    x = rng.standard_normal(input_shape)
    if not layer.built:
        layer.build((None,) + tuple(input_shape[1:]))
        layer.built = True
    for variable in layer.weights:
        variable.assign(rng.standard_normal(variable.shape) * 0.5)
        variable.grad = np.zeros(variable.shape)

    context, outputs, state = run_layer(layer, [x], training)
    probe = rng.standard_normal(outputs[0].shape)

    def objective():
        return float(np.sum(run_layer(layer, [x], training)[1][0] * probe))

    dx = np.zeros_like(x)
    layer.backward(context, [x], outputs, state, [probe.copy()], [dx])

    numeric_dx = numerical_grad(lambda _: objective(), x, eps)
    np.testing.assert_allclose(dx, numeric_dx, rtol=rtol, atol=atol, err_msg=f"{layer.name}: input gradient")

    for variable in layer.trainable_weights:
        numeric = numerical_grad(lambda _: objective(), variable.value, eps)
        np.testing.assert_allclose(variable.grad, numeric, rtol=rtol, atol=atol, err_msg=f"{layer.name}: {variable.name}")
