"""Argument normalisation and output-size rules of the pooling ops, shared by every backend.

The rules are torch's (aten/src/ATen/native/Pool.h ``pooling_output_shape`` and the shape checks of
``max_pool2d`` / ``avg_pool2d``):

* ``out = floor((L + 2p - d (k - 1) - 1 + (ceil_mode ? s - 1 : 0)) / s) + 1``, and with ``ceil_mode``
  the last window must start inside the input or the left padding: ``if (out - 1) s >= L + p: out -= 1``.
* ``0 <= p <= k // 2`` (torch compares with the undilated kernel size), ``k, s, d >= 1``, ``out >= 1``.
* avg_pool3d only: every input spatial size >= the kernel size, padding notwithstanding (torch's check).
* Adaptive windows: ``start = floor(i L / out)``, ``end = ceil((i + 1) L / out)``.

Every size is returned padded to 3 spatial dims (D, H, W) with leading 1s, so that 1-d and 2-d pooling
run through the one 3-d core of each backend.
"""
from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np

_DIM_NAMES = {1: "(C, L) or (N, C, L)", 2: "(C, H, W) or (N, C, H, W)", 3: "(C, D, H, W) or (N, C, D, H, W)"}


class PoolGeometry(NamedTuple):
    lead: tuple         # the input's non-spatial dims: (C,) or (N, C)
    planes: int         # prod(lead)
    insz: tuple         # (D, H, W) input sizes, padded with 1s
    outsz: tuple        # (oD, oH, oW) output sizes, padded with 1s
    k: tuple
    s: tuple
    p: tuple
    d: tuple
    nd: int             # number of real spatial dims (1, 2, 3)

    @property
    def out_shape(self):
        return self.lead + self.outsz[3 - self.nd:]

    @property
    def in_shape(self):
        return self.lead + self.insz[3 - self.nd:]


def _int(v, op, arg):
    if isinstance(v, bool):
        raise TypeError(f"{op}: expected an int for {arg}, got bool")
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{op}: expected an int or a tuple of ints for {arg}, got {type(v).__name__} {v!r}") from None


def tuple_arg(v, nd, op, arg):
    """An int or a sequence of nd ints (torch also accepts a 1-sequence for any nd) -> tuple of nd ints."""
    if isinstance(v, (tuple, list)):
        vals = tuple(_int(e, op, arg) for e in v)
        if len(vals) == 1:
            vals = vals * nd
        if len(vals) != nd:
            raise ValueError(f"{op}: expected {arg} to be a single int or {nd} ints, got {tuple(v)}")
        return vals
    return (_int(v, op, arg),) * nd


def _check_input_dims(op, shape, nd):
    if len(shape) not in (nd + 1, nd + 2):
        raise ValueError(f"{op}: expected a {nd + 1}-D or {nd + 2}-D input {_DIM_NAMES[nd]}, got shape {tuple(shape)}")
    spatial = tuple(shape[-nd:])
    if any(v < 1 for v in spatial) or (len(shape) == nd + 2 and shape[1] < 1) or (len(shape) == nd + 1 and shape[0] < 1):
        raise ValueError(f"{op}: expected non-zero channel and spatial sizes, got input shape {tuple(shape)}")
    return tuple(shape[:-nd]), spatial


def _pad3(t, fill):
    return (fill,) * (3 - len(t)) + tuple(t)


def output_size(L, k, s, p, d, ceil_mode):
    """torch's pooling_output_shape for one dim."""
    num = L + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= L + p:
        out -= 1
    return out


def pool_geometry(op, shape, nd, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    """Validate the arguments of a max/avg pooling call on an input of `shape`; returns PoolGeometry."""
    lead, spatial = _check_input_dims(op, shape, nd)
    k = tuple_arg(kernel_size, nd, op, "kernel_size")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else tuple_arg(stride, nd, op, "stride")
    p = tuple_arg(padding, nd, op, "padding")
    d = tuple_arg(dilation, nd, op, "dilation")
    if any(v < 1 for v in k):
        raise ValueError(f"{op}: expected kernel_size > 0, got {k}")
    if any(v < 1 for v in s):
        raise ValueError(f"{op}: expected stride > 0, got {s}")
    if any(v < 1 for v in d):
        raise ValueError(f"{op}: expected dilation > 0, got {d}")
    if any(v < 0 for v in p):
        raise ValueError(f"{op}: expected padding >= 0, got {p}")
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise ValueError(f"{op}: pad should be at most half of kernel size, got padding={p} and kernel_size={k}")
    if op.startswith("avg_pool3d") and any(L < ki for L, ki in zip(spatial, k)):
        # torch's avg_pool3d (AveragePool3d.cpp) refuses this even where padding would give an output
        raise ValueError(f"{op}: input image {spatial} smaller than kernel size {k}")
    out = tuple(output_size(L, ki, si, pi, di, bool(ceil_mode)) for L, ki, si, pi, di in zip(spatial, k, s, p, d))
    if any(o < 1 for o in out):
        raise ValueError(f"{op}: computed output size {out} is too small (input spatial size {spatial}, "
                         f"kernel_size={k}, stride={s}, padding={p}, dilation={d}, ceil_mode={bool(ceil_mode)})")
    planes = 1
    for v in lead:
        planes *= v
    return PoolGeometry(lead, planes, _pad3(spatial, 1), _pad3(out, 1), _pad3(k, 1), _pad3(s, 1), _pad3(p, 0),
                        _pad3(d, 1), nd)


def empty_windows(g):
    """Bool array of shape g.outsz: True where the (max/avg pooling) window has no tap inside the input,
    i.e. lies wholly in the padding (possible with dilation or ceil_mode); None when there is none."""
    per_dim = []
    for L, o, k, s, p, d in zip(g.insz, g.outsz, g.k, g.s, g.p, g.d):
        pos = np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * d
        per_dim.append(~np.any((pos >= 0) & (pos < L), axis=1))
    if not any(e.any() for e in per_dim):
        return None
    return per_dim[0][:, None, None] | per_dim[1][None, :, None] | per_dim[2][None, None, :]


def divisor_arg(divisor_override, op):
    if divisor_override is None:
        return None
    v = _int(divisor_override, op, "divisor_override")
    if v == 0:
        raise ValueError(f"{op}: expected a non-zero divisor_override, got 0")
    if not -2**63 <= v < 2**63:  # the kernels take an int64, as torch does
        raise ValueError(f"{op}: expected divisor_override within int64, got {v}")
    return v


def adaptive_geometry(op, shape, nd, output_size):
    """Validate an adaptive pooling call; None entries of output_size keep the input size."""
    lead, spatial = _check_input_dims(op, shape, nd)
    if isinstance(output_size, (tuple, list)):
        osz = tuple(None if v is None else _int(v, op, "output_size") for v in output_size)
        if len(osz) == 1:
            osz = osz * nd
        if len(osz) != nd:
            raise ValueError(f"{op}: expected output_size to be a single int or {nd} ints, got {tuple(output_size)}")
    else:
        osz = (_int(output_size, op, "output_size"),) * nd
    out = tuple(L if o is None else o for L, o in zip(spatial, osz))
    if any(o < 0 for o in out):
        raise ValueError(f"{op}: expected output_size >= 0, got {out}")
    planes = 1
    for v in lead:
        planes *= v
    ones = (1, 1, 1)
    return PoolGeometry(lead, planes, _pad3(spatial, 1), _pad3(out, 1), ones, ones, (0, 0, 0), ones, nd)


def adaptive_bounds(L, out):
    """[(start, end)] of the adaptive windows along one dim."""
    return [((i * L) // out, -((-(i + 1) * L) // out)) for i in range(out)]


def check_grad_output(op, grad_shape, geom):
    if tuple(grad_shape) != tuple(geom.out_shape):
        raise ValueError(f"{op}: expected grad_output of shape {tuple(geom.out_shape)} (the forward output's), "
                         f"got {tuple(grad_shape)}")
