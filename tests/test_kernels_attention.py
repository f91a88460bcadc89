"""Attention kernels against float64 NumPy references, on the CPU and on the
(simulated) GPU: masks of every source, causal, dropout, Tq != Tv, an extra
gradient on the attention scores."""

import numpy as np
import pytest

from devices import ops_for

# (batch, query_steps, value_steps, heads, key_dim, value_dim)
SHAPES = [(1, 1, 1, 1, 1, 1), (2, 5, 3, 3, 4, 2), (3, 7, 7, 2, 5, 5), (2, 1, 9, 4, 3, 6), (4, 28, 28, 4, 16, 16)]
MASKS = ["none", "random", "causal", "masked_row"]
# The simulator runs each GPU thread in Python: a few small cases, each
# mask once, dropout in float32.
CUDA_CASES = [
    ((1, 1, 1, 1, 1, 1), "none", np.float64, 0.0),
    ((2, 3, 4, 2, 3, 2), "random", np.float32, 0.4),
    ((2, 4, 4, 1, 2, 3), "causal", np.float64, 0.0),
    ((2, 3, 4, 2, 3, 2), "masked_row", np.float64, 0.4),
    ((1, 4, 3, 2, 2, 3), "none", np.float32, 0.0),
]


def _cases():
    def param(device, shape, mask, dtype, rate):
        name = f"{device}-{shape}-{mask}-{np.dtype(dtype).name}-{rate}"
        return pytest.param(device, shape, mask, dtype, rate, id=name)

    cpu = [param("cpu", shape, mask, dtype, rate)
           for shape in SHAPES for mask in MASKS for dtype in (np.float32, np.float64) for rate in (0.0, 0.4)]
    return cpu + [param("cuda", *case) for case in CUDA_CASES]


def _tolerance(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


def _keep_mask(kind, batch, query_steps, value_steps, rng):
    if kind == "none":
        return np.ones((batch, query_steps, value_steps)), False
    if kind == "causal":
        causal = np.tril(np.ones((query_steps, value_steps)))
        return np.broadcast_to(causal, (batch, query_steps, value_steps)).copy(), True
    mask = (rng.uniform(size=(batch, query_steps, value_steps)) < 0.6).astype(np.float64)
    mask[:, :, 0] = 1.0
    if kind == "masked_row":
        mask[0, query_steps // 2] = 0.0
    return mask, True


def _dropout_factors(rate, seed, step, shape, dtype):
    """The factors the dropout kernel draws for a (batch, heads, Tq, Tv)
    array viewed as rows of Tv: the attention kernels index the same stream."""
    factors = np.empty(shape, dtype).reshape(-1, shape[-1])
    ones = np.ones_like(factors)
    ops_for("cpu").dropout_forward(ones, rate, seed, step, factors, np.empty_like(ones))
    return factors.reshape(shape).astype(np.float64)


def _reference(q, k, v, mask, scale, factors, dcontext, dprobs):
    scores = np.einsum("binh,bjnh->bnij", q * scale, k)
    keep = np.broadcast_to(mask[:, None] != 0, scores.shape)
    shifted = np.where(keep, scores, -np.inf)
    largest = shifted.max(axis=-1, keepdims=True)
    exp = np.where(keep, np.exp(shifted - np.where(np.isfinite(largest), largest, 0.0)), 0.0)
    total = exp.sum(axis=-1, keepdims=True)
    probs = np.divide(exp, total, out=np.zeros_like(exp), where=total > 0)
    dropped = probs * factors
    context = np.einsum("bnij,bjnd->bind", dropped, v)
    dprob = np.einsum("bind,bjnd->bnij", dcontext, v) * factors + dprobs
    dscores = probs * (dprob - (dprob * probs).sum(axis=-1, keepdims=True))
    dq = np.einsum("bnij,bjnh->binh", dscores, k) * scale
    dk = np.einsum("bnij,binh->bjnh", dscores, q * scale)
    dv = np.einsum("bnij,bind->bjnd", dropped, dcontext)
    return probs, context, dq, dk, dv


def _scratch_size(query_steps, value_steps, key_dim, value_dim):
    return (2 * (query_steps + value_steps) * key_dim + (2 * value_steps + query_steps) * value_dim
            + query_steps * value_steps)


@pytest.mark.parametrize("device,shape,mask_kind,dtype,rate", _cases())
def test_attention_matches_numpy(device, shape, mask_kind, dtype, rate, rng):
    ops = ops_for(device)
    batch, query_steps, value_steps, heads, key_dim, value_dim = shape
    q = rng.standard_normal((batch, query_steps, heads, key_dim))
    k = rng.standard_normal((batch, value_steps, heads, key_dim))
    v = rng.standard_normal((batch, value_steps, heads, value_dim))
    dcontext = rng.standard_normal((batch, query_steps, heads, value_dim))
    probs_shape = (batch, heads, query_steps, value_steps)
    dprobs = rng.standard_normal(probs_shape)
    mask, use_mask = _keep_mask(mask_kind, batch, query_steps, value_steps, rng)
    scale, seed, step = 1.0 / np.sqrt(key_dim), 11, 4
    factors = _dropout_factors(rate, seed, step, probs_shape, dtype)
    use_dprobs = rate > 0
    expected = _reference(q, k, v, mask, scale, factors, dcontext, dprobs if use_dprobs else 0.0)

    q, k, v, dcontext, dprobs, mask = (np.ascontiguousarray(a, dtype) for a in (q, k, v, dcontext, dprobs, mask))
    scratch = np.full(_scratch_size(query_steps, value_steps, key_dim, value_dim), np.nan, dtype)
    probs = np.full(probs_shape, np.nan, dtype)
    context = np.full(dcontext.shape, np.nan, dtype)
    ops.attention_forward(q, k, v, mask, use_mask, scale, rate, seed, step, scratch, probs, context)
    dscores = np.full(probs_shape, np.nan, dtype)
    grads = [np.full(a.shape, np.nan, dtype) for a in (q, k, v)]
    ops.attention_backward(q, k, v, probs, dcontext, dprobs, use_dprobs, scale, rate, seed, step, scratch,
                           dscores, *grads)
    tolerance = _tolerance(dtype)
    for got, want, name in zip([probs, context] + grads, expected, ["probs", "context", "dquery", "dkey", "dvalue"]):
        np.testing.assert_allclose(got, want, err_msg=name, **tolerance)
    if mask_kind == "masked_row":
        assert np.all(probs[0, :, query_steps // 2] == 0) and np.all(context[0, query_steps // 2] == 0)
    if rate > 0 and probs.size > 100:
        assert 0.3 < np.mean(factors == 0) < 0.5


def test_attention_forward_backward_against_finite_differences(rng):
    """The reference's gradient formulas, checked once by central differences
    of the CPU forward kernel (float64, with a mask and dropout)."""
    from tests.gradcheck import numerical_grad

    ops = ops_for("cpu")
    batch, query_steps, value_steps, heads, key_dim, value_dim = 2, 3, 4, 2, 3, 2
    arrays = [rng.standard_normal((batch, steps, heads, dim))
              for steps, dim in ((query_steps, key_dim), (value_steps, key_dim), (value_steps, value_dim))]
    mask, _ = _keep_mask("masked_row", batch, query_steps, value_steps, rng)
    probs_shape = (batch, heads, query_steps, value_steps)
    probe_context = rng.standard_normal((batch, query_steps, heads, value_dim))
    probe_probs = rng.standard_normal(probs_shape)
    scratch = np.zeros(_scratch_size(query_steps, value_steps, key_dim, value_dim))

    def forward():
        probs, context = np.empty(probs_shape), np.empty(probe_context.shape)
        ops.attention_forward(*arrays, mask, True, 0.5, 0.3, 5, 2, scratch, probs, context)
        return probs, context

    def objective(_):
        probs, context = forward()
        return np.sum(probs * probe_probs) + np.sum(context * probe_context)

    probs, _ = forward()
    grads = [np.empty_like(a) for a in arrays]
    ops.attention_backward(*arrays, probs, probe_context, probe_probs, True, 0.5, 0.3, 5, 2, scratch,
                           np.empty(probs_shape), *grads)
    for array, grad in zip(arrays, grads):
        np.testing.assert_allclose(grad, numerical_grad(objective, array), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("sources", [(True, False, False, False, False), (False, True, True, False, True),
                                     (True, True, True, True, True), (False, False, False, False, False)])
def test_keep_mask_combines_every_source(device, sources, rng):
    ops = ops_for(device)
    use_attention, use_query, use_value, use_key, causal = sources
    batch, query_steps, value_steps = 2, 4, 5
    attention_mask = (rng.uniform(size=(batch, query_steps, value_steps)) < 0.7).astype(np.float32)
    query_mask = (rng.uniform(size=(batch, query_steps)) < 0.7).astype(np.float32)
    value_mask = (rng.uniform(size=(batch, value_steps)) < 0.7).astype(np.float32)
    key_mask = (rng.uniform(size=(batch, value_steps)) < 0.7).astype(np.float32)
    expected = np.ones((batch, query_steps, value_steps), bool)
    if use_attention:
        expected &= attention_mask != 0
    if use_query:
        expected &= query_mask[:, :, None] != 0
    if use_value:
        expected &= value_mask[:, None, :] != 0
    if use_key:
        expected &= key_mask[:, None, :] != 0
    if causal:
        expected &= np.tril(np.ones((query_steps, value_steps), bool))
    mask = np.full((batch, query_steps, value_steps), np.nan, np.float32)
    ops.attention_keep_mask(attention_mask, use_attention, query_mask, use_query, value_mask, use_value,
                            key_mask, use_key, causal, mask)
    np.testing.assert_array_equal(mask, expected.astype(np.float32))
