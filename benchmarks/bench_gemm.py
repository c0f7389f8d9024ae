"""SGEMM benchmark: fastml.matmul vs torch.mm and numpy.matmul (OpenBLAS), float32, in one process.

    python benchmarks/bench_gemm.py [--threads 1 2] [--repeat 15] [--max-square 4096]

Reports GFLOP/s (best and median of the repeats: the machines are shared, the best is the least
disturbed run), % of the FMA peak measured by fastml's probe for the same thread count, and the ratios
to torch and NumPy. The 64x64x64 row also gives the per-call time in microseconds.
Shapes: square 256..4096 and the skinny shapes of the GEMM issue (LSTM gates M=32 N=2048 K=768,
batch-1 GEMV M=1 N=K=4096, M=4096 N=64 K=4096).
"""
import argparse
import statistics
import time

import numpy as np

import fastml

try:
    import torch
except ImportError:  # torch is optional
    torch = None
try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

SKINNY = [(32, 2048, 768), (1, 4096, 4096), (4096, 64, 4096), (64, 64, 64)]


def _time(fn, repeat, budget_s=3.0):
    fn()
    ts = []
    t_end = time.perf_counter() + budget_s
    for i in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        if i >= 2 and time.perf_counter() > t_end:
            break
    return min(ts), statistics.median(ts)


def _calls(fn, n):
    """Per-call time of a tiny product: many calls per sample."""
    def run():
        for _ in range(n):
            fn()
    return run


def bench(threads, repeat, shapes):
    fastml.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    peak = max(fastml._C.probe_fma_peak("active", threads) for _ in range(3))
    limits = threadpool_limits(limits=threads, user_api="blas") if threadpool_limits else None
    rng = np.random.default_rng(0)
    data = []
    for M, N, K in shapes:
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        data.append((a, b, np.empty((M, N), np.float32)))
    libs = {"fastml": lambda a, b, c: (lambda: fastml.matmul(a, b, out=c)),
            "numpy": lambda a, b, c: (lambda: np.matmul(a, b, out=c))}
    if torch is not None:
        libs["torch"] = lambda a, b, c: (lambda ta=torch.from_numpy(a), tb=torch.from_numpy(b),
                                         tc=torch.from_numpy(c): torch.mm(ta, tb, out=tc))
    res = {shape: {} for shape in shapes}
    try:
        # one library at a time over all shapes: a BLAS's worker threads that keep spinning after its
        # calls must not steal the cores from the next library's measurements
        for name, make in libs.items():
            for (M, N, K), (a, b, c) in zip(shapes, data):
                inner = 2000 if M * N * K <= 64 ** 3 else 1
                best, med = _time(_calls(make(a, b, c), inner), repeat)
                flops = 2.0 * M * N * K * inner
                res[(M, N, K)][name] = (flops / best / 1e9, flops / med / 1e9, best / inner * 1e6)
            time.sleep(0.5)
    finally:
        if limits is not None:
            limits.restore_original_limits()
    rows = [(shape, res[shape]) for shape in shapes]
    return peak, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--max-square", type=int, default=4096)
    args = ap.parse_args()
    squares = [n for n in (256, 512, 1024, 2048, 4096) if n <= args.max_square]
    shapes = [(n, n, n) for n in squares] + SKINNY
    info = fastml._C.gemm_blocking()
    print(f"fastml {fastml.__version__}, ISA {info['isa']}, tile {info['mr']}x{info['nr']}, "
          f"KC={info['kc']} MC={info['mc']} NC={info['nc']}; torch {torch.__version__ if torch else 'absent'}, "
          f"numpy {np.__version__}")
    for th in args.threads:
        peak, rows = bench(th, args.repeat, shapes)
        print(f"\n### {th} thread(s): measured FMA peak {peak:.0f} GFLOP/s")
        print("| M x N x K | fastml GF/s best (median) | % peak | torch GF/s | numpy GF/s | vs torch | vs numpy |"
              " us/call fastml/torch/numpy |")
        print("|---|---|---|---|---|---|---|---|")
        for (M, N, K), r in rows:
            f, nmp = r["fastml"], r["numpy"]
            tt = r.get("torch", (float("nan"),) * 3)
            print(f"| {M}x{N}x{K} | {f[0]:.1f} ({f[1]:.1f}) | {100 * f[0] / peak:.0f}% | {tt[0]:.1f} | {nmp[0]:.1f} | "
                  f"{f[0] / tt[0]:.2f} | {f[0] / nmp[0]:.2f} | {f[2]:.1f} / {tt[2]:.1f} / {nmp[2]:.1f} |")


if __name__ == "__main__":
    main()
