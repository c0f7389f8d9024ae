"""GEMM / matmul / linear: fastml.matmul vs torch.mm vs numpy.matmul (OpenBLAS), float32, out= preallocated;
F.linear / F.linear_backward vs torch's linear and the two torch.mm of its backward.
Cases and setup: fastml/bench/cases_gemm.py (square 256..4096, the skinny shapes of the GEMM issue, 64x64x64).

    python -m pytest benchmarks/bench_gemm.py --benchmark-only   # pytest-benchmark; extra_info has GFLOP/s
    PYTHONPATH=$PWD python benchmarks/bench_gemm.py [--quick] [--threads 1]
                                   # the same as: python -m fastml.bench --ops gemm linear [--quick] [--threads 1]
"""
import pytest

from _cases import main, params_for


@pytest.mark.parametrize("case,impl", params_for({"gemm"}))
def bench_gemm(run_case, case, impl):
    run_case(case, impl)


if __name__ == "__main__":
    main("gemm", "linear")
