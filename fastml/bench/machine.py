"""Measured machine ceilings: the numbers fastml's benchmark percentages are relative to.

* FMA peak (GFLOP/s, float32): 12 independent FMA chains per thread on the active ISA
  (``_C.probe_fma_peak``), on 1 thread and on ``threads`` threads; and the same for every ISA variant
  the CPU can run (``fma_gflops_by_isa``; the scalar variant has no FMA instruction: mul + add).
* STREAM triad ``a = b + s*c`` (GB/s, 3 x 4 bytes per element, write-allocate NOT counted, as STREAM
  does) over arrays whose total footprint is at least twice the last-level cache the CPU reports, so the
  number is DRAM bandwidth (or the VM's share of it), on 1 and ``threads`` threads; also copy and read.
* ``triad_at(bytes)``: the triad measured at a given working-set size. A 4096x1024 float32 op moves
  32-48 MiB, which on a CPU with a large L3 may stay cache-resident; its fair ceiling is the triad over
  the same footprint, which the runner reports as ``%triad`` (``%dram`` is against the DRAM triad).

The values are cached per process and, for full measurements, in ``$XDG_CACHE_HOME/fastml`` (default
``~/.cache/fastml``) keyed by CPU model, cache size, ISA and thread count; ``--remeasure`` measures
again and keeps, per number, the best of the old and new values (a ceiling is the best ever observed,
and a measurement taken while other processes ran is low). ``FASTML_BENCH_CACHE=0``
disables the file cache. On a shared 2-core VM every number is noisy: best-of-N is reported.
"""
from __future__ import annotations

import json
import os
import re
import time

from .. import _backend as B

MiB = 1 << 20
_process_cache: dict = {}
_BEST_OF_KEYS = ("fma_gflops_1t", "fma_gflops", "triad_gbs_1t", "triad_gbs", "copy_gbs", "read_gbs")
_triad_cache: dict = {}


def cpu_summary() -> dict:
    """CPU model, vendor, ISA, threads, cache sizes and OpenMP runtime (empty values without ``_C``)."""
    C = B._C
    if C is None:
        import platform
        return {"model": platform.processor() or "unknown", "vendor": "", "isa": None, "threads": 1,
                "l1d_bytes": 0, "l2_bytes": 0, "l3_bytes": 0, "physical_cores": os.cpu_count(), "openmp": None}
    info = C.cpu_info()
    omp = C.openmp_info()
    return {"model": info["model"], "vendor": info["vendor"], "isa": C.get_isa(), "threads": C.get_num_threads(),
            "l1d_bytes": info["l1d_bytes"], "l2_bytes": info["l2_bytes"], "l3_bytes": info["l3_bytes"],
            "physical_cores": info["physical_cores"], "openmp": omp["library"]}


def dram_footprint_bytes(cpu: dict | None = None) -> int:
    """Total bytes of the three triad arrays: >= 2 x the reported L3 (and >= 256 MiB), capped at 1/4 of RAM."""
    cpu = cpu or cpu_summary()
    want = max(2 * int(cpu.get("l3_bytes") or 0), 256 * MiB)
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        want = min(want, ram // 4)
    except (ValueError, OSError, AttributeError):
        pass
    return int(want)


def cache_level(footprint: int, cpu: dict) -> str:
    """Which memory level a working set of `footprint` bytes streams from (a rough, stated guess)."""
    cores = max(1, int(cpu.get("physical_cores") or 1))
    if cpu.get("l2_bytes") and footprint <= cpu["l2_bytes"] * cores // 2:
        return "L2"
    if cpu.get("l3_bytes") and footprint <= cpu["l3_bytes"] // 2:
        return "L3"
    return "DRAM"


def _cache_path(cpu: dict, threads: int) -> str | None:
    if os.environ.get("FASTML_BENCH_CACHE", "1").strip().lower() in ("0", "false", "no", ""):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = re.sub(r"[^A-Za-z0-9]+", "-", f"{cpu['vendor']}-{cpu['model']}").strip("-")
    return os.path.join(base, "fastml", f"machine-{key}-l3_{cpu['l3_bytes'] >> 20}M-{cpu['isa']}-t{threads}.json")


def measure(threads: int | None = None, mode: str = "full") -> dict:
    """Measure the ceilings now. ``mode='quick'`` uses a 48 MiB triad footprint and shorter runs (its
    triad is then labelled by the cache level it fits in, usually not DRAM)."""
    C = B._C
    if C is None:
        raise RuntimeError("fastml.bench.machine: the compiled module fastml._C is missing")
    cpu = cpu_summary()
    threads = int(threads or cpu["threads"])
    footprint = dram_footprint_bytes(cpu) if mode == "full" else 48 * MiB
    n = footprint // 12
    reps = 5 if mode == "full" else 2
    fma_s = 0.3 if mode == "full" else 0.06
    t0 = time.perf_counter()
    out = {
        "mode": mode,
        "cpu_model": cpu["model"],
        "isa": cpu["isa"],
        "threads": threads,
        "fma_gflops_1t": C.probe_fma_peak("active", 1, fma_s),
        "fma_gflops": C.probe_fma_peak("active", threads, fma_s),
        "triad_footprint_bytes": int(n * 12),
        "triad_level": cache_level(int(n * 12), cpu),
        "triad_gbs_1t": C.probe_triad(n, 1, reps),
        "triad_gbs": C.probe_triad(n, threads, reps),
        "copy_gbs": C.probe_copy(n, threads, reps),
        "read_gbs": C.probe_read(n, threads, reps),
        "counting": "STREAM convention: triad 3x4 B/elem, copy 2x4, read 1x4; write-allocate not counted",
    }
    # per compiled ISA the CPU can run: (1 thread, `threads` threads)
    out["fma_gflops_by_isa"] = {
        isa: [C.probe_fma_peak(isa, 1, fma_s / 2), C.probe_fma_peak(isa, threads, fma_s / 2)]
        for isa in C.variants("probe") if C.isa_supported(isa)}
    out["seconds"] = time.perf_counter() - t0
    out["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return out


def ceilings(threads: int | None = None, mode: str = "full", refresh: bool = False) -> dict | None:
    """Ceilings for `threads` threads (default: fastml's), from the process cache, the file cache (full
    mode only) or a fresh measurement. ``mode='off'`` returns None."""
    if mode == "off" or B._C is None:
        return None
    cpu = cpu_summary()
    threads = int(threads or cpu["threads"])
    key = (mode, threads, cpu["isa"])
    if not refresh and key in _process_cache:
        return _process_cache[key]
    path = _cache_path(cpu, threads) if mode == "full" else None
    result = None
    if path and os.path.exists(path):
        try:
            with open(path) as f:
                result = json.load(f)
            result["source"] = f"cached in {path}, best of {result.get('measurements', 1)} measurement(s)"
        except (OSError, ValueError):
            result = None
    if result is None or refresh:
        fresh = measure(threads, mode)
        if result is not None:  # a ceiling is the best ever observed: keep the higher of old and new
            for k in _BEST_OF_KEYS:
                fresh[k] = max(fresh[k], result.get(k) or 0.0)
            for isa, old in (result.get("fma_gflops_by_isa") or {}).items():
                if isa in fresh["fma_gflops_by_isa"]:
                    fresh["fma_gflops_by_isa"][isa] = [max(a, b) for a, b in zip(fresh["fma_gflops_by_isa"][isa], old)]
            fresh["measurements"] = int(result.get("measurements", 1)) + 1
        result = fresh
        result["source"] = "measured now" if result.get("measurements", 1) == 1 else \
            f"best of {result['measurements']} measurements"
        if path:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    json.dump({k: v for k, v in result.items() if k != "source"}, f, indent=1)
            except OSError:
                pass
    _process_cache[key] = result
    return result


def triad_at(footprint_bytes: int, threads: int | None = None, repeats: int | None = None) -> float | None:
    """STREAM triad GB/s over three arrays totalling about `footprint_bytes` (cached per process).

    Best of `repeats` passes; by default as many as stream about 1 GB (3 to 40), because on a shared
    machine one unlucky pass would otherwise set the ceiling too low."""
    C = B._C
    if C is None or footprint_bytes <= 0:
        return None
    threads = int(threads or C.get_num_threads())
    n = max(1024, (int(footprint_bytes) // 12 + 4095) // 4096 * 4096)  # 48 KiB steps: shapes share a probe
    key = (n, threads, C.get_isa())
    if repeats is None:
        repeats = int(min(40, max(3, 1e9 // (12 * n))))
    if key not in _triad_cache:
        _triad_cache[key] = C.probe_triad(n, threads, repeats)
    return _triad_cache[key]
