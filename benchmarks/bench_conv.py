"""Convolutions: fastml conv1d/2d/3d forward and backward vs torch (oneDNN) vs a NumPy im2col baseline,
float32, the same arrays. Cases and setup: fastml/bench/cases_conv.py (ResNet 3x3 / 1x1 / 7x7 stem,
LeNet 5x5, depthwise, conv1d k5, conv3d 3x3x3).

    python -m pytest benchmarks/bench_conv.py --benchmark-only   # pytest-benchmark; extra_info has GFLOP/s
    PYTHONPATH=$PWD python benchmarks/bench_conv.py [--quick] [--threads 1]
                                   # the same as: python -m fastml.bench --ops conv [--quick] [--threads 1]
"""
import pytest

from _cases import main, params_for


@pytest.mark.parametrize("case,impl", params_for({"conv"}))
def bench_conv(run_case, case, impl):
    run_case(case, impl)


if __name__ == "__main__":
    main("conv")
