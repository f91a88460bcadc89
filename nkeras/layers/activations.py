"""PReLU: a leaky ReLU whose negative slope is learned."""

import math

from nkeras.layers.core import _reject_unsupported, _serialize_initializer
from nkeras.layers.layer import Layer


def _fold(dims, shared):
    """How the kernels see an input of per-sample ``dims``: ``(rows, cols)``
    with ``alpha`` as ``(alpha_rows, alpha_cols)``, input row ``i`` using alpha
    row ``(i // row_repeat) % alpha_rows`` and likewise for columns. Returns
    ``(split, (alpha_rows, row_repeat), (alpha_cols, col_repeat))`` where the
    rows are the batch and ``dims[:split]``; None when the unshared axes form
    more than two runs."""
    runs = [k for k in range(len(dims)) if not shared[k] and (k == 0 or shared[k - 1])]
    if len(runs) > 2:
        return None
    # The last run starts the columns: one alpha per column (or channel),
    # the common case, is then a plain row broadcast.
    split = runs[-1] if runs else 0

    def part(start, stop):
        unshared = [k for k in range(start, stop) if not shared[k]]
        if not unshared:
            return 1, 1
        return math.prod(dims[k] for k in unshared), math.prod(dims[unshared[-1] + 1:stop])

    return split, part(0, split), part(split, len(dims))


class PReLU(Layer):
    """Parametric ReLU: ``x`` for ``x > 0``, ``alpha * x`` otherwise, with a
    learned ``alpha`` per input element.

    Args:
        alpha_initializer: initializer of ``alpha`` ("zeros").
        shared_axes: axes (1-based, the batch axis being 0) along which one
            alpha is shared, e.g. ``[1, 2]`` for one alpha per channel of
            an image.
    """

    supports_masking = True

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None, shared_axes=None,
                 **kwargs):
        super().__init__(**kwargs)
        _reject_unsupported(self.name, alpha_regularizer=alpha_regularizer, alpha_constraint=alpha_constraint)
        self.alpha_initializer = alpha_initializer
        if shared_axes is None:
            self.shared_axes = None
        else:
            self.shared_axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]

    def build(self, input_shape):
        rank = len(input_shape)
        if rank < 2:
            raise ValueError(f"PReLU '{self.name}': expected an input of rank >= 2, got shape {tuple(input_shape)}")
        shared_axes = self.shared_axes or []
        for axis in shared_axes:
            if isinstance(axis, bool) or not isinstance(axis, int) or not 1 <= axis < rank:
                raise ValueError(
                    f"PReLU '{self.name}': shared_axes must be axes 1 to {rank - 1} of the input "
                    f"(0 is the batch), got {self.shared_axes!r} for shape {tuple(input_shape)}"
                )
        dims = tuple(input_shape[1:])
        self._shared = [k + 1 in shared_axes for k in range(len(dims))]
        if _fold(dims, self._shared) is None:
            raise NotImplementedError(
                f"PReLU '{self.name}': shared_axes={self.shared_axes!r} leaves more than two separate runs of "
                f"unshared axes in shape {tuple(input_shape)}, which nkeras does not support"
            )
        self.alpha = self.add_weight(
            tuple(1 if s else d for d, s in zip(dims, self._shared)), self.alpha_initializer, "alpha"
        )
        self.built = True

    def check_input_shape(self, input_shape):
        dims = tuple(input_shape[1:])
        expected = self.alpha.shape
        if len(dims) != len(expected) or any(d != e for d, e, s in zip(dims, expected, self._shared) if not s):
            shown = tuple("any" if s else e for e, s in zip(expected, self._shared))
            raise ValueError(
                f"PReLU '{self.name}': expected inputs of shape (None, {', '.join(map(str, shown))}), "
                f"got shape {tuple(input_shape)}"
            )

    def compute_output_shape(self, input_shape):
        return input_shape

    def _kernel_layout(self, shape):
        """How the kernels see inputs of ``shape``: ``(cols, alpha's 2-D shape,
        row_repeat, col_repeat)``. Worked out per call: a shared axis may
        change length between calls."""
        split, (alpha_rows, row_repeat), (alpha_cols, col_repeat) = _fold(shape[1:], self._shared)
        return math.prod(shape[1 + split:]), (alpha_rows, alpha_cols), row_repeat, col_repeat

    def forward(self, ctx, inputs, outputs, state):
        cols, alpha_shape, row_repeat, col_repeat = self._kernel_layout(tuple(inputs[0].shape))
        ctx.ops.prelu_forward(
            inputs[0].reshape(-1, cols), self.alpha.value.reshape(alpha_shape), row_repeat, col_repeat,
            outputs[0].reshape(-1, cols),
        )

    def backward(self, ctx, inputs, outputs, state, output_grads, input_grads):
        cols, alpha_shape, row_repeat, col_repeat = self._kernel_layout(tuple(inputs[0].shape))
        dy = output_grads[0].reshape(-1, cols)
        dx = input_grads[0]
        ctx.ops.prelu_backward(
            inputs[0].reshape(-1, cols), self.alpha.value.reshape(alpha_shape), dy, row_repeat, col_repeat,
            self.alpha.grad.reshape(alpha_shape), dy if dx is None else dx.reshape(-1, cols), dx is not None,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "alpha_initializer": _serialize_initializer(self.alpha_initializer),
            "shared_axes": self.shared_axes,
        }
