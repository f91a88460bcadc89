"""Scaled dot-product attention over several heads, forward and backward.

The projections before and after the attention are GEMMs the layer runs with
``dense_forward``; these kernels take their outputs as 4-D views in the
layout a ``(batch * steps, heads * head_dim)`` GEMM gives:

    query   (batch, query_steps, heads, key_dim)
    key     (batch, value_steps, heads, key_dim)
    value   (batch, value_steps, heads, value_dim)
    context (batch, query_steps, heads, value_dim)

and keep the softmax probabilities ``probs`` as ``(batch, heads,
query_steps, value_steps)``, the layout of Keras's attention scores. For
each (sample, head) the CPU kernels copy that head's rows into contiguous
blocks of ``scratch`` (a 1-D state buffer of at least
``2 * (Tq + Tv) * key_dim + (2 * Tv + Tq) * value_dim + Tq * Tv`` elements)
and multiply them with BLAS; the CUDA twins read the views directly and
leave ``scratch`` alone.

A keep-mask ``mask`` (batch, query_steps, value_steps), nonzero where a query
step may attend to a value step, comes from ``attention_keep_mask``. Masked
pairs get probability 0, and a query step that may attend to nothing gets
all zeros, as Keras's masked softmax gives. Dropout on the probabilities
draws the dropout family's counter-based numbers: pair ``(b, n, i, j)`` is
element ``((b * heads + n) * Tq + i) * Tv + j`` of the (seed, step) stream,
and the backward draws the same numbers again instead of storing them.
"""

import math

import numpy as np
from numba import njit

from nkeras.kernels.cpu.dropout import _dropout_constants, _uniform


@njit(cache=True, error_model="numpy", inline="always")
def _keep_factor(key, index, rate, keep_scale):
    """The dropout factor of probability ``index``: 0 or ``1 / (1 - rate)``
    (1 when ``rate`` is 0)."""
    if rate == 0.0:
        return 1.0
    return 0.0 if _uniform(key, index) < rate else keep_scale


@njit(cache=True, error_model="numpy", inline="always")
def _keeps(attention_mask, use_attention_mask, query_mask, use_query_mask, value_mask, use_value_mask,
           key_mask, use_key_mask, causal, b, i, j):
    """Whether query step ``i`` of sample ``b`` may attend to value step ``j``."""
    if use_attention_mask and attention_mask[b, i, j] == 0.0:
        return False
    if use_query_mask and query_mask[b, i] == 0.0:
        return False
    if use_value_mask and value_mask[b, j] == 0.0:
        return False
    if use_key_mask and key_mask[b, j] == 0.0:
        return False
    return not (causal and j > i)


@njit(cache=True, error_model="numpy")
def attention_keep_mask(attention_mask, use_attention_mask, query_mask, use_query_mask, value_mask, use_value_mask,
                        key_mask, use_key_mask, causal, mask):
    """Combine every mask source into one keep-mask, as Keras ANDs them.

    attention_mask: (batch, Tq, Tv); query_mask: (batch, Tq); value_mask,
    key_mask: (batch, Tv); each read only when its ``use_*`` flag is set
    (otherwise any array stands in). ``causal`` lets step ``i`` attend to
    steps ``j <= i`` only. mask: (batch, Tq, Tv) output, 1.0 = attend.
    """
    batch, query_steps, value_steps = mask.shape
    for b in range(batch):
        for i in range(query_steps):
            for j in range(value_steps):
                keep = _keeps(attention_mask, use_attention_mask, query_mask, use_query_mask, value_mask,
                              use_value_mask, key_mask, use_key_mask, causal, b, i, j)
                mask[b, i, j] = 1.0 if keep else 0.0


@njit(cache=True, error_model="numpy", inline="always")
def _masked_softmax_row(scores, mask, use_mask, b, i):
    """Softmax of ``scores[i, :]`` in place over the value steps sample ``b``'s
    query step ``i`` may attend to; masked entries (and a row with none
    kept) become 0. The maximum stays in the scores' dtype, so float32
    rows take float32 exponentials."""
    value_steps = scores.shape[1]
    largest = scores[i, 0]
    found = not use_mask
    if use_mask:
        for j in range(value_steps):
            if mask[b, i, j] != 0.0 and (not found or scores[i, j] > largest):
                largest = scores[i, j]
                found = True
        if not found:
            for j in range(value_steps):
                scores[i, j] = 0.0
            return
    else:
        for j in range(1, value_steps):
            largest = max(largest, scores[i, j])
    total = 0.0
    for j in range(value_steps):
        if not use_mask or mask[b, i, j] != 0.0:
            e = math.exp(scores[i, j] - largest)
            scores[i, j] = e
            total += e
        else:
            scores[i, j] = 0.0
    inverse = 1.0 / total
    for j in range(value_steps):
        scores[i, j] *= inverse


@njit(cache=True, error_model="numpy", inline="always")
def _softmax_grad(p, dp, row_dot):
    """``d score`` of a softmax output ``p`` given ``dp`` and the row's
    ``sum(dp * p)``."""
    return p * (dp - row_dot)


@njit(cache=True, error_model="numpy", inline="always")
def _gather_head(source, b, n, factor, block):
    """``block[t, :] = factor * source[b, t, n, :]``."""
    steps, width = block.shape
    for t in range(steps):
        for d in range(width):
            block[t, d] = source[b, t, n, d] * factor


@njit(cache=True, error_model="numpy", inline="always")
def _scatter_head(block, factor, b, n, target):
    """``target[b, t, n, :] = factor * block[t, :]``."""
    steps, width = block.shape
    for t in range(steps):
        for d in range(width):
            target[b, t, n, d] = block[t, d] * factor


@njit(cache=True, error_model="numpy", inline="always")
def _block(scratch, offset, rows, cols):
    return scratch[offset:offset + rows * cols].reshape(rows, cols)


@njit(cache=True, error_model="numpy", inline="always")
def _dropped_probs(probs, b, n, key, rate, keep_scale, out):
    """``out = probs[b, n] * dropout factors``."""
    heads, query_steps, value_steps = probs.shape[1], probs.shape[2], probs.shape[3]
    base = (b * heads + n) * query_steps * value_steps
    for i in range(query_steps):
        for j in range(value_steps):
            out[i, j] = probs[b, n, i, j] * _keep_factor(key, base + i * value_steps + j, rate, keep_scale)


@njit(cache=True, error_model="numpy")
def attention_forward(query, key, value, mask, use_mask, scale, rate, seed, step, scratch, probs, context):
    """``probs = softmax(scale * q k^T)`` over the kept value steps of each
    head and ``context = dropout(probs) v``.

    query, key, value, context: 4-D views (module docstring); mask: the
    keep-mask (batch, Tq, Tv), read when ``use_mask``; rate: dropout rate
    on the probabilities (0 for none), drawn from (seed, step); scratch:
    the CPU's per-head blocks; probs (batch, heads, Tq, Tv) and context:
    outputs.
    """
    batch, query_steps, heads, key_dim = query.shape
    value_steps, value_dim = value.shape[1], value.shape[3]
    hash_key, keep_scale = _dropout_constants(rate, seed, step)
    q = _block(scratch, 0, query_steps, key_dim)
    offset = query_steps * key_dim
    k = _block(scratch, offset, value_steps, key_dim)
    offset += value_steps * key_dim
    v = _block(scratch, offset, value_steps, value_dim)
    offset += value_steps * value_dim
    dropped = _block(scratch, offset, query_steps, value_steps)
    offset += query_steps * value_steps
    out = _block(scratch, offset, query_steps, value_dim)
    for b in range(batch):
        for n in range(heads):
            _gather_head(query, b, n, scale, q)
            _gather_head(key, b, n, 1.0, k)
            _gather_head(value, b, n, 1.0, v)
            scores = probs[b, n]
            np.dot(q, k.T, scores)
            for i in range(query_steps):
                _masked_softmax_row(scores, mask, use_mask, b, i)
            if rate == 0.0:
                np.dot(scores, v, out)
            else:
                _dropped_probs(probs, b, n, hash_key, rate, keep_scale, dropped)
                np.dot(dropped, v, out)
            _scatter_head(out, 1.0, b, n, context)


@njit(cache=True, error_model="numpy")
def attention_backward(query, key, value, probs, dcontext, dprobs, use_dprobs, scale, rate, seed, step, scratch,
                       dscores, dquery, dkey, dvalue):
    """Gradients of ``attention_forward`` given its ``probs``.

    dcontext: the gradient of ``context``; dprobs: the gradient of
    ``probs`` (the attention scores an extra output carries), added when
    ``use_dprobs``; rate, seed, step: as in the forward, whose dropout
    factors are drawn again; dscores (batch, heads, Tq, Tv): the gradient
    of the scaled scores (a state buffer); dquery, dkey, dvalue: outputs
    shaped like query, key, value.
    """
    batch, query_steps, heads, key_dim = query.shape
    value_steps, value_dim = value.shape[1], value.shape[3]
    hash_key, keep_scale = _dropout_constants(rate, seed, step)
    q = _block(scratch, 0, query_steps, key_dim)
    offset = query_steps * key_dim
    k = _block(scratch, offset, value_steps, key_dim)
    offset += value_steps * key_dim
    v = _block(scratch, offset, value_steps, value_dim)
    offset += value_steps * value_dim
    dropped = _block(scratch, offset, query_steps, value_steps)
    offset += query_steps * value_steps
    dout = _block(scratch, offset, query_steps, value_dim)
    offset += query_steps * value_dim
    dv = _block(scratch, offset, value_steps, value_dim)
    offset += value_steps * value_dim
    dq = _block(scratch, offset, query_steps, key_dim)
    offset += query_steps * key_dim
    dk = _block(scratch, offset, value_steps, key_dim)
    for b in range(batch):
        for n in range(heads):
            _gather_head(query, b, n, scale, q)
            _gather_head(key, b, n, 1.0, k)
            _gather_head(value, b, n, 1.0, v)
            _gather_head(dcontext, b, n, 1.0, dout)
            _dropped_probs(probs, b, n, hash_key, rate, keep_scale, dropped)
            np.dot(dropped.T, dout, dv)
            _scatter_head(dv, 1.0, b, n, dvalue)
            ds = dscores[b, n]
            np.dot(dout, v.T, ds)
            base = (b * heads + n) * query_steps * value_steps
            for i in range(query_steps):
                row_dot = 0.0
                for j in range(value_steps):
                    g = ds[i, j] * _keep_factor(hash_key, base + i * value_steps + j, rate, keep_scale)
                    if use_dprobs:
                        g += dprobs[b, n, i, j]
                    ds[i, j] = g
                    row_dot += g * probs[b, n, i, j]
                for j in range(value_steps):
                    ds[i, j] = _softmax_grad(probs[b, n, i, j], ds[i, j], row_dot)
            np.dot(ds, k, dq)
            _scatter_head(dq, scale, b, n, dquery)
            np.dot(ds.T, q, dk)
            _scatter_head(dk, 1.0, b, n, dkey)
