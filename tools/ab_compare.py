"""Paired A/B timing of two or more builds of fastml on a noisy machine.

    cp -r fastml /tmp/before/        # a build to compare against (the whole package folder)
    ... change, tools/dev_build.sh ...
    cp -r fastml /tmp/after/
    OMP_WAIT_POLICY=PASSIVE python tools/ab_compare.py --threads 2 /tmp/before /tmp/after --groups gemm pool

Each build runs in a worker process of its own that imports ``fastml`` from the given folder and builds
the same inputs (same seed). The driver calls the workers in turn, one call at a time, so every build sees
the same moments of the machine (a neighbour's burst slows one call of each, not one build's whole run),
and reports per case: the median and best rate of each build, and the median over rounds of the per-round
time ratio against the first build (> 1: faster than the first). The ratio is the number to read; the
medians alone move by tens of percent on a shared VM.

Set OMP_WAIT_POLICY=PASSIVE unless the point is to see the other builds' spinning threads: an idle worker's
OpenMP threads otherwise spin for a while after each call, on the cores the next worker needs.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

WORKER = r'''
import os, sys, time, numpy as np
sys.path.insert(0, sys.argv[1])
import fastml
import fastml.functional as F
# an installed fastml must not stand in for the build under test
assert os.path.realpath(os.path.dirname(fastml.__file__)) == os.path.realpath(os.path.join(sys.argv[1], "fastml")), \
    f"fastml imported from {fastml.__file__}, not from {sys.argv[1]}"
fastml.set_num_threads(int(sys.argv[2]))
groups = set(sys.argv[3].split(","))
rng = np.random.default_rng(0)
cases = {}
def add(name, fn, work):
    cases[name] = (fn, work)
if "gemm" in groups:
    for M, N, K in [(256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048),
                    (32, 2048, 768), (4096, 64, 4096)]:
        a = rng.standard_normal((M, K), dtype=np.float32); b = rng.standard_normal((K, N), dtype=np.float32)
        add(f"gemm {M}x{N}x{K} (GFLOP/s)", lambda a=a, b=b: fastml.matmul(a, b), 2.0 * M * N * K)
if "pool" in groups:
    x = rng.standard_normal((8, 64, 112, 112), dtype=np.float32)
    for kw, tag in [(dict(kernel_size=2, stride=2), "2x2"), (dict(kernel_size=3, stride=2, padding=1), "3x3")]:
        y, idx = F.max_pool2d(x, return_indices=True, **kw)
        gy = rng.standard_normal(y.shape, dtype=np.float32)
        nb = 4.0 * (x.size + y.size)
        add(f"max_pool2d {tag} (GB/s)", lambda kw=kw: F.max_pool2d(x, **kw), nb)
        add(f"avg_pool2d {tag} (GB/s)", lambda kw=kw: F.avg_pool2d(x, **kw), nb)
        add(f"avg_pool2d_backward {tag} (GB/s)", lambda kw=kw, gy=gy: F.avg_pool2d_backward(gy, x, **kw), nb)
        add(f"max_pool2d_backward {tag} (GB/s)",
            lambda kw=kw, gy=gy, idx=idx: F.max_pool2d_backward(gy, x, indices=idx, **kw), nb + 8.0 * y.size)
if "conv" in groups:
    for name, xs, ws, kw, conv in [
            ("3x3 C64 56x56", (8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), F.conv2d),
            ("1x1 C256 28x28", (8, 256, 28, 28), (64, 256, 1, 1), {}, F.conv2d),
            ("7x7 s2 C3 224x224", (8, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3), F.conv2d),
            ("depthwise C256 28x28", (8, 256, 28, 28), (256, 1, 3, 3), dict(padding=1, groups=256), F.conv2d),
            ("conv1d k5", (16, 128, 1024), (128, 128, 5), dict(padding=2), F.conv1d)]:
        xv = rng.standard_normal(xs, dtype=np.float32); wv = rng.standard_normal(ws, dtype=np.float32)
        y = conv(xv, wv, **kw)
        add(f"conv {name} (GFLOP/s)", lambda conv=conv, xv=xv, wv=wv, kw=kw: conv(xv, wv, **kw),
            2.0 * y.size * np.prod(ws[1:]))
if "attention" in groups:
    for L in (512, 2048):
        q, k, v = (rng.standard_normal((4, 8, L, 64), dtype=np.float32) for _ in range(3))
        o, lse = F.scaled_dot_product_attention_forward(q, k, v)
        go = rng.standard_normal(o.shape, dtype=np.float32)
        add(f"attention L{L} forward (GFLOP/s)",
            lambda q=q, k=k, v=v: F.scaled_dot_product_attention_forward(q, k, v), 4.0 * 4 * 8 * L * L * 64)
        add(f"attention L{L} backward (GFLOP/s)",
            lambda go=go, q=q, k=k, v=v, o=o, lse=lse: F.scaled_dot_product_attention_backward(go, q, k, v, o, lse),
            10.0 * 4 * 8 * L * L * 64)
    # causal at the largest L (the loop's last q, k, v, go): the blocks the diagonal crosses are computed whole
    oc, lc = F.scaled_dot_product_attention_forward(q, k, v, is_causal=True)
    add(f"attention L{L} causal backward (GFLOP/s, computed half)",
        lambda go=go, q=q, k=k, v=v, o=oc, lse=lc: F.scaled_dot_product_attention_backward(go, q, k, v, o, lse,
                                                                                            is_causal=True),
        5.0 * 4 * 8 * L * L * 64)
    for Bq, L, S in ((1, 64, 4096), (1, 120, 4096), (8, 64, 1024)):  # short query blocks against long keys
        qs = rng.standard_normal((Bq, 8, L, 64), dtype=np.float32)
        ks, vs = (rng.standard_normal((Bq, 8, S, 64), dtype=np.float32) for _ in range(2))
        add(f"attention B{Bq} L{L} S{S} forward (GFLOP/s)",
            lambda q=qs, k=ks, v=vs: F.scaled_dot_product_attention(q, k, v), 4.0 * Bq * 8 * L * S * 64)
    for S in (4096, 32768):  # decode: one query row per head against a KV cache in L3 / in DRAM
        qd = rng.standard_normal((1, 8, 1, 64), dtype=np.float32)
        kd, vd = (rng.standard_normal((1, 8, S, 64), dtype=np.float32) for _ in range(2))
        add(f"attention decode B1 H8 S{S} (GB/s of K and V)",
            lambda q=qd, k=kd, v=vd: F.scaled_dot_product_attention(q, k, v), 2.0 * 8 * S * 64 * 4)
if "rnn" in groups:  # batch-1 steps: the weights stream from L3 once per step (GB/s of weights)
    for mode, G in (("lstm", 4), ("gru", 3)):
        I, H = 256, 512
        x = rng.standard_normal((1, I), dtype=np.float32)
        h = rng.standard_normal((1, H), dtype=np.float32)
        wi = (rng.standard_normal((G * H, I)) * 0.05).astype(np.float32)
        wh = (rng.standard_normal((G * H, H)) * 0.05).astype(np.float32)
        bi, bh = (np.zeros(G * H, np.float32) for _ in range(2))
        wbytes = 4.0 * G * H * (I + H)
        if mode == "lstm":
            add("lstm_cell b1 256->512 (GB/s of weights)",
                lambda x=x, h=h, wi=wi, wh=wh, bi=bi, bh=bh: F.lstm_cell(x, (h, h), wi, wh, bi, bh), wbytes)
        else:
            add("gru_cell b1 256->512 (GB/s of weights)",
                lambda x=x, h=h, wi=wi, wh=wh, bi=bi, bh=bh: F.gru_cell(x, h, wi, wh, bi, bh), wbytes)
        xs = rng.standard_normal((200, 1, I), dtype=np.float32)
        fn = F.lstm if mode == "lstm" else F.gru
        add(f"{mode} T200 N1 256->512 (GB/s of W_hh per step)",
            lambda xs=xs, ws=[wi, wh, bi, bh], fn=fn: fn(xs, None, ws, keep_reserve=False), 200 * 4.0 * G * H * H)
print("|".join(cases), flush=True)
for line in sys.stdin:
    fn, work = cases[line.strip()]
    t = time.perf_counter(); fn(); dt = time.perf_counter() - t
    print(dt, work, flush=True)
'''

GROUPS = ("gemm", "pool", "conv", "attention", "rnn")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builds", nargs="+", help="folders that each hold a built fastml/ package")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--groups", nargs="+", default=["gemm"], choices=GROUPS)
    ap.add_argument("--seconds", type=float, default=5.0, help="of paired rounds per case")
    args = ap.parse_args(argv)
    for d in args.builds:
        if not os.path.isfile(os.path.join(d, "fastml", "__init__.py")):
            ap.error(f"{d} holds no fastml/ package folder")
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, d, str(args.threads), ",".join(args.groups)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for d in args.builds]
    try:
        headers = [w.stdout.readline().strip() for w in workers]
        if not all(headers):
            raise SystemExit("a worker failed to start: its error is printed above")
        names = headers[0].split("|")

        def call(w, name):
            w.stdin.write(name + "\n")
            w.stdin.flush()
            dt, work = w.stdout.readline().split()
            return float(dt), float(work)

        for name in names:
            for w in workers:  # warm-up
                call(w, name)
            times = [[] for _ in workers]
            work = 1.0
            end = time.perf_counter() + args.seconds
            while time.perf_counter() < end:
                for i, w in enumerate(workers):
                    dt, work = call(w, name)
                    times[i].append(dt)
            n = len(times[0])
            cols = []
            for i, d in enumerate(args.builds):
                ratio = statistics.median(times[0][r] / times[i][r] for r in range(n))
                cols.append(f"{os.path.basename(os.path.normpath(d))} {work / statistics.median(times[i]) / 1e9:.1f} "
                            f"(best {work / min(times[i]) / 1e9:.1f}) x{ratio:.3f}")
            print(f"{name:40s} n={n:<5d} " + " | ".join(cols), flush=True)
    finally:
        for w in workers:
            w.stdin.close()
            w.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
