"""NumPy backend of the pooling ops (computes in the input's dtype; float64 stays float64).

Inputs arrive as (planes, D, H, W) arrays with a validated PoolGeometry (fastml._pool_args). Max/avg
pooling gather every window with ``sliding_window_view`` over a padded copy (padding -inf for max, 0 for
avg; the right side is padded further for ceil_mode windows); adaptive pooling is separable and reduces
one axis at a time. The max rule is torch's (see fastml.reference.pool): ties -> first maximum, the last
NaN of a window wins, a window with no valid tap gives -inf and the index of its first non-negative tap.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._pool_args import adaptive_bounds, empty_windows


def _pads(g):
    pads = [(0, 0)]
    for L, o, k, s, p, d in zip(g.insz, g.outsz, g.k, g.s, g.p, g.d):
        need = (o - 1) * s + (k - 1) * d + 1  # extent of all windows from the left padding edge
        pads.append((p, max(0, need - L - p)))
    return pads


def _reach(g):
    """g with each kernel cut to the taps that can land on the input. Tap t of window o sits at
    o s - p + t d, in [t d - p, (o_last) s - p + t d]: the taps with t d > L - 1 + p, and those with
    (o_last) s - p + t d < 0, only ever read padding (-inf for max, 0 for avg) and change no window's value
    or index. Cutting the first t0 of them is the same geometry with t0 d less padding (the positions of
    the remaining taps do not move), so a kernel far larger than the input (2^31 taps over 9 values, 2^30
    padding) needs no padded copy of its size. The avg divisor still counts the whole kernel."""
    ks, ps = [], []
    for k, L, o, s, p, d in zip(g.k, g.insz, g.outsz, g.s, g.p, g.d):
        k1 = min(k, max(1, (L - 1 + p) // d + 1))   # taps past t = k1 - 1 lie right of every window's input
        # taps before t0 lie left of the input for every window (kept: t0 <= p / d, so the padding stays >= 0)
        t0 = min(max(0, -(-(p - (o - 1) * s) // d)), p // d, k1 - 1)
        ks.append(k1 - t0)
        ps.append(p - t0 * d)
    k, p = tuple(ks), tuple(ps)
    return g if (k, p) == (tuple(g.k), tuple(g.p)) else g._replace(k=k, p=p)


def _windows(xpad, g):
    """View (planes, oD, oH, oW, kD, kH, kW) of the windows of a padded (planes, D', H', W') array."""
    eff = tuple((k - 1) * d + 1 for k, d in zip(g.k, g.d))
    w = sliding_window_view(xpad, eff, axis=(1, 2, 3))
    w = w[:, ::g.s[0], ::g.s[1], ::g.s[2]][:, :g.outsz[0], :g.outsz[1], :g.outsz[2]]
    return w[..., ::g.d[0], ::g.d[1], ::g.d[2]]


def _tap_positions(g):
    """Per dim: (out, k) input coordinate of each tap."""
    return [np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * d
            for o, k, s, p, d in zip(g.outsz, g.k, g.s, g.p, g.d)]


def max_pool(x, g, return_indices):
    g = _reach(g)
    K = math.prod(g.k)
    xpad = np.pad(x, _pads(g), constant_values=-np.inf)
    win = _windows(xpad, g).reshape((g.planes,) + g.outsz + (K,))
    val = win.max(axis=-1)
    if not return_indices:
        return val, None
    nan = np.isnan(win)
    tap = np.argmax(win, axis=-1)
    has_nan = nan.any(axis=-1)
    tap = np.where(has_nan, K - 1 - np.argmax(nan[..., ::-1], axis=-1), tap)
    pos = _tap_positions(g)  # flat index of every (out, tap), broadcast over the three dims
    H, W = g.insz[1], g.insz[2]
    flat = ((pos[0][:, None, None, :, None, None] * H + pos[1][None, :, None, None, :, None]) * W
            + pos[2][None, None, :, None, None, :]).reshape(g.outsz + (K,))
    idx = np.take_along_axis(np.broadcast_to(flat, win.shape), tap[..., None], axis=-1)[..., 0]
    # windows whose maximum is -inf keep torch's initial index: the first non-negative tap per dim
    first = []
    for o, s, p, d in zip(g.outsz, g.s, g.p, g.d):
        st = np.arange(o) * s - p
        first.append(np.where(st >= 0, st, st + (-st + d - 1) // d * d))
    flat0 = (first[0][:, None, None] * H + first[1][None, :, None]) * W + first[2][None, None, :]
    idx = np.where((val == -np.inf) & ~has_nan, flat0, idx)
    return val, idx.astype(np.int64)


def _avg_divisor(g, count_include_pad, divisor):
    if divisor is not None:
        return divisor
    per_dim = []
    for o, L, k, s, p in zip(g.outsz, g.insz, g.k, g.s, g.p):
        st = np.arange(o) * s - p
        en = np.minimum(st + k, L + p)
        per_dim.append(en - st if count_include_pad else np.minimum(en, L) - np.maximum(st, 0))
    return per_dim[0][:, None, None] * per_dim[1][None, :, None] * per_dim[2][None, None, :]


def avg_pool(x, g, count_include_pad, divisor):
    gr = _reach(g)
    s = _windows(np.pad(x, _pads(gr)), gr).sum(axis=(-3, -2, -1))
    return (s / np.asarray(_avg_divisor(g, count_include_pad, divisor), dtype=x.dtype)).astype(x.dtype, copy=False)


def avg_pool_backward(gy, g, count_include_pad, divisor):
    gq = gy / np.asarray(_avg_divisor(g, count_include_pad, divisor), dtype=gy.dtype)
    g = _reach(g)
    pads = _pads(g)
    gpad = np.zeros((g.planes,) + tuple(L + a + b for L, (a, b) in zip(g.insz, pads[1:])), dtype=gy.dtype)
    for t in np.ndindex(*g.k):
        sl = tuple(slice(ti * d, ti * d + (o - 1) * s + 1, s) for ti, d, o, s in zip(t, g.d, g.outsz, g.s))
        gpad[(slice(None),) + sl] += gq
    return np.ascontiguousarray(gpad[:, pads[1][0]:pads[1][0] + g.insz[0], pads[2][0]:pads[2][0] + g.insz[1],
                                     pads[3][0]:pads[3][0] + g.insz[2]])


def scatter(gy, idx, g, op, allow_empty=False):
    """grad_input[plane, idx] += grad_output (the backward of max pooling). With allow_empty (max pooling,
    not adaptive) an index outside the plane is accepted where that output's window lies wholly in the
    padding (its value is -inf and, as in torch, its index may be anything): that gradient is dropped."""
    plane = math.prod(g.insz)
    ip = idx.reshape(g.planes, math.prod(g.outsz)).astype(np.int64, copy=False)
    gyp = gy.reshape(g.planes, math.prod(g.outsz))
    if ip.size and (ip.min() < 0 or ip.max() >= plane):
        out_of_plane = (ip < 0) | (ip >= plane)
        empty = empty_windows(g) if allow_empty else None
        bad = out_of_plane if empty is None else out_of_plane & ~empty.reshape(1, -1)
        if bad.any():
            raise ValueError(f"{op}: expected indices in [0, {plane}), got {ip[bad][0]}")
        gyp, ip = np.where(out_of_plane, 0, gyp), np.where(out_of_plane, 0, ip)
    flat = (ip + (np.arange(g.planes, dtype=np.int64) * plane)[:, None]).ravel()
    gi = np.bincount(flat, weights=gyp.reshape(-1).astype(np.float64), minlength=g.planes * plane)
    return gi.astype(gy.dtype).reshape((g.planes,) + g.insz)


def _fits(g, dtype):
    """Allocates (untouched) a result of the output's size, so that a legal output too large for memory
    (2^40 positions) raises MemoryError at once instead of after a Python loop over its positions."""
    np.empty((g.planes,) + tuple(g.outsz), dtype)


def adaptive_avg(x, g):
    _fits(g, x.dtype)
    y = x
    for ax, (L, o) in enumerate(zip(g.insz, g.outsz), start=1):
        if L == o:
            continue
        parts = [y.take(np.arange(a, b), axis=ax).mean(axis=ax, keepdims=True) for a, b in adaptive_bounds(L, o)]
        y = np.concatenate(parts, axis=ax) if parts else np.empty(y.shape[:ax] + (0,) + y.shape[ax + 1:], y.dtype)
    return y


def adaptive_avg_backward(gy, g):
    gi = gy
    for ax in (3, 2, 1):
        L, o = g.insz[ax - 1], g.outsz[ax - 1]
        if L == o:
            continue
        shape = list(gi.shape)
        shape[ax] = L
        out = np.zeros(shape, dtype=gy.dtype)
        for i, (a, b) in enumerate(adaptive_bounds(L, o)):
            src = gi.take([i], axis=ax) / gy.dtype.type(b - a)
            sl = [slice(None)] * 4
            sl[ax] = slice(a, b)
            out[tuple(sl)] += src
        gi = out
    return gi


def _reduce_max(val, idx, ax, a, b):
    """Torch's max rule over positions [a, b) of axis ax (scan order = position order)."""
    seg = val.take(np.arange(a, b), axis=ax)
    iseg = idx.take(np.arange(a, b), axis=ax)
    n = b - a
    nan = np.isnan(seg)
    has_nan = nan.any(axis=ax, keepdims=True)
    pick = np.where(has_nan, n - 1 - np.argmax(np.flip(nan, axis=ax), axis=ax, keepdims=True),
                    np.argmax(seg, axis=ax, keepdims=True))
    v = np.take_along_axis(seg, pick, axis=ax)
    # an all -inf segment keeps its first position (torch's initial index)
    pick = np.where((v == -np.inf) & ~has_nan, 0, pick)
    return v, np.take_along_axis(iseg, pick, axis=ax)


def adaptive_max(x, g):
    _fits(g, x.dtype)
    D, H, W = g.insz
    idx = np.broadcast_to(np.arange(D * H * W, dtype=np.int64).reshape(1, D, H, W), x.shape)
    val = x
    # reduce W, then H, then D: the first maximum in (d, h, w) order is the first maximum of the first
    # row holding the maximum; the last NaN is the last NaN of the last row holding one
    for ax in (3, 2, 1):
        L, o = g.insz[ax - 1], g.outsz[ax - 1]
        vs, js = [], []
        for a, b in adaptive_bounds(L, o):
            v, j = _reduce_max(val, idx, ax, a, b)
            vs.append(v)
            js.append(j)
        if not vs:
            shape = list(val.shape)
            shape[ax] = 0
            return np.empty(shape, x.dtype), np.empty(shape, np.int64)
        val, idx = np.concatenate(vs, axis=ax), np.concatenate(js, axis=ax)
    return val, idx
