"""``check_gradients``: a layer's or a loss' analytic gradients against
central finite differences, in float64.

A layer is checked on a float64 copy made from its config, so the object
passed in is left as it was: the copy is called on symbolic inputs (the
path a model takes, so ``build`` and the shape checks run), then driven
through ``forward`` and ``backward`` on the CPU with the state its
``make_state`` gives. The scalar differentiated is ``sum(output * probe)`` with
a random ``probe`` per output, so every output element counts. A loss is
checked through ``Loss.compute``, the call the training step makes, with
random sample weights.
"""

import numpy as np

from nkeras import losses as losses_module
from nkeras.backend import get_device
from nkeras.graph import ExecutionContext
from nkeras.layers.layer import Input, Layer

DOCS = "docs/custom_layers.md"


class GradientResult:
    """How one gradient compares with its finite differences.

    Attributes:
        name: "input", "input 1", a weight's name, or "y_pred" for a loss.
        shape: the gradient's shape.
        max_abs_error: the largest ``|analytic - numeric|``.
        max_rel_error: the largest ``|analytic - numeric| / max(|numeric|, atol)``.
        worst_index: where ``|analytic - numeric| - rtol * |numeric|`` is largest.
        analytic, numeric: the two gradients (float64 arrays).
        passed: whether every element is within ``atol + rtol * |numeric|``.
    """

    def __init__(self, name, analytic, numeric, rtol, atol):
        self.name = name
        self.analytic = analytic
        self.numeric = numeric
        self.shape = tuple(numeric.shape)
        error = np.abs(analytic - numeric)
        error = np.where(np.isnan(analytic), np.inf, error)
        self.max_abs_error = float(error.max()) if error.size else 0.0
        self.max_rel_error = float((error / np.maximum(np.abs(numeric), atol)).max()) if error.size else 0.0
        excess = error - rtol * np.abs(numeric)
        self.worst_index = np.unravel_index(int(np.argmax(excess)), self.shape) if error.size else ()
        self.passed = bool(np.all(excess <= atol))

    def row(self):
        where = self.worst_index
        analytic = self.analytic[where] if self.analytic.size else float("nan")
        numeric = self.numeric[where] if self.numeric.size else float("nan")
        return (
            f"  {'ok  ' if self.passed else 'FAIL'} {self.name:<16} {self.shape!s:<16} {self.max_abs_error:11.3e} "
            f"{self.max_rel_error:11.3e}  {tuple(int(i) for i in where)!s:<14} {analytic:13.6e} {numeric:13.6e}"
        )


class GradientReport:
    """Every gradient ``check_gradients`` compared.

    Attributes:
        subject: the checked object, described (``"Dense 'dense'"``).
        results: the ``GradientResult`` of each gradient, inputs first.
        passed: whether every gradient matched.
    """

    def __init__(self, subject, results, rtol, atol):
        self.subject = subject
        self.results = list(results)
        self.rtol = rtol
        self.atol = atol

    @property
    def passed(self):
        return all(result.passed for result in self.results)

    def __getitem__(self, name):
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"{self.subject} has no gradient named {name!r}; it has {[r.name for r in self.results]}")

    def __str__(self):
        failed = sum(not result.passed for result in self.results)
        count = len(self.results)
        verdict = ("it matches" if count == 1 else "all match") if not failed else f"{failed} of {count} do not match"
        lines = [
            (f"check_gradients({self.subject}): {count} gradient{'s' if count != 1 else ''}, {verdict} "
             f"(allowed: |analytic - numeric| <= {self.atol:g} + {self.rtol:g} * |numeric|)"),
            (f"       {'gradient':<16} {'shape':<16} {'max abs err':>11} {'max rel err':>11}  {'worst at':<14} "
             f"{'analytic':>13} {'numeric':>13}"),
        ]
        lines += [result.row() for result in self.results]
        if any(np.isnan(result.analytic).any() for result in self.results):
            lines.append("  (NaN in an analytic gradient: the backward did not write every element, or divided by zero)")
        return "\n".join(lines)

    __repr__ = __str__


class GradientCheckError(AssertionError):
    """A gradient does not match its finite differences; ``report`` has the details."""

    def __init__(self, report):
        super().__init__(str(report))
        self.report = report


def check_gradients(layer_or_loss, input_shape=None, *, inputs=None, mask=None, call=None, seed=0,
                    eps=1e-6, rtol=1e-5, atol=1e-7, training=True, random_weights=True):
    """Compare analytic gradients with central finite differences in float64.

    For a layer: the gradient of every floating-point input and of every
    trainable weight. For a loss: ``d loss_sum / d y_pred`` as
    ``Loss.compute`` writes it (with random sample weights and a scale).

    Args:
        layer_or_loss: a ``Layer`` (built or not, any dtype) or a ``Loss``.
        input_shape: the shape of the random input batch, batch size first,
            e.g. ``(3, 8)`` (a batch size of None means 2); a list of shapes
            for a layer with several inputs. For a loss, the shape of ``y_pred`` (``y_true`` is drawn
            to fit: class ids for a sparse loss, else values in (0.1, 0.9)).
        inputs: arrays to use instead of random ones (then ``input_shape``
            may be omitted). Integer arrays (class ids, token ids) are
            passed to the layer as floats and get no gradient check. For a
            loss, the pair ``(y_true, y_pred)``.
        mask: for a layer that reads a mask, a (batch, timesteps) array of
            1.0 (keep) and 0.0 (padded step), given as ``state["mask"]``.
        call: a function ``call(layer, inputs, mask)`` that calls the layer
            on the list of symbolic ``inputs`` (and the symbolic ``mask`` or
            None), for a layer whose call takes its tensors as separate
            arguments or takes options, e.g. ``lambda layer, (q, v), mask:
            layer(q, v, use_causal_mask=True)``. By default the layer is
            called on the input (the list of inputs when there are several).
        seed: seed of the random inputs, weights and probes.
        eps: the finite-difference step.
        rtol, atol: an element passes when ``|analytic - numeric| <= atol +
            rtol * |numeric|``.
        training: run the layer in training mode (dropout, batch statistics).
        random_weights: replace the trainable weights with draws from
            N(0, 0.5^2), so that zero biases and unit scales cannot hide a
            wrong gradient; False keeps the layer's own values.

    Returns:
        a ``GradientReport`` when every gradient matches.

    Raises:
        GradientCheckError (an AssertionError): a gradient does not match;
            its message is the report's table.
    """
    rng = np.random.default_rng(seed)
    if isinstance(layer_or_loss, losses_module.Loss):
        report = _check_loss(layer_or_loss, input_shape, inputs, rng, eps, rtol, atol)
    elif isinstance(layer_or_loss, Layer):
        report = _check_layer(layer_or_loss, input_shape, inputs, mask, call, rng, eps, rtol, atol, training,
                              random_weights)
    else:
        raise TypeError(
            f"check_gradients: expected a keras.layers.Layer or a keras.losses.Loss, got {type(layer_or_loss).__name__}"
        )
    if not report.passed:
        raise GradientCheckError(report)
    return report


def _central_differences(objective, array, eps):
    """d objective() / d array, perturbing ``array`` in place and restoring it."""
    grad = np.empty(array.shape, np.float64)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        plus = objective()
        array[index] = saved - eps
        minus = objective()
        array[index] = saved
        grad[index] = (plus - minus) / (2.0 * eps)
    return grad


# ---- layers ----------------------------------------------------------------------


def _describe(layer):
    return f"{type(layer).__name__} '{layer.name}'"


def _float64_copy(layer):
    config = layer.get_config()
    if not isinstance(config, dict):
        raise TypeError(f"check_gradients: {_describe(layer)}.get_config() must return a dict, got {config!r}")
    try:
        return type(layer).from_config({**config, "dtype": "float64"})
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"check_gradients: cannot make a float64 copy of {_describe(layer)} from its config ({error}). "
            f"Give the layer a get_config() that returns its constructor arguments (see {DOCS})"
        ) from error


def _input_arrays(input_shape, inputs, rng, owner):
    """The float64 input batch and, per input, whether it is differentiable."""
    if inputs is not None:
        arrays = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        arrays = [np.asarray(a) for a in arrays]
        differentiable = [np.issubdtype(a.dtype, np.floating) for a in arrays]
        return [np.array(a, np.float64) for a in arrays], differentiable, isinstance(inputs, (list, tuple))
    if input_shape is None:
        raise ValueError(f"check_gradients: {owner}: pass input_shape (batch size first) or inputs")
    several = isinstance(input_shape, list) or (
        isinstance(input_shape, tuple) and input_shape and all(isinstance(s, (tuple, list)) for s in input_shape)
    )
    shapes = [tuple(s) for s in input_shape] if several else [tuple(input_shape)]
    for shape in shapes:
        if not shape or any(d is not None and (not isinstance(d, (int, np.integer)) or d <= 0) for d in shape) or any(
            d is None for d in shape[1:]
        ):
            raise ValueError(
                f"check_gradients: {owner}: input shapes hold the batch size and then positive dimensions, "
                f"e.g. (3, 8); got {shape}"
            )
    shapes = [(2,) + s[1:] if s[0] is None else s for s in shapes]
    return [rng.standard_normal(s) for s in shapes], [True] * len(shapes), several


def _check_layer(layer, input_shape, inputs, mask, call, rng, eps, rtol, atol, training, random_weights):
    owner = _describe(layer)
    arrays, differentiable, several = _input_arrays(input_shape, inputs, rng, owner)
    copy = _float64_copy(layer)
    symbols = [Input(shape=a.shape[1:], dtype="float64") for a in arrays]
    mask_array = mask_symbol = None
    if mask is not None:
        mask_array = np.array(mask, np.float64)
        if not copy.reads_mask:
            raise ValueError(f"check_gradients: {owner} reads no mask (its reads_mask is False), so `mask` has no use")
        if mask_array.shape != arrays[0].shape[:2]:
            raise ValueError(
                f"check_gradients: {owner}: the mask must have shape (batch, timesteps) = {arrays[0].shape[:2]}, "
                f"got {mask_array.shape}"
            )
        mask_symbol = Input(shape=mask_array.shape[1:], dtype="float64")
    if call is None:
        copy(symbols if several else symbols[0], mask=mask_symbol)
    else:
        call(copy, symbols, mask_symbol)
    node = copy._inbound_nodes[-1]
    if random_weights:
        for variable in copy.trainable_weights:
            variable.assign(rng.standard_normal(variable.shape) * 0.5)
    elif layer.built:
        copy.set_weights([np.asarray(w, np.float64) for w in layer.get_weights()])

    # The node's tensors, as the layer's kernels get them: a tensor passed
    # twice (query and value) arrives twice, and its gradients add up.
    node_inputs = [next(k for k, symbol in enumerate(symbols) if symbol is t) for t in node.data_inputs]
    node_arrays = [arrays[k] for k in node_inputs]
    batch = arrays[0].shape[0]
    output_shapes = [(batch,) + tuple(t.shape[1:]) for t in node.outputs]
    is_mask = [bool(getattr(t, "is_mask", False)) for t in node.outputs]
    probes = [None if made_mask else rng.standard_normal(s) for s, made_mask in zip(output_shapes, is_mask)]
    device = get_device("cpu")

    def run_forward():
        context = ExecutionContext(device, training)
        context.step = 1
        outputs = [np.zeros(s, np.float64) for s in output_shapes]
        state = copy.make_state(device, node_arrays, outputs, training)
        if mask_array is not None:
            state["mask"] = mask_array
        if copy.output_is_view(training):
            outputs[0][...] = node_arrays[0].reshape(output_shapes[0])
        else:
            copy.forward(context, node_arrays, outputs, state)
        return context, outputs, state

    def objective():
        outputs = run_forward()[1]
        return float(sum(np.sum(out * probe) for out, probe in zip(outputs, probes) if probe is not None))

    weights = copy.trainable_weights
    for variable in weights:
        variable.grad = np.full(variable.shape, np.nan)
    input_grads = [np.full(arrays[k].shape, np.nan) if differentiable[k] else None for k in node_inputs]
    context, outputs, state = run_forward()
    output_grads = [None if probe is None else probe.copy() for probe in probes]
    copy.backward(context, node_arrays, outputs, state, output_grads, input_grads)

    results = []
    for k, array in enumerate(arrays):
        if differentiable[k]:
            analytic = sum(grad for grad, source in zip(input_grads, node_inputs) if source == k)
            name = f"input {k}" if len(arrays) > 1 else "input"
            results.append(GradientResult(name, analytic, _central_differences(objective, array, eps), rtol, atol))
    names = [variable.name for variable in weights]
    for index, variable in enumerate(weights):
        numeric = _central_differences(objective, variable.value, eps)
        name = variable.name if names.count(variable.name) == 1 else f"{variable.name}#{index}"
        results.append(GradientResult(name, np.array(variable.grad, np.float64), numeric, rtol, atol))
    return GradientReport(owner, results, rtol, atol)


# ---- losses ----------------------------------------------------------------------


def _check_loss(loss, input_shape, inputs, rng, eps, rtol, atol):
    owner = f"{type(loss).__name__} '{loss.name}'"
    if inputs is not None:
        y_true, y_pred = inputs
        y_pred = np.array(y_pred, np.float64)
    elif input_shape is None:
        raise ValueError(f"check_gradients: {owner}: pass input_shape (the shape of y_pred) or inputs=(y_true, y_pred)")
    else:
        shape = tuple(input_shape)
        y_pred = rng.uniform(0.1, 0.9, shape)
        y_true = rng.integers(0, shape[-1], shape[:-1]) if loss.sparse_labels else rng.uniform(0.1, 0.9, shape)
    sample_weight = rng.uniform(0.5, 1.5, y_pred.shape[:-1])
    labels, preds, weights, _ = losses_module._kernel_arrays(
        y_true, y_pred, sample_weight, loss.sparse_labels, np.float64, owner
    )
    ops = get_device("cpu").ops
    scale = 0.5
    grad = np.full(preds.shape, np.nan)
    loss_sum = np.zeros(1, np.float64)

    def objective():
        scratch = np.empty_like(preds)
        total = np.zeros(1, np.float64)
        loss.compute(ops, labels, preds, weights, scale, scratch, total)
        return float(total[0])

    loss.compute(ops, labels, preds, weights, scale, grad, loss_sum)
    numeric = _central_differences(objective, preds, eps)
    result = GradientResult("y_pred", grad / scale, numeric, rtol, atol)
    return GradientReport(owner, [result], rtol, atol)
