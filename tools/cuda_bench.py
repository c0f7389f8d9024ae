"""Times fastml's CUDA kernels against torch's on the same GPU, same process: medians of CUDA-event timings
over several input sets (so that repeats do not run out of L2), GB/s counting each input read once and each
output written once, against a measured device-to-device copy. Usage: python tools/cuda_bench.py

Two times per case: 'call' has one call between the events, so it includes the host work before the launch
(argument parsing, checks) while the GPU waits, as a single call in a user's loop sees it; 'queued' has 10
calls between the events, so the host runs ahead of the GPU and the time is the kernels' own."""
import statistics

import torch

import fastml.functional as F
from fastml.optim import functional as O

dev = torch.device("cuda")
torch.manual_seed(0)


def timeit(fn, sets, reps=15, warm=3, batch=1):
    for i in range(warm):
        fn(sets[i % len(sets)])
    torch.cuda.synchronize()
    ts = []
    for i in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for k in range(batch):
            fn(sets[(i * batch + k) % len(sets)])
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e-3 / batch)
    return statistics.median(ts)


rows = []


def case(name, nbytes, ours, theirs, sets):
    call = (timeit(ours, sets), timeit(theirs, sets))
    queued = (timeit(ours, sets, batch=10), timeit(theirs, sets, batch=10))
    rows.append((name, call, queued, nbytes))


def main():
    n = 1 << 26  # 256 MiB of float32 per tensor, well past the L2
    xs = [torch.randn(n, device=dev) * 3 for _ in range(2)]
    gs = [torch.randn(n, device=dev) for _ in range(2)]
    outs = [torch.empty(n, device=dev) for _ in range(2)]
    copy_t = timeit(lambda i: outs[i].copy_(xs[i]), [0, 1])
    peak = 2 * n * 4 / copy_t
    print(f"device {torch.cuda.get_device_name()}; copy {peak / 1e9:.0f} GB/s (read + write)")
    idx = [0, 1]
    small = [torch.randn(4096, device=dev) for _ in range(2)]
    small_out = [torch.empty(4096, device=dev) for _ in range(2)]
    case("relu fwd n=4096 (per-call overhead)", 2 * 4096 * 4, lambda i: F.relu(small[i], out=small_out[i]),
         lambda i: torch.clamp_min(small[i], 0, out=small_out[i]), idx)
    case("relu fwd n=4096, new output", 2 * 4096 * 4, lambda i: F.relu(small[i]), lambda i: torch.relu(small[i]), idx)
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

        case(f"adam 2^26 in {len(sizes)} tensors vs {'fused' if fused else 'foreach'}", 7 * total * 4,
             ours, lambda _: opt.step(), [0])
    print(f"{'case':50s} {'call: fastml':>12s} {'torch':>7s} {'ratio':>6s} {'queued: fastml':>14s} {'torch':>7s} "
          f"{'ratio':>6s} {'GB/s':>5s} {'%copy':>5s}   (us; ratio = torch / fastml)")
    for name, (c_o, c_t), (q_o, q_t), nb in rows:
        print(f"{name:50s} {c_o * 1e6:12.0f} {c_t * 1e6:7.0f} {c_t / c_o:5.2f}x {q_o * 1e6:14.0f} {q_t * 1e6:7.0f} "
              f"{q_t / q_o:5.2f}x {nb / q_o / 1e9:5.0f} {100 * nb / q_o / peak:4.0f}%")


if __name__ == "__main__":
    main()
