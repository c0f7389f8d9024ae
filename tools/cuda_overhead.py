"""Host time of one small CUDA call, taken apart: the public function, each step of the Python side
(dispatch test, argument parsing, stream lookup, output allocation) and the compiled launch alone, next to
torch's own call. Host time only (perf_counter over many calls; the GPU runs behind). Usage:
python tools/cuda_overhead.py [--profile]"""
import cProfile
import pstats
import statistics
import sys
import time

import torch

import fastml.functional as F
from fastml import _backend as B
from fastml import _cuda_ops as C
from fastml.optim import functional as O


def per_call_us(fn, n=3000, reps=7):
    for _ in range(200):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        ts.append((time.perf_counter() - t0) / n * 1e6)
        torch.cuda.synchronize()
    return statistics.median(ts)


def main():
    dev = torch.device("cuda")
    x = torch.randn(4096, device=dev)
    o = torch.empty_like(x)
    K = C._K
    s = C._torch_current_stream(x)
    p, q = x.data_ptr(), o.data_ptr()
    a = C.parse(x, "relu", "input")
    rows = [
        ("torch.relu(x)", lambda: torch.relu(x)),
        ("torch.clamp_min(x, 0, out=o)", lambda: torch.clamp_min(x, 0, out=o)),
        ("F.relu(x)", lambda: F.relu(x)),
        ("F.relu(x, out=o)", lambda: F.relu(x, out=o)),
        ("C.activation_forward(0, x, o)", lambda: C.activation_forward(0, x, o)),
        ("B.is_device_array(x)", lambda: B.is_device_array(x)),
        ("hasattr(x, '__cuda_array_interface__')", lambda: hasattr(x, "__cuda_array_interface__")),
        ("isinstance(x, torch.Tensor) and x.is_cuda", lambda: isinstance(x, torch.Tensor) and x.is_cuda),
        ("C.parse(x)", lambda: C.parse(x, "relu", "input")),
        ("C.input_array(x)", lambda: C.input_array(x, "relu", "input")),
        ("C.output_array(o, a)", lambda: C.output_array(o, a, "relu")),
        ("C.empty_like(a)", lambda: C.empty_like(a, "relu")),
        ("torch.empty_like(x)", lambda: torch.empty_like(x)),
        ("torch.empty_like(x, contiguous).detach()",
         lambda: torch.empty_like(x, memory_format=torch.contiguous_format).detach()),
        ("C.check_same_device(2)", lambda: C.check_same_device("relu", [("input", a), ("out", a)])),
        ("C._torch_current_stream(x)", lambda: C._torch_current_stream(x)),
        ("torch._C._cuda_getCurrentRawStream(0)", lambda: torch._C._cuda_getCurrentRawStream(0)),
        ("x.data_ptr()", lambda: x.data_ptr()),
        ("x.get_device()", lambda: x.get_device()),
        ("x.is_contiguous()", lambda: x.is_contiguous()),
        ("tuple(x.shape)", lambda: tuple(x.shape)),
        ("K.activation_forward (launch only)", lambda: K.activation_forward(0, p, q, 4096, 0.0, 0, s)),
        ("K.activation_forward device=-1 (driver lookup)", lambda: K.activation_forward(0, p, q, 4096, 0.0, -1, s)),
        ("K.activation_forward n=0 (binding only)", lambda: K.activation_forward(0, p, q, 0, 0.0, 0, s)),
    ]
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, python {sys.version.split()[0]}")
    print(f"{'step':48s} {'us/call':>8s}")
    for name, fn in rows:
        print(f"{name:48s} {per_call_us(fn):8.2f}")

    ps = [torch.randn(1 << 20, device=dev) for _ in range(53)]
    gs = [torch.randn_like(t) for t in ps]
    m1 = [torch.zeros_like(t) for t in ps]
    m2 = [torch.zeros_like(t) for t in ps]
    adam = lambda: O.adam_step(ps, gs, m1, m2, step=1, lr=1e-3)  # noqa: E731
    print(f"{'adam_step, 53 tensors':48s} {per_call_us(adam, n=200):8.2f}")
    if "--profile" in sys.argv:
        for name, fn, n in [("F.relu(x, out=o)", lambda: F.relu(x, out=o), 20000), ("adam_step 53", adam, 300)]:
            pr = cProfile.Profile()
            pr.enable()
            for _ in range(n):
                fn()
            pr.disable()
            torch.cuda.synchronize()
            print(f"\n== cProfile: {name} x {n}")
            pstats.Stats(pr).sort_stats("tottime").print_stats(14)


if __name__ == "__main__":
    main()
