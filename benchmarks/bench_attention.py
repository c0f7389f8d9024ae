"""Attention: fastml scaled_dot_product_attention (forward, forward + backward, decode) and multi-head
attention vs torch (its CPU flash-attention kernels / nn.MultiheadAttention), float32, same inputs.
Cases and setup: fastml/bench/cases_attention.py.

    python -m pytest benchmarks/bench_attention.py --benchmark-only   # pytest-benchmark; extra_info has GFLOP/s
    PYTHONPATH=$PWD python benchmarks/bench_attention.py [--quick] [--threads 1]
                                   # the same as: python -m fastml.bench --ops attention [--quick]
"""
import sys

import pytest

from _cases import params_for, prepared_for


@pytest.mark.parametrize("case,impl", params_for({"attention"}))
def bench_attention(run_case, benchmark, case, impl):
    run_case(case, impl)
    stats = getattr(benchmark, "stats", None)
    flops = prepared_for(case).flops
    if flops and stats is not None:
        benchmark.extra_info["GFLOP/s"] = flops / stats.stats.median * 1e-9


if __name__ == "__main__":
    from fastml.bench.__main__ import main

    sys.exit(main(["--ops", "attention", *sys.argv[1:]]))
