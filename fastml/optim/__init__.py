"""Optimizers: functional in-place steps (fastml.optim.functional), classes, and LR schedules."""
from . import lr_scheduler

__all__ = ["lr_scheduler"]
