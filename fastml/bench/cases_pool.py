"""Pooling benchmark cases (registered into fastml.bench.cases.CASES, group ``pool``).

Shapes: N8 C64 112x112 with (2x2 s2) and (3x3 s2 p1), max and avg, forward and backward (ResNet's stem
pool and a VGG-style pool; --quick: N2 C16 56x56); global average pooling (adaptive to 1) on N8 C512 7x7
(also --quick) and N8 C64 56x56; stride-1 pooling (3x3 s1 p1, 5x5 s1 p2; max values, max with indices,
average and its backward) on N8 C64 56x56, without a bar.

Like with like: ``max_pool2d`` (values only) is timed against torch's ``max_pool2d``, which computes no
indices but has no out= form, so both allocate their result here; ``max_pool2d_with_indices`` against
``aten.max_pool2d_with_indices.out``; avg and the backward passes against the aten ``.out`` /
``.grad_input`` forms (fastml with out=). The numpy row is fastml's NumPy backend (sliding windows
over a padded copy), the same code a NumPy user would write.

Bytes per call (STREAM convention): forward = input read + output written (+ int64 indices written);
max backward = grad_output + indices read + grad_input written; avg backward = grad_output read +
grad_input written; global average = input read + output written.
Bars (DESIGN.md section 4): >= 70% of the measured triad and >= 1.5x torch.
"""
from __future__ import annotations

import numpy as np

from .cases import F32, Prepared, _F, _randn, torch_or_none

SHAPE = (8, 64, 112, 112)
QUICK_SHAPE = (2, 16, 56, 56)  # --quick
CONFIGS = (("k2s2", 2, 2, 0), ("k3s2p1", 3, 2, 1))
GLOBAL = ((8, 512, 7, 7), (8, 64, 56, 56))
S1_SHAPE = (8, 64, 56, 56)
S1_CONFIGS = (("k3s1p1", 3, 1, 1), ("k5s1p2", 5, 1, 2))


def _numpy(fn):
    import fastml

    def run():
        with fastml.use_backend("numpy"):
            return fn()
    return run


def _build(op, k, s, p, shape=SHAPE):
    def build():
        torch = torch_or_none()
        F = _F()
        x = _randn(shape)
        y0, i0 = F.max_pool2d(x, k, s, p, return_indices=True)
        oshape = y0.shape
        y = np.empty(oshape, F32)
        gi = np.empty(shape, F32)
        g = _randn(oshape)
        impls, notes = {}, []
        T = torch.ops.aten if torch is not None else None
        if torch is not None:
            xt, yt, gt, git = (torch.from_numpy(a) for a in (x, y, g, gi))
            it = torch.from_numpy(i0.copy())
        K, S, P, D = [k, k], [s, s], [p, p], [1, 1]
        if op == "max_pool2d":
            impls["fastml"] = lambda: F.max_pool2d(x, k, s, p)
            impls["numpy"] = _numpy(lambda: F.max_pool2d(x, k, s, p))
            if torch is not None:
                impls["torch"] = lambda: torch.nn.functional.max_pool2d(xt, k, s, p)
            notes.append("values only, both allocate the output (torch's max_pool2d has no out=)")
            nbytes = x.nbytes + y.nbytes
        elif op == "max_pool2d_with_indices":
            idx = np.empty(oshape, np.int64)
            impls["fastml"] = lambda: F.max_pool2d(x, k, s, p, return_indices=True, out=y)
            impls["numpy"] = _numpy(lambda: F.max_pool2d(x, k, s, p, return_indices=True))
            if torch is not None:
                idt = torch.from_numpy(idx)
                impls["torch"] = lambda: T.max_pool2d_with_indices.out(xt, K, S, P, D, False, out=yt, indices=idt)
            notes.append("fastml allocates the int64 indices, torch writes into preallocated ones")
            nbytes = x.nbytes + y.nbytes + idx.nbytes
        elif op == "max_pool2d_backward":
            impls["fastml"] = lambda: F.max_pool2d_backward(g, x, k, s, p, indices=i0, out=gi)
            impls["numpy"] = _numpy(lambda: F.max_pool2d_backward(g, x, k, s, p, indices=i0))
            if torch is not None:
                impls["torch"] = lambda: T.max_pool2d_with_indices_backward.grad_input(gt, xt, K, S, P, D, False, it,
                                                                                        grad_input=git)
            nbytes = g.nbytes + i0.nbytes + gi.nbytes
        elif op == "avg_pool2d":
            impls["fastml"] = lambda: F.avg_pool2d(x, k, s, p, out=y)
            impls["numpy"] = _numpy(lambda: F.avg_pool2d(x, k, s, p))
            if torch is not None:
                impls["torch"] = lambda: T.avg_pool2d.out(xt, K, S, P, False, True, None, out=yt)
            nbytes = x.nbytes + y.nbytes
        else:  # avg_pool2d_backward
            impls["fastml"] = lambda: F.avg_pool2d_backward(g, x, k, s, p, out=gi)
            impls["numpy"] = _numpy(lambda: F.avg_pool2d_backward(g, x, k, s, p))
            if torch is not None:
                impls["torch"] = lambda: T.avg_pool2d_backward.grad_input(gt, xt, K, S, P, False, True, None,
                                                                         grad_input=git)
            nbytes = g.nbytes + gi.nbytes
        return Prepared(impls, bytes=nbytes, notes=notes)
    return build


def _build_global(shape):
    def build():
        torch = torch_or_none()
        F = _F()
        x = _randn(shape)
        y = np.empty(shape[:2] + (1, 1), F32)
        impls = {"fastml": lambda: F.adaptive_avg_pool2d(x, 1, out=y),
                 "numpy": lambda: np.mean(x, axis=(2, 3), keepdims=True, out=y)}
        if torch is not None:
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            impls["torch"] = lambda: torch.ops.aten.adaptive_avg_pool2d.out(xt, [1, 1], out=yt)
        return Prepared(impls, bytes=x.nbytes + y.nbytes, notes=["numpy row: np.mean over (H, W) with out="])
    return build


def register_pool_cases(register, Bar, Case):
    bars = (Bar("pct_triad", 70.0, ">= 70% of triad"), Bar("vs_torch", 1.5, ">= 1.5x torch"))
    for shape, quick in ((SHAPE, False), (QUICK_SHAPE, True)):
        sname = "x".join(map(str, shape))
        for name, k, s, p in CONFIGS:
            for op in ("max_pool2d", "max_pool2d_with_indices", "max_pool2d_backward", "avg_pool2d",
                       "avg_pool2d_backward"):
                fn = op.replace("_with_indices", "")
                register(Case(op, "pool", f"{sname},{name}", quick, (f"fastml.functional:{fn}",),
                              _build(op, k, s, p, shape), bars, full=not quick))
    # stride-1 pooling (Inception's 3x3 s1 p1 branch pools, the 5x5 s1 p2 max of YOLO's SPPF): no bar of its
    # own, reported beside the others
    sname = "x".join(map(str, S1_SHAPE))
    for name, k, s, p in S1_CONFIGS:
        for op in ("max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "avg_pool2d_backward"):
            fn = op.replace("_with_indices", "")
            register(Case(op, "pool", f"{sname},{name}", False, (f"fastml.functional:{fn}",),
                          _build(op, k, s, p, S1_SHAPE), ()))
    for gshape in GLOBAL:
        register(Case("adaptive_avg_pool2d", "pool", "x".join(map(str, gshape)) + "->1", gshape[1] == 512,
                      ("fastml.functional:adaptive_avg_pool2d",), _build_global(gshape), bars))
