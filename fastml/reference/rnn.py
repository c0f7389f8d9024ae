"""Float64 references of the recurrent cells and sequences (see fastml.functional.rnn for the docs).

Written as the textbook recurrences, one sequence and one time step at a time. Sequence functions take
the public arguments and return ``(output, h_n)`` / ``(output, (h_n, c_n))`` (no reserve: the backward
oracle is finite differences of these functions, tests/_tolerance.numeric_vjp).
"""
import numpy as np

from .._numpy.rnn import dropout_keep

__all__ = ["rnn_cell", "lstm_cell", "gru_cell", "rnn", "lstm", "gru"]


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _sig(v):
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def _lin(w, v, b):
    y = w @ v
    return y if b is None else y + b


def _rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, relu):
    a = _lin(w_ih, x, b_ih) + _lin(w_hh, h, b_hh)
    return np.maximum(a, 0.0) if relu else np.tanh(a)


def _lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr):
    H = w_hh.shape[0] // 4
    a = _lin(w_ih, x, b_ih) + _lin(w_hh, h, b_hh)
    i, f, g, o = _sig(a[:H]), _sig(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), _sig(a[3 * H:])
    c2 = f * c + i * g
    h2 = o * np.tanh(c2)
    if w_hr is not None:
        h2 = w_hr @ h2
    return h2, c2


def _gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    H = w_hh.shape[0] // 3
    gi = _lin(w_ih, x, b_ih)
    gh = _lin(w_hh, h, b_hh)
    r = _sig(gi[:H] + gh[:H])
    z = _sig(gi[H:2 * H] + gh[H:2 * H])
    n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
    return (1.0 - z) * n + z * h


def _cell(step, x, hs, unbatched):
    if unbatched:
        res = step(x, *hs)
        return res
    outs = [step(x[n], *[h[n] for h in hs]) for n in range(x.shape[0])]
    if isinstance(outs[0], tuple):
        return tuple(np.stack([o[k] for o in outs]) for k in range(len(outs[0])))
    return np.stack(outs)


def rnn_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    x, w_ih, w_hh, b_ih, b_hh = (_f64(a) for a in (input, w_ih, w_hh, b_ih, b_hh))
    H = w_hh.shape[0]
    h = np.zeros(x.shape[:-1] + (H,)) if hx is None else _f64(hx)
    relu = nonlinearity == "relu"
    return _cell(lambda xv, hv: _rnn_step(xv, hv, w_ih, w_hh, b_ih, b_hh, relu), x, [h], x.ndim == 1)


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    x, w_ih, w_hh, b_ih, b_hh = (_f64(a) for a in (input, w_ih, w_hh, b_ih, b_hh))
    H = w_hh.shape[0] // 4
    if hx is None:
        h = c = np.zeros(x.shape[:-1] + (H,))
    else:
        h, c = _f64(hx[0]), _f64(hx[1])
    return _cell(lambda xv, hv, cv: _lstm_step(xv, hv, cv, w_ih, w_hh, b_ih, b_hh, None), x, [h, c], x.ndim == 1)


def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    x, w_ih, w_hh, b_ih, b_hh = (_f64(a) for a in (input, w_ih, w_hh, b_ih, b_hh))
    H = w_hh.shape[0] // 3
    h = np.zeros(x.shape[:-1] + (H,)) if hx is None else _f64(hx)
    return _cell(lambda xv, hv: _gru_step(xv, hv, w_ih, w_hh, b_ih, b_hh), x, [h], x.ndim == 1)


def _sequence(mode, input, hx, weights, num_layers, bidirectional, batch_first, has_biases, dropout, training,
              seed, lengths, proj_size, nonlinearity):
    x = _f64(input)
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None, :]
    elif batch_first:
        x = x.transpose(1, 0, 2)
    T, N, _ = x.shape
    D = 2 if bidirectional else 1
    per = 2 + 2 * bool(has_biases) + (proj_size > 0)
    ws = [_f64(w) for w in weights]
    G = {"lstm": 4, "gru": 3, "rnn": 1}[mode]
    H = ws[1].shape[0] // G
    P = proj_size if proj_size > 0 else H
    lens = np.full(N, T, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    if hx is None:
        h0 = np.zeros((num_layers * D, N, P))
        c0 = np.zeros((num_layers * D, N, H))
    elif mode == "lstm":
        h0, c0 = _f64(hx[0]), _f64(hx[1])
    else:
        h0, c0 = _f64(hx), None
    if unbatched and hx is not None:
        h0 = h0[:, None, :]
        c0 = None if c0 is None else c0[:, None, :]
    hn = np.zeros((num_layers * D, N, P))
    cn = np.zeros((num_layers * D, N, H))
    layer_in = x
    for layer in range(num_layers):
        out = np.zeros((T, N, D * P))
        for d in range(D):
            k = layer * D + d
            w = ws[k * per:(k + 1) * per]
            w_ih, w_hh = w[0], w[1]
            b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
            w_hr = w[-1] if proj_size > 0 else None
            for n in range(N):
                L = int(lens[n])
                h = h0[k, n].copy()
                c = c0[k, n].copy() if mode == "lstm" else None
                steps = range(L - 1, -1, -1) if d == 1 else range(L)
                for t in steps:
                    if mode == "lstm":
                        h, c = _lstm_step(layer_in[t, n], h, c, w_ih, w_hh, b_ih, b_hh, w_hr)
                    elif mode == "gru":
                        h = _gru_step(layer_in[t, n], h, w_ih, w_hh, b_ih, b_hh)
                    else:
                        h = _rnn_step(layer_in[t, n], h, w_ih, w_hh, b_ih, b_hh, nonlinearity == "relu")
                    out[t, n, d * P:(d + 1) * P] = h
                hn[k, n] = h
                if mode == "lstm":
                    cn[k, n] = c
        if training and dropout > 0 and layer < num_layers - 1:
            keep = dropout_keep(seed, layer, out.shape, dropout)
            out = np.where(keep, out / (1.0 - dropout), 0.0)
        layer_in = out
    out = layer_in
    if unbatched:
        out, hn, cn = out[:, 0], hn[:, 0], cn[:, 0]
    elif batch_first:
        out = out.transpose(1, 0, 2)
    return out, ((hn, cn) if mode == "lstm" else hn)


def rnn(input, hx, weights, *, num_layers=1, nonlinearity="tanh", bidirectional=False, batch_first=False,
        has_biases=True, dropout=0.0, training=False, seed=None, lengths=None):
    return _sequence("rnn", input, hx, weights, num_layers, bidirectional, batch_first, has_biases, dropout,
                     training, seed, lengths, 0, nonlinearity)


def gru(input, hx, weights, *, num_layers=1, bidirectional=False, batch_first=False, has_biases=True,
        dropout=0.0, training=False, seed=None, lengths=None):
    return _sequence("gru", input, hx, weights, num_layers, bidirectional, batch_first, has_biases, dropout,
                     training, seed, lengths, 0, "tanh")


def lstm(input, hx, weights, *, num_layers=1, bidirectional=False, batch_first=False, has_biases=True,
         dropout=0.0, training=False, seed=None, lengths=None, proj_size=0):
    return _sequence("lstm", input, hx, weights, num_layers, bidirectional, batch_first, has_biases, dropout,
                     training, seed, lengths, proj_size, "tanh")
