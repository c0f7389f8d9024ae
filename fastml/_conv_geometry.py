"""Argument normalisation for the convolution family (shared by the public API, the NumPy backend and
the float64 reference, so the three agree on every size and every error message).

Everything is reduced to 3 spatial dims (D, H, W): conv1d is (1, 1, L), conv2d is (1, H, W). Output
size per dim (torch): ``(in + pad_lo + pad_hi - dilation*(k-1) - 1) // stride + 1``; transposed:
``(in-1)*stride - pad_lo - pad_hi + dilation*(k-1) + output_padding + 1``. ``padding='same'`` pads
``total = dilation*(k-1)``, ``total//2`` in front and the rest at the end (torch's rule for even kernels).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
NP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@dataclass(frozen=True)
class ConvGeom:
    nd: int                 # spatial dims of the op (1, 2, 3)
    batched: bool
    N: int
    C: int                  # input channels
    K: int                  # output channels
    groups: int
    in_size: tuple          # 3 spatial dims of the input
    out_size: tuple         # 3 spatial dims of the output
    kernel: tuple
    stride: tuple
    dilation: tuple
    pad_lo: tuple
    pad_hi: tuple
    output_padding: tuple = (0, 0, 0)


# Padding, dilation, output_padding and every output size stay below SIZE_LIMIT: all index and size
# products of the kernels then stay far from int64 overflow (the compiled fast paths check the same bound).
SIZE_LIMIT = 2 ** 40
STRIDE_LIMIT = 2 ** 63


def _tuple(op, name, v, nd, minimum):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        t = (int(v),) * nd
    else:
        try:
            t = tuple(int(a) for a in v)
        except TypeError:
            raise ValueError(f"{op}: expected {name} as an int or a tuple of {nd} ints, got {v!r}") from None
        if len(t) == 1:
            t = t * nd
        if len(t) != nd:
            raise ValueError(f"{op}: expected {name} as an int or a tuple of {nd} ints, got {v!r}")
    if any(a < minimum for a in t):
        raise ValueError(f"{op}: expected {name} >= {minimum}, got {t}")
    # a stride only divides (or, transposed, multiplies an input size the output bound below checks):
    # any value an int64 holds is fine, as in torch
    limit, text = (STRIDE_LIMIT, "2^63") if name == "stride" else (SIZE_LIMIT, "2^40")
    if any(a >= limit for a in t):
        raise ValueError(f"{op}: expected {name} < {text}, got {t}")
    return t


def _pad3(t, fill):
    return (fill,) * (3 - len(t)) + tuple(t)


def _key(v):
    """A hashable key for an argument that tells apart values which compare equal but parse differently
    (True and 1, 2.0 and 2, a list and a tuple); TypeError for what cannot be hashed."""
    if isinstance(v, (tuple, list)):
        return (type(v), tuple(_key(a) for a in v))
    hash(v)
    return (type(v), v)


def parse(op, nd, x_shape, w_shape, stride, padding, dilation, groups, *, transposed=False, output_padding=0,
          bias_shape=None, padding_mode="zeros"):
    """Validate shapes and arguments; return a ConvGeom (immutable). Raises ValueError with the computed
    sizes. The geometries of recent argument sets are cached: a small convolution's call then skips ~7 us
    of argument checks (a failing set is never cached and raises every time)."""
    try:
        key = (op, nd, tuple(x_shape), tuple(w_shape), _key(stride), _key(padding), _key(dilation), _key(groups),
               transposed, _key(output_padding), None if bias_shape is None else tuple(bias_shape),
               _key(padding_mode))
    except TypeError:  # an unhashable argument: parse it (and let the checks word the error)
        return _parse(op, nd, x_shape, w_shape, stride, padding, dilation, groups, transposed, output_padding,
                      bias_shape, padding_mode)
    return _parse_cached(key)


@functools.lru_cache(maxsize=512)
def _parse_cached(key):
    op, nd, x_shape, w_shape, stride, padding, dilation, groups, transposed, opad, bias_shape, padding_mode = key
    unkey = _unkey
    return _parse(op, nd, x_shape, w_shape, unkey(stride), unkey(padding), unkey(dilation), unkey(groups),
                  transposed, unkey(opad), bias_shape, unkey(padding_mode))


def _unkey(k):
    t, v = k
    return t(_unkey(a) for a in v) if t in (tuple, list) else v


def _parse(op, nd, x_shape, w_shape, stride, padding, dilation, groups, transposed, output_padding, bias_shape,
           padding_mode):
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    if len(w_shape) != nd + 2:
        raise ValueError(f"{op}: expected a {nd + 2}-D weight, got shape {w_shape}")
    if len(x_shape) not in (nd + 1, nd + 2):
        raise ValueError(f"{op}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, got shape {x_shape}")
    batched = len(x_shape) == nd + 2
    if not batched:
        x_shape = (1,) + x_shape
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: expected groups as a positive int, got {groups!r}")
    groups = int(groups)
    N, C = x_shape[:2]
    kernel = w_shape[2:]
    if transposed:
        if w_shape[0] != C:
            raise ValueError(f"{op}: expected weight of shape (C_in, C_out/groups, k...) with C_in={C}, got {w_shape}")
        if C % groups:
            raise ValueError(f"{op}: expected groups dividing C_in={C}, got groups={groups}")
        K = w_shape[1] * groups
    else:
        K = w_shape[0]
        if C % groups:
            raise ValueError(f"{op}: expected groups dividing C_in={C}, got groups={groups}")
        if K % groups:
            raise ValueError(f"{op}: expected groups dividing C_out={K} (weight {w_shape}), got groups={groups}")
        if w_shape[1] * groups != C:
            raise ValueError(f"{op}: expected weight of shape (C_out, C_in/groups, k...) with C_in={C}, "
                             f"groups={groups}, i.e. (C_out, {C // groups}, ...), got {w_shape}")
    if any(k < 1 for k in kernel) or K < 1:
        raise ValueError(f"{op}: expected a weight with non-empty kernel and channels, got {w_shape}")
    stride = _tuple(op, "stride", stride, nd, 1)
    dilation = _tuple(op, "dilation", dilation, nd, 1)
    insz = x_shape[2:]
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"{op}: expected padding_mode in {PADDING_MODES}, got {padding_mode!r}")
    if isinstance(padding, str):
        if transposed:
            raise ValueError(f"{op}: expected padding as an int or a tuple (no string padding), got {padding!r}")
        if padding == "valid":
            lo = hi = (0,) * nd
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' requires stride 1, got stride {stride}")
            tot = tuple(d * (k - 1) for d, k in zip(dilation, kernel))
            lo = tuple(t // 2 for t in tot)
            hi = tuple(t - t // 2 for t in tot)
        else:
            raise ValueError(f"{op}: expected padding as an int, a tuple, 'valid' or 'same', got {padding!r}")
    else:
        lo = hi = _tuple(op, "padding", padding, nd, 0)
    opad = (0,) * nd
    if transposed:
        opad = _tuple(op, "output_padding", output_padding, nd, 0)
        for o, s, d in zip(opad, stride, dilation):
            if o >= s and o >= d:
                raise ValueError(f"{op}: expected output_padding smaller than stride or dilation, got "
                                 f"output_padding {opad}, stride {stride}, dilation {dilation}")
        out = tuple((i - 1) * s - l - h + d * (k - 1) + o + 1
                    for i, s, l, h, d, k, o in zip(insz, stride, lo, hi, dilation, kernel, opad))
    else:
        if padding_mode in ("reflect", "circular"):
            for i, l, h in zip(insz, lo, hi):
                lim = i - 1 if padding_mode == "reflect" else i
                if max(l, h) > lim:
                    raise ValueError(f"{op}: padding_mode={padding_mode!r} expects padding <= {lim} for an input "
                                     f"of spatial size {tuple(insz)}, got padding {lo}/{hi}")
        out = tuple((i + l + h - d * (k - 1) - 1) // s + 1
                    for i, l, h, d, k, s in zip(insz, lo, hi, dilation, kernel, stride))
    if any(o <= 0 for o in out) or any(i <= 0 for i in insz):
        raise ValueError(f"{op}: input spatial size {tuple(insz)} with kernel {tuple(kernel)}, padding {lo}/{hi}, "
                         f"stride {stride}, dilation {dilation} gives output size {out}: expected every size > 0")
    if any(o >= SIZE_LIMIT for o in out):
        raise ValueError(f"{op}: input spatial size {tuple(insz)} with kernel {tuple(kernel)}, padding {lo}/{hi}, "
                         f"stride {stride}, dilation {dilation} gives output size {out}: expected every size < 2^40")
    if bias_shape is not None and tuple(bias_shape) != (K,):
        raise ValueError(f"{op}: expected bias of shape ({K},), got {tuple(bias_shape)}")
    return ConvGeom(nd=nd, batched=batched, N=N, C=C, K=K, groups=groups, in_size=_pad3(insz, 1),
                    out_size=_pad3(out, 1), kernel=_pad3(kernel, 1), stride=_pad3(stride, 1),
                    dilation=_pad3(dilation, 1), pad_lo=_pad3(lo, 0), pad_hi=_pad3(hi, 0),
                    output_padding=_pad3(opad, 0))


def to5d(a, nd, batched):
    """View (N, C, *sp) or unbatched (C, *sp) as (N, C, D, H, W)."""
    if not batched:
        a = a[None]
    return a.reshape(a.shape[:2] + (1,) * (3 - nd) + a.shape[2:])


def from5d(a, nd, batched):
    a = a.reshape(a.shape[:2] + a.shape[5 - nd:])
    return a if batched else a[0]


def weight5d(w, nd):
    return w.reshape(w.shape[:2] + (1,) * (3 - nd) + w.shape[2:])


def pad_input(x5, g, mode):
    """Explicit padding of a 5-D input with an np.pad mode (the non-'zeros' padding modes)."""
    width = ((0, 0), (0, 0)) + tuple(zip(g.pad_lo, g.pad_hi))
    return np.pad(x5, width, mode=NP_PAD_MODE[mode])


def unpad_grad(gp, g, mode, in_size):
    """Adjoint of pad_input: fold the gradient of the padded input back onto the input."""
    out = gp
    for ax in range(3):
        n = in_size[ax]
        lo, hi = g.pad_lo[ax], g.pad_hi[ax]
        if lo == 0 and hi == 0:
            continue
        idx = np.pad(np.arange(n), (lo, hi), mode=NP_PAD_MODE[mode])
        axis = 2 + ax
        moved = np.moveaxis(out, axis, 0)
        acc = np.zeros((n,) + moved.shape[1:], dtype=out.dtype)
        np.add.at(acc, idx, moved)
        out = np.moveaxis(acc, 0, axis)
    return out


def name_conv_functions(nd, conv, conv_backward, conv_transpose, conv_transpose_backward):
    """Give the per-dimension functions built by a ``_make(nd)`` factory their public names (both the
    public module and the reference build conv1d/2d/3d this way); returns them in the same order."""
    fns = (conv, conv_backward, conv_transpose, conv_transpose_backward)
    for f, name in zip(fns, (f"conv{nd}d", f"conv{nd}d_backward", f"conv_transpose{nd}d",
                             f"conv_transpose{nd}d_backward")):
        f.__name__ = f.__qualname__ = name
    return fns
