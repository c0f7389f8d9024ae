"""Optimizer steps (Adam, AdamW, SGD momentum, RMSprop on 10M; Adam over 200 small tensors): fastml vs NumPy
vs torch (the case's reference: fused=True, or foreach=True where fused is absent / for many tensors).
Cases and setup: fastml/bench/cases_optim.py. Run: python -m pytest benchmarks/bench_optim.py --benchmark-only"""
import pytest

from _cases import params_for


@pytest.mark.parametrize("case,impl", params_for({"optim"}))
def bench_optim(run_case, case, impl):
    run_case(case, impl)
