"""Specialised conv2d kernels (fastml/functional/_conv_fast.py) vs torch, group ``conv_fast``.

All implementations read the SAME float32 arrays (torch through ``torch.from_numpy``). fastml writes
into a preallocated ``out=`` (``fastml(alloc)`` allocates); ``torch.nn.functional.conv2d`` has no
``out=`` and always allocates. Backward rows: fastml's ``*_backward`` (grad_input, grad_weight,
grad_bias) vs ``torch.ops.aten.convolution_backward`` with the same output mask.

* ``depthwise_conv2d[N8 C256 28x28 k3 p1]``: groups = 256, memory bound: GB/s counts x + w read and
  y written (backward: grad_output, x, w read, grad_input, grad_weight, grad_bias written), % of a
  STREAM triad over the same working set.
* ``direct_conv2d[N8 C3 224x224 ->64 k7 s2 p3]`` (ResNet stem) and ``[N64 C1 28x28 ->6 k5]`` (LeNet):
  GFLOP/s (2 MACs... = 2 flops per multiply-add of the direct definition) and % of the FMA peak.
* ``winograd_conv2d[N8 C64 56x56 ->64 k3 p1]`` and ``[N8 C256 14x14 ->256 k3 p1]``: GFLOP/s counted
  as the direct convolution's 2 N K C 9 H W flops (so faster = more "effective" GFLOP/s); rows for
  F(4x4,3x3), F(2x2,3x3) and ``im2col-gemm``: fastml.matmul on the already unfolded input (the GEMM of
  an im2col path alone, without the unfolding: a lower bound of that path's time).
"""
from __future__ import annotations

import numpy as np

from .cases import Prepared, torch_or_none

F32 = np.float32
OP_MODULE = "fastml.functional._conv_fast"

DEPTHWISE = ((8, 256, 28, 28, 3, 1, 1),)                     # N, C, H, W, k, stride, pad
DIRECT = ((8, 3, 224, 224, 64, 7, 2, 3), (64, 1, 28, 28, 6, 5, 1, 0))   # N, C, H, W, K, k, stride, pad
WINOGRAD = ((8, 64, 56, 56, 64), (8, 256, 14, 14, 256))      # N, C, H, W, K (3x3, pad 1)


def _mod():
    import importlib

    return importlib.import_module(OP_MODULE)


def _rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape, dtype=F32) * F32(scale)).astype(F32)


def _out(h, k, s, p):
    return (h + 2 * p - k) // s + 1


def _torch_conv(torch, x, w, b, s, p, groups):
    xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
    return lambda: torch.nn.functional.conv2d(xt, wt, bt, s, p, 1, groups)


def _torch_backward(torch, g, x, w, s, p, groups):
    gt, xt, wt = torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(w)
    k = w.shape[0]
    return lambda: torch.ops.aten.convolution_backward(gt, xt, wt, [k], [s, s], [p, p], [1, 1], False, [0, 0],
                                                       groups, [True, True, True])


def _build_depthwise(n, c, h, wd, k, s, p, backward):
    def build():
        torch = torch_or_none()
        M = _mod()
        rng = np.random.default_rng(20240701)
        x, w, b = _rand(rng, (n, c, h, wd)), _rand(rng, (c, 1, k, k), 0.3), _rand(rng, (c,))
        ho, wo = _out(h, k, s, p), _out(wd, k, s, p)
        flops = 2 * n * c * ho * wo * k * k
        impls, notes = {}, []
        if not backward:
            y = np.empty((n, c, ho, wo), F32)
            impls["fastml"] = lambda: M.depthwise_conv2d(x, w, b, (s, s), (p, p), (1, 1), out=y)
            impls["fastml(alloc)"] = lambda: M.depthwise_conv2d(x, w, b, (s, s), (p, p), (1, 1))
            if torch is not None:
                impls["torch"] = _torch_conv(torch, x, w, b, s, p, c)
                notes.append("torch: F.conv2d(groups=C) (no out=, allocates)")
            nbytes = 4 * (x.size + w.size + y.size)
        else:
            g = _rand(rng, (n, c, ho, wo))
            impls["fastml"] = lambda: M.depthwise_conv2d_backward(g, x, w, (s, s), (p, p), (1, 1))
            if torch is not None:
                impls["torch"] = _torch_backward(torch, g, x, w, s, p, c)
            notes.append("grad_input + grad_weight + grad_bias; both allocate their results")
            nbytes = 4 * (g.size + 2 * x.size + 2 * w.size + c)
            flops *= 2
        return Prepared(impls, bytes=nbytes, flops=flops, notes=notes, ref_numpy="-")
    return build


def _build_direct(n, c, h, wd, kk, k, s, p, backward):
    def build():
        torch = torch_or_none()
        M = _mod()
        rng = np.random.default_rng(20240702)
        x, w, b = _rand(rng, (n, c, h, wd)), _rand(rng, (kk, c, k, k), 0.2), _rand(rng, (kk,))
        ho, wo = _out(h, k, s, p), _out(wd, k, s, p)
        flops = 2 * n * kk * c * ho * wo * k * k
        impls, notes = {}, []
        if not backward:
            y = np.empty((n, kk, ho, wo), F32)
            impls["fastml"] = lambda: M.direct_conv2d(x, w, b, (s, s), (p, p), (1, 1), out=y)
            impls["fastml(alloc)"] = lambda: M.direct_conv2d(x, w, b, (s, s), (p, p), (1, 1))
            if torch is not None:
                impls["torch"] = _torch_conv(torch, x, w, b, s, p, 1)
                notes.append("torch: F.conv2d (no out=, allocates)")
        else:
            g = _rand(rng, (n, kk, ho, wo))
            impls["fastml"] = lambda: M.direct_conv2d_backward(g, x, w, (s, s), (p, p), (1, 1))
            if torch is not None:
                impls["torch"] = _torch_backward(torch, g, x, w, s, p, 1)
            notes.append("grad_input + grad_weight + grad_bias; both allocate their results")
            flops *= 2
        return Prepared(impls, bytes=None, flops=flops, notes=notes, ref_numpy="-")
    return build


def _build_winograd(n, c, h, wd, kk):
    def build():
        torch = torch_or_none()
        M = _mod()
        from fastml.functional import matmul

        rng = np.random.default_rng(20240703)
        x, w, b = _rand(rng, (n, c, h, wd)), _rand(rng, (kk, c, 3, 3), 0.1), _rand(rng, (kk,))
        y43, y23 = np.empty((n, kk, h, wd), F32), np.empty((n, kk, h, wd), F32)
        impls = {"fastml": lambda: M.winograd_conv2d(x, w, b, out=y43, tile="f43"),
                 "fastml(f23)": lambda: M.winograd_conv2d(x, w, b, out=y23, tile="f23")}
        # im2col: (C*9, N*H*W) unfolded once here; the timed row is the GEMM W (K, C*9) @ cols only
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        cols = np.stack([xp[:, :, a:a + h, q:q + wd] for a in range(3) for q in range(3)], axis=2)
        cols = np.ascontiguousarray(cols.transpose(1, 2, 0, 3, 4).reshape(c * 9, n * h * wd))
        w2 = np.ascontiguousarray(w.reshape(kk, c * 9))
        yc = np.empty((kk, n * h * wd), F32)
        impls["im2col-gemm"] = lambda: matmul(w2, cols, out=yc)
        notes = ["GFLOP/s counts the direct conv's 2 N K C 9 H W flops for every row",
                 "fastml = F(4x4,3x3), fastml(f23) = F(2x2,3x3), im2col-gemm = fastml.matmul on the "
                 "pre-unfolded input (GEMM only, no unfold, output in (K, N*H*W) order)"]
        if torch is not None:
            impls["torch"] = _torch_conv(torch, x, w, b, 1, 1, 1)
            notes.append("torch: F.conv2d (no out=, allocates)")
        return Prepared(impls, bytes=None, flops=2 * n * kk * c * 9 * h * wd, notes=notes, ref_numpy="-")
    return build


def register_conv_fast_cases(register, Bar, Case):
    vs_torch = (Bar("vs_torch", 1.0, ">= 1.0x torch"),)
    for (n, c, h, wd, k, s, p) in DEPTHWISE:
        shape = f"N{n} C{c} {h}x{wd} k{k} s{s} p{p}"
        for bwd in (False, True):
            op = "depthwise_conv2d" + ("_backward" if bwd else "")
            register(Case(op, "conv_fast", shape, True, (f"{OP_MODULE}:{op}",),
                          _build_depthwise(n, c, h, wd, k, s, p, bwd), vs_torch))
    for (n, c, h, wd, kk, k, s, p) in DIRECT:
        shape = f"N{n} C{c} {h}x{wd}->{kk} k{k} s{s} p{p}"
        for bwd in (False, True):
            op = "direct_conv2d" + ("_backward" if bwd else "")
            register(Case(op, "conv_fast", shape, h <= 32, (f"{OP_MODULE}:{op}",),
                          _build_direct(n, c, h, wd, kk, k, s, p, bwd), vs_torch))
    for (n, c, h, wd, kk) in WINOGRAD:
        register(Case("winograd_conv2d", "conv_fast", f"N{n} C{c} {h}x{wd}->{kk} k3 p1", c == 256,
                      (f"{OP_MODULE}:winograd_conv2d",), _build_winograd(n, c, h, wd, kk), vs_torch))
