"""Convolution benchmark cases (group ``conv``): conv1d / conv2d / conv3d forward and backward.

Reported in GFLOP/s (2 N K P C/groups kvol flops per forward; backward = grad_input + grad_weight, twice
that) and % of the measured FMA peak, with the ratios to torch (oneDNN) and to a NumPy im2col baseline
(fastml's NumPy backend: sliding-window columns + one batched matmul) timed in the same run on the SAME
float32 arrays (torch through ``torch.from_numpy``).

* forward: fastml ``F.convNd(x, w, b, ..., out=y)`` (preallocated; ``fastml(alloc)`` is the allocating
  call), torch ``torch.nn.functional.convNd(x, w, b, ...)`` (no out= there), numpy the NumPy backend.
* backward: fastml ``F.convNd_backward(g, x, w, ..., output_mask=(True, True, False))``, torch
  ``torch.ops.aten.convolution_backward(g, x, w, None, ..., output_mask=[True, True, False])``.

Shapes (the conv issue): ResNet 3x3 at 56x56 and 14x14, a 1x1 at 28x28, the 7x7/s2 stem, LeNet 5x5,
depthwise 3x3 (groups = channels), conv1d k5, conv3d 3x3x3; outside the bar set, two stride-2 3x3
downsampling layers of ResNet, a 5x5, a ResNeXt 3x3 with 32 groups and a 4x4 stride-2 conv_transpose2d
(forward and backward). --quick: LeNet and 256@14x14. Each case's
notes say which algorithm 'auto' runs (the rules: fastml/functional/conv.py docstring).

Bars (conv issue): forward geometric mean over the shapes >= 1.0x torch and no shape < 0.8x torch
(per-case bar: 0.8x); backward geometric mean >= 1.0x torch. The geometric means are not a per-case
bar: read them off the vs-torch column.
"""
from __future__ import annotations

import numpy as np

from .cases import Prepared, _F, torch_or_none

F32 = np.float32

# (label, nd, input shape, weight shape, kwargs, quick)
SHAPES = (
    ("N8,C64,56x56->64,3x3,p1", 2, (8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), False),
    ("N8,C256,14x14->256,3x3,p1", 2, (8, 256, 14, 14), (256, 256, 3, 3), dict(padding=1), True),
    ("N8,C256,28x28->64,1x1", 2, (8, 256, 28, 28), (64, 256, 1, 1), {}, False),
    ("N8,C3,224x224->64,7x7,s2,p3", 2, (8, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3), False),
    ("N64,C1,28x28->6,5x5", 2, (64, 1, 28, 28), (6, 1, 5, 5), {}, True),
    ("dw,N8,C256,28x28,3x3,p1", 2, (8, 256, 28, 28), (256, 1, 3, 3), dict(padding=1, groups=256), False),
    ("N16,C128,L1024->128,k5,p2", 1, (16, 128, 1024), (128, 128, 5), dict(padding=2), False),
    ("N2,C32,16x56x56->32,3x3x3,p1", 3, (2, 32, 16, 56, 56), (32, 32, 3, 3, 3), dict(padding=1), False),
)

# Not in the bar set (no bars; timed for the record): ResNet's stride-2 3x3 downsampling convolutions,
# a 5x5, ResNeXt grouped 3x3s (few channels per group: the column copy is a large share of their time; 16
# per group on 14x14 planes, stage 3; 32 per group on 7x7 planes, stage 4) and an EfficientNet 5x5 depthwise
# on 14x14 planes.
EXTRA_SHAPES = (
    ("N8,C64,56x56->128,3x3,s2,p1", 2, (8, 64, 56, 56), (128, 64, 3, 3), dict(stride=2, padding=1), False),
    ("N8,C256,14x14->512,3x3,s2,p1", 2, (8, 256, 14, 14), (512, 256, 3, 3), dict(stride=2, padding=1), False),
    ("N8,C64,28x28->64,5x5,p2", 2, (8, 64, 28, 28), (64, 64, 5, 5), dict(padding=2), False),
    ("N8,C256,28x28->256,3x3,p1,g32", 2, (8, 256, 28, 28), (256, 8, 3, 3), dict(padding=1, groups=32), False),
    ("N8,C512,14x14->512,3x3,p1,g32", 2, (8, 512, 14, 14), (512, 16, 3, 3), dict(padding=1, groups=32), False),
    ("N8,C1024,7x7->1024,3x3,p1,g32", 2, (8, 1024, 7, 7), (1024, 32, 3, 3), dict(padding=1, groups=32), False),
    ("dw,N8,C672,14x14,5x5,p2", 2, (8, 672, 14, 14), (672, 1, 5, 5), dict(padding=2, groups=672), False),
)
# conv_transpose2d (no bars): DCGAN / U-Net style 4x4 stride-2 upsampling.
TRANSPOSE_SHAPES = (
    ("N8,C128,14x14->64,4x4,s2,p1", (8, 128, 14, 14), (128, 64, 4, 4), dict(stride=2, padding=1)),
)

FORWARD_NOTE = ("bar: forward geomean >= 1.0x torch over the conv shapes, no shape < 0.8x (per-case bar); "
                "torch: F.conv{nd}d (allocates; no out=), fastml: out= preallocated, fastml(alloc) allocates")
BACKWARD_NOTE = ("bar: backward geomean >= 1.0x torch over the conv shapes; grad_input + grad_weight "
                 "(output_mask (True, True, False)); torch: aten.convolution_backward")


def _flops(nd, xs, ws, kw):
    N = xs[0]
    K, cg = ws[0], ws[1]
    kvol = int(np.prod(ws[2:]))
    stride = kw.get("stride", 1)
    pad = kw.get("padding", 0)
    out = [(i + 2 * pad - k) // stride + 1 for i, k in zip(xs[2:], ws[2:])]
    return 2 * N * K * int(np.prod(out)) * cg * kvol


def _auto_note(nd, xs, ws, kw, backward):
    """Which algorithm conv{nd}d's 'auto' runs on this shape (fastml.functional.conv._select_algorithm)."""
    from .. import _conv_geometry as G
    from ..functional import conv as C
    g = G.parse(f"conv{nd}d", nd, xs, ws, kw.get("stride", 1), kw.get("padding", 0), 1, kw.get("groups", 1))
    return f"fastml algorithm='auto' runs {C._select_algorithm(g, False, backward)!r} here"


def _build(nd, xs, ws, kw, backward):
    def build():
        import fastml
        torch = torch_or_none()
        F = _F()
        fwd, bwd = getattr(F, f"conv{nd}d"), getattr(F, f"conv{nd}d_backward")
        rng = np.random.default_rng(20240610 + sum(xs) + sum(ws))
        x = rng.standard_normal(xs, dtype=F32)
        w = (rng.standard_normal(ws, dtype=F32) / np.sqrt(np.prod(ws[1:]))).astype(F32)
        b = rng.standard_normal(ws[0], dtype=F32)
        y = fwd(x, w, b, **kw)
        flops = _flops(nd, xs, ws, kw)
        impls = {}
        if not backward:
            out = np.empty_like(y)
            impls["fastml"] = lambda: fwd(x, w, b, out=out, **kw)
            impls["fastml(alloc)"] = lambda: fwd(x, w, b, **kw)

            def np_fwd():
                with fastml.use_backend("numpy"):
                    return fwd(x, w, b, **kw)
            impls["numpy"] = np_fwd
            if torch is not None:
                xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
                tf = getattr(torch.nn.functional, f"conv{nd}d")
                impls["torch"] = lambda: tf(xt, wt, bt, **kw)
            return Prepared(impls, flops=flops, notes=[FORWARD_NOTE.format(nd=nd), _auto_note(nd, xs, ws, kw, False)])
        g = rng.standard_normal(y.shape, dtype=F32)
        mask = (True, True, False)
        impls["fastml"] = lambda: bwd(g, x, w, output_mask=mask, **kw)

        def np_bwd():
            with fastml.use_backend("numpy"):
                return bwd(g, x, w, output_mask=mask, **kw)
        impls["numpy"] = np_bwd
        if torch is not None:
            gt, xt, wt = torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(w)
            s = kw.get("stride", 1)
            p = kw.get("padding", 0)
            args = ([s] * nd, [p] * nd, [1] * nd, False, [0] * nd, kw.get("groups", 1), [True, True, False])
            impls["torch"] = lambda: torch.ops.aten.convolution_backward(gt, xt, wt, None, *args)
        return Prepared(impls, flops=2 * flops, notes=[BACKWARD_NOTE, _auto_note(nd, xs, ws, kw, True)])
    return build


def _build_transpose(xs, ws, kw, backward):
    def build():
        torch = torch_or_none()
        F = _F()
        rng = np.random.default_rng(20240612 + sum(xs) + sum(ws))
        x = rng.standard_normal(xs, dtype=F32)
        w = (rng.standard_normal(ws, dtype=F32) / np.sqrt(np.prod(ws[1:]))).astype(F32)
        y = F.conv_transpose2d(x, w, None, **kw)
        flops = 2 * int(np.prod(xs)) * int(np.prod(ws[1:]))  # each input element times its C_out k k taps
        s, p = kw["stride"], kw["padding"]
        if not backward:
            impls = {"fastml": lambda: F.conv_transpose2d(x, w, None, **kw)}
            if torch is not None:
                xt, wt = torch.from_numpy(x), torch.from_numpy(w)
                impls["torch"] = lambda: torch.nn.functional.conv_transpose2d(xt, wt, None, **kw)
            return Prepared(impls, flops=flops, notes=["no bar; both allocate the output"])
        g = rng.standard_normal(y.shape, dtype=F32)
        mask = (True, True, False)
        impls = {"fastml": lambda: F.conv_transpose2d_backward(g, x, w, output_mask=mask, **kw)}
        if torch is not None:
            gt, xt, wt = torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(w)
            args = ([s] * 2, [p] * 2, [1] * 2, True, [0] * 2, 1, [True, True, False])
            impls["torch"] = lambda: torch.ops.aten.convolution_backward(gt, xt, wt, None, *args)
        return Prepared(impls, flops=2 * flops, notes=["no bar; grad_input + grad_weight; torch: "
                                                         "aten.convolution_backward(transposed=True)"])
    return build


def register_conv_cases(register, Bar, Case):
    fwd_bars = (Bar("vs_torch", 0.8, ">= 0.8x torch on every shape (geomean >= 1.0x)"),)
    for label, nd, xs, ws, kw, quick in SHAPES:
        op = f"conv{nd}d"
        register(Case(op, "conv", label, quick, (f"fastml.functional:{op}",), _build(nd, xs, ws, kw, False),
                      fwd_bars))
        register(Case(f"{op}_backward", "conv", label, quick, (f"fastml.functional:{op}_backward",),
                      _build(nd, xs, ws, kw, True)))
    for label, nd, xs, ws, kw, quick in EXTRA_SHAPES:
        op = f"conv{nd}d"
        for suffix, bwd in (("", False), ("_backward", True)):
            register(Case(op + suffix, "conv", label, quick, (f"fastml.functional:{op}{suffix}",),
                          _build(nd, xs, ws, kw, bwd)))
    for label, xs, ws, kw in TRANSPOSE_SHAPES:
        for suffix, bwd in (("", False), ("_backward", True)):
            register(Case("conv_transpose2d" + suffix, "conv", label, False,
                          (f"fastml.functional:conv_transpose2d{suffix}",), _build_transpose(xs, ws, kw, bwd)))
