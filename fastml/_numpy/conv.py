"""NumPy backend of the convolution family: im2col through stride tricks + one batched matmul.

Works on the 5-D form (N, C, D, H, W) built by fastml._conv_geometry, in the input's dtype (float32 or
float64). The unfolded columns (N, G, P, C/G * kvol) are materialised here (this backend favours
clarity and vectorisation over memory; the compiled backend tiles them).

* forward:       y[n, g] = W[g] (Kg x CK) @ cols[n, g]^T          (+ bias, activation)
* grad_weight:   gW[g] = sum_n g[n, g] @ cols[n, g]
* grad_input:    dcols = g^T W, then col2im: one strided add per kernel offset
"""
import dataclasses

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import _conv_geometry as G
from . import activation as _act

ACT = {None: None, "relu": _act.relu, "gelu": _act.gelu, "gelu_tanh": _act.gelu_tanh,
       "sigmoid": _act.sigmoid, "tanh": _act.tanh}


def _zero_pad(x5, g):
    if not any(g.pad_lo) and not any(g.pad_hi):
        return x5
    return np.pad(x5, ((0, 0), (0, 0)) + tuple(zip(g.pad_lo, g.pad_hi)))


def _cols(xp, g, out_size):
    """(N, C, Dp, Hp, Wp) -> (N, G, P, Cg * kvol) columns in weight order (c, kd, kh, kw)."""
    N, C = xp.shape[:2]
    ext = tuple(d * (k - 1) + 1 for d, k in zip(g.dilation, g.kernel))
    win = sliding_window_view(xp, ext, axis=(2, 3, 4))
    win = win[(slice(None), slice(None)) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out_size, g.stride))
              + tuple(slice(None, None, d) for d in g.dilation)]
    P = int(np.prod(out_size))
    kv = int(np.prod(g.kernel))
    gr = g.groups
    win = win.reshape(N, gr, C // gr, P, kv)           # copies here (strided windows)
    return win.transpose(0, 1, 3, 2, 4).reshape(N, gr, P, (C // gr) * kv)


def _col2im(dcols, g, C, padded, out_size, dtype):
    """Adjoint of _cols: (N, G, P, Cg*kvol) -> gradient of the padded input (N, C, *padded)."""
    N, gr = dcols.shape[:2]
    kernel = g.kernel
    dc = dcols.reshape(N, gr, *out_size, C // gr, *kernel)
    dc = np.moveaxis(dc, 5, 2).reshape(N, C, *out_size, *kernel)
    gx = np.zeros((N, C) + tuple(padded), dtype=dtype)
    for off in np.ndindex(*kernel):
        sl = (slice(None), slice(None)) + tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s) for o, d, s, n in zip(off, g.dilation, g.stride, out_size))
        gx[sl] += dc[(Ellipsis,) + off]
    return gx


def forward5(x5, w5, b, g, activation):
    """x5 (N, C, D, H, W) already padded for non-zero padding modes -> (N, K, oD, oH, oW)."""
    xp = _zero_pad(x5, g)
    N, gr, K = x5.shape[0], g.groups, w5.shape[0]
    cols = _cols(xp, g, g.out_size)
    wg = w5.reshape(gr, K // gr, -1)
    y = np.matmul(wg[None], cols.transpose(0, 1, 3, 2))          # (N, G, Kg, P)
    y = y.reshape(N, K, *g.out_size)
    if b is not None:
        y += b.reshape(1, K, 1, 1, 1)
    if ACT[activation] is not None:
        y = ACT[activation](y, None, 0.0)
    return y


def grad_input5(go5, w5, g, in_size, dtype):
    """Gradient of the zero-padded input, cropped to in_size + (its padding): (N, C, *padded)."""
    N, K = go5.shape[:2]
    gr = g.groups
    Cg = w5.shape[1]
    wg = w5.reshape(gr, K // gr, -1)
    P = int(np.prod(go5.shape[2:]))
    gg = go5.reshape(N, gr, K // gr, P)
    dcols = np.matmul(gg.transpose(0, 1, 3, 2), wg[None])          # (N, G, P, CK)
    padded = tuple(i + lo + hi for i, lo, hi in zip(in_size, g.pad_lo, g.pad_hi))
    return _col2im(dcols, g, gr * Cg, padded, go5.shape[2:], dtype)


def crop(gp, g, in_size):
    return gp[(slice(None), slice(None)) + tuple(slice(lo, lo + n) for lo, n in zip(g.pad_lo, in_size))]


def grad_weight5(go5, xp, g, kernel, w_shape):
    """xp: the zero-padded input. Returns (K, Cg, k...)."""
    N, K = go5.shape[:2]
    gr = g.groups
    cols = _cols(xp, g, go5.shape[2:])
    gg = go5.reshape(N, gr, K // gr, -1)
    return np.matmul(gg, cols).sum(axis=0).reshape(w_shape)


def conv_forward(nd, x, w, b, g, padding_mode, activation, out):
    x5 = G.to5d(x, nd, g.batched)
    if padding_mode != "zeros":
        x5 = G.pad_input(x5, g, padding_mode)
        g = _no_pad(g)
    y = G.from5d(forward5(x5, G.weight5d(w, nd), b, g, activation), nd, g.batched)
    if out is not None:
        out[...] = y
        return out
    return y


def _no_pad(g):
    """The geometry of the explicitly padded input (padding 0)."""
    return dataclasses.replace(g, pad_lo=(0, 0, 0), pad_hi=(0, 0, 0),
                               in_size=tuple(i + lo + hi for i, lo, hi in zip(g.in_size, g.pad_lo, g.pad_hi)))


def conv_backward(nd, go, x, w, g, mask, padding_mode):
    go5 = G.to5d(go, nd, g.batched)
    x5 = G.to5d(x, nd, g.batched)
    gp = g
    if padding_mode != "zeros":
        x5 = G.pad_input(x5, g, padding_mode)
        gp = _no_pad(g)
    w5 = G.weight5d(w, nd)
    gi = gw = gb = None
    if mask[0]:
        gx = grad_input5(go5, w5, gp, gp.in_size, x.dtype)
        gx = crop(gx, gp, gp.in_size)
        if padding_mode != "zeros":
            gx = G.unpad_grad(gx, g, padding_mode, g.in_size)
        gi = np.ascontiguousarray(G.from5d(gx, nd, g.batched))
    if mask[1]:
        gw = grad_weight5(go5, _zero_pad(x5, gp), gp, gp.kernel, w.shape)
    if mask[2]:
        gb = go5.sum(axis=(0, 2, 3, 4), dtype=np.float64).astype(x.dtype)
    return gi, gw, gb


def conv_transpose_forward(nd, x, w, b, g, out):
    x5 = G.to5d(x, nd, g.batched)
    gx = grad_input5(x5, G.weight5d(w, nd), g, g.out_size, x.dtype)
    y = crop(gx, g, g.out_size)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1, 1)
    y = G.from5d(y, nd, g.batched)
    if out is not None:
        out[...] = y
        return out
    return np.ascontiguousarray(y)


def conv_transpose_backward(nd, go, x, w, g, mask):
    go5 = G.to5d(go, nd, g.batched)
    x5 = G.to5d(x, nd, g.batched)
    gop = _zero_pad(go5, g)
    w5 = G.weight5d(w, nd)
    gi = gw = gb = None
    if mask[0]:
        gf = dataclasses.replace(g, out_size=g.in_size, pad_lo=(0, 0, 0), pad_hi=(0, 0, 0))
        gi = G.from5d(forward5(gop, w5, None, gf, None), nd, g.batched)
    if mask[1]:
        gw = grad_weight5(x5, gop, g, g.kernel, w.shape)
    if mask[2]:
        gb = go5.sum(axis=(0, 2, 3, 4), dtype=np.float64).astype(x.dtype)
    return gi, gw, gb

