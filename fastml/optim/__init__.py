"""Optimizers: ``fastml.optim.functional`` (stateless in-place steps over explicit state) and the
torch-like classes ``SGD``, ``RMSprop``, ``Adam``, ``AdamW`` built on them."""
from . import functional
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop

__all__ = ["functional", "Optimizer", "SGD", "RMSprop", "Adam", "AdamW"]
