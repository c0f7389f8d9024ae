"""Activations forward/backward (and the 16-element per-call overhead): fastml vs NumPy vs torch.
Cases and setup: fastml/bench/cases.py. Run: python -m pytest benchmarks/bench_activation.py --benchmark-only"""
import pytest

from _cases import params_for


@pytest.mark.parametrize("case,impl", params_for({"activation", "overhead"}))
def bench_activation(run_case, case, impl):
    run_case(case, impl)
