"""Attention: fastml scaled_dot_product_attention (forward, forward + backward, decode) and multi-head
attention vs torch (its CPU flash-attention kernels / nn.MultiheadAttention), float32, same inputs.
Cases and setup: fastml/bench/cases_attention.py.

    python -m pytest benchmarks/bench_attention.py --benchmark-only   # pytest-benchmark; extra_info has GFLOP/s
    PYTHONPATH=$PWD python benchmarks/bench_attention.py [--quick] [--threads 1]
                                   # the same as: python -m fastml.bench --ops attention [--quick]
"""
import pytest

from _cases import main, params_for


@pytest.mark.parametrize("case,impl", params_for({"attention"}))
def bench_attention(run_case, case, impl):
    run_case(case, impl)


if __name__ == "__main__":
    main("attention")
