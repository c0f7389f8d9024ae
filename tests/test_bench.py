"""Smoke tests of the benchmark harness (python -m fastml.bench) and the machine-ceiling probes.

Speed is NOT asserted here (DESIGN rule 6: speed goals live in benchmarks); these check that the probes
return sane numbers, that the CLI runs end to end and writes the JSON it documents, that the registry
covers every op the benchmarks promise, and that the implementations a case times compute the same thing.
"""
import json
import math
import os
import sys

import numpy as np
import pytest

import fastml
from fastml import _backend as B
from fastml.bench import cases as C
from fastml.bench import machine, runner

needs_ext = pytest.mark.skipif(not B.HAS_CPU_EXT, reason=f"compiled module missing: {B.CPU_IMPORT_ERROR}")


def _finite_positive(v):
    return isinstance(v, float) and math.isfinite(v) and v > 0


@needs_ext
@pytest.mark.parametrize("threads", [1, 2])
def test_probe_bandwidth_positive_finite(threads):
    C_ = B._C
    for fn in (C_.probe_triad, C_.probe_copy, C_.probe_read):
        for n in (1 << 14, (1 << 18) + 17):  # cache-resident; and a size that is no multiple of the vector width
            assert _finite_positive(fn(n, threads, 2))


@needs_ext
@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_probe_fma_peak_positive_finite(isa):
    if not B._C.isa_supported(isa):
        pytest.skip(f"this CPU cannot run {isa}")
    assert _finite_positive(B._C.probe_fma_peak(isa, 1, 0.02))
    assert _finite_positive(B._C.probe_fma_peak(isa, 2, 0.02))
    assert B._C.probe_fma_chains >= 8


@needs_ext
@pytest.mark.parametrize("n", [1, 17, 4097, 70001])
def test_probe_triad_arrays_computes_the_triad(n):
    rng = np.random.default_rng(n)
    b, c = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    a = np.zeros(n, np.float32)
    B._C.probe_triad_arrays(a, b, c, 0.5, 2)
    np.testing.assert_allclose(a, b + np.float32(0.5) * c, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="expected arrays of"):
        B._C.probe_triad_arrays(a, b[: n // 2], c)
    with pytest.raises((ValueError, TypeError)):
        B._C.probe_triad_arrays(a.astype(np.float64), b, c)


@needs_ext
def test_probe_active_isa_and_bad_arguments():
    assert _finite_positive(B._C.probe_fma_peak("active", 0, 0.02))  # 0 threads = fastml's thread count
    with pytest.raises(ValueError, match="expected isa"):
        B._C.probe_fma_peak("avx9", 1, 0.01)
    with pytest.raises(ValueError, match="seconds"):
        B._C.probe_fma_peak("scalar", 1, 0.0)
    with pytest.raises(ValueError, match="at least 1024 elements"):
        B._C.probe_triad(10, 1, 1)
    with pytest.raises(ValueError, match="repeats"):
        B._C.probe_copy(1 << 12, 1, 0)
    with pytest.raises(ValueError, match="threads"):
        B._C.probe_read(1 << 12, -1, 1)


@needs_ext
def test_machine_ceilings_quick_and_cache_switch(monkeypatch, tmp_path):
    c = machine.ceilings(mode="quick")
    for key in ("fma_gflops", "fma_gflops_1t", "triad_gbs", "triad_gbs_1t", "copy_gbs", "read_gbs"):
        assert _finite_positive(c[key]), key
    assert c["triad_level"] in ("L2", "L3", "DRAM") and c["threads"] == fastml.get_num_threads()
    assert machine.ceilings(mode="off") is None
    assert _finite_positive(machine.triad_at(3 << 20, 1, repeats=1))
    monkeypatch.setenv("FASTML_BENCH_CACHE", "0")
    assert machine._cache_path(machine.cpu_summary(), 2) is None
    monkeypatch.setenv("FASTML_BENCH_CACHE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = machine._cache_path(machine.cpu_summary(), 2)
    assert path.startswith(str(tmp_path)) and path.endswith("-t2.json")
    assert machine.dram_footprint_bytes() >= 256 << 20


def test_registry_lists_every_op():
    have = {(c.group, c.op) for c in C.CASES}
    want = {("activation", op) for base in ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh")
            for op in (base, base + "_backward")}
    want |= {("overhead", "relu")}
    want |= {("softmax", op) for op in ("softmax", "log_softmax", "softmax_backward", "log_softmax_backward")}
    want |= {("loss", op) for base in ("cross_entropy", "mse_loss", "binary_cross_entropy_with_logits")
             for op in (base, base + "_backward")}
    want |= {("optim", op) for op in ("adam_step", "adamw_step", "sgd_step", "rmsprop_step")}
    assert want <= have, sorted(want - have)
    shapes = {c.name for c in C.CASES}
    assert {"relu[4096x1024]", "softmax[4096x1024,dim=-1]", "softmax[1024x4096,dim=0]", "adam_step[10M]",
            "adam_step[200 tensors,1M]", "cross_entropy[N=4096,C=1024]", "relu[16]"} <= shapes
    for c in C.CASES:
        assert c.quick or c.full
    assert all(c.quick for c in C.select_cases(None, quick=True))
    sel = {c.op for c in C.select_cases(["relu"], quick=True)}
    assert sel == {"relu", "relu_backward"}


def test_time_impls_reports_errors_and_medians():
    calls = []
    res = runner.time_impls({"ok": lambda: calls.append(1), "bad": lambda: 1 / 0}, target_s=0.001, min_samples=3,
                            sample_ns=10_000)
    assert res["bad"]["error"].startswith("ZeroDivisionError")
    assert res["ok"]["samples"] >= 3 and 0 < res["ok"]["min_s"] <= res["ok"]["median_s"]
    assert len(calls) >= 3 * res["ok"]["inner"]


@needs_ext
def test_activation_cases_compute_the_same_thing(threads):
    """What each impl of a quick activation case returns agrees with fastml (so the timings compare like
    with like). Loose tolerance: the NumPy versions use float32 formulas of their own."""
    torch = C.torch_or_none()
    fastml.set_num_threads(1)  # one thread: this checks values, and stays fast on a busy machine
    for case in C.select_cases(["activation"], quick=True):
        prepared = case.build()
        ref = np.array(prepared.impls["fastml"](), copy=True)
        for name, fn in prepared.impls.items():
            got = fn()
            if torch is not None and isinstance(got, torch.Tensor):
                got = got.numpy()
            np.testing.assert_allclose(np.asarray(got), ref, rtol=2e-4, atol=2e-5, err_msg=f"{case.name} {name}")


@needs_ext
def test_cli_quick_json(tmp_path, python_run):
    out = tmp_path / "bench.json"
    proc = python_run(["-m", "fastml.bench", "--quick", "--ops", "relu", "--json", str(out),
                       "--probe", "off", "--time", "0.003", "--threads", "1"], {"FASTML_BENCH_CACHE": "0"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "fastml" in proc.stdout and "bars:" in proc.stdout
    data = json.loads(out.read_text())
    h = data["header"]
    for key in ("fastml", "cpu_model", "isa", "threads", "openmp", "numpy", "torch", "ceilings", "env"):
        assert key in h, key
    assert h["threads"] == 1 and h["ceilings"] is None  # --threads 1 --probe off
    if h["torch"] is not None:
        assert h["torch_threads"] == 1
    names = {r["case"] for r in data["results"]}
    assert names == {"relu[512x1024]", "relu_backward[512x1024]", "relu[16]"}
    for r in data["results"]:
        assert not r.get("skipped")
        rows = {row["impl"]: row for row in r["rows"]}
        assert rows["fastml"]["median_s"] > 0 and rows["numpy"]["median_s"] > 0
        if r["group"] == "activation":
            assert rows["fastml"]["gbs"] > 0 and rows["fastml"]["pct_triad"] > 0
            assert rows[runner.TRIAD]["gbs"] == pytest.approx(r["ws_triad_gbs"]) and r["ws_triad_gbs"] > 0
            assert rows["fastml"]["pct_dram"] is None  # no ceilings measured
            assert rows["numpy"]["vs_numpy"] == pytest.approx(1.0)
        assert all(b["status"] in ("PASS", "MISS", "n/a") for b in r["bars"])
        if h["torch"] is None:
            assert all(b["status"] == "n/a" for b in r["bars"] if b["kind"] == "vs_torch")


@needs_ext
def test_cli_without_torch(tmp_path, monkeypatch, capsys, threads):
    """torch is optional: with it blocked the torch columns say n/a and the run still succeeds."""
    from fastml.bench.__main__ import main

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    out = tmp_path / "bench.json"
    assert main(["--quick", "--ops", "relu_backward", "--probe", "off", "--time", "0.003", "--threads", "1",
                 "--json", str(out)]) == 0
    assert "n/a (torch not importable)" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["header"]["torch"] is None
    (r,) = data["results"]
    assert {row["impl"] for row in r["rows"]} == {"fastml", "fastml(alloc)", "numpy", runner.TRIAD}
    assert [b["status"] for b in r["bars"] if b["kind"] == "vs_torch"] == ["n/a"]


def test_cli_list_and_unknown_op(capsys):
    from fastml.bench.__main__ import main

    assert main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert "adam_step[10M]" in listing and "relu[16]" in listing
    assert main(["--ops", "no_such_op"]) == 2
    assert "no case matches" in capsys.readouterr().err
