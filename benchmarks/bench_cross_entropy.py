"""Losses: cross_entropy (class indices), mse_loss, binary_cross_entropy_with_logits, forward and backward.
Cases and setup: fastml/bench/cases.py. Run: python -m pytest benchmarks/bench_cross_entropy.py --benchmark-only"""
import pytest

from _cases import params_for


@pytest.mark.parametrize("case,impl", params_for({"loss"}))
def bench_cross_entropy(run_case, case, impl):
    run_case(case, impl)
