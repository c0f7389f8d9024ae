"""(case, impl) parameters and per-case setup for benchmarks/bench_*.py, from fastml.bench.cases."""
import os

import pytest

from fastml.bench import cases as C

IMPLS = ("fastml", "numpy", "torch")
QUICK = os.environ.get("FASTML_BENCH_QUICK", "").strip().lower() in ("1", "true", "yes")

_last = {}


def params_for(groups, ops=None):
    """(case, impl) pytest params, case-major so that each case's arrays are built once and reused."""
    out = []
    for case in C.select_cases(None, quick=QUICK):
        if case.group not in groups or (ops is not None and case.op not in ops):
            continue
        for impl in IMPLS:
            out.append(pytest.param(case, impl, id=f"{case.name}-{impl}"))
    return out


def prepared_for(case):
    """The case's Prepared, built on first use; the previous case's arrays are released first."""
    if _last.get("name") != case.name:
        _last.clear()
        _last["name"], _last["prepared"] = case.name, case.build()
    return _last["prepared"]


def main(*ops):
    """``python benchmarks/bench_<family>.py [--quick] [--threads N]``: the same as
    ``python -m fastml.bench --ops <ops> ...``."""
    import sys

    from fastml.bench.__main__ import main as bench_main

    sys.exit(bench_main(["--ops", *ops, *sys.argv[1:]]))
