"""NumPy backend of the recurrent layers: one layer in one direction, forward and backward through time,
computing in the input's dtype (float32 or float64), vectorised over the batch at each step.

The multi-layer / bidirectional / dropout driver lives in fastml.functional.rnn and calls either these
functions or the compiled ones (same arguments, same results up to rounding).

Gate layouts follow torch: LSTM rows of w_ih / w_hh are (i, f, g, o), GRU rows (r, z, n), each block H rows.

``layer_forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, relu)``
    x (T, N, I); h0 (N, P); c0 (N, H) (LSTM only, else None); b_* may be None; w_hr (P, H) or None;
    lengths int64 (N,) or None (a row is updated at step t only while t < lengths[n]; its output is zero
    past its end); reverse runs t = T-1 .. 0. Returns (out (T, N, P), h_n, c_n or None, saved).
``layer_backward(mode, dy, dh_n, dc_n, saved)`` -> (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr)
    (db_* / dw_hr None when the forward had none).
"""
import numpy as np


def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # exact identity, no overflow warnings


def _order(T, reverse):
    return range(T - 1, -1, -1) if reverse else range(T)


def _active(t, lengths, N):
    if lengths is None:
        return None
    return (t < lengths)[:, None]


def layer_forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, relu):
    T, N, I = x.shape
    G = {"lstm": 4, "gru": 3, "rnn": 1}[mode]
    H = w_hh.shape[0] // G
    P = h0.shape[1]
    dt = x.dtype
    gi = (x.reshape(T * N, I) @ w_ih.T).reshape(T, N, G * H)
    if b_ih is not None:
        gi += b_ih
        if mode != "gru":
            gi += b_hh
        else:
            gi[:, :, :2 * H] += b_hh[:2 * H]  # r, z: both biases; n keeps b_hn apart (inside r * (...))
    out = np.zeros((T, N, P), dtype=dt)
    hprev = np.empty((T, N, P), dtype=dt)
    h = h0.copy()
    c = c0.copy() if mode == "lstm" else None
    cprev = np.empty((T, N, H), dtype=dt) if mode == "lstm" else None
    gates = np.empty((T, N, (4 if mode == "gru" else G) * H), dtype=dt)
    ms = np.empty((T, N, H), dtype=dt) if w_hr is not None else None
    for t in _order(T, reverse):
        hprev[t] = h
        a = gi[t] + h @ w_hh.T
        if mode == "lstm":
            cprev[t] = c
            ig, fg = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H])
            gg, og = np.tanh(a[:, 2 * H:3 * H]), _sigmoid(a[:, 3 * H:])
            gates[t] = np.concatenate([ig, fg, gg, og], axis=1)
            cn = fg * c + ig * gg
            m = og * np.tanh(cn)
            if w_hr is not None:
                ms[t] = m
                hn = m @ w_hr.T
            else:
                hn = m
        elif mode == "gru":
            ghn = (h @ w_hh[2 * H:].T)
            if b_hh is not None:
                ghn = ghn + b_hh[2 * H:]
            r = _sigmoid(a[:, :H])
            z = _sigmoid(a[:, H:2 * H])
            n = np.tanh(gi[t][:, 2 * H:] + r * ghn)
            gates[t] = np.concatenate([r, z, n, ghn], axis=1)
            hn = n + z * (h - n)
        else:
            hn = np.maximum(a, 0) if relu else np.tanh(a)
            gates[t] = hn
        act = _active(t, lengths, N)
        if act is None:
            h = hn
            if mode == "lstm":
                c = cn
            out[t] = hn
        else:
            h = np.where(act, hn, h)
            if mode == "lstm":
                c = np.where(act, cn, c)
            out[t] = np.where(act, hn, 0)
    saved = dict(mode=mode, x=x, w_ih=w_ih, w_hh=w_hh, w_hr=w_hr, has_bias=b_ih is not None, lengths=lengths,
                 reverse=reverse, relu=relu, hprev=hprev, cprev=cprev, gates=gates, ms=ms, H=H, P=P)
    return out, h, c, saved


def layer_backward(mode, dy, dh_n, dc_n, saved):
    s = saved
    x, w_ih, w_hh, w_hr = s["x"], s["w_ih"], s["w_hh"], s["w_hr"]
    T, N, I = x.shape
    H, P, lengths = s["H"], s["P"], s["lengths"]
    dt = x.dtype
    G = {"lstm": 4, "gru": 3, "rnn": 1}[mode]
    dh = np.zeros((N, P), dtype=dt) if dh_n is None else dh_n.astype(dt, copy=True)
    dc = None
    if mode == "lstm":
        dc = np.zeros((N, H), dtype=dt) if dc_n is None else dc_n.astype(dt, copy=True)
    D = np.zeros((T, N, G * H), dtype=dt)  # d(pre-activation) of the input projection
    Dh = np.zeros((T, N, G * H), dtype=dt) if mode == "gru" else None  # GRU: d of h W_hh^T + b_hh
    dHs = np.zeros((T, N, P), dtype=dt) if w_hr is not None else None
    for t in reversed(list(_order(T, s["reverse"]))):
        act = _active(t, lengths, N)
        dht = dh if dy is None else dh + (dy[t] if act is None else np.where(act, dy[t], 0))
        gt = s["gates"][t]
        hp = s["hprev"][t]
        if mode == "lstm":
            cp = s["cprev"][t]
            ig, fg, gg, og = gt[:, :H], gt[:, H:2 * H], gt[:, 2 * H:3 * H], gt[:, 3 * H:]
            tc = np.tanh(fg * cp + ig * gg)
            if w_hr is not None:
                dHs[t] = dht if act is None else np.where(act, dht, 0)
                dm = dht @ w_hr
            else:
                dm = dht
            dct = dc + dm * og * (1 - tc * tc)
            da = np.concatenate([dct * gg * ig * (1 - ig), dct * cp * fg * (1 - fg), dct * ig * (1 - gg * gg),
                                 dm * tc * og * (1 - og)], axis=1)
            dc_new = dct * fg
        elif mode == "gru":
            r, z, n, ghn = gt[:, :H], gt[:, H:2 * H], gt[:, 2 * H:3 * H], gt[:, 3 * H:]
            dn = dht * (1 - z)
            dz = dht * (hp - n)
            dan = dn * (1 - n * n)
            dar = dan * ghn * r * (1 - r)
            daz = dz * z * (1 - z)
            da = np.concatenate([dar, daz, dan], axis=1)
            dah = np.concatenate([dar, daz, dan * r], axis=1)
        else:
            hn = gt
            da = dht * ((hn > 0).astype(dt) if s["relu"] else (1 - hn * hn))
        if act is not None:
            da = np.where(act, da, 0)
            if mode == "gru":
                dah = np.where(act, dah, 0)
        D[t] = da
        if mode == "gru":
            Dh[t] = dah
            dh_new = dah @ w_hh + dht * z
        else:
            dh_new = da @ w_hh
        if act is None:
            dh = dh_new
            if mode == "lstm":
                dc = dc_new
        else:
            dh = np.where(act, dh_new, dht)
            if mode == "lstm":
                dc = np.where(act, dc_new, dc)
    D2 = D.reshape(T * N, G * H)
    Dh2 = D2 if Dh is None else Dh.reshape(T * N, G * H)
    dx = (D2 @ w_ih).reshape(T, N, I)
    dw_ih = D2.T @ x.reshape(T * N, I)
    dw_hh = Dh2.T @ s["hprev"].reshape(T * N, P)
    db_ih = db_hh = None
    if s["has_bias"]:
        db_ih = D2.sum(axis=0)
        db_hh = Dh2.sum(axis=0)
    dw_hr = None
    if w_hr is not None:
        dw_hr = dHs.reshape(T * N, P).T @ s["ms"].reshape(T * N, H)
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, dw_hr


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(z):
    """splitmix64 finaliser (Steele, Lea, Flood 2014) on a uint64 array (wrapping arithmetic)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def dropout_keep(seed, layer, shape, p):
    """Keep mask of the dropout applied to the output of ``layer`` (a bool array of ``shape``).

    Counter-based: element k (C order) of layer l is kept iff u >= p, with u the top 24 bits of
    splitmix64(splitmix64(seed ^ l * golden) + (k + 1) * golden) / 2^24. The same (seed, layer, shape)
    always gives the same mask, on every backend and thread count. (torch's dropout stream cannot be
    reproduced; only the distribution matches.)"""
    n = int(np.prod(shape, dtype=np.int64))
    # uint64 arithmetic wraps silently on arrays (scalars would warn)
    lay = np.array([layer + 1], dtype=np.uint64) * _GOLDEN
    key = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) ^ lay)
    k = np.arange(1, n + 1, dtype=np.uint64)
    z = _splitmix64(key + k * _GOLDEN)
    u = (z >> np.uint64(40)).astype(np.float64) * (1.0 / (1 << 24))
    return (u >= p).reshape(shape)
