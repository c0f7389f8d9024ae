"""``python -m fastml.bench``: fastml vs NumPy vs torch, in hardware units and % of measured ceilings.

    python -m fastml.bench                      # every case at the full shapes (a few minutes)
    python -m fastml.bench --quick              # small shapes, short timing (< 1 minute)
    python -m fastml.bench --ops conv           # a group (one of fastml.bench.cases.GROUPS: activation overhead
                                                # softmax loss optim gemm conv conv_fast pool rnn attention) or op names
    python -m fastml.bench --ops relu softmax --json out.json --threads 2
    python -m fastml.bench --ops gemm linear   # GEMM / linear / matmul: GFLOP/s, % FMA peak, vs torch.mm and NumPy
    python -m fastml.bench --list               # the registered cases, then exit

Ratios are (reference time / this row's time): > 1 means this row is faster than NumPy / torch.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m fastml.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", nargs="+", metavar="OP", help="groups, op names or case names to run (default: all)")
    p.add_argument("--quick", action="store_true", help="small shapes and short timing")
    p.add_argument("--json", metavar="FILE", help="write all results to FILE as JSON")
    p.add_argument("--threads", type=int, default=None, help="threads for fastml, torch and NumPy's BLAS")
    p.add_argument("--list", action="store_true", help="list the registered cases and exit")
    p.add_argument("--time", type=float, default=None, metavar="S",
                   help="seconds of samples per implementation (default 0.3, --quick 0.02)")
    p.add_argument("--probe", choices=("full", "quick", "off"), default="full",
                   help="machine ceilings: full (DRAM-size triad, cached in ~/.cache/fastml; default), "
                        "quick (48 MiB triad, not cached: %%dram is then against that level), or off")
    p.add_argument("--remeasure", action="store_true", help="ignore the cached machine ceilings")
    return p.parse_args(argv)


def _header(threads, ceil, torch_mod, blas) -> dict:
    import numpy as np

    import fastml
    from . import machine

    info = fastml.info(print_=False)
    cpu = machine.cpu_summary()
    h = {
        "fastml": info["version"], "python": platform.python_version(), "cpu_model": cpu["model"],
        "cpu_vendor": cpu["vendor"], "isa": info.get("active_isa"), "threads": threads,
        "openmp": (info.get("openmp") or {}).get("library"), "l1d_bytes": cpu["l1d_bytes"],
        "l2_bytes": cpu["l2_bytes"], "l3_bytes": cpu["l3_bytes"], "physical_cores": cpu["physical_cores"],
        "numpy": np.__version__, "numpy_blas": blas,
        "torch": getattr(torch_mod, "__version__", None),
        "torch_threads": torch_mod.get_num_threads() if torch_mod else None,
        "env": {k: os.environ[k] for k in sorted(os.environ) if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "FASTML_"))},
        "ceilings": ceil,
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return h


def _format_header(h) -> str:
    mib = 1 << 20
    lines = [f"fastml {h['fastml']} bench  {h['time_utc']}",
             f"  cpu:     {h['cpu_model']} ({h['cpu_vendor']}), {h['physical_cores']} cores, "
             f"L1d {h['l1d_bytes'] // 1024} KiB, L2 {h['l2_bytes'] // 1024} KiB, L3 {h['l3_bytes'] // mib} MiB",
             f"  fastml:  isa {h['isa']}, {h['threads']} threads, OpenMP {h['openmp']}"]
    blas = ", ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} threads)"
                     for b in (h["numpy_blas"] or [])) or "threadpoolctl not installed / no BLAS found"
    lines.append(f"  numpy:   {h['numpy']}; BLAS: {blas}")
    lines.append(f"  torch:   {h['torch'] + ', ' + str(h['torch_threads']) + ' threads' if h['torch'] else 'n/a'}")
    if h["env"]:
        lines.append("  env:     " + " ".join(f"{k}={v}" for k, v in h["env"].items()))
    load = h.get("loadavg_1min")
    if load is not None:
        busy = load > 0.5 * max(1, h["physical_cores"] or 1)
        lines.append(f"  load:    1-min load average {load:.2f}" + (
            " -- OTHER PROCESSES ARE RUNNING: multi-threaded timings (fastml, torch) suffer most" if busy else ""))
    c = h["ceilings"]
    if c:
        lines.append(f"  ceilings ({c['source']}): FMA peak {c['fma_gflops']:.0f} GFLOP/s on {c['threads']} threads "
                     f"({c['fma_gflops_1t']:.0f} on 1); triad {c['triad_gbs']:.1f} GB/s ({c['triad_gbs_1t']:.1f} on 1), "
                     f"copy {c['copy_gbs']:.1f}, read {c['read_gbs']:.1f} GB/s over {c['triad_footprint_bytes'] / mib:.0f} MiB "
                     f"({c['triad_level']}); {c['counting']}")
        by_isa = c.get("fma_gflops_by_isa") or {}
        if by_isa:
            lines.append("  FMA peak per ISA (1 / %d threads): " % c["threads"]
                         + ", ".join(f"{k} {v[0]:.0f} / {v[1]:.0f}" for k, v in by_isa.items()) + " GFLOP/s")
    else:
        lines.append("  ceilings: not measured (--probe off or no compiled module)")
    lines.append("  timing:  median of per-call times, implementations interleaved round-robin, caches not flushed;"
                 " ratios = reference time / row time (> 1: row faster). This VM is shared: numbers are noisy.")
    return "\n".join(lines)


# OpenBLAS worker threads spin (sched_yield loop) for 2^28 cycles, ~0.1 s, after every call before they
# sleep. Timed right after a NumPy product, fastml or torch then gets about half of the two cores: a
# 1024^3 product measured 2.4x slower 0-50 ms after three NumPy calls and 1.35x slower 200 ms after. 2^22
# cycles (~1.5 ms) keeps NumPy's threads warm between its own back-to-back calls (its timings did not
# change) and is well inside the 10 ms settle that precedes every implementation's turn.
BLAS_THREAD_TIMEOUT = "22"


def _reexec_with_quiet_blas() -> None:
    """Run this command again with OPENBLAS_THREAD_TIMEOUT set (it is read when OpenBLAS loads, which
    importing fastml already did), unless the user set it."""
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return
    env = dict(os.environ, OPENBLAS_THREAD_TIMEOUT=BLAS_THREAD_TIMEOUT)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "fastml.bench", *sys.argv[1:]], env)


def main(argv=None) -> int:
    if argv is None:
        _reexec_with_quiet_blas()
    args = _parse(sys.argv[1:] if argv is None else argv)
    import fastml
    from . import cases as C
    from . import machine, runner

    selected = C.select_cases(args.ops, quick=args.quick)
    if args.list:
        for c in C.CASES:
            sets = "+".join(s for s, on in (("full", c.full), ("quick", c.quick)) if on)
            missing = c.missing()
            print(f"{c.group:<11} {c.name:<52} [{sets}]" + (f"  (skipped: {missing})" if missing else ""))
        return 0
    if args.ops and not selected:
        print(f"no case matches --ops {' '.join(args.ops)}; see --list", file=sys.stderr)
        return 2

    threads = args.threads or fastml.get_num_threads()
    fastml.set_num_threads(threads)
    torch_mod = C.torch_or_none()
    if torch_mod is not None:
        torch_mod.set_num_threads(threads)
    limits, blas = contextlib.nullcontext(), None
    try:
        import threadpoolctl
        limits = threadpoolctl.threadpool_limits(threads, user_api="blas")
    except ImportError:
        threadpoolctl = None
    with limits:
        if threadpoolctl is not None:
            blas = [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                    for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]
        ceil = machine.ceilings(threads, mode=args.probe, refresh=args.remeasure)
        header = _header(threads, ceil, torch_mod, blas)
        print(_format_header(header), flush=True)
        target = args.time if args.time is not None else (0.02 if args.quick else 0.3)
        results = []
        for case in selected:
            res = runner.run_case(case, args.quick, ceil, threads, target, torch_mod)
            results.append(res)
            print("\n" + runner.format_case(res), flush=True)
    bars = [(r["case"], b, r.get("contended")) for r in results for b in r.get("bars", [])]
    if bars:
        print("\nbars:")
        for name, b, busy in bars:
            print(f"  {b['status']:<5} {name:<44} {b['bar']}" + ("  (contended run: not conclusive)" if busy else ""))
        counts = {s: sum(1 for _, b, _ in bars if b["status"] == s) for s in ("PASS", "MISS", "n/a")}
        print("  " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    contended = [r["case"] for r in results if r.get("contended")]
    if contended:
        print(f"\n{len(contended)} case(s) ran while other processes competed for the CPU (see their notes): "
              + ", ".join(contended))
    skipped = [r for r in results if r.get("skipped")]
    if skipped:
        print(f"\n{len(skipped)} case(s) skipped (op not available yet): "
              + ", ".join(sorted({r['op'] for r in skipped})))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "results": results}, f, indent=1, default=str)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
