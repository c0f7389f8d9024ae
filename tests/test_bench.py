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
    want |= {("overhead", op) for op in ("relu", "conv2d", "matmul", "linear_backward", "scaled_dot_product_attention")}
    want |= {("softmax", op) for op in ("softmax", "log_softmax", "softmax_backward", "log_softmax_backward")}
    want |= {("loss", op) for base in ("cross_entropy", "mse_loss", "binary_cross_entropy_with_logits")
             for op in (base, base + "_backward")}
    want |= {("optim", op) for op in ("adam_step", "adamw_step", "sgd_step", "rmsprop_step")}
    want |= {("gemm", op) for op in ("gemm", "linear", "linear_backward")}
    assert want <= have, sorted(want - have)
    shapes = {c.name for c in C.CASES}
    assert {"relu[4096x1024]", "softmax[4096x1024,dim=-1]", "softmax[1024x4096,dim=0]", "adam_step[10M]",
            "adam_step[200 tensors,1M]", "cross_entropy[N=4096,C=1024]", "relu[16]"} <= shapes
    gemm_names = {f"gemm[{n}^3]" for n in (256, 512, 1024, 2048, 4096)} | {
        "gemm[32x2048x768]", "gemm[1x4096x4096]", "gemm[4096x64x4096]", "gemm[64x64x64]",
        "linear[(32,768)->2048]", "linear_backward[(32,768)->2048]"}
    assert gemm_names <= shapes, sorted(gemm_names - shapes)
    for c in C.CASES:
        assert c.quick or c.full
    assert all(c.quick for c in C.select_cases(None, quick=True))
    sel = {c.op for c in C.select_cases(["relu"], quick=True)}
    assert sel == {"relu", "relu_backward"}
    assert {c.name for c in C.select_cases(["gemm"])} == gemm_names   # the group: gemm, linear, linear_backward
    assert {c.name for c in C.select_cases(["linear"])} == {"linear[(32,768)->2048]",
                                                            "linear_backward[(32,768)->2048]",
                                                            "linear_backward[4x16->8]"}  # and its overhead case
    quick_squares = {c.name for c in C.select_cases(["gemm"], quick=True) if c.name.endswith("^3]")}
    assert quick_squares == {"gemm[256^3]", "gemm[512^3]"}
    bars = {c.name: {b.kind for b in c.bars} for c in C.CASES if c.group == "gemm"}
    for name in ("gemm[1024^3]", "gemm[2048^3]"):
        assert "pct_fma" in bars[name], name
    for name in gemm_names:
        if name.startswith("gemm[") and name != "gemm[64x64x64]":
            assert {"vs_torch", "vs_numpy"} <= bars[name], name


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
def test_gemm_cases_compute_the_same_thing(threads):
    """fastml.matmul, np.matmul and torch.mm of the tiny GEMM case (and the linear / linear_backward cases)
    write the same product of the same inputs, so the GFLOP/s and ratios compare like with like."""
    torch = C.torch_or_none()
    fastml.set_num_threads(1)
    by_name = {c.name: c for c in C.CASES}

    def as_np(v):
        if isinstance(v, tuple):
            return tuple(None if t is None else as_np(t) for t in v)
        if torch is not None and isinstance(v, torch.Tensor):
            return v.numpy().copy()
        return np.array(v, copy=True)

    for name in ("gemm[64x64x64]", "linear[(32,768)->2048]", "linear_backward[(32,768)->2048]"):
        prepared = by_name[name].build()
        assert prepared.flops > 0
        assert {"fastml", "numpy"} <= set(prepared.impls)
        if torch is not None:
            assert "torch" in prepared.impls
        ref = as_np(prepared.impls["fastml"]())
        refs = ref if isinstance(ref, tuple) else (ref,)
        assert any(r is not None for r in refs)
        for impl, fn in prepared.impls.items():
            got = as_np(fn())
            gots = got if isinstance(got, tuple) else (got,)
            assert len(gots) == len(refs), (name, impl)
            for r, g in zip(refs, gots):
                assert (r is None) == (g is None), (name, impl)
                if r is not None:
                    # K up to 768 of unit normals: float32 sums differ by blocking order, about sqrt(K) eps |x|
                    np.testing.assert_allclose(g, r, rtol=1e-4, atol=2e-4 * np.abs(r).max(), err_msg=f"{name} {impl}")


@needs_ext
def test_conv_transpose_cases_compute_the_same_thing(threads):
    """The conv_transpose2d bench cases: fastml and torch (aten.convolution_backward with transposed=True for the
    backward) return the same tensors for the same inputs, so the ratios compare like with like."""
    torch = C.torch_or_none()
    fastml.set_num_threads(1)
    for case in [c for c in C.CASES if c.name.startswith("conv_transpose2d")]:
        prepared = case.build()
        assert prepared.flops > 0
        ref = prepared.impls["fastml"]()
        refs = [r for r in (ref if isinstance(ref, tuple) else (ref,)) if r is not None]
        assert refs
        if torch is None:
            continue
        got = prepared.impls["torch"]()
        gots = [g.numpy() for g in (got if isinstance(got, tuple) else (got,)) if g is not None]
        assert len(gots) == len(refs), case.name
        for r, g in zip(refs, gots):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * np.abs(r).max(), err_msg=case.name)


def test_compute_bound_bars_and_table():
    """pct_fma / vs_numpy bars and the GFLOP/s (+ GB/s for a GEMV) columns, on made-up timings."""
    bars = (C.Bar("pct_fma", 85.0, ">= 85% of FMA peak"), C.Bar("vs_numpy", 1.0, ">= 1.0x NumPy"),
            C.Bar("vs_torch", 1.0, ">= 1.0x torch.mm"))
    case = C.Case("gemm", "gemm", "8^3", True, (), lambda: None, bars)
    ceil = {"fma_gflops": 100.0, "triad_gbs": 10.0}
    timings = {"fastml": {"median_s": 1e-3, "min_s": 1e-3}, "numpy": {"median_s": 2e-3, "min_s": 2e-3},
               "torch": {"median_s": 0.5e-3, "min_s": 0.5e-3}}
    ev = runner.evaluate(case, C.Prepared({}, flops=90_000_000), timings, ceil, None)
    fm = next(r for r in ev["rows"] if r["impl"] == "fastml")
    assert fm["gflops"] == pytest.approx(90.0) and fm["pct_fma"] == pytest.approx(90.0)
    assert [(b["kind"], b["status"]) for b in ev["bars"]] == [("pct_fma", "PASS"), ("vs_numpy", "PASS"),
                                                               ("vs_torch", "MISS")]
    res = {"case": case.name, "group": "gemm", "torch": "x", "flops": 90_000_000, "bytes": None, **ev}
    table = runner.format_case(res)
    assert "GFLOP/s" in table and "%fma" in table and "GB/s" not in table and "90%" in table
    ev = runner.evaluate(case, C.Prepared({}, flops=90_000_000, bytes=8_000_000), timings, ceil, 9.0)
    table = runner.format_case({**res, "bytes": 8_000_000, **ev})
    assert "GFLOP/s" in table and "GB/s" in table and "%triad" in table


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


@needs_ext
@pytest.mark.parametrize("preset", [None, "9"])
def test_cli_quiets_openblas_spinning(tmp_path, preset):
    """`python -m fastml.bench` runs with OPENBLAS_THREAD_TIMEOUT set (NumPy's BLAS threads would otherwise
    spin ~0.1 s after each call and slow the next implementation timed); a value the user set is kept."""
    import os
    import subprocess

    from fastml.bench.__main__ import BLAS_THREAD_TIMEOUT

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if preset is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "fastml.bench", "--quick", "--ops", "relu[16]", "--probe", "off",
                    "--time", "0.003", "--threads", "1", "--json", str(out)], env=env, check=True,
                   capture_output=True, timeout=300)
    header = json.loads(out.read_text())["header"]
    assert header["env"]["OPENBLAS_THREAD_TIMEOUT"] == (preset or BLAS_THREAD_TIMEOUT)
