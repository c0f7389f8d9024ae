"""pytest-benchmark suite over the case registry of fastml.bench.cases (no setup code is duplicated here).

    python -m pytest benchmarks --benchmark-only                       # full shapes
    FASTML_BENCH_QUICK=1 python -m pytest benchmarks --benchmark-only  # the --quick shapes
    python -m pytest benchmarks --benchmark-only -k "relu and fastml" --benchmark-group-by=group

Each bench_<family>.py parametrises over (case, impl) with impl in fastml / numpy / torch (for
optimizers "torch" is the case's torch reference, e.g. torch.optim.Adam(fused=True)); cases whose
fastml function is missing and impls whose library is missing are skipped. benchmark.group is
"<op>[<shape>]" and extra_info carries GB/s (bytes moved per call / median time) and GFLOP/s.
These files are collected only when benchmarks/ is named: the plain `pytest` run has testpaths = tests.
"""
import os

# before NumPy loads OpenBLAS: its threads sleep ~1.5 ms after a call instead of spinning ~0.1 s and
# taking half of the cores from the next benchmark (see fastml/bench/__main__.py)
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "22")

import pytest  # noqa: E402

from _cases import prepared_for  # noqa: E402
from fastml.bench import cases as C


@pytest.fixture
def run_case(benchmark):
    def run(case, impl):
        missing = case.missing()
        if missing:
            pytest.skip(missing)
        if impl == "torch" and C.torch_or_none() is None:
            pytest.skip("torch not importable")
        prepared = prepared_for(case)
        name = prepared.ref_torch if impl == "torch" else impl
        if name not in prepared.impls:
            pytest.skip(f"{impl}: no implementation for {case.name} ({'; '.join(prepared.notes) or 'n/a'})")
        import fastml
        threads = fastml.get_num_threads()
        torch = C.torch_or_none()
        if torch is not None:
            torch.set_num_threads(threads)
        benchmark.group = case.name
        benchmark.extra_info["impl"] = name
        benchmark.extra_info["threads"] = threads
        fn = prepared.impls[name]
        benchmark(fn)
        stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
        if stats is not None:
            if prepared.bytes:
                benchmark.extra_info["GB/s"] = prepared.bytes / stats.stats.median * 1e-9
            if prepared.flops:
                benchmark.extra_info["GFLOP/s"] = prepared.flops / stats.stats.median * 1e-9
    return run
