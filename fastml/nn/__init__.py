"""Layers with explicit forward / backward (no autograd), torch-compatible constructors and state dicts."""
from .rnn import GRU, LSTM, RNN, RNNBase  # noqa: F401

__all__ = ["RNNBase", "RNN", "LSTM", "GRU"]
