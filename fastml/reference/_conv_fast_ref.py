"""float64 oracle of the specialised 2-D convolutions (fastml/functional/_conv_fast.py): the direct
definition with explicit index arithmetic (no padded copy), for the depthwise, direct and Winograd
kernels' cases and their backward passes. Not fast; small shapes only.

    y[n,k,i,j] = b[k] + sum_{c in group(k), p, q} w[k, c', p, q] x[n, c, i*sh - ph + p*dh, j*sw - pw + q*dw]

with out-of-range input positions contributing nothing (zero padding).
"""
import numpy as np

from . import activation as _ref_act


def _act(y, activation):
    if activation is None:
        return y
    if activation == "relu":
        return _ref_act.relu(y)
    if activation == "gelu":
        return _ref_act.gelu(y)
    if activation == "gelu_tanh":
        return _ref_act.gelu(y, approximate="tanh")
    if activation == "sigmoid":
        return _ref_act.sigmoid(y)
    if activation == "tanh":
        return _ref_act.tanh(y)
    raise ValueError(f"unknown activation {activation!r}")


def _index(size_in, size_out, k, s, p, d):
    """(taps, out) input positions o*s - p + t*d and their validity mask."""
    pos = np.arange(size_out)[None, :] * s - p + np.arange(k)[:, None] * d
    return np.clip(pos, 0, size_in - 1), (pos >= 0) & (pos < size_in)


def conv2d(x, w, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, activation=None):
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    ih, mh = _index(h, ho, kh, stride[0], padding[0], dilation[0])
    iw, mw = _index(wd, wo, kw, stride[1], padding[1], dilation[1])
    y = np.zeros((n, k, ho, wo))
    kg = k // groups
    for ko in range(k):
        gi = ko // kg
        for ci in range(cg):
            plane = x[:, gi * cg + ci]
            for p in range(kh):
                for q in range(kw):
                    tap = plane[:, ih[p][:, None], iw[q][None, :]]
                    tap = np.where(mh[p][:, None] & mw[q][None, :], tap, 0.0)
                    y[:, ko] += w[ko, ci, p, q] * tap
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64).reshape(1, k, 1, 1)
    return _act(y, activation)


def conv2d_backward(grad_output, x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """(grad_input, grad_weight, grad_bias) by the same index arithmetic (grad_input: scatter-add)."""
    g = np.asarray(grad_output, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    ho, wo = g.shape[2:]
    ih, mh = _index(h, ho, kh, stride[0], padding[0], dilation[0])
    iw, mw = _index(wd, wo, kw, stride[1], padding[1], dilation[1])
    gx = np.zeros_like(x)
    gw = np.zeros_like(w)
    kg = k // groups
    for ko in range(k):
        gi = ko // kg
        for ci in range(cg):
            cidx = gi * cg + ci
            for p in range(kh):
                for q in range(kw):
                    valid = mh[p][:, None] & mw[q][None, :]
                    rows = np.broadcast_to(ih[p][:, None], (ho, wo))[valid]
                    cols = np.broadcast_to(iw[q][None, :], (ho, wo))[valid]
                    gv = g[:, ko][:, valid]                          # (n, valid)
                    for ni in range(n):
                        np.add.at(gx[ni, cidx], (rows, cols), w[ko, ci, p, q] * gv[ni])
                    gw[ko, ci, p, q] = np.sum(gv * x[:, cidx][:, rows, cols])
    gb = g.sum(axis=(0, 2, 3))
    return gx, gw, gb
