"""Flatten and Reshape, views of their input with no kernel on the hot path;
zero padding, cropping and upsampling of 1-D and 2-D inputs (channels_last),
which run the NHWC spatial kernels (1-D inputs as ``(batch, 1, steps,
channels)`` views); RepeatVector and Permute, which run merge-family
kernels."""

import math

import numpy as np

from nkeras.layers.conv_utils import check_data_format, check_spatial_input, normalize_tuple
from nkeras.layers.layer import Layer
from nkeras.layers.pooling import as_nhwc


class _ViewLayer(Layer):
    """A layer whose output holds the input's values in another shape. The
    plan makes the output a view; ``backward`` copies only when the input
    also feeds other layers and its gradient must be summed."""

    def output_is_view(self, training):
        return True

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            dx = input_grads[0]
            ctx.ops.copy_into(dx.reshape(dx.shape[0], -1), output_grads[0].reshape(dx.shape[0], -1))


class Flatten(_ViewLayer):
    """Flattens every axis but the batch axis.

    Args:
        data_format: accepted for Keras compatibility ("channels_last").
    """

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Flatten '{self.name}': only data_format='channels_last' is supported, got {data_format!r}")
        self.data_format = data_format

    def compute_output_shape(self, input_shape):
        return (input_shape[0], math.prod(input_shape[1:]))

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(_ViewLayer):
    """Reshapes each sample to ``target_shape`` (one entry may be -1).

    Args:
        target_shape: the new shape of one sample, without the batch axis.
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target_shape = tuple(target_shape)
        if sum(1 for d in target_shape if d == -1) > 1 or any(d == 0 or d < -1 for d in target_shape):
            raise ValueError(
                f"Reshape '{self.name}': target_shape must hold positive integers and at most one -1, got {target_shape}"
            )
        self.target_shape = target_shape

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(f"Reshape '{self.name}': cannot reshape {input_shape[1:]} into {self.target_shape}")
            shape = tuple(size // known if d == -1 else d for d in self.target_shape)
        else:
            shape = self.target_shape
        if math.prod(shape) != size:
            raise ValueError(
                f"Reshape '{self.name}': cannot reshape an input of shape {input_shape[1:]} ({size} values) "
                f"into {self.target_shape}"
            )
        return (input_shape[0],) + shape

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


def _normalize_pairs(value, argument, layer_name):
    """Keras's forms of a 2-D padding or cropping: an int, (rows, cols), or
    ((top, bottom), (left, right)); as ((top, bottom), (left, right))."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return tuple(
            normalize_tuple(entry, 2, f"{argument} along {axis}", layer_name, allow_zero=True)
            for entry, axis in zip(value, ("rows", "cols"))
        )
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (normalize_tuple(value, 2, argument, layer_name, allow_zero=True),) * 2
    raise ValueError(
        f"Layer '{layer_name}': {argument} must be an int, a tuple of 2 ints (rows, cols) or a tuple of 2 "
        f"tuples of 2 ints ((top, bottom), (left, right)), got {value!r}"
    )


def _check_cropping(layer_name, spatial, cropping, axes):
    """Cropping must leave at least one element along each of ``axes``."""
    for axis, length, (before, after) in zip(axes, spatial, cropping):
        if before + after >= length:
            raise ValueError(
                f"Layer '{layer_name}': cropping {(before, after)} removes all {length} {axis} of the input; "
                "it must leave at least one"
            )


class ZeroPadding1D(Layer):
    """Adds zeros at the start and end of the steps axis.

    Args:
        padding: int or (start, end), the zeros added on each side (1).
        data_format: "channels_last" (or None) only.
    """

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = normalize_tuple(padding, 2, "padding", self.name, allow_zero=True)
        self.data_format = check_data_format(data_format, self.name)

    def check_input_shape(self, input_shape):
        check_spatial_input(self.name, input_shape, 1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] + sum(self.padding), input_shape[2])

    def forward(self, ctx, inputs, outputs, state):
        ctx.ops.copy_window(as_nhwc(inputs[0]), 0, -self.padding[0], as_nhwc(outputs[0]))

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            ctx.ops.copy_window(as_nhwc(output_grads[0]), 0, self.padding[0], as_nhwc(input_grads[0]))

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around images.

    Args:
        padding: int (the same on every side), (rows, cols) (symmetric), or
            ((top, bottom), (left, right)); (1, 1) by default.
        data_format: "channels_last" (or None) only.
    """

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _normalize_pairs(padding, "padding", self.name)
        self.data_format = check_data_format(data_format, self.name)

    def check_input_shape(self, input_shape):
        check_spatial_input(self.name, input_shape, 2)

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.padding
        return (input_shape[0], input_shape[1] + top + bottom, input_shape[2] + left + right, input_shape[3])

    def forward(self, ctx, inputs, outputs, state):
        (top, _), (left, _) = self.padding
        ctx.ops.copy_window(inputs[0], -top, -left, outputs[0])

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            (top, _), (left, _) = self.padding
            ctx.ops.copy_window(output_grads[0], top, left, input_grads[0])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}


class Cropping1D(Layer):
    """Removes steps at the start and end of the steps axis.

    Args:
        cropping: int or (start, end), the steps removed on each side ((1, 1)).
    """

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.cropping = normalize_tuple(cropping, 2, "cropping", self.name, allow_zero=True)

    def check_input_shape(self, input_shape):
        check_spatial_input(self.name, input_shape, 1)
        _check_cropping(self.name, input_shape[1:2], (self.cropping,), ("steps",))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] - sum(self.cropping), input_shape[2])

    def forward(self, ctx, inputs, outputs, state):
        ctx.ops.copy_window(as_nhwc(inputs[0]), 0, self.cropping[0], as_nhwc(outputs[0]))

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            ctx.ops.copy_window(as_nhwc(output_grads[0]), 0, -self.cropping[0], as_nhwc(input_grads[0]))

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping}


class Cropping2D(Layer):
    """Removes rows and columns at the edges of images.

    Args:
        cropping: int (the same on every side), (rows, cols) (symmetric), or
            ((top, bottom), (left, right)); nothing by default.
        data_format: "channels_last" (or None) only.
    """

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _normalize_pairs(cropping, "cropping", self.name)
        self.data_format = check_data_format(data_format, self.name)

    def check_input_shape(self, input_shape):
        check_spatial_input(self.name, input_shape, 2)
        _check_cropping(self.name, input_shape[1:3], self.cropping, ("rows", "cols"))

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.cropping
        return (input_shape[0], input_shape[1] - top - bottom, input_shape[2] - left - right, input_shape[3])

    def forward(self, ctx, inputs, outputs, state):
        (top, _), (left, _) = self.cropping
        ctx.ops.copy_window(inputs[0], top, left, outputs[0])

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            (top, _), (left, _) = self.cropping
            ctx.ops.copy_window(output_grads[0], -top, -left, input_grads[0])

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping, "data_format": self.data_format}


class UpSampling1D(Layer):
    """Repeats each step ``size`` times.

    Args:
        size: positive int, the repeat count (2).
    """

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = normalize_tuple(size, 1, "size", self.name)[0]

    def check_input_shape(self, input_shape):
        check_spatial_input(self.name, input_shape, 1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] * self.size, input_shape[2])

    def forward(self, ctx, inputs, outputs, state):
        ctx.ops.upsample_nearest_forward(as_nhwc(inputs[0]), 1, self.size, as_nhwc(outputs[0]))

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            ctx.ops.upsample_nearest_backward(as_nhwc(output_grads[0]), 1, self.size, as_nhwc(input_grads[0]))

    def get_config(self):
        return {**super().get_config(), "size": self.size}


# What Keras's UpSampling2D accepts; nkeras implements "nearest" only.
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5", "area")


class UpSampling2D(Layer):
    """Repeats each row ``size[0]`` times and each column ``size[1]`` times
    (nearest-neighbour upsampling).

    Args:
        size: int or (rows, cols), the repeat counts ((2, 2)).
        data_format: "channels_last" (or None) only.
        interpolation: "nearest" only ("bilinear" and the others raise
            NotImplementedError).
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = normalize_tuple(size, 2, "size", self.name)
        self.data_format = check_data_format(data_format, self.name)
        mode = interpolation.lower() if isinstance(interpolation, str) else interpolation
        if mode not in _INTERPOLATIONS:
            raise ValueError(
                f"Layer '{self.name}': interpolation must be one of {list(_INTERPOLATIONS)}, got {interpolation!r}"
            )
        if mode != "nearest":
            raise NotImplementedError(
                f"Layer '{self.name}': interpolation={interpolation!r} not supported yet in nkeras; use 'nearest'"
            )
        self.interpolation = mode

    def check_input_shape(self, input_shape):
        check_spatial_input(self.name, input_shape, 2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] * self.size[0], input_shape[2] * self.size[1], input_shape[3])

    def forward(self, ctx, inputs, outputs, state):
        ctx.ops.upsample_nearest_forward(inputs[0], *self.size, outputs[0])

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            ctx.ops.upsample_nearest_backward(output_grads[0], *self.size, input_grads[0])

    def get_config(self):
        return {
            **super().get_config(), "size": self.size, "data_format": self.data_format,
            "interpolation": self.interpolation,
        }


class RepeatVector(Layer):
    """Repeats a ``(batch, features)`` input ``n`` times along a new axis 1:
    the output is ``(batch, n, features)``.

    Args:
        n: positive int, the repeat count.
    """

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"RepeatVector '{self.name}': n must be a positive integer, got {n!r}")
        self.n = int(n)

    def check_input_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"RepeatVector '{self.name}': expected an input of rank 2 (batch, features), got shape {input_shape}"
            )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def forward(self, ctx, inputs, outputs, state):
        ctx.ops.repeat_vector_forward(inputs[0], outputs[0])

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            ctx.ops.repeat_vector_backward(output_grads[0], input_grads[0])

    def get_config(self):
        return {**super().get_config(), "n": self.n}


# Permute's kernel works on five-dimensional views: the batch and four axes.
_PERMUTED_AXES = 4


class Permute(Layer):
    """Permutes the non-batch axes: output axis ``k`` (counting from 1) is
    input axis ``dims[k - 1]``.

    Args:
        dims: a permutation of ``1, ..., rank - 1`` (at most four axes).
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(
                f"Permute '{self.name}': dims must be a permutation of 1, ..., {len(dims)} (the set of axes must be "
                f"consecutive and start from 1), got {dims}"
            )
        if len(dims) > _PERMUTED_AXES:
            raise NotImplementedError(f"Layer '{self.name}': nkeras permutes at most {_PERMUTED_AXES} axes, got {dims}")
        self.dims = tuple(int(d) for d in dims)

    def check_input_shape(self, input_shape):
        if len(input_shape) != len(self.dims) + 1:
            raise ValueError(
                f"Permute '{self.name}': dims {self.dims} need an input of rank {len(self.dims) + 1}, "
                f"got shape {input_shape}"
            )

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    @staticmethod
    def _five_dimensional(array):
        return array.reshape(tuple(array.shape) + (1,) * (_PERMUTED_AXES + 1 - array.ndim))

    def _axes(self, dims):
        return dims + tuple(range(len(dims) + 1, _PERMUTED_AXES + 1))

    def forward(self, ctx, inputs, outputs, state):
        ctx.ops.permute_axes(
            self._five_dimensional(inputs[0]), *self._axes(self.dims), self._five_dimensional(outputs[0])
        )

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        if input_grads[0] is not None:
            inverse = tuple(self.dims.index(axis) + 1 for axis in range(1, len(self.dims) + 1))
            ctx.ops.permute_axes(
                self._five_dimensional(output_grads[0]), *self._axes(inverse), self._five_dimensional(input_grads[0])
            )

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}
