"""Timing, tables, bars and JSON for ``python -m fastml.bench``.

Timing (per case): every implementation is called once (warm-up: first-touch of outputs, lazy state,
thread-pool start), then timed once to pick an inner batch count so one sample lasts >= ~0.5 ms (1 ms in
full runs): a 16-element op is timed as a batch of thousands of calls, beating the timer resolution.
Samples are then taken round-robin over the implementations (the starting one rotates each round; each
turn starts with ~10 ms of untimed calls so that the previous library's spinning threads go idle), so
slow drift of this shared machine's speed hits every implementation alike, until each has had
``target_s`` of samples. The reported time is the median of the per-call sample times. The garbage
collector is paused while timing. Caches are NOT flushed between calls: inputs of the 4096x1024 cases
(16 MiB per array) may stay in a large L3. So every memory-bound case also times a STREAM triad pass
(``_C.probe_triad_arrays``) over three arrays of the same total size as the case's working set, as one
more implementation in the same round-robin: ``%triad`` is the op's GB/s over that triad's GB/s, two
medians measured under the same conditions (cache level, other load). ``%dram`` is against the DRAM
triad of the machine ceilings (fastml.bench.machine). Compute-bound cases (flops, no bytes: GEMM) report
GFLOP/s and ``%fma`` (of the FMA peak measured for the thread count in use); a short FMA probe after their
timings flags a run that other processes slowed (under half the peak) as contended, as the triad does.
"""
from __future__ import annotations

import gc
import math
import time

import numpy as np

from .. import _backend as B

_FAMILIES = ("fastml", "numpy", "torch")
TRIAD = "(triad)"  # the STREAM triad over the case's working-set size, timed interleaved with the impls


def time_impls(impls: dict, target_s: float, min_samples: int = 5, sample_ns: int = 1_000_000,
               max_wall_s: float | None = None, settle_ns: int = 0, block_samples: int = 1) -> dict:
    """{name: {"median_s", "min_s", "samples", "inner"} or {"error": str}} for zero-argument callables.

    Each turn of an implementation first calls it, untimed, for ``settle_ns`` (so that the worker threads
    of the implementation timed before it -- another OpenMP runtime or BLAS pool, still spinning after
    its last call -- have gone idle and do not compete for the cores), then takes ``block_samples``
    timed samples."""
    out, live, inner = {}, [], {}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for name, fn in impls.items():
            try:
                fn()
                t0 = time.perf_counter_ns()
                fn()
                est = max(1, time.perf_counter_ns() - t0)
            except Exception as exc:  # an API mismatch or missing feature: report it, time the others
                out[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"}
                continue
            inner[name] = max(1, min(100_000, math.ceil(sample_ns / est)))
            live.append(name)
        samples = {n: [] for n in live}
        spent = dict.fromkeys(live, 0)
        start = time.perf_counter()
        cap = max_wall_s if max_wall_s is not None else max(10.0, 20 * target_s * max(1, len(live)))
        rnd = 0
        while live:
            order = live[rnd % len(live):] + live[: rnd % len(live)]
            for n in order:
                fn, k = impls[n], inner[n]
                if settle_ns:
                    t_settle = time.perf_counter_ns()
                    while True:
                        fn()
                        if time.perf_counter_ns() - t_settle >= settle_ns:
                            break
                for _ in range(block_samples):
                    t0 = time.perf_counter_ns()
                    for _ in range(k):
                        fn()
                    dt = time.perf_counter_ns() - t0
                    samples[n].append(dt / k * 1e-9)
                    spent[n] += dt * 1e-9
            rnd += 1
            done = all(spent[n] >= target_s and len(samples[n]) >= min_samples for n in live)
            if done or time.perf_counter() - start > cap or rnd >= 10_000:
                break
        for n in live:
            s = sorted(samples[n])
            out[n] = {"median_s": s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2]),
                      "min_s": s[0], "samples": len(s), "inner": inner[n]}
    finally:
        if gc_was:
            gc.enable()
    return {n: out[n] for n in impls if n in out}


def _family(name: str) -> str:
    for f in _FAMILIES:
        if name.startswith(f):
            return f
    return name


def evaluate(case, prepared, timings: dict, ceil: dict | None, ws_triad: float | None) -> dict:
    """Per-implementation derived numbers (GB/s, GFLOP/s, %triad, %dram, ratios) and the bars."""
    ref_np = timings.get(prepared.ref_numpy, {}).get("median_s")
    ref_th = timings.get(prepared.ref_torch, {}).get("median_s")
    rows = []
    for name, t in timings.items():
        row = {"impl": name, **t}
        med = t.get("median_s")
        if name == TRIAD:
            if med:
                row["gbs"] = ws_triad
                row["pct_triad"] = 100.0
                row["pct_dram"] = 100.0 * ws_triad / ceil["triad_gbs"] if ceil else None
            rows.append(row)
            continue
        if med:
            if prepared.bytes:
                row["gbs"] = prepared.bytes / med * 1e-9
                row["pct_triad"] = 100.0 * row["gbs"] / ws_triad if ws_triad else None
                row["pct_dram"] = 100.0 * row["gbs"] / ceil["triad_gbs"] if ceil else None
            if prepared.flops:
                row["gflops"] = prepared.flops / med * 1e-9
                row["pct_fma"] = 100.0 * row["gflops"] / ceil["fma_gflops"] if ceil else None
            row["vs_numpy"] = ref_np / med if ref_np else None
            row["vs_torch"] = ref_th / med if ref_th else None
        rows.append(row)
    fm = next((r for r in rows if r["impl"] == "fastml" and "median_s" in r), None)
    bars = []
    for bar in case.bars:
        value = None
        if fm is not None:
            value = {"pct_triad": fm.get("pct_triad"), "pct_fma": fm.get("pct_fma"),
                     "vs_torch": fm.get("vs_torch"), "vs_numpy": fm.get("vs_numpy"),
                     "max_us": fm["median_s"] * 1e6}[bar.kind]
        if value is None:
            status = "n/a"
        elif bar.kind == "max_us":
            status = "PASS" if value <= bar.target else "MISS"
        else:
            status = "PASS" if value >= bar.target else "MISS"
        bars.append({"bar": bar.label, "kind": bar.kind, "target": bar.target, "value": value, "status": status})
    return {"rows": rows, "bars": bars}


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-6:
        return f"{s * 1e9:.0f} ns"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1.0:
        return f"{s * 1e3:.3f} ms"
    return f"{s:.3f} s"


def _f(v, spec, suffix=""):
    return "n/a" if v is None else f"{v:{spec}}{suffix}"


def format_case(result: dict) -> str:
    head = f"{result['group']}: {result['case']}"
    if result.get("skipped"):
        return f"{head}  SKIPPED: {result['skipped']}"
    lines = [head + (f"  ({result['bytes'] / (1 << 20):.1f} MiB moved/call; {TRIAD} = STREAM triad over the same "
                     f"working-set size, timed alongside)" if result.get("bytes") else "")]
    torch_missing = result.get("torch") is None
    # compute-bound cases (flops) show GFLOP/s and % of the FMA peak; memory-bound ones (bytes) GB/s and % of the
    # triads; a case with both (a GEMV) shows both
    cols = []  # (header, row key, width, format, suffix)
    if result.get("flops"):
        cols += [("GFLOP/s", "gflops", 9, ".1f", ""), ("%fma", "pct_fma", 7, ".0f", "%")]
    if result.get("bytes") or not result.get("flops"):
        cols += [("GB/s", "gbs", 9, ".1f", ""), ("%triad", "pct_triad", 8, ".0f", "%"),
                 ("%dram", "pct_dram", 8, ".0f", "%")]
    lines.append(f"  {'impl':<15}{'median':>11}{'min':>11}" + "".join(f"{h:>{w}}" for h, _, w, _, _ in cols)
                 + f"{'vs numpy':>10}{'vs torch':>10}")
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"  {r['impl']:<15}  ERROR {r['error']}")
            continue
        vt = "n/a" if torch_missing else _f(r.get("vs_torch"), ".2f", "x")
        vt = "-" if r["impl"] == TRIAD else vt
        vn = "-" if r["impl"] == TRIAD else _f(r.get("vs_numpy"), ".2f", "x")
        vals = "".join(("-" if r["impl"] == TRIAD and k in ("gflops", "pct_fma") else _f(r.get(k), spec, suf))
                       .rjust(w) for _, k, w, spec, suf in cols)
        lines.append(f"  {r['impl']:<15}{fmt_time(r['median_s']):>11}{fmt_time(r['min_s']):>11}{vals}"
                     f"{vn:>10}{vt:>10}")
    if torch_missing:
        lines.append(f"  {'torch':<15}{'n/a (torch not importable)':>26}")
    for b in result["bars"]:
        v = b["value"]
        shown = "n/a" if v is None else (f"{v:.2f} us" if b["kind"] == "max_us" else
                                          f"{v:.0f}%" if b["kind"] in ("pct_triad", "pct_fma") else f"{v:.2f}x")
        lines.append(f"  bar {b['bar']:<28} {b['status']:<5} (fastml {shown})")
    for note in result.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def run_case(case, quick: bool, ceil: dict | None, threads: int, target_s: float, torch_mod) -> dict:
    base = {"case": case.name, "op": case.op, "group": case.group, "shape": case.shape,
            "torch": getattr(torch_mod, "__version__", None)}
    missing = case.missing()
    if missing:
        return {**base, "skipped": missing}
    prepared = case.build()
    impls = dict(prepared.impls)
    triad_bytes = None
    if prepared.bytes and B._C is not None:
        n = max(1024, prepared.bytes // 12)
        ta, tb, tc = np.zeros(n, np.float32), np.ones(n, np.float32), np.full(n, 2.0, np.float32)
        impls[TRIAD] = lambda: B._C.probe_triad_arrays(ta, tb, tc, 0.5, threads)
        triad_bytes = 12 * n
    # settle: 10 ms (2 ms quick) of untimed calls at each switch lets the previous library's spinning
    # worker threads (libgomp spins for milliseconds after a parallel region) go idle first
    timings = time_impls(impls, target_s, min_samples=3 if quick else 7,
                         sample_ns=300_000 if quick else 1_000_000,
                         settle_ns=2_000_000 if quick else 10_000_000, block_samples=2 if quick else 3)
    t_triad = timings.get(TRIAD, {}).get("median_s")
    ws = triad_bytes / t_triad * 1e-9 if t_triad else None
    ev = evaluate(case, prepared, timings, ceil, ws)
    notes = list(prepared.notes)
    # A triad over a working set no larger than DRAM-size can only be slower than the DRAM triad when
    # something else is using the cores or the memory bus: say so next to the numbers it spoils.
    contended = bool(ws and ceil and ws < 0.5 * ceil["triad_gbs"])
    if contended:
        notes.insert(0, f"CONTENDED: the triad alongside ran at {ws:.1f} GB/s, under half the machine's DRAM triad "
                        f"({ceil['triad_gbs']:.1f} GB/s): other processes were running; rerun before trusting this case")
    elif prepared.flops and not prepared.bytes and ceil and B._C is not None:
        # compute-bound: the same check with a short FMA-peak probe right after the timings
        fma_now = B._C.probe_fma_peak("active", threads, 0.02 if quick else 0.05)
        contended = fma_now < 0.5 * ceil["fma_gflops"]
        if contended:
            notes.insert(0, f"CONTENDED: an FMA probe right after ran at {fma_now:.0f} GFLOP/s, under half the "
                            f"machine's peak ({ceil['fma_gflops']:.0f}): other processes were running; rerun before "
                            f"trusting this case")
    res = {**base, "bytes": prepared.bytes, "flops": prepared.flops, "ws_triad_gbs": ws, "contended": contended,
           "ref_numpy": prepared.ref_numpy, "ref_torch": prepared.ref_torch, "notes": notes, **ev}
    del prepared
    gc.collect()
    return res
