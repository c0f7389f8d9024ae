"""Layers with explicit forward / backward (no autograd): each keeps its parameters as NumPy arrays,
its forward saves what its backward needs, and backward returns the input gradients and stores the
parameter gradients in ``.grads``."""
from .attention import MultiheadAttention  # noqa: F401

__all__ = ["MultiheadAttention"]
