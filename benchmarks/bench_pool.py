"""Pooling: fastml vs torch (aten .out / .grad_input forms) vs fastml's NumPy backend, float32, GB/s.
Cases and setup: fastml/bench/cases_pool.py (N8 C64 112x112 with 2x2 s2 and 3x3 s2 p1, max/avg, forward
and backward; global average pooling on N8 C512 7x7 and N8 C64 56x56).

    python -m pytest benchmarks/bench_pool.py --benchmark-only   # pytest-benchmark; extra_info has GB/s
    PYTHONPATH=$PWD python benchmarks/bench_pool.py [--quick] [--threads 1]
                                   # the same as: python -m fastml.bench --ops pool [--quick] [--threads 1]
"""
import pytest

from _cases import main, params_for


@pytest.mark.parametrize("case,impl", params_for({"pool"}))
def bench_pool(run_case, case, impl):
    run_case(case, impl)


if __name__ == "__main__":
    main("pool")
