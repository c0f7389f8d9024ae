"""GEMM, linear and matmul benchmark cases (registered into fastml.bench.cases.CASES, group ``gemm``).

Compute-bound cases are reported in GFLOP/s (2 M N K flops per product) and % of the FMA peak that
``fastml.bench.machine`` measures for the thread count in use (``_C.probe_fma_peak``), with the ratios
to ``torch.mm`` and to NumPy's BLAS (OpenBLAS) timed in the same run. All three read the SAME random
float32 arrays (torch through ``torch.from_numpy``) and write into preallocated outputs:
``fastml.matmul(a, b, out=c)``, ``np.matmul(a, b, out=c)``, ``torch.mm(a, b, out=c)``.

* ``gemm[N^3]``: square M = N = K in {256, 512, 1024, 2048, 4096} (--quick: 256 and 512).
* ``gemm[MxNxK]`` skinny: 32x2048x768 (LSTM gates), 1x4096x4096 (batch-1 GEMV: memory-bound, so it also
  carries bytes = A + B + C and is reported in GB/s and % of a triad over the same working set),
  4096x64x4096.
* ``gemm[64x64x64]``: per-call time of a small product (binding + dispatch + the product itself).
* ``linear[(32,768)->2048]``: y = x W^T + b; fastml ``F.linear(out=)``, torch ``aten.linear.out``
  (``torch.nn.functional.linear`` has no out=; its allocating form is the ``torch(alloc)`` row),
  NumPy ``matmul(x, W.T, out=) += b``.
* ``linear_backward[(32,768)->2048]``: grad_input = g W and grad_weight = g^T x (output_mask
  (True, True, False): the two GEMMs; fastml's API allocates its results), against the two
  ``torch.mm(out=)`` calls of torch's linear backward and the same two ``np.matmul(out=)``.

Bars (the GEMM issue): >= 85% of measured FMA peak at 1024^3 and 2048^3; >= 1.0x torch.mm and >= 1.0x
NumPy on every square size and on the three skinny shapes.
"""
from __future__ import annotations

import numpy as np

from .cases import Prepared, _F, torch_or_none

F32 = np.float32
SQUARES = ((256, True), (512, True), (1024, False), (2048, False), (4096, False))   # (n, in --quick)
SKINNY = ((32, 2048, 768), (1, 4096, 4096), (4096, 64, 4096))
LINEAR = (32, 768, 2048)   # (batch, in_features, out_features)


def _rand(rng, shape):
    return rng.standard_normal(shape, dtype=F32)


def _build_gemm(m, n, k, overhead=False, memory_bound=False):
    def build():
        torch = torch_or_none()
        matmul = _F().matmul
        rng = np.random.default_rng(20240601 + m + n + k)
        a, b = _rand(rng, (m, k)), _rand(rng, (k, n))
        c_fm, c_np = np.empty((m, n), F32), np.empty((m, n), F32)
        impls = {"fastml": lambda: matmul(a, b, out=c_fm), "numpy": lambda: np.matmul(a, b, out=c_np)}
        if overhead:
            impls["fastml(alloc)"] = lambda: matmul(a, b)
            impls["numpy(alloc)"] = lambda: np.matmul(a, b)
        if torch is not None:
            at, bt, ct = torch.from_numpy(a), torch.from_numpy(b), torch.empty(m, n)
            impls["torch"] = lambda: torch.mm(at, bt, out=ct)
            if overhead:
                impls["torch(alloc)"] = lambda: torch.mm(at, bt)
        notes = []
        if overhead:
            notes.append("per-call time of a 64x64x64 product (the median column): binding + dispatch + compute")
        nbytes = None
        if memory_bound:
            nbytes = 4 * (m * k + k * n + m * n)
            notes.append("memory-bound (B is read once per call): GB/s counts A + B read and C written")
        return Prepared(impls, bytes=nbytes, flops=2 * m * n * k, notes=notes)
    return build


def _build_linear(backward):
    def build():
        torch = torch_or_none()
        F = _F()
        bs, fin, fout = LINEAR
        rng = np.random.default_rng(20240602)
        x, w, bias = _rand(rng, (bs, fin)), _rand(rng, (fout, fin)), _rand(rng, (fout,))
        impls, notes = {}, []
        if not backward:
            o_fm, o_np = np.empty((bs, fout), F32), np.empty((bs, fout), F32)
            impls["fastml"] = lambda: F.linear(x, w, bias, out=o_fm)
            impls["fastml(alloc)"] = lambda: F.linear(x, w, bias)

            def np_linear():
                np.matmul(x, w.T, out=o_np)
                return np.add(o_np, bias, out=o_np)
            impls["numpy"] = np_linear
            if torch is not None:
                xt, wt, bt, ot = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias), torch.empty(bs, fout)
                impls["torch"] = lambda: torch.ops.aten.linear.out(xt, wt, bt, out=ot)
                impls["torch(alloc)"] = lambda: torch.nn.functional.linear(xt, wt, bt)
                notes.append("torch row: aten.linear.out (F.linear has no out=); torch(alloc): F.linear")
            flops = 2 * bs * fin * fout
        else:
            g = _rand(rng, (bs, fout))
            gi_np, gw_np = np.empty((bs, fin), F32), np.empty((fout, fin), F32)
            impls["fastml"] = lambda: F.linear_backward(g, x, w, output_mask=(True, True, False))

            def np_backward():
                np.matmul(g, w, out=gi_np)
                np.matmul(g.T, x, out=gw_np)
                return gi_np, gw_np, None
            impls["numpy"] = np_backward
            if torch is not None:
                gt, xt, wt = torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(w)
                gi_t, gw_t = torch.empty(bs, fin), torch.empty(fout, fin)

                def th_backward():
                    torch.mm(gt, wt, out=gi_t)
                    torch.mm(gt.t(), xt, out=gw_t)
                    return gi_t, gw_t, None
                impls["torch"] = th_backward
            notes.append("grad_input = g W and grad_weight = g^T x (no grad_bias); torch: the two torch.mm(out=) "
                         "of its linear backward; fastml's linear_backward allocates its two results")
            flops = 2 * 2 * bs * fin * fout
        return Prepared(impls, bytes=None, flops=flops, notes=notes)
    return build


def register_gemm_cases(register, Bar, Case):
    ratio_bars = (Bar("vs_torch", 1.0, ">= 1.0x torch.mm"), Bar("vs_numpy", 1.0, ">= 1.0x NumPy"))
    needs = ("fastml.functional:matmul",)
    for n, quick in SQUARES:
        bars = ratio_bars
        if n in (1024, 2048):
            bars = (Bar("pct_fma", 85.0, ">= 85% of FMA peak"),) + ratio_bars
        register(Case("gemm", "gemm", f"{n}^3", quick, needs, _build_gemm(n, n, n), bars))
    for m, n, k in SKINNY:
        register(Case("gemm", "gemm", f"{m}x{n}x{k}", True, needs,
                      _build_gemm(m, n, k, memory_bound=(m == 1)), ratio_bars))
    register(Case("gemm", "gemm", "64x64x64", True, needs, _build_gemm(64, 64, 64, overhead=True)))
    bs, fin, fout = LINEAR
    for op in ("linear", "linear_backward"):
        register(Case(op, "gemm", f"({bs},{fin})->{fout}", True, (f"fastml.functional:{op}",),
                      _build_linear(op == "linear_backward")))
