"""softmax / log_softmax forward and backward (dim=-1 and dim=0): fastml vs NumPy vs torch.
Cases and setup: fastml/bench/cases.py. Run: python -m pytest benchmarks/bench_softmax.py --benchmark-only"""
import pytest

from _cases import params_for


@pytest.mark.parametrize("case,impl", params_for({"softmax"}))
def bench_softmax(run_case, case, impl):
    run_case(case, impl)
