"""Float64 references for the convolution family (the test oracle): direct sums over kernel offsets.

For every kernel offset (a, b, c) the strided input slice it touches is contracted with that offset's
weights (one einsum per offset, grouped):

    y[n, k, o] = bias[k] + sum_{c in group(k), a} w[k, c, a] * xpad[n, c, o*stride + a*dilation]

``conv_transpose`` is the adjoint of the input map (what a conv backward-data computes);
backwards are the exact adjoints of the same sums. Padding modes pad the input explicitly first
(``np.pad`` modes edge/reflect/wrap), their gradient folds the padded gradient back (np.add.at).
Signatures are those of fastml.functional.conv (minus ``out=``, ``algorithm=``); results are float64.
"""
import numpy as np

from .. import _conv_geometry as G
from . import activation as _act

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "conv1d_backward", "conv2d_backward", "conv3d_backward",
    "conv_transpose1d_backward", "conv_transpose2d_backward", "conv_transpose3d_backward",
]

_ACT = {None: lambda y: y, "relu": _act.relu, "sigmoid": _act.sigmoid, "tanh": _act.tanh,
        "gelu": _act.gelu, "gelu_tanh": lambda y: _act.gelu(y, approximate="tanh")}


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _slices(g, off, out_size):
    """Index of the padded-input slice touched by kernel offset ``off`` for every output position."""
    return (slice(None), slice(None), slice(None)) + tuple(
        slice(o * d, o * d + s * (n - 1) + 1, s) for o, d, s, n in zip(off, g.dilation, g.stride, out_size))


def _pad_zero_or_mode(x5, g, mode):
    if mode == "zeros":
        return np.pad(x5, ((0, 0), (0, 0)) + tuple(zip(g.pad_lo, g.pad_hi)))
    return G.pad_input(x5, g, mode)


def _fwd(xp, w5, g, out_size):
    """sum over offsets: xp (N, C, padded dims), w5 (K, C/G, k3) -> (N, K, out_size)."""
    N, C = xp.shape[:2]
    K, gr = w5.shape[0], g.groups
    xg = xp.reshape(N, gr, C // gr, *xp.shape[2:])
    wg = w5.reshape(gr, K // gr, C // gr, *w5.shape[2:])
    y = np.zeros((N, gr, K // gr) + tuple(out_size))
    for off in np.ndindex(*w5.shape[2:]):
        xs = xg[_slices(g, off, out_size)]
        y += np.einsum("ngcdhw,gkc->ngkdhw", xs, wg[(Ellipsis,) + off])
    return y.reshape(N, K, *out_size)


def _grad_padded_input(go, w5, g, padded_size):
    """Adjoint of _fwd in its input: go (N, K, out) -> gradient of the padded input (N, C, padded)."""
    N, K = go.shape[:2]
    gr = g.groups
    Cg = w5.shape[1]
    out_size = go.shape[2:]
    gg = go.reshape(N, gr, K // gr, *out_size)
    wg = w5.reshape(gr, K // gr, Cg, *w5.shape[2:])
    gx = np.zeros((N, gr, Cg) + tuple(padded_size))
    for off in np.ndindex(*w5.shape[2:]):
        gx[_slices(g, off, out_size)] += np.einsum("ngkdhw,gkc->ngcdhw", gg, wg[(Ellipsis,) + off])
    return gx.reshape(N, gr * Cg, *padded_size)


def _grad_weight(go, xp, g, kernel):
    N, K = go.shape[:2]
    C, gr = xp.shape[1], g.groups
    out_size = go.shape[2:]
    gg = go.reshape(N, gr, K // gr, *out_size)
    xg = xp.reshape(N, gr, C // gr, *xp.shape[2:])
    gw = np.zeros((gr, K // gr, C // gr) + tuple(kernel))
    for off in np.ndindex(*kernel):
        gw[(Ellipsis,) + off] = np.einsum("ngkdhw,ngcdhw->gkc", gg, xg[_slices(g, off, out_size)])
    return gw.reshape(K, C // gr, *kernel)


def _unpad(gp, g, mode):
    if mode == "zeros":
        idx = (slice(None), slice(None)) + tuple(slice(lo, lo + n) for lo, n in zip(g.pad_lo, g.in_size))
        return gp[idx]
    return G.unpad_grad(gp, g, mode, g.in_size)


def _convnd(nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, activation):
    op = f"conv{nd}d"
    x, w = _f64(input), _f64(weight)
    b = None if bias is None else _f64(bias)
    g = G.parse(op, nd, x.shape, w.shape, stride, padding, dilation, groups,
                bias_shape=None if b is None else b.shape, padding_mode=padding_mode)
    if activation not in _ACT:
        raise ValueError(f"{op}: expected activation in {tuple(_ACT)}, got {activation!r}")
    xp = _pad_zero_or_mode(G.to5d(x, nd, g.batched), g, padding_mode)
    y = _fwd(xp, G.weight5d(w, nd), g, g.out_size)
    if b is not None:
        y += b[None, :, None, None, None]
    return G.from5d(_ACT[activation](y), nd, g.batched)


def _convnd_backward(nd, grad_output, input, weight, stride, padding, dilation, groups, output_mask, padding_mode):
    op = f"conv{nd}d_backward"
    x, w, go = _f64(input), _f64(weight), _f64(grad_output)
    g = G.parse(op, nd, x.shape, w.shape, stride, padding, dilation, groups, padding_mode=padding_mode)
    go5 = G.to5d(go, nd, g.batched)
    w5 = G.weight5d(w, nd)
    xp = _pad_zero_or_mode(G.to5d(x, nd, g.batched), g, padding_mode)
    gi = gw = gb = None
    if output_mask[0]:
        gi = G.from5d(_unpad(_grad_padded_input(go5, w5, g, xp.shape[2:]), g, padding_mode), nd, g.batched)
    if output_mask[1]:
        gw = _grad_weight(go5, xp, g, g.kernel).reshape(w.shape)
    if output_mask[2]:
        gb = go5.sum(axis=(0, 2, 3, 4))
    return gi, gw, gb


def _transpose_geom(op, nd, x, w, stride, padding, output_padding, groups, dilation, bias_shape=None):
    g = G.parse(op, nd, x.shape, w.shape, stride, padding, dilation, groups, transposed=True,
                output_padding=output_padding, bias_shape=bias_shape)
    padded = tuple(o + lo + hi for o, lo, hi in zip(g.out_size, g.pad_lo, g.pad_hi))
    return g, padded


def _conv_transposend(nd, input, weight, bias, stride, padding, output_padding, groups, dilation):
    op = f"conv_transpose{nd}d"
    x, w = _f64(input), _f64(weight)
    b = None if bias is None else _f64(bias)
    g, padded = _transpose_geom(op, nd, x, w, stride, padding, output_padding, groups, dilation,
                                None if b is None else b.shape)
    gp = _grad_padded_input(G.to5d(x, nd, g.batched), G.weight5d(w, nd), g, padded)
    idx = (slice(None), slice(None)) + tuple(slice(lo, lo + n) for lo, n in zip(g.pad_lo, g.out_size))
    y = gp[idx]
    if b is not None:
        y = y + b[None, :, None, None, None]
    return G.from5d(y, nd, g.batched)


def _conv_transposend_backward(nd, grad_output, input, weight, stride, padding, output_padding, groups, dilation,
                               output_mask):
    op = f"conv_transpose{nd}d_backward"
    x, w, go = _f64(input), _f64(weight), _f64(grad_output)
    g, _ = _transpose_geom(op, nd, x, w, stride, padding, output_padding, groups, dilation)
    go5 = G.to5d(go, nd, g.batched)
    gop = np.pad(go5, ((0, 0), (0, 0)) + tuple(zip(g.pad_lo, g.pad_hi)))
    x5 = G.to5d(x, nd, g.batched)
    gi = gw = gb = None
    if output_mask[0]:
        gi = G.from5d(_fwd(gop, G.weight5d(w, nd), g, g.in_size), nd, g.batched)
    if output_mask[1]:
        gw = _grad_weight(x5, gop, g, g.kernel).reshape(w.shape)
    if output_mask[2]:
        gb = go5.sum(axis=(0, 2, 3, 4))
    return gi, gw, gb


def _make(nd):
    def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
             activation=None, algorithm="auto"):
        return _convnd(nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, activation)

    def conv_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1,
                      output_mask=(True, True, True), *, padding_mode="zeros"):
        return _convnd_backward(nd, grad_output, input, weight, stride, padding, dilation, groups, output_mask,
                                padding_mode)

    def conv_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        return _conv_transposend(nd, input, weight, bias, stride, padding, output_padding, groups, dilation)

    def conv_transpose_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1,
                                dilation=1, output_mask=(True, True, True)):
        return _conv_transposend_backward(nd, grad_output, input, weight, stride, padding, output_padding, groups,
                                          dilation, output_mask)

    return G.name_conv_functions(nd, conv, conv_backward, conv_transpose, conv_transpose_backward)


conv1d, conv1d_backward, conv_transpose1d, conv_transpose1d_backward = _make(1)
conv2d, conv2d_backward, conv_transpose2d, conv_transpose2d_backward = _make(2)
conv3d, conv3d_backward, conv_transpose3d, conv_transpose3d_backward = _make(3)
