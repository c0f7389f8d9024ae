"""Recurrent cells and sequences (Elman RNN, LSTM, GRU) with explicit backward passes.

Weights use torch's layouts and gate order: LSTM rows (i, f, g, o), GRU rows (r, z, n) with
``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` and ``h' = (1 - z) * n + z * h``, RNN
``h' = tanh|relu(W_ih x + b_ih + W_hh h + b_hh)``.

Cells (input (N, I) or unbatched (I,); hx None = zeros)::

    h, c = lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
    h, c, saved = lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh, return_saved=True)
    gx, (gh, gc), gw_ih, gw_hh, gb_ih, gb_hh = lstm_cell_backward(grad_h, grad_c, saved)
    h = gru_cell(x, h, ...);  h, saved = gru_cell(..., return_saved=True)
    gx, gh, gw_ih, gw_hh, gb_ih, gb_hh = gru_cell_backward(grad_h, saved)     (rnn_cell the same)

Sequences (input (T, N, I), (N, T, I) with batch_first, or unbatched (T, I))::

    output, (h_n, c_n), reserve = lstm(x, (h0, c0) or None, weights, num_layers=..., ...)
    output, (h_n, c_n), _ = lstm(x, hx, weights, ..., keep_reserve=False)   (inference: reserve None)
    output, h_n, reserve = gru(x, h0 or None, weights, ...)          (rnn the same, + nonlinearity)
    grad_input, (grad_h0, grad_c0), grad_weights = lstm_backward(grad_output, grad_h_n, grad_c_n, reserve)
    grad_input, grad_h0, grad_weights = gru_backward(grad_output, grad_h_n, reserve)

``weights`` is torch's ``_flat_weights`` order: for each layer, for each direction (forward, then
reverse): w_ih, w_hh, [b_ih, b_hh when has_biases], [w_hr when proj_size > 0]. ``grad_weights`` is a list
in the same order. Any ``grad_*`` may be None (zeros). ``lengths`` (N,) integers in [1, T], any order:
packed-sequence semantics (outputs past a sequence's end are zero, h_n/c_n are taken at its last valid
step, the reverse direction starts at the sequence's own end) without sorting or packing.

Dropout between layers (``training=True, dropout > 0``) uses a counter-based stream keyed by ``seed``
(fastml._numpy.rnn.dropout_keep; seed None draws one, kept in the reserve), so the same seed gives the
same output on every backend and thread count, and the backward reuses the exact mask. torch's dropout
stream cannot be reproduced: with dropout, only the distribution matches torch.

``saved`` (cells) and ``reserve`` (sequences) are opaque ``RNNReserve`` objects holding what the
backward needs (the input, the weights, the per-step activated gates and states); nothing is recomputed.

Repeated inference with fixed weights: ``packed = pack_recurrent_weights(weights, num_layers=..., ...)``
once, then ``lstm(x, hx, weights, ..., packed=packed)`` skips repacking W_hh (and W_hr) at every call with
the same bits. The packs are copies: keep the arrays unchanged while they are used (fastml.nn modules do
this for you in eval mode: read-only arrays, repack on load_state_dict or an ISA change).

float32 runs the compiled kernels (fused gate passes, one input GEMM per layer, a GEMV path for batch
<= 4); float64 runs the NumPy backend in float64. Results are bitwise identical for any thread count.
"""
from __future__ import annotations

import numpy as np

from .. import _backend as _B
from .._backend import _C
from .._numpy import rnn as _np_rnn

__all__ = ["rnn_cell", "lstm_cell", "gru_cell", "rnn_cell_backward", "lstm_cell_backward", "gru_cell_backward",
           "rnn", "lstm", "gru", "rnn_backward", "lstm_backward", "gru_backward", "RNNReserve",
           "pack_recurrent_weights"]

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
_MODE_ID = {"rnn": 0, "lstm": 1, "gru": 2}


class RNNReserve:
    """What a recurrent forward keeps for its backward (cuDNN's reserve space).

    Attributes: ``mode`` ('rnn'|'lstm'|'gru'), ``backend`` ('cpu'|'numpy'), ``dtype``, ``config`` (dict of
    the forward's arguments), ``layers`` (one saved state per layer and direction, in weights order),
    ``dropout_seed`` and ``keep`` (the dropout keep masks per layer, or None)."""

    __slots__ = ("mode", "backend", "dtype", "config", "layers", "dropout_seed", "keep", "cell")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


# ----------------------------------------------------------------------------------------------- layers

def _layers_forward(backend, mode, x, dirs, lengths, relu, keep=True):
    """One layer, 1 or 2 directions: dirs = [(h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse[, packed_hh,
    packed_hr])] -> [(out, h_n, c_n, saved)] (saved None without ``keep``: the compiled kernels then store the
    states of two steps only). The compiled backend runs two directions concurrently."""
    if backend == "numpy":
        res = [_np_rnn.layer_forward(mode, x, *d[:7], lengths, d[7], relu) for d in dirs]
        return res if keep else [r[:3] + (None,) for r in res]
    res = _C.rnn_layers_forward(_MODE_ID[mode], x, list(dirs), lengths, relu, keep=keep)
    return [(out, hn, cn, None if bufs is None else
             dict(x=x, w_ih=d[2], w_hh=d[3], w_hr=d[6], has_bias=d[4] is not None, lengths=lengths, reverse=d[7],
                  relu=relu, bufs=bufs))
            for (out, hn, cn, bufs), d in zip(res, dirs)]


def _layers_backward(backend, mode, items):
    """items = [(dy, dh_n, dc_n, saved)] of one layer's directions -> [(dx, dh0, dc0, dw_ih, dw_hh, db_ih,
    db_hh, dw_hr)]."""
    if backend == "numpy":
        return [_np_rnn.layer_backward(mode, *it) for it in items]
    s0 = items[0][3]
    dirs = [(dy, dhn, dcn, s["w_ih"], s["w_hh"], s["w_hr"], s["reverse"], s["has_bias"], s["bufs"])
            for dy, dhn, dcn, s in items]
    return _C.rnn_layers_backward(_MODE_ID[mode], s0["x"], dirs, s0["lengths"], s0["relu"])


# ------------------------------------------------------------------------------------------- validation

def _arr(a, op, name, dtype=None):
    if _B.is_device_array(a):
        raise TypeError(f"{op}: CUDA arrays are not supported by this op yet; pass a host (NumPy) array")
    x = _B.as_float_array(a, op, name)
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{op}: expected {dtype} for {name} (the input's dtype), got {x.dtype}")
    return x


def _want(op, name, a, shape):
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{op}: expected {name} of shape {tuple(shape)}, got {tuple(a.shape)}")


def _check_lengths(op, lengths, N, T):
    if lengths is None:
        return None
    lens = np.asarray(lengths)
    if lens.dtype.kind not in "iu":
        raise TypeError(f"{op}: expected integer lengths, got {lens.dtype}")
    lens = lens.astype(np.int64)
    if lens.shape != (N,):
        raise ValueError(f"{op}: expected lengths of shape ({N},) (one per batch row), got {lens.shape}")
    if N and (lens.min() < 1 or lens.max() > T):
        raise ValueError(f"{op}: expected lengths in [1, T={T}], got values in [{lens.min()}, {lens.max()}]")
    return None if N and lens.min() == T else np.ascontiguousarray(lens)


def pack_recurrent_weights(weights, *, num_layers=1, bidirectional=False, has_biases=True, proj_size=0):
    """Packs every layer's and direction's W_hh (and W_hr with a projection) for the GEMM engine under the
    active ISA: returns the ``packed`` argument of ``lstm`` / ``gru`` / ``rnn`` (float32 weights only).
    The packs are copies: they stay valid only while those weight arrays are unchanged and the ISA is the
    same (a stale ISA raises ValueError; stale contents cannot be detected, so keep the arrays read-only,
    as ``fastml.nn`` modules do in eval mode)."""
    op = "pack_recurrent_weights"
    D = 2 if bidirectional else 1
    per = 2 + 2 * bool(has_biases) + (proj_size > 0)
    ws = list(weights)
    if len(ws) != int(num_layers) * D * per:
        raise ValueError(f"{op}: expected a weights list of {int(num_layers) * D * per} arrays, got {len(ws)}")
    packs = []
    for k in range(int(num_layers) * D):
        w = [_arr(a, op, f"weights[{k * per + j}]", np.dtype(np.float32)) for j, a in
             enumerate(ws[k * per:(k + 1) * per])]
        packs.append((_C.gemm_pack_b(w[1], True), _C.gemm_pack_b(w[-1], True) if proj_size else None))
    return packs


def _sequence_forward(mode, op, input, hx, weights, num_layers, bidirectional, batch_first, has_biases, dropout,
                      training, seed, lengths, proj_size, nonlinearity, packed=None, keep_reserve=True):
    x = _arr(input, op, "input")
    dt = x.dtype
    if x.ndim not in (2, 3):
        raise ValueError(f"{op}: expected input of shape (T, N, input_size) (or (T, input_size)), got {x.shape}")
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{op}: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}")
    if int(num_layers) < 1:
        raise ValueError(f"{op}: expected num_layers >= 1, got {num_layers}")
    if not 0.0 <= float(dropout) <= 1.0:
        raise ValueError(f"{op}: expected dropout in [0, 1], got {dropout}")
    if proj_size < 0 or (proj_size and mode != "lstm"):
        raise ValueError(f"{op}: expected proj_size >= 0 (LSTM only), got {proj_size}")
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None, :]
    elif batch_first:
        x = x.transpose(1, 0, 2)
    x = np.ascontiguousarray(x)
    T, N, I = x.shape
    D = 2 if bidirectional else 1
    L = int(num_layers)
    per = 2 + 2 * bool(has_biases) + (proj_size > 0)
    weights = list(weights)
    if len(weights) != L * D * per:
        raise ValueError(f"{op}: expected a weights list of {L * D * per} arrays ({L} layers x {D} directions x "
                         f"{per}), got {len(weights)}")
    ws = [_arr(w, op, f"weights[{k}]", dt) for k, w in enumerate(weights)]
    G = _GATES[mode]
    if ws[0].ndim != 2 or ws[0].shape[0] % G or ws[0].shape[0] == 0:
        raise ValueError(f"{op}: expected weights[0] (w_ih_l0) of shape ({G}*hidden_size, {I}), got {ws[0].shape}")
    H = ws[0].shape[0] // G
    P = proj_size if proj_size > 0 else H
    names = ["w_ih", "w_hh"] + (["b_ih", "b_hh"] if has_biases else []) + (["w_hr"] if proj_size else [])
    for layer in range(L):
        in_size = I if layer == 0 else D * P
        shapes = [(G * H, in_size), (G * H, P)] + ([(G * H,), (G * H,)] if has_biases else []) + \
            ([(P, H)] if proj_size else [])
        for d in range(D):
            for j, (nm, shp) in enumerate(zip(names, shapes)):
                k = (layer * D + d) * per + j
                _want(op, f"weights[{k}] ({nm}_l{layer}{'_reverse' if d else ''})", ws[k], shp)
    lens = _check_lengths(op, lengths, N, T)
    # initial states
    h0 = c0 = None
    if hx is not None:
        if mode == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError(f"{op}: expected hx = (h0, c0) or None")
            h0, c0 = _arr(hx[0], op, "h0", dt), _arr(hx[1], op, "c0", dt)
        else:
            h0 = _arr(hx, op, "hx", dt)
        if unbatched:
            _want(op, "h0" if mode == "lstm" else "hx", h0, (L * D, P))
            h0 = h0[:, None, :]
            if c0 is not None:
                _want(op, "c0", c0, (L * D, H))
                c0 = c0[:, None, :]
        _want(op, "h0" if mode == "lstm" else "hx", h0, (L * D, N, P))
        if c0 is not None:
            _want(op, "c0", c0, (L * D, N, H))
    if h0 is None:
        h0 = np.zeros((L * D, N, P), dtype=dt)
    if mode == "lstm" and c0 is None:
        c0 = np.zeros((L * D, N, H), dtype=dt)
    backend = _B.host_backend(dt, op)
    if packed is not None:
        packed = list(packed)
        if backend != "cpu":
            raise ValueError(f"{op}: packed weights need float32 input on the compiled CPU backend, got {dt} "
                             f"({backend})")
        if len(packed) != L * D:
            raise ValueError(f"{op}: expected packed of {L * D} (packed_hh, packed_hr) pairs, got {len(packed)}")
    use_dropout = bool(training) and dropout > 0 and L > 1
    if use_dropout and seed is None:
        seed = int(np.random.default_rng().integers(0, 2**63))
    relu = nonlinearity == "relu"
    hn = np.empty((L * D, N, P), dtype=dt)
    cn = np.empty((L * D, N, H), dtype=dt) if mode == "lstm" else None
    saved, keeps = [], []
    layer_in = x
    for layer in range(L):
        dirs = []
        for d in range(D):
            k = layer * D + d
            w = ws[k * per:(k + 1) * per]
            b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
            dirs.append((np.ascontiguousarray(h0[k]), None if c0 is None else np.ascontiguousarray(c0[k]),
                         w[0], w[1], b_ih, b_hh, w[-1] if proj_size else None, d == 1)
                        + (() if packed is None else tuple(packed[k])))
        outs = []
        for d, (out, h, c, s) in enumerate(_layers_forward(backend, mode, layer_in, dirs, lens, relu,
                                                            keep_reserve)):
            k = layer * D + d
            hn[k] = h
            if cn is not None:
                cn[k] = c
            outs.append(out)
            saved.append(s)
        out = outs[0] if D == 1 else np.concatenate(outs, axis=2)
        if use_dropout and layer < L - 1:
            keep = _np_rnn.dropout_keep(seed, layer, out.shape, dropout)
            keeps.append(keep)
            out = np.where(keep, out * dt.type(1.0 / (1.0 - dropout)), dt.type(0))
        layer_in = out
    output = layer_in
    if unbatched:
        output, hn = output[:, 0], hn[:, 0]
        cn = None if cn is None else cn[:, 0]
    elif batch_first:
        output = np.ascontiguousarray(output.transpose(1, 0, 2))
    if not keep_reserve:
        return output, ((hn, cn) if mode == "lstm" else hn), None
    cfg = dict(num_layers=L, D=D, per=per, proj_size=proj_size, has_biases=bool(has_biases), batch_first=batch_first,
               unbatched=unbatched, T=T, N=N, I=I, H=H, P=P, dropout=float(dropout), weights=ws)
    res = RNNReserve(mode=mode, backend=backend, dtype=dt, config=cfg, layers=saved,
                     dropout_seed=seed if use_dropout else None, keep=keeps if use_dropout else None)
    return output, ((hn, cn) if mode == "lstm" else hn), res


def _sequence_backward(op, grad_output, grad_hn, grad_cn, reserve):
    if not isinstance(reserve, RNNReserve) or reserve.cell:
        raise TypeError(f"{op}: expected the reserve returned by the forward, got {type(reserve).__name__}")
    mode, cfg, dt = reserve.mode, reserve.config, reserve.dtype
    L, D, per, T, N, H, P = (cfg[k] for k in ("num_layers", "D", "per", "T", "N", "H", "P"))
    unb = cfg["unbatched"]
    out_shape = (T, D * P) if unb else ((N, T, D * P) if cfg["batch_first"] else (T, N, D * P))
    st_shape = (L * D, P) if unb else (L * D, N, P)
    c_shape = (L * D, H) if unb else (L * D, N, H)
    g = None
    if grad_output is not None:
        g = _arr(grad_output, op, "grad_output", dt)
        _want(op, "grad_output", g, out_shape)
        g = g[:, None, :] if unb else (g.transpose(1, 0, 2) if cfg["batch_first"] else g)
        g = np.ascontiguousarray(g)
    ghn = gcn = None
    if grad_hn is not None:
        ghn = _arr(grad_hn, op, "grad_h_n", dt)
        _want(op, "grad_h_n", ghn, st_shape)
        ghn = ghn.reshape(L * D, N, P)
    if grad_cn is not None:
        gcn = _arr(grad_cn, op, "grad_c_n", dt)
        _want(op, "grad_c_n", gcn, c_shape)
        gcn = gcn.reshape(L * D, N, H)
    gw = [None] * (L * D * per)
    dh0 = np.zeros((L * D, N, P), dtype=dt)
    dc0 = np.zeros((L * D, N, H), dtype=dt) if mode == "lstm" else None
    for layer in range(L - 1, -1, -1):
        if g is not None and layer < L - 1 and reserve.keep is not None:
            scale = dt.type(1.0 / (1.0 - cfg["dropout"]))
            g = np.where(reserve.keep[layer], g * scale, dt.type(0))
        items = []
        for d in range(D):
            k = layer * D + d
            gd = None if g is None else np.ascontiguousarray(g[:, :, d * P:(d + 1) * P])
            items.append((gd, None if ghn is None else np.ascontiguousarray(ghn[k]),
                          None if gcn is None else np.ascontiguousarray(gcn[k]), reserve.layers[k]))
        gin = None
        for d, r in enumerate(_layers_backward(reserve.backend, mode, items)):
            k = layer * D + d
            dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, dw_hr = r
            gin = dx if gin is None else gin + dx
            dh0[k] = dh
            if dc0 is not None:
                dc0[k] = dc
            base = k * per
            gw[base], gw[base + 1] = dw_ih, dw_hh
            if cfg["has_biases"]:
                gw[base + 2], gw[base + 3] = db_ih, db_hh
            if cfg["proj_size"]:
                gw[base + per - 1] = dw_hr
        g = gin
    gx = g
    if unb:
        gx, dh0 = gx[:, 0], dh0[:, 0]
        dc0 = None if dc0 is None else dc0[:, 0]
    elif cfg["batch_first"]:
        gx = np.ascontiguousarray(gx.transpose(1, 0, 2))
    return gx, ((dh0, dc0) if mode == "lstm" else dh0), gw


def rnn(input, hx, weights, *, num_layers=1, nonlinearity="tanh", bidirectional=False, batch_first=False,
        has_biases=True, dropout=0.0, training=False, seed=None, lengths=None, packed=None, keep_reserve=True):
    """Elman RNN over a sequence (torch.nn.RNN). Returns ``(output, h_n, reserve)``. ``packed``: optional
    ``pack_recurrent_weights(weights, ...)`` of exactly these weights (same bits, no per-call repack).
    ``keep_reserve=False`` (inference, what torch does under ``no_grad``): nothing is kept for a backward and
    ``reserve`` is None; the per-step states (and the GRU's gates) are not stored, only the two steps in use,
    which saves their memory and its traffic. Same outputs, bit for bit."""
    return _sequence_forward("rnn", "rnn", input, hx, weights, num_layers, bidirectional, batch_first, has_biases,
                             dropout, training, seed, lengths, 0, nonlinearity, packed, keep_reserve)


def gru(input, hx, weights, *, num_layers=1, bidirectional=False, batch_first=False, has_biases=True,
        dropout=0.0, training=False, seed=None, lengths=None, packed=None, keep_reserve=True):
    """GRU over a sequence (torch.nn.GRU). Returns ``(output, h_n, reserve)``; ``packed`` and
    ``keep_reserve`` as in ``rnn``."""
    return _sequence_forward("gru", "gru", input, hx, weights, num_layers, bidirectional, batch_first, has_biases,
                             dropout, training, seed, lengths, 0, "tanh", packed, keep_reserve)


def lstm(input, hx, weights, *, num_layers=1, bidirectional=False, batch_first=False, has_biases=True,
         dropout=0.0, training=False, seed=None, lengths=None, proj_size=0, packed=None, keep_reserve=True):
    """LSTM over a sequence (torch.nn.LSTM). Returns ``(output, (h_n, c_n), reserve)``; with proj_size > 0
    h0/h_n/output carry proj_size features (h = (o * tanh c) W_hr^T); ``packed`` and ``keep_reserve`` as in
    ``rnn`` (without the reserve the LSTM's gate activations are not written back either)."""
    return _sequence_forward("lstm", "lstm", input, hx, weights, num_layers, bidirectional, batch_first,
                             has_biases, dropout, training, seed, lengths, proj_size, "tanh", packed, keep_reserve)


def rnn_backward(grad_output, grad_h_n, reserve):
    """-> ``(grad_input, grad_h0, grad_weights)`` (grad_weights in weights order)."""
    return _sequence_backward("rnn_backward", grad_output, grad_h_n, None, reserve)


def gru_backward(grad_output, grad_h_n, reserve):
    """-> ``(grad_input, grad_h0, grad_weights)`` (grad_weights in weights order)."""
    return _sequence_backward("gru_backward", grad_output, grad_h_n, None, reserve)


def lstm_backward(grad_output, grad_h_n, grad_c_n, reserve):
    """-> ``(grad_input, (grad_h0, grad_c0), grad_weights)`` (grad_weights in weights order)."""
    return _sequence_backward("lstm_backward", grad_output, grad_h_n, grad_c_n, reserve)


# ------------------------------------------------------------------------------------------------ cells

def _cell_forward(mode, op, input, hx, w_ih, w_hh, b_ih, b_hh, relu, return_saved):
    x = _arr(input, op, "input")
    dt = x.dtype
    if x.ndim not in (1, 2):
        raise ValueError(f"{op}: expected input of shape (N, input_size) or (input_size,), got {x.shape}")
    unb = x.ndim == 1
    x2 = np.ascontiguousarray(x.reshape(1 if unb else x.shape[0], x.shape[-1]))
    N, I = x2.shape
    G = _GATES[mode]
    w_ih = np.ascontiguousarray(_arr(w_ih, op, "w_ih", dt))
    if w_ih.ndim != 2 or w_ih.shape[0] % G or w_ih.shape[0] == 0:
        raise ValueError(f"{op}: expected w_ih of shape ({G}*hidden_size, {I}), got {w_ih.shape}")
    H = w_ih.shape[0] // G
    _want(op, "w_ih", w_ih, (G * H, I))
    w_hh = np.ascontiguousarray(_arr(w_hh, op, "w_hh", dt))
    _want(op, "w_hh", w_hh, (G * H, H))
    if (b_ih is None) != (b_hh is None):
        raise ValueError(f"{op}: expected both b_ih and b_hh or neither")
    if b_ih is not None:
        b_ih = np.ascontiguousarray(_arr(b_ih, op, "b_ih", dt))
        b_hh = np.ascontiguousarray(_arr(b_hh, op, "b_hh", dt))
        _want(op, "b_ih", b_ih, (G * H,))
        _want(op, "b_hh", b_hh, (G * H,))
    st = (H,) if unb else (N, H)
    names = ("h", "c") if mode == "lstm" else ("hx",)
    if hx is None:
        states = [np.zeros((N, H), dtype=dt) for _ in names]
    else:
        hs = hx if mode == "lstm" else (hx,)
        if mode == "lstm" and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise ValueError(f"{op}: expected hx = (h, c) or None")
        states = []
        for nm, a in zip(names, hs):
            a = _arr(a, op, nm, dt)
            _want(op, nm, a, st)
            states.append(np.ascontiguousarray(a.reshape(N, H)))
    backend = _B.host_backend(dt, op)
    dirs = [(states[0], states[1] if mode == "lstm" else None, w_ih, w_hh, b_ih, b_hh, None, False)]
    out, h, c, s = _layers_forward(backend, mode, x2[None], dirs, None, relu)[0]
    if unb:
        h = h[0]
        c = None if c is None else c[0]
    res = (h, c) if mode == "lstm" else (h,)
    if return_saved:
        saved = RNNReserve(mode=mode, backend=backend, dtype=dt, layers=[s], cell=True,
                           config=dict(unbatched=unb, N=N, H=H, I=I, has_biases=b_ih is not None))
        return res + (saved,)
    return res if mode == "lstm" else h


def _hot(a):
    return type(a) is np.ndarray and a.ndim == 2 and a.dtype == _B.F32


def rnn_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", *, return_saved=False):
    """``h' = tanh|relu(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (torch.nn.RNNCell). Returns h', or
    ``(h', saved)`` with return_saved."""
    if not return_saved and _B.cpu_fast_path(input) and _hot(input) and _hot(hx) and nonlinearity in ("tanh", "relu"):
        return _C.rnn_cell_forward(0, input, hx, None, w_ih, w_hh, b_ih, b_hh, nonlinearity == "relu")
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn_cell: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}")
    return _cell_forward("rnn", "rnn_cell", input, hx, w_ih, w_hh, b_ih, b_hh, nonlinearity == "relu", return_saved)


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, return_saved=False):
    """One LSTM step (torch.nn.LSTMCell). Returns ``(h', c')``, or ``(h', c', saved)`` with return_saved."""
    if (not return_saved and _B.cpu_fast_path(input) and _hot(input) and type(hx) is tuple and len(hx) == 2
            and _hot(hx[0]) and _hot(hx[1])):  # inference hot path: the binding validates everything
        return _C.rnn_cell_forward(1, input, hx[0], hx[1], w_ih, w_hh, b_ih, b_hh, False)
    return _cell_forward("lstm", "lstm_cell", input, hx, w_ih, w_hh, b_ih, b_hh, False, return_saved)


def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, return_saved=False):
    """One GRU step (torch.nn.GRUCell). Returns h', or ``(h', saved)`` with return_saved."""
    if not return_saved and _B.cpu_fast_path(input) and _hot(input) and _hot(hx):
        return _C.rnn_cell_forward(2, input, hx, None, w_ih, w_hh, b_ih, b_hh, False)
    return _cell_forward("gru", "gru_cell", input, hx, w_ih, w_hh, b_ih, b_hh, False, return_saved)


def _cell_backward(op, mode, grad_h, grad_c, saved):
    if not isinstance(saved, RNNReserve) or not saved.cell or saved.mode != mode:
        raise TypeError(f"{op}: expected the saved object of a {mode}_cell(..., return_saved=True) call")
    cfg, dt = saved.config, saved.dtype
    N, H = cfg["N"], cfg["H"]
    st = (H,) if cfg["unbatched"] else (N, H)
    gs = []
    for nm, a in (("grad_h", grad_h), ("grad_c", grad_c)):
        if a is None:
            gs.append(None)
            continue
        a = _arr(a, op, nm, dt)
        _want(op, nm, a, st)
        gs.append(np.ascontiguousarray(a.reshape(N, H)))
    items = [(None if gs[0] is None else gs[0][None], None, gs[1], saved.layers[0])]
    dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, _ = _layers_backward(saved.backend, mode, items)[0]
    if cfg["unbatched"]:
        dx, dh = dx[0, 0], dh[0]
        dc = None if dc is None else dc[0]
    else:
        dx = dx[0]
    return dx, ((dh, dc) if mode == "lstm" else dh), dw_ih, dw_hh, db_ih, db_hh


def lstm_cell_backward(grad_h, grad_c, saved):
    """-> ``(grad_input, (grad_h, grad_c), grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)`` (bias grads None
    when the forward had no biases); grad_h / grad_c may be None."""
    return _cell_backward("lstm_cell_backward", "lstm", grad_h, grad_c, saved)


def gru_cell_backward(grad_h, saved):
    """-> ``(grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)``."""
    return _cell_backward("gru_cell_backward", "gru", grad_h, None, saved)


def rnn_cell_backward(grad_h, saved):
    """-> ``(grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)``."""
    return _cell_backward("rnn_cell_backward", "rnn", grad_h, None, saved)
