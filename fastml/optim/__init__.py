"""Optimizers: ``fastml.optim.functional`` (stateless in-place steps over explicit state), the
torch-like classes ``SGD``, ``RMSprop``, ``Adam``, ``AdamW`` built on them, and ``lr_scheduler``."""
from . import functional, lr_scheduler
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop

__all__ = ["functional", "lr_scheduler", "Optimizer", "SGD", "RMSprop", "Adam", "AdamW"]
