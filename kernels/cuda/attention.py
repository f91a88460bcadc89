"""Scaled dot-product attention on the GPU, twins of ``kernels/cpu/attention.py``.

Each kernel gives one thread to one output value and sums its inner
dimension in a loop: a thread per (sample, head, query step, value step)
for the scores, per (sample, head, query step) for a softmax row and for
the gradient of the scores (two passes over the row), and per element of
``context``, ``dquery``, ``dkey`` and ``dvalue``. The views are read in the
projections' layout, so ``scratch`` (the CPU's per-head blocks) is not used.
The softmax, the keep-mask and the dropout factors are the CPU's helpers,
so both devices mask and drop the same pairs.
"""

import numpy as np
from numba import cuda

from nkeras.kernels.cpu.attention import _keep_factor, _keeps, _masked_softmax_row, _softmax_grad
from nkeras.kernels.cpu.dropout import _dropout_constants
from nkeras.kernels.cuda.launch import THREADS, blocks

# Helpers that take arrays run on the simulator only as CUDA device functions.
_masked_softmax_row_device = cuda.jit(device=True)(_masked_softmax_row.py_func)
_keeps_device = cuda.jit(device=True)(_keeps.py_func)


@cuda.jit(cache=True)
def _keep_mask(attention_mask, use_attention_mask, query_mask, use_query_mask, value_mask, use_value_mask,
               key_mask, use_key_mask, causal, mask):
    query_steps, value_steps = mask.shape[1], mask.shape[2]
    for index in range(cuda.grid(1), mask.size, cuda.gridsize(1)):
        b = index // (query_steps * value_steps)
        rest = index - b * query_steps * value_steps
        i = rest // value_steps
        j = rest - i * value_steps
        keep = _keeps_device(attention_mask, use_attention_mask, query_mask, use_query_mask, value_mask,
                             use_value_mask, key_mask, use_key_mask, causal, b, i, j)
        mask[b, i, j] = 1.0 if keep else 0.0


def attention_keep_mask(attention_mask, use_attention_mask, query_mask, use_query_mask, value_mask, use_value_mask,
                        key_mask, use_key_mask, causal, mask):
    """Combine every mask source into one keep-mask, as the CPU twin."""
    _keep_mask[blocks(mask.size), THREADS](
        attention_mask, bool(use_attention_mask), query_mask, bool(use_query_mask), value_mask, bool(use_value_mask),
        key_mask, bool(use_key_mask), bool(causal), mask,
    )


@cuda.jit(cache=True)
def _scores(query, key, scale, probs):
    heads, query_steps, value_steps = probs.shape[1], probs.shape[2], probs.shape[3]
    key_dim = query.shape[3]
    for index in range(cuda.grid(1), probs.size, cuda.gridsize(1)):
        j = index % value_steps
        row = index // value_steps
        i = row % query_steps
        n = (row // query_steps) % heads
        b = row // (query_steps * heads)
        total = 0.0
        for h in range(key_dim):
            total += (query[b, i, n, h] * scale) * key[b, j, n, h]
        probs[b, n, i, j] = total


@cuda.jit(cache=True)
def _softmax_rows(mask, use_mask, probs):
    heads, query_steps = probs.shape[1], probs.shape[2]
    rows = probs.shape[0] * heads * query_steps
    for row in range(cuda.grid(1), rows, cuda.gridsize(1)):
        i = row % query_steps
        n = (row // query_steps) % heads
        b = row // (query_steps * heads)
        _masked_softmax_row_device(probs[b, n], mask, use_mask, b, i)


@cuda.jit(cache=True)
def _context(probs, value, rate, hash_key, keep_scale, context):
    query_steps, heads, value_dim = context.shape[1], context.shape[2], context.shape[3]
    value_steps = value.shape[1]
    for index in range(cuda.grid(1), context.size, cuda.gridsize(1)):
        d = index % value_dim
        rest = index // value_dim
        n = rest % heads
        rest //= heads
        i = rest % query_steps
        b = rest // query_steps
        base = ((b * heads + n) * query_steps + i) * value_steps
        total = 0.0
        for j in range(value_steps):
            factor = _keep_factor(hash_key, base + j, rate, keep_scale)
            total += probs[b, n, i, j] * factor * value[b, j, n, d]
        context[b, i, n, d] = total


def attention_forward(query, key, value, mask, use_mask, scale, rate, seed, step, scratch, probs, context):
    """``probs = softmax(scale * q k^T)`` over the kept value steps and
    ``context = dropout(probs) v``, as the CPU twin (``scratch`` unused)."""
    hash_key, keep_scale = _dropout_constants(rate, seed, step)
    _scores[blocks(probs.size), THREADS](query, key, float(scale), probs)
    rows = probs.shape[0] * probs.shape[1] * probs.shape[2]
    _softmax_rows[blocks(rows), THREADS](mask, bool(use_mask), probs)
    _context[blocks(context.size), THREADS](probs, value, float(rate), np.uint64(hash_key), keep_scale, context)


@cuda.jit(cache=True)
def _dvalue(probs, dcontext, rate, hash_key, keep_scale, dvalue):
    value_steps, heads, value_dim = dvalue.shape[1], dvalue.shape[2], dvalue.shape[3]
    query_steps = dcontext.shape[1]
    for index in range(cuda.grid(1), dvalue.size, cuda.gridsize(1)):
        d = index % value_dim
        rest = index // value_dim
        n = rest % heads
        rest //= heads
        j = rest % value_steps
        b = rest // value_steps
        base = (b * heads + n) * query_steps * value_steps + j
        total = 0.0
        for i in range(query_steps):
            factor = _keep_factor(hash_key, base + i * value_steps, rate, keep_scale)
            total += probs[b, n, i, j] * factor * dcontext[b, i, n, d]
        dvalue[b, j, n, d] = total


@cuda.jit(cache=True)
def _dscores(value, probs, dcontext, dprobs, use_dprobs, rate, hash_key, keep_scale, dscores):
    heads, query_steps, value_steps = probs.shape[1], probs.shape[2], probs.shape[3]
    value_dim = value.shape[3]
    rows = probs.shape[0] * heads * query_steps
    for row in range(cuda.grid(1), rows, cuda.gridsize(1)):
        i = row % query_steps
        n = (row // query_steps) % heads
        b = row // (query_steps * heads)
        base = row * value_steps
        row_dot = 0.0
        for j in range(value_steps):
            total = 0.0
            for d in range(value_dim):
                total += dcontext[b, i, n, d] * value[b, j, n, d]
            g = total * _keep_factor(hash_key, base + j, rate, keep_scale)
            if use_dprobs:
                g += dprobs[b, n, i, j]
            dscores[b, n, i, j] = g
            row_dot += g * probs[b, n, i, j]
        for j in range(value_steps):
            dscores[b, n, i, j] = _softmax_grad(probs[b, n, i, j], dscores[b, n, i, j], row_dot)


@cuda.jit(cache=True)
def _dquery(key, dscores, scale, dquery):
    query_steps, heads, key_dim = dquery.shape[1], dquery.shape[2], dquery.shape[3]
    value_steps = key.shape[1]
    for index in range(cuda.grid(1), dquery.size, cuda.gridsize(1)):
        h = index % key_dim
        rest = index // key_dim
        n = rest % heads
        rest //= heads
        i = rest % query_steps
        b = rest // query_steps
        total = 0.0
        for j in range(value_steps):
            total += dscores[b, n, i, j] * key[b, j, n, h]
        dquery[b, i, n, h] = total * scale


@cuda.jit(cache=True)
def _dkey(query, dscores, scale, dkey):
    value_steps, heads, key_dim = dkey.shape[1], dkey.shape[2], dkey.shape[3]
    query_steps = query.shape[1]
    for index in range(cuda.grid(1), dkey.size, cuda.gridsize(1)):
        h = index % key_dim
        rest = index // key_dim
        n = rest % heads
        rest //= heads
        j = rest % value_steps
        b = rest // value_steps
        total = 0.0
        for i in range(query_steps):
            total += dscores[b, n, i, j] * (query[b, i, n, h] * scale)
        dkey[b, j, n, h] = total


def attention_backward(query, key, value, probs, dcontext, dprobs, use_dprobs, scale, rate, seed, step, scratch,
                       dscores, dquery, dkey, dvalue):
    """Gradients of ``attention_forward``, as the CPU twin (``scratch`` unused)."""
    hash_key, keep_scale = _dropout_constants(rate, seed, step)
    hash_key = np.uint64(hash_key)
    rate = float(rate)
    _dvalue[blocks(dvalue.size), THREADS](probs, dcontext, rate, hash_key, keep_scale, dvalue)
    rows = probs.shape[0] * probs.shape[1] * probs.shape[2]
    _dscores[blocks(rows), THREADS](
        value, probs, dcontext, dprobs, bool(use_dprobs), rate, hash_key, keep_scale, dscores
    )
    _dquery[blocks(dquery.size), THREADS](key, dscores, float(scale), dquery)
    _dkey[blocks(dkey.size), THREADS](query, dscores, float(scale), dkey)
