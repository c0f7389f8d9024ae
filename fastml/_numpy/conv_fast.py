"""NumPy backend of the specialised 2-D convolutions (fastml/functional/_conv_fast.py): a grouped conv2d
forward and backward written as one strided view + one contraction per kernel tap. Computes in the
input's dtype (float64 input stays float64). NCHW, zero padding, (int, int) stride/padding/dilation.
"""
import numpy as np

from . import activation as _np_act

_ACT = {
    "relu": _np_act.relu,
    "gelu": _np_act.gelu,
    "gelu_tanh": _np_act.gelu_tanh,
    "sigmoid": _np_act.sigmoid,
    "tanh": _np_act.tanh,
}


def _taps(xp, p, q, stride, dilation, ho, wo):
    """xp[..., p*dh + i*sh, q*dw + j*sw] for i < ho, j < wo (a strided view)."""
    (sh, sw), (dh, dw) = stride, dilation
    return xp[..., p * dh: p * dh + sh * (ho - 1) + 1: sh, q * dw: q * dw + sw * (wo - 1) + 1: sw]


def _out_size(h, w, k, stride, padding, dilation):
    ho = (h + 2 * padding[0] - dilation[0] * (k[0] - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (k[1] - 1) - 1) // stride[1] + 1
    return ho, wo


def conv2d(x, w, bias, stride, padding, dilation, groups, activation=None, out=None):
    """y = act(conv2d(x, w) + bias) with torch's grouped-conv layout: x (N, C, H, W), w (K, C/groups, kh, kw)."""
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    g = groups
    ho, wo = _out_size(h, wd, (kh, kw), stride, padding, dilation)
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))).reshape(n, g, cg, h + 2 * ph, wd + 2 * pw)
    wg = w.reshape(g, k // g, cg, kh, kw)
    y = np.zeros((n, g, k // g, ho, wo), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            xs = _taps(xp, p, q, stride, dilation, ho, wo)           # (n, g, cg, ho, wo)
            if cg == 1:
                y += xs * wg[None, :, :, 0, p, q, None, None]        # depthwise: broadcast, no contraction
            else:
                y += np.einsum("ngchw,gkc->ngkhw", xs, wg[:, :, :, p, q])
    y = y.reshape(n, k, ho, wo)
    if bias is not None:
        y += bias.reshape(1, k, 1, 1)
    if activation is not None:
        y = _ACT[activation](y, None, 0.0)
    if out is not None:
        out[...] = y
        return out
    return y


def conv2d_backward(gy, x, w, stride, padding, dilation, groups, output_mask):
    """(grad_input, grad_weight, grad_bias) of ``conv2d`` (None where output_mask is False)."""
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    g = groups
    ho, wo = gy.shape[2:]
    ph, pw = padding
    gyg = gy.reshape(n, g, k // g, ho, wo)
    wg = w.reshape(g, k // g, cg, kh, kw)
    gx = gw = gb = None
    if output_mask[0]:
        gxp = np.zeros((n, g, cg, h + 2 * ph, wd + 2 * pw), dtype=x.dtype)
        for p in range(kh):
            for q in range(kw):
                view = _taps(gxp, p, q, stride, dilation, ho, wo)
                view += np.einsum("ngkhw,gkc->ngchw", gyg, wg[:, :, :, p, q])
        gx = np.ascontiguousarray(gxp[..., ph: ph + h, pw: pw + wd].reshape(n, c, h, wd))
    if output_mask[1]:
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))).reshape(n, g, cg, h + 2 * ph, wd + 2 * pw)
        gw = np.empty_like(w)
        gwg = gw.reshape(g, k // g, cg, kh, kw)
        for p in range(kh):
            for q in range(kw):
                gwg[:, :, :, p, q] = np.einsum("ngkhw,ngchw->gkc", gyg, _taps(xp, p, q, stride, dilation, ho, wo))
    if output_mask[2]:
        gb = gy.sum(axis=(0, 2, 3))
    return gx, gw, gb
