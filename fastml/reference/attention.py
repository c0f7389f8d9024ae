"""Float64 references for attention (the test oracle): plain ``softmax(Q K^T * scale + bias) V`` with the
whole score matrix materialised, backward in closed form.

Semantics shared with ``fastml.functional.attention`` (see its module docstring): boolean mask True =
may attend, float mask added; causal is top-left aligned (key j <= query i) or, with
``causal_alignment="bottom_right"``, bottom-right aligned (j <= i + S - L); ``sliding_window=w`` allows
i + d - w < j <= i + d (d = 0, or S - L bottom-right); a row with no allowed key gives output 0, logsumexp
-inf and zero gradients; GQA maps query head h to kv head h // (Hq // Hkv); dropout keeps (i, j) of
flattened batch*head ``bh`` iff ``dropout_keep_mask`` says so and scales kept probabilities by 1 / (1 - p).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["scaled_dot_product_attention", "scaled_dot_product_attention_forward",
           "scaled_dot_product_attention_backward", "dropout_keep_mask", "attention_bias",
           "multi_head_attention_forward", "additive_attention", "sinusoidal_positional_encoding"]

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z):
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def dropout_threshold(dropout_p):
    """Integer keep threshold: keep iff the 24-bit hash >= floor(p * 2^24)."""
    return int(math.floor(float(dropout_p) * (1 << 24)))


def _mix32(h):
    """murmur3 32-bit finaliser on uint32 arrays (wrapping arithmetic)."""
    h = np.asarray(h, dtype=np.uint32)
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def dropout_keep_mask(seed, bh, rows, cols, dropout_p):
    """Keep mask (len(bh), len(rows), len(cols)) of bool for flattened batch*head indices ``bh`` (array),
    query rows and key columns (arrays). Per (bh, row) a 32-bit key
    rowkey = mix64(mix64(mix64(seed ^ golden64) + bh) + row) >> 32 (splitmix64 finaliser); per column
    keep iff mix32(rowkey ^ (col * 0x9E3779B9 mod 2^32)) >> 8 >= floor(p * 2^24) (murmur3 finaliser).
    The compiled kernels compute the same hash (csrc/ops/attention/attention.h)."""
    with np.errstate(over="ignore"):
        a = _mix64(np.array([int(seed) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) ^ _GOLDEN)
        bh = np.asarray(bh, dtype=np.uint64).reshape(-1, 1, 1)
        rows = np.asarray(rows, dtype=np.uint64).reshape(1, -1, 1)
        rk = (_mix64(_mix64(a + bh) + rows) >> np.uint64(32)).astype(np.uint32)
        cols = np.asarray(cols, dtype=np.uint64).astype(np.uint32).reshape(1, 1, -1)
        h = _mix32(rk ^ (cols * np.uint32(0x9E3779B9)))
    return (h >> np.uint32(8)) >= np.uint32(dropout_threshold(dropout_p))


def attention_bias(L, S, attn_mask=None, is_causal=False, sliding_window=None, dtype=np.float64,
                   causal_alignment="top_left"):
    """Additive bias (..., L, S): 0 where allowed, -inf where masked, plus a float mask."""
    i = np.arange(L)[:, None] + (S - L if causal_alignment == "bottom_right" else 0)
    j = np.arange(S)[None, :]
    allowed = np.ones((L, S), dtype=bool)
    if is_causal or sliding_window is not None:
        allowed &= j <= i
    if sliding_window is not None:
        allowed &= j > i - int(sliding_window)
    bias = np.where(allowed, 0.0, -np.inf).astype(dtype)
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        if m.dtype == bool:
            bias = bias + np.where(m, 0.0, -np.inf).astype(dtype)
        else:
            bias = bias + m.astype(dtype)
    return bias


def _expand_kv(x, Hq):
    if x.ndim < 3 or x.shape[-3] == Hq:
        return x
    return np.repeat(x, Hq // x.shape[-3], axis=-3)


def _probs(q, k, v, attn_mask, is_causal, scale, enable_gqa, sliding_window, causal_alignment="top_left"):
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    if enable_gqa and q.ndim >= 3:
        k, v = _expand_kv(k, q.shape[-3]), _expand_kv(v, q.shape[-3])
    E = q.shape[-1]
    sc = (1.0 / math.sqrt(E) if E else 1.0) if scale is None else float(scale)
    s = (q @ np.swapaxes(k, -1, -2)) * sc + attention_bias(q.shape[-2], k.shape[-2], attn_mask, is_causal,
                                                           sliding_window, causal_alignment=causal_alignment)
    m = np.max(s, axis=-1, keepdims=True)
    dead = ~np.isfinite(m) & (m < 0)  # every key masked
    m = np.where(dead, 0.0, m)
    e = np.exp(s - m)
    z = np.sum(e, axis=-1, keepdims=True)
    p = np.where(dead, 0.0, e / np.where(dead, 1.0, z))
    with np.errstate(divide="ignore"):
        lse = np.where(dead, -np.inf, m + np.log(np.where(dead, 1.0, z)))[..., 0]
    return q, k, v, sc, p, lse


def _keep(shape_bh, L, S, dropout_p, seed):
    n = int(np.prod(shape_bh)) if len(shape_bh) else 1
    keep = dropout_keep_mask(seed, np.arange(n), np.arange(L), np.arange(S), dropout_p)
    return keep.reshape(tuple(shape_bh) + (L, S)).astype(np.float64) / (1.0 - dropout_p)


def scaled_dot_product_attention_forward(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                         scale=None, enable_gqa=False, *, seed=None, sliding_window=None,
                                         causal_alignment="top_left"):
    """(output, logsumexp) in float64."""
    q, k, v, sc, p, lse = _probs(query, key, value, attn_mask, is_causal, scale, enable_gqa, sliding_window,
                                 causal_alignment)
    if dropout_p > 0:
        p = p * _keep(p.shape[:-2], p.shape[-2], p.shape[-1], dropout_p, seed)
    return p @ v, lse


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, *, seed=None, sliding_window=None, causal_alignment="top_left"):
    return scaled_dot_product_attention_forward(query, key, value, attn_mask, dropout_p, is_causal, scale,
                                                enable_gqa, seed=seed, sliding_window=sliding_window,
                                                causal_alignment=causal_alignment)[0]


def scaled_dot_product_attention_backward(grad_output, query, key, value, output=None, logsumexp=None,
                                          attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                          enable_gqa=False, seed=None, sliding_window=None, *,
                                          causal_alignment="top_left"):
    """Closed form: dPd = g V^T, dP = dPd o Z, dS = P o (dP - rowsum(P o dP)), dQ = scale dS K,
    dK = scale dS^T Q, dV = (P o Z)^T g; GQA gradients summed over each kv head's group."""
    q, k, v, sc, p, _ = _probs(query, key, value, attn_mask, is_causal, scale, enable_gqa, sliding_window,
                               causal_alignment)
    g = np.asarray(grad_output, dtype=np.float64)
    z = _keep(p.shape[:-2], p.shape[-2], p.shape[-1], dropout_p, seed) if dropout_p > 0 else 1.0
    pd = p * z
    dp = (g @ np.swapaxes(v, -1, -2)) * z
    ds = p * (dp - np.sum(p * dp, axis=-1, keepdims=True))
    dq = (ds @ k) * sc
    dk = (np.swapaxes(ds, -1, -2) @ q) * sc
    dv = np.swapaxes(pd, -1, -2) @ g
    hk = np.asarray(key).shape[-3] if np.ndim(key) >= 3 else None
    if enable_gqa and hk is not None and dk.shape[-3] != hk:
        grp = dk.shape[-3] // hk
        dk = dk.reshape(dk.shape[:-3] + (hk, grp) + dk.shape[-2:]).sum(axis=-3)
        dv = dv.reshape(dv.shape[:-3] + (hk, grp) + dv.shape[-2:]).sum(axis=-3)
    return dq, dk, dv


def multi_head_attention_forward(query, key, value, num_heads, in_proj_weight, in_proj_bias, out_proj_weight,
                                 out_proj_bias, key_padding_mask=None, attn_mask=None, need_weights=False,
                                 is_causal=False, batch_first=False, average_attn_weights=True):
    """torch.nn.MultiheadAttention numerics in float64 (no dropout)."""
    f = lambda a: None if a is None else np.asarray(a, dtype=np.float64)  # noqa: E731
    q, k, v = f(query), f(key), f(value)
    if not batch_first:
        q, k, v = (np.swapaxes(a, 0, 1) for a in (q, k, v))
    N, L, Emb = q.shape
    S = k.shape[1]
    hd = Emb // num_heads
    w, b = f(in_proj_weight), f(in_proj_bias)
    bq, bk, bv = (None, None, None) if b is None else np.split(b, 3)
    wq, wk, wv = np.split(w, 3)
    lin = lambda x, W, bb: x @ W.T + (0.0 if bb is None else bb)  # noqa: E731
    heads = lambda x, T: x.reshape(N, T, num_heads, hd).transpose(0, 2, 1, 3)  # noqa: E731
    qh, kh, vh = heads(lin(q, wq, bq), L), heads(lin(k, wk, bk), S), heads(lin(v, wv, bv), S)
    bias = np.zeros((N, 1, L, S))
    if attn_mask is not None:
        am = np.asarray(attn_mask)
        am = np.where(am, -np.inf, 0.0) if am.dtype == bool else am.astype(np.float64)  # torch MHA: True = masked
        am = am.reshape(N, num_heads, L, S) if am.ndim == 3 else am
        bias = bias + am
    elif is_causal:
        bias = bias + attention_bias(L, S, None, True)
    if key_padding_mask is not None:
        kp = np.asarray(key_padding_mask)
        kp = np.where(kp, -np.inf, 0.0) if kp.dtype == bool else kp.astype(np.float64)
        bias = bias + kp[:, None, None, :]
    _, _, _, _, p, _ = _probs(qh, kh, vh, bias, False, None, False, None)
    o = (p @ vh).transpose(0, 2, 1, 3).reshape(N, L, Emb)
    out = lin(o, f(out_proj_weight), f(out_proj_bias))
    if not batch_first:
        out = np.swapaxes(out, 0, 1)
    wts = None
    if need_weights:
        wts = p.mean(axis=1) if average_attn_weights else p
    return out, wts


def additive_attention(query, keys, values, w_query, w_keys, v, mask=None):
    """Bahdanau: scores_j = v^T tanh(W_q q + W_k k_j); weights = softmax_j; context = sum_j w_j values_j."""
    q, K, V = (np.asarray(a, dtype=np.float64) for a in (query, keys, values))
    wq, wk, vv = (np.asarray(a, dtype=np.float64) for a in (w_query, w_keys, v))
    h = np.tanh((q @ wq.T)[:, None, :] + K @ wk.T)
    s = h @ vv
    if mask is not None:
        s = np.where(np.asarray(mask, dtype=bool), s, -np.inf)
    m = np.max(s, axis=-1, keepdims=True)
    dead = ~np.isfinite(m)
    e = np.exp(s - np.where(dead, 0.0, m))
    z = np.sum(e, axis=-1, keepdims=True)
    w = np.where(dead, 0.0, e / np.where(dead, 1.0, z))
    return np.einsum("ns,nsd->nd", w, V), w


def sinusoidal_positional_encoding(length, d_model, base=10000.0, dtype=np.float64):
    pos = np.arange(length, dtype=np.float64)[:, None]
    pe = np.zeros((length, d_model))
    for c in range(d_model):
        ang = pos[:, 0] / base ** (2 * (c // 2) / d_model)
        pe[:, c] = np.sin(ang) if c % 2 == 0 else np.cos(ang)
    return pe.astype(dtype)
