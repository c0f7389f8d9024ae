"""NumPy backend of scaled dot-product attention, in the input's dtype (float32 or float64).

Works on the normalised 4-d layout of fastml.functional.attention: q (B, Hq, L, E), k (B, Hkv, S, E),
v (B, Hkv, S, Ev), an additive mask view (B, Hq, L, S) or None. Blocked over query rows so that the
scores of only ``rows x S`` per (batch, head) exist at a time: memory O(L), not O(L x S) (rows are chosen
so one block holds at most ~4M scores over all heads). Backward recomputes P from the scores and the
saved logsumexp (FlashAttention-2's recipe, without the key tiling).
"""
from __future__ import annotations

import numpy as np

from ..reference.attention import dropout_keep_mask

_BLOCK_SCORES = 1 << 22


def _rows_per_block(B, H, S):
    return int(max(1, min(256, _BLOCK_SCORES // max(1, B * H * S))))


def _expand(x, Hq):
    g = Hq // x.shape[1]
    return x if g == 1 else np.repeat(x, g, axis=1)


def _scores(q, kx, mask, causal, window, scale, i0, i1, dt, diag):
    s = np.matmul(q[:, :, i0:i1], np.swapaxes(kx, -1, -2)) * dt.type(scale)
    if mask is not None:
        s = s + mask[:, :, i0:i1]
    if causal or window:
        i = np.arange(i0, i1)[:, None] + diag
        j = np.arange(kx.shape[2])[None, :]
        ok = j <= i
        if window:
            ok &= j > i - window
        s = np.where(ok, s, dt.type(-np.inf))
    return s


def _keep(B, H, drop, i0, i1, S, dt):
    thr_p, dscale, seed = drop
    k = dropout_keep_mask(seed, np.arange(B * H), np.arange(i0, i1), np.arange(S), thr_p)
    return k.reshape(B, H, i1 - i0, S).astype(dt) * dt.type(dscale)


def attention_forward(q, k, v, mask, causal, window, scale, drop, out=None, diag=0):
    """drop: None or (dropout_p, 1 / (1 - p), seed); diag: the causal / window band's diagonal offset (key j
    allowed for query i iff j <= i + diag, and j > i + diag - window). Returns (out (B, Hq, L, Ev),
    lse (B, Hq, L))."""
    dt = q.dtype
    B, Hq, L, _ = q.shape
    S, Ev = k.shape[2], v.shape[3]
    kx, vx = _expand(k, Hq), _expand(v, Hq)
    o = np.empty((B, Hq, L, Ev), dtype=dt) if out is None else out
    lse = np.empty((B, Hq, L), dtype=dt)
    br = _rows_per_block(B, Hq, S)
    for i0 in range(0, L, br):
        i1 = min(L, i0 + br)
        s = _scores(q, kx, mask, causal, window, scale, i0, i1, dt, diag)
        m = np.max(s, axis=-1, keepdims=True) if S else np.full(s.shape[:-1] + (1,), -np.inf, dt)
        dead = m == -np.inf
        m = np.where(dead, dt.type(0), m)
        e = np.exp(s - m)
        z = np.sum(e, axis=-1, keepdims=True)
        p = np.where(dead, dt.type(0), e / np.where(dead, dt.type(1), z))
        lse[:, :, i0:i1] = np.where(dead, dt.type(-np.inf), m + np.log(np.where(dead, dt.type(1), z)))[..., 0]
        if drop is not None:
            p = p * _keep(B, Hq, drop, i0, i1, S, dt)
        o[:, :, i0:i1] = np.matmul(p, vx)
    return o, lse


def attention_backward(g, q, k, v, o, lse, mask, causal, window, scale, drop, diag=0):
    dt = q.dtype
    B, Hq, L, E = q.shape
    Hkv, S, Ev = k.shape[1], k.shape[2], v.shape[3]
    kx, vx = _expand(k, Hq), _expand(v, Hq)
    D = np.sum(g * o, axis=-1)
    dq = np.empty_like(q)
    dkx = np.zeros((B, Hq, S, E), dtype=dt)
    dvx = np.zeros((B, Hq, S, Ev), dtype=dt)
    br = _rows_per_block(B, Hq, S)
    sc = dt.type(scale)
    for i0 in range(0, L, br):
        i1 = min(L, i0 + br)
        s = _scores(q, kx, mask, causal, window, scale, i0, i1, dt, diag)
        ls = lse[:, :, i0:i1, None]
        dead = ls == -np.inf
        p = np.where(dead, dt.type(0), np.exp(s - np.where(dead, dt.type(0), ls)))
        dp = np.matmul(g[:, :, i0:i1], np.swapaxes(vx, -1, -2))
        pd = p
        if drop is not None:
            z = _keep(B, Hq, drop, i0, i1, S, dt)
            pd = p * z
            dp = dp * z
        ds = p * (dp - D[:, :, i0:i1, None])
        dq[:, :, i0:i1] = np.matmul(ds, kx) * sc
        dkx += np.matmul(np.swapaxes(ds, -1, -2), q[:, :, i0:i1]) * sc
        dvx += np.matmul(np.swapaxes(pd, -1, -2), g[:, :, i0:i1])
    grp = Hq // Hkv
    if grp > 1:
        dkx = dkx.reshape(B, Hkv, grp, S, E).sum(axis=2)
        dvx = dvx.reshape(B, Hkv, grp, S, Ev).sum(axis=2)
    return dq, dkx, dvx
