"""Merging, repeating and permuting tensors on the GPU, twins of
``kernels/cpu/merge.py``: one thread per output element, the arithmetic
from the CPU module's inline helpers. ``batch_matmul`` gives each thread
one output element and walks the inner dimension in order (Dot's products
are small; the sum's order matches a plain loop, not BLAS's blocking)."""

from numba import cuda

from nkeras.kernels.cpu.merge import (
    AVERAGE,
    CONCAT,
    SUM,
    _combine,
    _inverse_norm,
    _inverse_pick,
    _line,
    _source_step,
    _wins,
)
from nkeras.kernels.cuda.launch import THREADS, blocks


@cuda.jit(cache=True)
def _merge_pair(a, b, code, scale, out):
    cols = out.shape[1]
    for k in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        out[i, j] = _combine(a[i, j], b[i, j], code, scale)


@cuda.jit(cache=True)
def _scaled_copy(source, factor, target):
    cols = target.shape[1]
    for k in range(cuda.grid(1), target.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        target[i, j] = source[i, j] * factor


@cuda.jit(cache=True)
def _merge_extremum_forward(x, index, maximum, out, winner):
    cols = out.shape[1]
    for k in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        if index == 0 or _wins(x[i, j], out[i, j], maximum):
            out[i, j] = x[i, j]
            winner[i, j] = index


@cuda.jit(cache=True)
def _merge_extremum_backward(dy, winner, index, dx):
    cols = dx.shape[1]
    for k in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        dx[i, j] = dy[i, j] if winner[i, j] == index else 0


@cuda.jit(cache=True)
def _concat_forward(x, offset, out):
    cols = x.shape[1]
    for k in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        out[i, offset + j] = x[i, j]


@cuda.jit(cache=True)
def _concat_backward(dy, offset, dx):
    cols = dx.shape[1]
    for k in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        i = k // cols
        j = k - i * cols
        dx[i, j] = dy[i, offset + j]


@cuda.jit(cache=True)
def _batch_matmul(a, b, transpose_a, transpose_b, out):
    _, m, n = out.shape
    inner = a.shape[1] if transpose_a else a.shape[2]
    for k in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        s = k // (m * n)
        rest = k - s * m * n
        i = rest // n
        j = rest - i * n
        total = out.dtype.type(0)
        for p in range(inner):
            left = a[s, p, i] if transpose_a else a[s, i, p]
            right = b[s, j, p] if transpose_b else b[s, p, j]
            total += left * right
        out[s, i, j] = total


@cuda.jit(cache=True)
def _permute_axes(x, axis1, axis2, axis3, axis4, y):
    _, n1, n2, n3, n4 = y.shape
    for k in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        i4 = k % n4
        rest = k // n4
        i3 = rest % n3
        rest //= n3
        i2 = rest % n2
        rest //= n2
        i1 = rest % n1
        b = rest // n1
        j1 = _inverse_pick(i1, i2, i3, i4, axis1, axis2, axis3, axis4, 1)
        j2 = _inverse_pick(i1, i2, i3, i4, axis1, axis2, axis3, axis4, 2)
        j3 = _inverse_pick(i1, i2, i3, i4, axis1, axis2, axis3, axis4, 3)
        j4 = _inverse_pick(i1, i2, i3, i4, axis1, axis2, axis3, axis4, 4)
        y[b, i1, i2, i3, i4] = x[b, j1, j2, j3, j4]


@cuda.jit(cache=True)
def _repeat_vector_forward(x, y):
    _, steps, features = y.shape
    for k in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        f = k % features
        b = k // (steps * features)
        y[b, (k // features) % steps, f] = x[b, f]


@cuda.jit(cache=True)
def _repeat_vector_backward(dy, dx):
    steps = dy.shape[1]
    features = dx.shape[1]
    for k in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        b = k // features
        f = k - b * features
        total = dy[b, 0, f]
        for t in range(1, steps):
            total += dy[b, t, f]
        dx[b, f] = total


def merge_pair(a, b, code, scale, out):
    """``out = (a + b) * scale``, ``(a - b) * scale`` or ``a * b * scale``
    for ``code`` ADD, SUBTRACT or MULTIPLY; ``out`` may be ``a`` or ``b``."""
    _merge_pair[blocks(out.size), THREADS](a, b, int(code), out.dtype.type(scale), out)


def scaled_copy(source, factor, target):
    """``target = factor * source`` over 2-D arrays of the same shape."""
    _scaled_copy[blocks(target.size), THREADS](source, target.dtype.type(factor), target)


def merge_extremum_forward(x, index, maximum, out, winner):
    """Fold input ``index`` into a running maximum or minimum and note the
    winners, as the CPU twin (ties keep the earlier input)."""
    _merge_extremum_forward[blocks(out.size), THREADS](x, int(index), bool(maximum), out, winner)


def merge_extremum_backward(dy, winner, index, dx):
    """``dx = dy`` where input ``index`` won, 0 elsewhere."""
    _merge_extremum_backward[blocks(dx.size), THREADS](dy, winner, int(index), dx)


def concat_forward(x, offset, out):
    """``out[:, offset:offset + x.shape[1]] = x``."""
    _concat_forward[blocks(x.size), THREADS](x, int(offset), out)


def concat_backward(dy, offset, dx):
    """``dx = dy[:, offset:offset + dx.shape[1]]``."""
    _concat_backward[blocks(dx.size), THREADS](dy, int(offset), dx)


def batch_matmul(a, b, transpose_a, transpose_b, out):
    """``out[s] = op(a[s]) @ op(b[s])`` for every sample, as the CPU twin."""
    _batch_matmul[blocks(out.size), THREADS](a, b, bool(transpose_a), bool(transpose_b), out)


def permute_axes(x, axis1, axis2, axis3, axis4, y):
    """``y`` holds ``x`` with its non-batch axes permuted (input axis
    ``axis_k`` becomes output axis ``k``), as the CPU twin."""
    _permute_axes[blocks(y.size), THREADS](x, int(axis1), int(axis2), int(axis3), int(axis4), y)


def repeat_vector_forward(x, y):
    """``y[b, t] = x[b]`` for every step ``t``."""
    _repeat_vector_forward[blocks(y.size), THREADS](x, y)


def repeat_vector_backward(dy, dx):
    """``dx[b] = sum over t of dy[b, t]``, the steps added in order."""
    _repeat_vector_backward[blocks(dx.size), THREADS](dy, dx)


@cuda.jit(cache=True)
def _l2_normalize_forward(x, along_rows, epsilon, scale, y):
    samples, rows, cols = x.shape
    lines, length = (cols, rows) if along_rows else (rows, cols)
    for item in range(cuda.grid(1), samples * lines, cuda.gridsize(1)):
        s = item // lines
        line = item - s * lines
        total = 0.0
        for k in range(length):
            value = x[_line(s, line, k, along_rows)]
            total += value * value
        factor, _ = _inverse_norm(total, epsilon)
        scale[s, line] = factor
        for k in range(length):
            index = _line(s, line, k, along_rows)
            y[index] = x[index] * factor


@cuda.jit(cache=True)
def _l2_normalize_backward(x, y, dy, scale, along_rows, epsilon, dx):
    samples, rows, cols = x.shape
    lines, length = (cols, rows) if along_rows else (rows, cols)
    for item in range(cuda.grid(1), samples * lines, cuda.gridsize(1)):
        s = item // lines
        line = item - s * lines
        total = 0.0
        projection = 0.0
        for k in range(length):
            index = _line(s, line, k, along_rows)
            total += x[index] * x[index]
            projection += y[index] * dy[index]
        _, bounded = _inverse_norm(total, epsilon)
        if bounded:
            projection = 0.0
        factor = scale[s, line]
        for k in range(length):
            index = _line(s, line, k, along_rows)
            dx[index] = factor * (dy[index] - y[index] * projection)


def l2_normalize_forward(x, along_rows, epsilon, scale, y):
    """Each line of each sample scaled by ``min(1 / ||line||, 1 / epsilon)``,
    as the CPU twin: a thread per line."""
    _l2_normalize_forward[blocks(scale.size), THREADS](x, bool(along_rows), float(epsilon), scale, y)


def l2_normalize_backward(x, y, dy, scale, along_rows, epsilon, dx):
    """The gradient of ``l2_normalize_forward``, as the CPU twin."""
    _l2_normalize_backward[blocks(scale.size), THREADS](x, y, dy, scale, bool(along_rows), float(epsilon), dx)


@cuda.jit(cache=True)
def _reverse_steps(x, y):
    _, steps, features = y.shape
    for k in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        f = k % features
        t = (k // features) % steps
        b = k // (steps * features)
        y[b, t, f] = x[b, steps - 1 - t, f]


@cuda.jit(cache=True)
def _merge_directions_forward(forward, backward, reverse, mode, out):
    _, steps, units = forward.shape
    for k in range(cuda.grid(1), forward.size, cuda.gridsize(1)):
        j = k % units
        t = (k // units) % steps
        b = k // (steps * units)
        s = _source_step(t, steps, reverse)
        f = forward[b, t, j]
        r = backward[b, s, j]
        if mode == CONCAT:
            out[b, t, j] = f
            out[b, t, units + j] = r
        elif mode == SUM:
            out[b, t, j] = f + r
        elif mode == AVERAGE:
            out[b, t, j] = (f + r) * 0.5
        else:
            out[b, t, j] = f * r


@cuda.jit(cache=True)
def _merge_directions_backward(forward, backward, dy, reverse, mode, dforward, dbackward):
    _, steps, units = forward.shape
    for k in range(cuda.grid(1), forward.size, cuda.gridsize(1)):
        j = k % units
        t = (k // units) % steps
        b = k // (steps * units)
        s = _source_step(t, steps, reverse)
        if mode == CONCAT:
            dforward[b, t, j] = dy[b, t, j]
            dbackward[b, s, j] = dy[b, t, units + j]
        elif mode == SUM:
            dforward[b, t, j] = dy[b, t, j]
            dbackward[b, s, j] = dy[b, t, j]
        elif mode == AVERAGE:
            dforward[b, t, j] = dy[b, t, j] * 0.5
            dbackward[b, s, j] = dy[b, t, j] * 0.5
        else:
            dforward[b, t, j] = dy[b, t, j] * backward[b, s, j]
            dbackward[b, s, j] = dy[b, t, j] * forward[b, t, j]


def reverse_steps(x, y):
    """``y[b, t] = x[b, steps - 1 - t]``."""
    _reverse_steps[blocks(y.size), THREADS](x, y)


def merge_directions_forward(forward, backward, reverse, mode, out):
    """Bidirectional's merge of the two directions, as the CPU twin."""
    _merge_directions_forward[blocks(forward.size), THREADS](forward, backward, bool(reverse), int(mode), out)


def merge_directions_backward(forward, backward, dy, reverse, mode, dforward, dbackward):
    """The gradients of ``merge_directions_forward``, as the CPU twin."""
    _merge_directions_backward[blocks(forward.size), THREADS](
        forward, backward, dy, bool(reverse), int(mode), dforward, dbackward
    )
