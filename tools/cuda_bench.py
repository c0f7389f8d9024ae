"""Times fastml's CUDA kernels against torch's on the same GPU, same process: medians of CUDA-event timings
over several input sets (so that repeats do not run out of L2), GB/s counting each input read once and each
output written once, against a measured device-to-device copy. Usage: python tools/cuda_bench.py"""
import statistics

import torch

import fastml.functional as F
from fastml.optim import functional as O

dev = torch.device("cuda")
torch.manual_seed(0)


def timeit(fn, sets, reps=20, warm=3):
    for i in range(warm):
        fn(sets[i % len(sets)])
    ts = []
    for i in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn(sets[i % len(sets)])
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e-3)
    return statistics.median(ts)


rows = []


def case(name, nbytes, ours, theirs, sets):
    t_o, t_t = timeit(ours, sets), timeit(theirs, sets)
    rows.append((name, t_o, t_t, nbytes))


def main():
    n = 1 << 26  # 256 MiB of float32 per tensor, well past the L2
    xs = [torch.randn(n, device=dev) * 3 for _ in range(2)]
    gs = [torch.randn(n, device=dev) for _ in range(2)]
    outs = [torch.empty(n, device=dev) for _ in range(2)]
    copy_t = timeit(lambda i: outs[i].copy_(xs[i]), [0, 1])
    peak = 2 * n * 4 / copy_t
    print(f"device {torch.cuda.get_device_name()}; copy {peak / 1e9:.0f} GB/s (read + write)")
    idx = [0, 1]
    for name, ours, theirs in [
        ("relu", lambda i: F.relu(xs[i], out=outs[i]), lambda i: torch.clamp_min(xs[i], 0, out=outs[i])),
        ("sigmoid", lambda i: F.sigmoid(xs[i], out=outs[i]), lambda i: torch.sigmoid(xs[i], out=outs[i])),
        ("tanh", lambda i: F.tanh(xs[i], out=outs[i]), lambda i: torch.tanh(xs[i], out=outs[i])),
        ("gelu", lambda i: F.gelu(xs[i], out=outs[i]), lambda i: torch.nn.functional.gelu(xs[i])),
        ("gelu_tanh", lambda i: F.gelu(xs[i], approximate="tanh", out=outs[i]),
         lambda i: torch.nn.functional.gelu(xs[i], approximate="tanh")),
    ]:
        case(f"{name} fwd n=2^26", 2 * n * 4, ours, theirs, idx)
    xg = [x.clone().requires_grad_(False) for x in xs]
    case("gelu bwd n=2^26", 3 * n * 4, lambda i: F.gelu_backward(gs[i], xs[i], out=outs[i]),
         lambda i: torch.ops.aten.gelu_backward(gs[i], xg[i]), idx)
    case("sigmoid bwd n=2^26", 3 * n * 4, lambda i: F.sigmoid_backward(gs[i], xs[i], out=outs[i]),
         lambda i: torch.ops.aten.sigmoid_backward(gs[i], xg[i]), idx)
    del xg
    for shape, dim in [((8192, 4096), -1), ((1 << 19, 128), -1), ((64, 1 << 20), -1), ((4096, 4096), 0),
                       ((256, 1024, 64), 1)]:
        m = [torch.randn(*shape, device=dev) for _ in range(2)]
        o = [torch.empty(*shape, device=dev) for _ in range(2)]
        nb = 2 * m[0].numel() * 4
        case(f"softmax {shape} dim={dim}", nb, lambda i: F.softmax(m[i], dim, out=o[i]),
             lambda i: torch.softmax(m[i], dim), idx)
        case(f"log_softmax {shape} dim={dim}", nb, lambda i: F.log_softmax(m[i], dim, out=o[i]),
             lambda i: torch.log_softmax(m[i], dim), idx)
        g = [torch.randn(*shape, device=dev) for _ in range(2)]
        y = [torch.softmax(v, dim) for v in m]
        case(f"softmax bwd {shape} dim={dim}", 3 * m[0].numel() * 4,
             lambda i: F.softmax_backward(g[i], y[i], dim, out=o[i]),
             lambda i: torch.ops.aten._softmax_backward_data(g[i], y[i], dim, torch.float32), idx)
        del m, o, g, y
    del xs, gs, outs
    torch.cuda.empty_cache()
    # Adam over a model-like list of tensors, 2^26 parameters in all
    sizes = [1 << 20] * 48 + [1 << 22] * 4
    sizes.append((1 << 26) - sum(sizes))
    total = sum(sizes)
    P = [torch.randn(s, device=dev) for s in sizes]
    G = [torch.randn(s, device=dev) for s in sizes]
    M = [torch.zeros(s, device=dev) for s in sizes]
    V = [torch.zeros(s, device=dev) for s in sizes]
    tp = [p.clone() for p in P]
    for p, g in zip(tp, G):
        p.grad = g
    for fused in (False, True):
        opt = torch.optim.Adam(tp, lr=1e-3, fused=fused, foreach=not fused)
        step = [0]

        def ours(_):
            step[0] += 1
            O.adam_step(P, G, M, V, step=step[0], lr=1e-3)

        case(f"adam 2^26 params in {len(sizes)} tensors vs {'fused' if fused else 'foreach'}", 7 * total * 4,
             ours, lambda _: opt.step(), [0])
    print(f"{'case':58s} {'fastml':>9s} {'torch':>9s} {'GB/s':>6s} {'%copy':>6s} {'vs torch':>8s}")
    for name, t_o, t_t, nb in rows:
        print(f"{name:58s} {t_o * 1e6:8.0f}u {t_t * 1e6:8.0f}u {nb / t_o / 1e9:6.0f} {100 * nb / t_o / peak:5.0f}% "
              f"{t_t / t_o:7.2f}x")


if __name__ == "__main__":
    main()
