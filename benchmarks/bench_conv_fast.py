"""Specialised conv2d kernels: depthwise / direct (tiny C_in) forward and backward, Winograd F(4x4,3x3) and
F(2x2,3x3) vs torch conv2d and aten.convolution_backward, float32. Cases and setup: fastml/bench/cases_conv_fast.py.

    python -m pytest benchmarks/bench_conv_fast.py --benchmark-only   # pytest-benchmark; extra_info has GFLOP/s
    PYTHONPATH=$PWD python benchmarks/bench_conv_fast.py [--quick] [--threads 1]
                                   # the same as: python -m fastml.bench --ops conv_fast [--quick] [--threads 1]
"""
import pytest

from _cases import main, params_for


@pytest.mark.parametrize("case,impl", params_for({"conv_fast"}))
def bench_conv_fast(run_case, case, impl):
    run_case(case, impl)


if __name__ == "__main__":
    main("conv_fast")
