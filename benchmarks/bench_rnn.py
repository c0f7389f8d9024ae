"""Recurrent cells and sequences: fastml.functional lstm_cell / gru_cell / lstm / gru (forward, and forward +
backward) vs torch.nn.LSTMCell / GRUCell / LSTM / GRU with the same float32 weights.
Cases and setup: fastml/bench/cases_rnn.py (256->512 cells at batch 1 and 64, T=50 N=32 sequences with 1 layer
and 2 bidirectional layers, batch-1 T=200 inference, the small bidirectional shape of oneDNN#837).

    python -m pytest benchmarks/bench_rnn.py --benchmark-only   # pytest-benchmark; extra_info has GFLOP/s
    PYTHONPATH=$PWD python benchmarks/bench_rnn.py [--quick] [--threads 1]
                                   # the same as: python -m fastml.bench --ops rnn [--quick] [--threads 1]
"""
import pytest

from _cases import main, params_for


@pytest.mark.parametrize("case,impl", params_for({"rnn"}))
def bench_rnn(run_case, case, impl):
    run_case(case, impl)


if __name__ == "__main__":
    main("rnn")
