"""Attention built on scaled_dot_product_attention and linear: multi-head attention (torch
``nn.MultiheadAttention`` numerics), Bahdanau additive attention, sinusoidal positional encodings.
Exported by fastml.functional (see fastml/functional/attention.py)."""
from __future__ import annotations

import math

import numpy as np

from .. import _backend as _B
from .attention import (_additive_mask, _causal_bias_alignment, _is_causal_bias,
                        scaled_dot_product_attention_backward, scaled_dot_product_attention_forward)
from .linear import linear

_MHA = "multi_head_attention_forward"


class MultiHeadAttentionSaved:
    """What multi_head_attention_backward needs from the forward (cuDNN-style reserve): the batch-first
    inputs, the per-head projections, the attention output and logsumexp, the combined additive mask and
    the weights. Opaque to users; pass it back unchanged."""
    __slots__ = ("xq", "xk", "xv", "qh", "kh", "vh", "oh", "lse", "mask", "num_heads", "batch_first",
                 "in_proj_weight", "out_proj_weight", "has_in_bias", "has_out_bias")


def _heads(x, n, T, h):
    return np.ascontiguousarray(x.reshape(n, T, h, -1).transpose(0, 2, 1, 3))


def _merge(x):
    n, h, T, d = x.shape
    return np.ascontiguousarray(x.transpose(0, 2, 1, 3)).reshape(n, T, h * d)


def _in_proj(x, w, b, h, batch_first, parts):
    """Heads (parts, N, h, T, d) of x W^T + b for x in the caller's layout ((N, T, E) or (T, N, E)): the
    projection runs on x as given and the heads are strided views of it (rows of d contiguous floats,
    which scaled_dot_product_attention's forward reads in place)."""
    y = linear(np.ascontiguousarray(x), w, b)
    y = y.reshape(y.shape[0], y.shape[1], parts, h, -1)
    return y.transpose(2, 0, 3, 1, 4) if batch_first else y.transpose(2, 1, 3, 0, 4)


def _out_proj(oh, wo, bo, batch_first):
    """Output projection of the heads oh (N, h, L, d), written in the caller's layout (no final copy)."""
    n, h, L, d = oh.shape
    m = np.ascontiguousarray(oh.transpose(0, 2, 1, 3) if batch_first else oh.transpose(2, 0, 1, 3))
    return linear(m.reshape(m.shape[0], m.shape[1], h * d), wo, bo)


def _additive(m, dtype, masked_when_true):
    m = np.asarray(m)
    if m.dtype == bool:
        return _additive_mask(~m if masked_when_true else m, np.dtype(dtype))
    return m.astype(dtype)


def multi_head_attention_forward(query, key, value, num_heads, in_proj_weight, in_proj_bias, out_proj_weight,
                                 out_proj_bias, key_padding_mask=None, attn_mask=None, need_weights=False,
                                 is_causal=False, batch_first=False, average_attn_weights=True, *,
                                 return_saved=False):
    """Multi-head attention as ``torch.nn.MultiheadAttention`` (kdim = vdim = embed_dim, no dropout).

    Shapes: query (L, N, E), key / value (S, N, E) ((N, L, E), (N, S, E) with batch_first);
    in_proj_weight (3E, E) = [W_q; W_k; W_v], in_proj_bias (3E,) or None, out_proj_weight (E, E),
    out_proj_bias (E,) or None. ``key_padding_mask`` (N, S): bool True = ignore that key (torch's MHA
    convention, the opposite of SDPA's) or float added; ``attn_mask`` (L, S) or (N * num_heads, L, S):
    bool True = not allowed, or float added. ``is_causal=True`` without ``attn_mask`` applies the causal
    mask (torch requires the mask itself and treats is_causal as a hint; with a mask given, the mask is used).
    ``attn_mask`` may be a torch ``CausalBias`` (``causal_upper_left(L, S)`` / ``causal_lower_right(L, S)``):
    the top-left / bottom-right causal mask it stands for.
    Returns (output like query, weights or None): weights (N, L, S) averaged over heads, or
    (N, num_heads, L, S) with ``average_attn_weights=False``; a fully masked row gives zero output and
    zero weights (torch: NaN). ``return_saved=True`` appends the MultiHeadAttentionSaved object that
    multi_head_attention_backward takes.
    """
    q, k, v = (_B.as_float_array(a, _MHA, n) for a, n in ((query, "query"), (key, "key"), (value, "value")))
    dt = q.dtype
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
        raise ValueError(f"{_MHA}: expected 3-d query, key, value, got {q.shape}, {k.shape}, {v.shape}")
    xq, xk, xv = q, k, v  # the caller's layout, which the projections run on
    if not batch_first:
        q, k, v = (np.swapaxes(a, 0, 1) for a in (q, k, v))
    N, L, E = q.shape
    S = k.shape[1]
    if k.shape != (N, S, E) or v.shape != (N, S, E):
        raise ValueError(f"{_MHA}: expected key and value with batch {N}, embed {E} and one length, got "
                         f"{k.shape}, {v.shape} (batch first)")
    if num_heads < 1 or E % num_heads:
        raise ValueError(f"{_MHA}: expected embed_dim ({E}) divisible by num_heads, got {num_heads}")
    w = np.asarray(in_proj_weight, dtype=dt)
    wo = np.asarray(out_proj_weight, dtype=dt)
    if w.shape != (3 * E, E) or wo.shape != (E, E):
        raise ValueError(f"{_MHA}: expected in_proj_weight ({3 * E}, {E}) and out_proj_weight ({E}, {E}), got "
                         f"{w.shape}, {wo.shape}")
    b = None if in_proj_bias is None else np.asarray(in_proj_bias, dtype=dt)
    bo = None if out_proj_bias is None else np.asarray(out_proj_bias, dtype=dt)
    h = num_heads
    mask = None
    diag = 0  # the causal mask's diagonal: 0 top-left, S - L bottom-right
    if _is_causal_bias(attn_mask):  # its tensor holds no mask: what it stands for
        diag = S - L if _causal_bias_alignment(_MHA, attn_mask, L, S) == "bottom_right" else 0
        attn_mask, is_causal = None, True
    if attn_mask is not None:
        am = _additive(attn_mask, dt, True)
        if am.shape == (N * h, L, S):
            am = am.reshape(N, h, L, S)
        elif am.shape != (L, S):
            raise ValueError(f"{_MHA}: expected attn_mask of shape ({L}, {S}) or ({N * h}, {L}, {S}), got {am.shape}")
        mask = am
    elif is_causal:
        mask = _additive_mask(np.tri(L, S, diag, dtype=bool), np.dtype(dt))
    if key_padding_mask is not None:
        kp = _additive(key_padding_mask, dt, True)
        if kp.shape != (N, S):
            raise ValueError(f"{_MHA}: expected key_padding_mask of shape ({N}, {S}), got {kp.shape}")
        kp = kp[:, None, None, :]
        mask = kp if mask is None else mask + kp
    bq, bk, bv = (None, None, None) if b is None else (b[:E], b[E:2 * E], b[2 * E:])
    if query is key and key is value:  # self-attention: one (N L, E) x (E, 3E) product for q, k and v
        qh, kh, vh = _in_proj(xq, w, b, h, batch_first, 3)
    else:
        qh = _in_proj(xq, w[:E], bq, h, batch_first, 1)[0]
        kh = _in_proj(xk, w[E:2 * E], bk, h, batch_first, 1)[0]
        vh = _in_proj(xv, w[2 * E:], bv, h, batch_first, 1)[0]
    oh, lse = scaled_dot_product_attention_forward(qh, kh, vh, mask)
    out = _out_proj(oh, wo, bo, batch_first)
    weights = None
    if need_weights:
        s = np.matmul(qh, np.swapaxes(kh, -1, -2)) * dt.type(1.0 / math.sqrt(E // h))
        if mask is not None:
            s = s + mask
        ls = lse[..., None]
        dead = ls == -np.inf
        weights = np.where(dead, dt.type(0), np.exp(s - np.where(dead, dt.type(0), ls)))
        if average_attn_weights:
            weights = weights.mean(axis=1, dtype=dt)
    if not return_saved:
        return out, weights
    sv = MultiHeadAttentionSaved()
    sv.xq, sv.xk, sv.xv, sv.qh, sv.kh, sv.vh, sv.oh, sv.lse, sv.mask = q, k, v, qh, kh, vh, oh, lse, mask
    sv.num_heads, sv.batch_first, sv.in_proj_weight, sv.out_proj_weight = h, batch_first, w, wo
    sv.has_in_bias, sv.has_out_bias = b is not None, bo is not None
    return out, weights, sv


def multi_head_attention_backward(grad_output, saved):
    """Gradients of multi_head_attention_forward from its saved object:
    (grad_query, grad_key, grad_value, grad_in_proj_weight, grad_in_proj_bias, grad_out_proj_weight,
    grad_out_proj_bias); grad_*_bias is None where the forward had no bias. For self-attention
    (query is key is value) the input gradient is grad_query + grad_key + grad_value."""
    sv = saved
    if not isinstance(sv, MultiHeadAttentionSaved):
        raise TypeError("multi_head_attention_backward: expected the saved object of "
                        "multi_head_attention_forward(..., return_saved=True)")
    g = _B.as_float_array(grad_output, "multi_head_attention_backward", "grad_output")
    dt = sv.qh.dtype
    if not sv.batch_first:
        g = np.swapaxes(g, 0, 1)
    N, L, E = sv.xq.shape
    if g.shape != (N, L, E):
        raise ValueError(f"multi_head_attention_backward: expected grad_output of shape "
                         f"{(N, L, E) if sv.batch_first else (L, N, E)}, got {np.shape(grad_output)}")
    g = np.ascontiguousarray(g, dtype=dt)
    h = sv.num_heads
    oc = _merge(sv.oh)
    g2 = g.reshape(-1, E)
    d_wo = g2.T @ oc.reshape(-1, E)
    d_bo = g2.sum(axis=0) if sv.has_out_bias else None
    d_oh = _heads(g2 @ sv.out_proj_weight, N, L, h)
    dqh, dkh, dvh = scaled_dot_product_attention_backward(d_oh, sv.qh, sv.kh, sv.vh, sv.oh, sv.lse, sv.mask)
    w = sv.in_proj_weight
    grads_x, grads_w, grads_b = [], [], []
    for dh, x, wi in ((dqh, sv.xq, w[:E]), (dkh, sv.xk, w[E:2 * E]), (dvh, sv.xv, w[2 * E:])):
        d = _merge(dh).reshape(-1, E)
        grads_x.append((d @ wi).reshape(x.shape))
        grads_w.append(d.T @ np.ascontiguousarray(x).reshape(-1, E))
        grads_b.append(d.sum(axis=0))
    if not sv.batch_first:
        grads_x = [np.ascontiguousarray(np.swapaxes(a, 0, 1)) for a in grads_x]
    d_w = np.concatenate(grads_w, axis=0)
    d_b = np.concatenate(grads_b) if sv.has_in_bias else None
    return grads_x[0], grads_x[1], grads_x[2], d_w, d_b, d_wo, d_bo


def _additive_args(op, query, keys, values, w_query, w_keys, v, mask):
    arrs = [_B.as_float_array(a, op, n) for a, n in ((query, "query"), (keys, "keys"), (values, "values"),
                                                     (w_query, "w_query"), (w_keys, "w_keys"), (v, "v"))]
    dt = arrs[0].dtype
    q, K, V, wq, wk, vv = (a.astype(dt, copy=False) for a in arrs)
    if q.ndim != 2 or K.ndim != 3 or V.ndim != 3:
        raise ValueError(f"{op}: expected query (N, Dq), keys (N, S, Dk), values (N, S, Dv), got {q.shape}, "
                         f"{K.shape}, {V.shape}")
    N, S = K.shape[:2]
    A = vv.shape[0] if vv.ndim == 1 else -1
    if (q.shape[0] != N or V.shape[:2] != (N, S) or vv.ndim != 1 or wq.shape != (A, q.shape[1])
            or wk.shape != (A, K.shape[2])):
        raise ValueError(f"{op}: expected w_query (A, {q.shape[1]}), w_keys (A, {K.shape[2]}), v (A,), values "
                         f"({N}, {S}, Dv), got {wq.shape}, {wk.shape}, {vv.shape}, {V.shape}")
    m = None
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != bool or m.shape != (N, S):
            raise ValueError(f"{op}: expected a bool mask of shape ({N}, {S}), got {m.dtype} {m.shape}")
    return q, K, V, wq, wk, vv, m


def _additive_forward(q, K, V, wq, wk, vv, m):
    dt = q.dtype
    hid = np.tanh(linear(q, wq)[:, None, :] + linear(K, wk))  # (N, S, A)
    s = hid @ vv
    if m is not None:
        s = np.where(m, s, dt.type(-np.inf))
    mx = np.max(s, axis=-1, keepdims=True) if s.shape[-1] else np.zeros(s.shape[:-1] + (1,), dt)
    dead = mx == -np.inf
    e = np.exp(s - np.where(dead, dt.type(0), mx))
    z = e.sum(axis=-1, keepdims=True)
    wts = np.where(dead, dt.type(0), e / np.where(dead, dt.type(1), z))
    ctx = np.matmul(wts[:, None, :], V)[:, 0]
    return ctx, wts, hid


def additive_attention(query, keys, values, w_query, w_keys, v, mask=None):
    """Bahdanau additive attention (Bahdanau, Cho & Bengio 2015):
    scores_j = v^T tanh(W_q q + W_k k_j), weights = softmax_j(scores) over the keys with mask True,
    context = sum_j weights_j values_j.

    Shapes: query (N, Dq), keys (N, S, Dk), values (N, S, Dv), w_query (A, Dq), w_keys (A, Dk), v (A,),
    mask (N, S) bool or None -> (context (N, Dv), weights (N, S)). A row with no allowed key gives
    context 0 and weights 0. Computed in the input dtype (projections on the linear kernels).
    """
    args = _additive_args("additive_attention", query, keys, values, w_query, w_keys, v, mask)
    ctx, wts, _ = _additive_forward(*args)
    return ctx, wts


def additive_attention_backward(grad_context, query, keys, values, w_query, w_keys, v, mask=None,
                                grad_weights=None):
    """Gradients of additive_attention: (d_query, d_keys, d_values, d_w_query, d_w_keys, d_v).
    With u = W_q q + W_k k_j, h = tanh(u), s = h v, w = softmax(s), c = sum_j w_j values_j:
    dw_j = g.values_j (+ grad_weights), ds = w o (dw - sum_j w_j dw_j), du = (ds v^T) o (1 - h^2),
    d_query = (sum_j du_j) W_q, d_keys = du W_k, d_W_q = sum_n (sum_j du_j)^T q, d_W_k = sum du^T k,
    d_v = sum ds h, d_values = w g^T."""
    op = "additive_attention_backward"
    q, K, V, wq, wk, vv, m = _additive_args(op, query, keys, values, w_query, w_keys, v, mask)
    g = np.asarray(grad_context, dtype=q.dtype)
    if g.shape != (q.shape[0], V.shape[2]):
        raise ValueError(f"{op}: expected grad_context of shape {(q.shape[0], V.shape[2])}, got {g.shape}")
    _, wts, hid = _additive_forward(q, K, V, wq, wk, vv, m)
    dw = np.matmul(V, g[:, :, None])[:, :, 0]
    if grad_weights is not None:
        gw = np.asarray(grad_weights, dtype=q.dtype)
        if gw.shape != dw.shape:
            raise ValueError(f"{op}: expected grad_weights of shape {dw.shape}, got {gw.shape}")
        dw = dw + gw
    ds = wts * (dw - np.sum(wts * dw, axis=-1, keepdims=True))
    d_values = wts[:, :, None] * g[:, None, :]
    du = ds[:, :, None] * vv * (1 - hid * hid)
    duq = du.sum(axis=1)
    A = vv.shape[0]
    d_query = duq @ wq
    d_keys = du @ wk
    d_wq = duq.T @ q
    d_wk = du.reshape(-1, A).T @ K.reshape(-1, K.shape[2])
    d_v = np.einsum("ns,nsa->a", ds, hid)
    return d_query, d_keys, d_values, d_wq, d_wk, d_v


def sinusoidal_positional_encoding(length, d_model, base=10000.0, dtype=np.float32):
    """PE[pos, 2i] = sin(pos / base^(2i / d_model)), PE[pos, 2i + 1] = cos(pos / base^(2i / d_model))
    (Vaswani et al. 2017), computed in float64 and cast to ``dtype``; an odd d_model ends with a sin
    column. Shape (length, d_model)."""
    length, d_model = int(length), int(d_model)
    if length < 0 or d_model < 0:
        raise ValueError(f"sinusoidal_positional_encoding: expected length, d_model >= 0, got {length}, {d_model}")
    pos = np.arange(length, dtype=np.float64)[:, None]
    i2 = np.arange(0, d_model, 2, dtype=np.float64)
    ang = pos / np.power(float(base), i2 / d_model)
    pe = np.empty((length, d_model), dtype=np.float64)
    pe[:, 0::2] = np.sin(ang)
    pe[:, 1::2] = np.cos(ang[:, : d_model // 2])
    return pe.astype(dtype)
