"""Layers with explicit forward / backward (no autograd): each keeps its parameters as NumPy arrays,
its forward saves what its backward needs, and backward returns the input gradients and stores the
parameter gradients in ``.grads``. Constructors, parameter names and state dicts follow torch.nn."""
from .attention import MultiheadAttention  # noqa: F401
from .rnn import GRU, LSTM, RNN, RNNBase  # noqa: F401

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "MultiheadAttention"]
