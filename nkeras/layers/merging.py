"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum,
Concatenate and Dot, with Keras 3's functional forms (``add``, ...).

Each is called on a list of tensors. The elementwise merges need inputs
of one shape (nkeras does not broadcast; other shapes raise a ValueError
naming the layer and the shapes) and fold them in pairs into the output
buffer. They pass the first input's mask through.
"""

import math

from nkeras.config import epsilon
from nkeras.kernels.cpu.merge import ADD, MULTIPLY, SUBTRACT
from nkeras.layers.core import _as_2d
from nkeras.layers.layer import Layer


def _input_shapes(layer, input_shape, count=None):
    """``input_shape`` as a list of shapes, checked to hold at least two
    (or exactly ``count``) inputs of one rank."""
    kind = type(layer).__name__
    if not (isinstance(input_shape, (list, tuple)) and input_shape and all(isinstance(s, tuple) for s in input_shape)):
        raise ValueError(f"{kind} '{layer.name}': expected a list of input tensors, got one of shape {input_shape}")
    shapes = [tuple(s) for s in input_shape]
    if count is not None and len(shapes) != count:
        raise ValueError(f"{kind} '{layer.name}': expected exactly {count} inputs, got {len(shapes)}: {shapes}")
    if len(shapes) < 2:
        raise ValueError(f"{kind} '{layer.name}': expected a list of at least 2 inputs, got {len(shapes)}: {shapes}")
    return shapes


class _ElementwiseMerge(Layer):
    """Base of the merges that combine same-shape inputs element by element."""

    supports_masking = True
    _exact_inputs = None

    def build(self, input_shape):
        self.check_input_shape(input_shape)
        self.built = True

    def check_input_shape(self, input_shape):
        shapes = _input_shapes(self, input_shape, self._exact_inputs)
        if any(shape[1:] != shapes[0][1:] for shape in shapes):
            raise ValueError(
                f"{type(self).__name__} '{self.name}': inputs must have the same shape (nkeras does not "
                f"broadcast them), got shapes {shapes}"
            )

    def compute_output_shape(self, input_shape):
        return tuple(_input_shapes(self, input_shape)[0])


class _PairwiseMerge(_ElementwiseMerge):
    """Merges computed by ``merge_pair``: ``_code``, and ``_last_scale`` for
    the factor applied by the last fold (1/n for Average)."""

    _code = ADD

    def _last_scale(self, count):
        return 1.0

    def forward(self, ctx, inputs, outputs, state):
        merge_pair = ctx.ops.merge_pair
        xs = [_as_2d(x) for x in inputs]
        out = _as_2d(outputs[0])
        last = len(xs) - 1
        merge_pair(xs[0], xs[1], self._code, self._last_scale(len(xs)) if last == 1 else 1.0, out)
        for k in range(2, len(xs)):
            merge_pair(out, xs[k], self._code, self._last_scale(len(xs)) if k == last else 1.0, out)


class Add(_PairwiseMerge):
    """The sum of a list of same-shape inputs."""

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dy = _as_2d(output_grads[0])
        for dx in input_grads:
            if dx is not None:
                ctx.ops.copy_into(_as_2d(dx), dy)


class Subtract(_PairwiseMerge):
    """``inputs[0] - inputs[1]``, for exactly two same-shape inputs."""

    _code = SUBTRACT
    _exact_inputs = 2

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dy = _as_2d(output_grads[0])
        if input_grads[0] is not None:
            ctx.ops.copy_into(_as_2d(input_grads[0]), dy)
        if input_grads[1] is not None:
            ctx.ops.scaled_copy(dy, -1.0, _as_2d(input_grads[1]))


class Average(_PairwiseMerge):
    """The elementwise mean of a list of same-shape inputs."""

    def _last_scale(self, count):
        return 1.0 / count

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dy = _as_2d(output_grads[0])
        for dx in input_grads:
            if dx is not None:
                ctx.ops.scaled_copy(dy, 1.0 / len(inputs), _as_2d(dx))


class Multiply(_PairwiseMerge):
    """The elementwise product of a list of same-shape inputs."""

    _code = MULTIPLY

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        merge_pair = ctx.ops.merge_pair
        dy = _as_2d(output_grads[0])
        xs = [_as_2d(x) for x in inputs]
        for i, dx in enumerate(input_grads):
            if dx is None:
                continue
            # dx_i = dy * (the product of the other inputs), folded in order.
            dx = _as_2d(dx)
            others = [x for j, x in enumerate(xs) if j != i]
            merge_pair(dy, others[0], MULTIPLY, 1.0, dx)
            for x in others[1:]:
                merge_pair(dx, x, MULTIPLY, 1.0, dx)


class _Extremum(_ElementwiseMerge):
    """Maximum or Minimum: the forward notes which input won each element
    (the first to reach the extreme, so ties go to the earliest input) and
    the backward gives that input the whole gradient."""

    _maximum = True

    def state_shapes(self, input_shapes, training):
        return {"winner": tuple(_as_2d_shape(input_shapes[0]))}

    def forward(self, ctx, inputs, outputs, state):
        out = _as_2d(outputs[0])
        for index, x in enumerate(inputs):
            ctx.ops.merge_extremum_forward(_as_2d(x), index, self._maximum, out, state["winner"])

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        dy = _as_2d(output_grads[0])
        for index, dx in enumerate(input_grads):
            if dx is not None:
                ctx.ops.merge_extremum_backward(dy, state["winner"], index, _as_2d(dx))


class Maximum(_Extremum):
    """The elementwise maximum of a list of same-shape inputs. Its gradient
    goes to the input that holds the maximum (the earliest one on a tie;
    Keras on JAX splits a tie's gradient instead)."""


class Minimum(_Extremum):
    """The elementwise minimum of a list of same-shape inputs. Its gradient
    goes to the input that holds the minimum (the earliest one on a tie)."""

    _maximum = False


def _as_2d_shape(shape):
    return (math.prod(shape[:-1]), shape[-1])


class Concatenate(Layer):
    """Joins a list of inputs along ``axis``; their other dimensions must match.

    Args:
        axis: the axis to join along (any axis but the batch axis; -1, the
            last, by default).
    """

    supports_masking = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"Concatenate '{self.name}': axis must be an integer, got {axis!r}")
        self.axis = axis

    def _axis(self, rank):
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 1 <= axis < rank:
            raise ValueError(
                f"Concatenate '{self.name}': axis {self.axis} is not a non-batch axis of inputs of rank {rank}"
            )
        return axis

    def build(self, input_shape):
        self.check_input_shape(input_shape)
        self.built = True

    def check_input_shape(self, input_shape):
        shapes = _input_shapes(self, input_shape)
        if any(len(shape) != len(shapes[0]) for shape in shapes):
            raise ValueError(f"Concatenate '{self.name}': inputs must have the same rank, got shapes {shapes}")
        axis = self._axis(len(shapes[0]))
        rest = [shape[1:axis] + shape[axis + 1:] for shape in shapes]
        if any(r != rest[0] for r in rest):
            raise ValueError(
                f"Concatenate '{self.name}': inputs must match in every dimension but axis {self.axis}, "
                f"got shapes {shapes}"
            )

    def compute_output_shape(self, input_shape):
        shapes = _input_shapes(self, input_shape)
        axis = self._axis(len(shapes[0]))
        return shapes[0][:axis] + (sum(shape[axis] for shape in shapes),) + shapes[0][axis + 1:]

    def _blocks(self, arrays):
        """Each array as ``(rows, block)``, where ``rows`` counts the
        positions before the axis and ``block`` the values from it on."""
        axis = self._axis(arrays[0].ndim)
        rows = math.prod(arrays[0].shape[:axis])
        return [a.reshape(rows, math.prod(a.shape[axis:])) for a in arrays]

    def forward(self, ctx, inputs, outputs, state):
        *xs, out = self._blocks(list(inputs) + [outputs[0]])
        offset = 0
        for x in xs:
            ctx.ops.concat_forward(x, offset, out)
            offset += x.shape[1]

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        *xs, dy = self._blocks(list(inputs) + [output_grads[0]])
        offset = 0
        for x, dx in zip(xs, input_grads):
            if dx is not None:
                ctx.ops.concat_backward(dy, offset, dx.reshape(x.shape))
            offset += x.shape[1]

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Dot(Layer):
    """The dot product of two inputs along the given axes, per sample
    (Keras's ``batch_dot``): the output's shape is the first input's
    non-batch dimensions without ``axes[0]``, then the second's without
    ``axes[1]`` (``(batch, 1)`` when nothing is left).

    Args:
        axes: an int (the same axis of both inputs) or a pair of ints; axes
            count the batch axis as 0, negative ones from the end.
        normalize: whether to L2-normalise both inputs along their axis
            first, as Keras does (``x * min(1 / ||x||, 1 / epsilon())``):
            the dot product is then the cosine proximity.
    """

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        pair = list(axes) if isinstance(axes, (list, tuple)) else None
        valid = (
            isinstance(axes, int) and not isinstance(axes, bool)
            or pair is not None and len(pair) == 2 and all(isinstance(a, int) and not isinstance(a, bool) for a in pair)
        )
        if not valid:
            raise ValueError(f"Dot '{self.name}': axes must be an int or a pair of ints, got {axes!r}")
        self.axes = tuple(pair) if pair is not None else axes
        self.normalize = bool(normalize)

    def _axes(self, shapes):
        pair = self.axes if isinstance(self.axes, tuple) else (self.axes, self.axes)
        return [a % len(shape) if a < 0 else a for a, shape in zip(pair, shapes)]

    def build(self, input_shape):
        self.check_input_shape(input_shape)
        self.built = True

    def check_input_shape(self, input_shape):
        shapes = _input_shapes(self, input_shape, 2)
        if any(len(shape) not in (2, 3) for shape in shapes):
            raise ValueError(
                f"Dot '{self.name}': nkeras supports inputs of rank 2 or 3 (batch included), got shapes {shapes}"
            )
        axes = self._axes(shapes)
        if any(not 1 <= axis < len(shape) for axis, shape in zip(axes, shapes)):
            raise ValueError(f"Dot '{self.name}': axes {self.axes} do not fit inputs of shapes {shapes}")
        if shapes[0][axes[0]] != shapes[1][axes[1]]:
            raise ValueError(
                f"Dot '{self.name}': dimension {shapes[0][axes[0]]} of axis {axes[0]} of the first input does not "
                f"match dimension {shapes[1][axes[1]]} of axis {axes[1]} of the second (shapes {shapes})"
            )

    def compute_output_shape(self, input_shape):
        shapes = _input_shapes(self, input_shape, 2)
        axes = self._axes(shapes)
        free = [d for i, d in enumerate(shapes[0]) if i not in (0, axes[0])]
        free += [d for i, d in enumerate(shapes[1]) if i not in (0, axes[1])]
        return (shapes[0][0],) + (tuple(free) or (1,))

    def _operands(self, x, y):
        """Both inputs as 3-D per-sample matrices for ``batch_matmul``:
        ``(x, transpose_x, y, transpose_y)`` with ``op(x) @ op(y)`` the
        per-sample product, ``(m, k) @ (k, n)``."""
        axis_x, axis_y = self._axes([x.shape, y.shape])
        batch = x.shape[0]
        if x.ndim == 2:
            x3, transpose_x = x.reshape(batch, 1, x.shape[1]), False
        else:
            x3, transpose_x = x, axis_x == 1
        if y.ndim == 2:
            y3, transpose_y = y.reshape(batch, y.shape[1], 1), False
        else:
            y3, transpose_y = y, axis_y == 2
        return x3, transpose_x, y3, transpose_y

    def _as_product(self, x3, transpose_x, y3, transpose_y, out):
        m = x3.shape[2] if transpose_x else x3.shape[1]
        n = y3.shape[1] if transpose_y else y3.shape[2]
        return out.reshape(out.shape[0], m, n)

    def state_shapes(self, input_shapes, training):
        if not self.normalize:
            return {}
        shapes = {}
        for name, shape, along_rows in zip(("x", "y"), input_shapes, self._normalized_axes(input_shapes)):
            shape3 = self._shape_3d(name, shape)
            shapes[f"{name}_normalized"] = shape3
            if training:
                shapes[f"{name}_normalized_grad"] = shape3
            shapes[f"{name}_scale"] = (shape3[0], shape3[2] if along_rows else shape3[1])
        return shapes

    @staticmethod
    def _shape_3d(name, shape):
        if len(shape) == 3:
            return tuple(shape)
        return (shape[0], 1, shape[1]) if name == "x" else (shape[0], shape[1], 1)

    def _normalized_axes(self, shapes):
        """Per input, whether its contraction axis is axis 1 of its 3-D view."""
        axis_x, axis_y = self._axes(shapes)
        return (len(shapes[0]) == 3 and axis_x == 1, len(shapes[1]) == 2 or axis_y == 1)

    def forward(self, ctx, inputs, outputs, state):
        x3, tx, y3, ty = self._operands(inputs[0], inputs[1])
        if self.normalize:
            x3, y3 = self._normalize(ctx, inputs, x3, y3, state)
        ctx.ops.batch_matmul(x3, y3, tx, ty, self._as_product(x3, tx, y3, ty, outputs[0]))

    def _normalize(self, ctx, inputs, x3, y3, state):
        along = self._normalized_axes([inputs[0].shape, inputs[1].shape])
        normalized = []
        for name, array, along_rows in zip(("x", "y"), (x3, y3), along):
            out = state[f"{name}_normalized"]
            ctx.ops.l2_normalize_forward(array, along_rows, epsilon(), state[f"{name}_scale"], out)
            normalized.append(out)
        return normalized

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        x3, tx, y3, ty = self._operands(inputs[0], inputs[1])
        raw = (x3, y3)
        if self.normalize:
            x3, y3 = state["x_normalized"], state["y_normalized"]
        dout = self._as_product(x3, tx, y3, ty, output_grads[0])
        dx, dy = input_grads
        dx3 = None if dx is None else (state["x_normalized_grad"] if self.normalize else dx.reshape(x3.shape))
        dy3 = None if dy is None else (state["y_normalized_grad"] if self.normalize else dy.reshape(y3.shape))
        # out = X @ Y with X = op(x), Y = op(y): dX = dout @ Y.T, dY = X.T @ dout.
        if dx3 is not None:
            if tx:
                ctx.ops.batch_matmul(y3, dout, ty, True, dx3)
            else:
                ctx.ops.batch_matmul(dout, y3, False, not ty, dx3)
        if dy3 is not None:
            if ty:
                ctx.ops.batch_matmul(dout, x3, True, tx, dy3)
            else:
                ctx.ops.batch_matmul(x3, dout, not tx, False, dy3)
        if self.normalize:
            along = self._normalized_axes([inputs[0].shape, inputs[1].shape])
            for name, grad, source, along_rows in zip(("x", "y"), (dx, dy), raw, along):
                if grad is not None:
                    ctx.ops.l2_normalize_backward(
                        source, state[f"{name}_normalized"], state[f"{name}_normalized_grad"], state[f"{name}_scale"],
                        along_rows, epsilon(), grad.reshape(source.shape),
                    )

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def add(inputs, **kwargs):
    """``Add(**kwargs)(inputs)``: the sum of a list of same-shape tensors."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """``Subtract(**kwargs)(inputs)``: ``inputs[0] - inputs[1]``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """``Multiply(**kwargs)(inputs)``: the elementwise product."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """``Average(**kwargs)(inputs)``: the elementwise mean."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """``Maximum(**kwargs)(inputs)``: the elementwise maximum."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """``Minimum(**kwargs)(inputs)``: the elementwise minimum."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """``Concatenate(axis, **kwargs)(inputs)``: the inputs joined along ``axis``."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, **kwargs):
    """``Dot(axes, **kwargs)(inputs)``: the per-sample dot product of two tensors."""
    return Dot(axes=axes, **kwargs)(inputs)
