"""Argument checks and shape arithmetic shared by the convolution, pooling
and spatial layers (channels_last only)."""

import numpy as np


def normalize_tuple(value, rank, argument, layer_name, allow_zero=False):
    """``value`` (an int or a sequence of ``rank`` ints) as a tuple of ``rank``
    positive ints (non-negative with ``allow_zero``); a clear ValueError naming
    the layer and the argument otherwise."""
    items = (value,) * rank if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        items = tuple(items)
    except TypeError:
        items = None
    lowest = 0 if allow_zero else 1
    if (
        items is None
        or len(items) != rank
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lowest for v in items)
    ):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(
            f"Layer '{layer_name}': {argument} must be a {kind} integer or a tuple of {rank} {kind} integers, "
            f"got {value!r}"
        )
    return tuple(int(v) for v in items)


def normalize_padding(padding, allowed, layer_name):
    """The padding mode in lower case; a ValueError listing ``allowed`` otherwise."""
    mode = padding.lower() if isinstance(padding, str) else padding
    if mode not in allowed:
        raise ValueError(f"Layer '{layer_name}': padding must be one of {list(allowed)}, got {padding!r}")
    return mode


def check_data_format(data_format, layer_name):
    """Only channels_last (Keras's default) is implemented."""
    if data_format not in (None, "channels_last"):
        raise ValueError(
            f"Layer '{layer_name}': nkeras supports data_format='channels_last' only, got {data_format!r}. "
            "Move the channel axis last, e.g. x.transpose(0, 2, 3, 1) for (batch, channels, rows, cols) images"
        )
    return "channels_last"


def conv_output_length(length, kernel, padding, stride, dilation=1):
    """Keras's output length along one axis for ``valid``, ``same`` or
    ``causal`` padding (``full`` is the transposed convolution's)."""
    effective = (kernel - 1) * dilation + 1
    if padding in ("same", "causal"):
        return (length + stride - 1) // stride
    return (length - effective) // stride + 1


def padding_before(length, kernel, padding, stride, dilation=1):
    """The zeros added before the first element along one axis: TensorFlow's
    ``same`` rule (the odd one goes after), all of it for ``causal``."""
    effective = (kernel - 1) * dilation + 1
    if padding == "valid":
        return 0
    if padding == "causal":
        return effective - 1
    out = (length + stride - 1) // stride
    total = max((out - 1) * stride + effective - length, 0)
    return total // 2


def check_spatial_input(layer_name, input_shape, rank, channels=None):
    """Raise a clear error unless ``input_shape`` is ``(batch,) + rank spatial
    dims + (channels,)``, with ``channels`` channels when given."""
    expected_rank = rank + 2
    if len(input_shape) != expected_rank:
        layout = "(batch, " + ", ".join(["steps"] if rank == 1 else ["rows", "cols"][:rank]) + ", channels)"
        raise ValueError(
            f"Layer '{layer_name}': expected an input of rank {expected_rank} {layout} (channels_last), "
            f"got shape {tuple(input_shape)}"
        )
    if channels is not None and input_shape[-1] != channels:
        raise ValueError(
            f"Layer '{layer_name}': expected {channels} input channels (last axis), got shape {tuple(input_shape)}"
        )


def check_kernel_fits(layer_name, spatial, kernel, padding, dilation=None, what="kernel_size"):
    """The kernel (after dilation) must fit in the input for ``valid`` padding."""
    dilation = dilation or (1,) * len(kernel)
    for length, size, rate in zip(spatial, kernel, dilation):
        effective = (size - 1) * rate + 1
        if padding == "valid" and effective > length:
            raise ValueError(
                f"Layer '{layer_name}': {what} {tuple(kernel)} (dilated to {effective}) is larger than the input "
                f"{tuple(spatial)} with padding='valid'; use a smaller {what} or padding='same'"
            )
