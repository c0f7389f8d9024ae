"""Learning-rate schedules with torch.optim.lr_scheduler's names, arguments and numbers.

A scheduler works on any optimizer that has ``param_groups`` (a list of dicts with an ``"lr"`` key), as
``fastml.optim.SGD/RMSprop/Adam/AdamW`` do. As in torch: construct it after the optimizer (it records
each group's ``initial_lr`` and sets epoch 0), call ``optimizer.step(...)`` during the epoch and
``scheduler.step()`` at its end. ``last_epoch`` is the 0-based index of the current epoch.

Schedules (``e`` = last_epoch, ``lr0`` = the group's initial lr):

=====================  ===================================================  ==========================
class                  lr during epoch e                                    notes' name
=====================  ===================================================  ==========================
``StepLR``             lr0 * gamma ** (e // step_size)                      discrete staircase
``ExponentialLR``      lr0 * gamma ** e                                     0.95**epoch * alpha0
``LambdaLR``           lr0 * lr_lambda(e)                                   any rule, e.g. manual decay
``CosineAnnealingLR``  eta_min + (lr0 - eta_min) (1 + cos(pi e / T_max)) / 2 (SGDR, Loshchilov & Hutter)
``InverseTimeLR``      lr0 / (1 + decay_rate * e)                           1/(1 + decay_rate*epoch)
``InverseSqrtLR``      lr0 * k / sqrt(e + 1)                                k/sqrt(epoch) * alpha0
=====================  ===================================================  ==========================

StepLR, ExponentialLR and CosineAnnealingLR update the current lr recursively exactly as torch does, so
the sequences are bitwise equal to torch's. The revision notes number epochs from 1 and tabulate the
rate after that many epochs: ``InverseTimeLR`` with lr0 = 0.2 and decay_rate = 1 gives 0.2, 0.1,
0.0667, 0.05, 0.04 for e = 0..4, i.e. the notes' epoch n is e = n. ``InverseSqrtLR`` uses e + 1 so the
first epoch runs at k * lr0 (the notes' k/sqrt(epoch) at epoch 1).
"""
from __future__ import annotations

import abc
import math

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "LambdaLR", "CosineAnnealingLR", "InverseTimeLR",
           "InverseSqrtLR"]


def _groups(optimizer):
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not all(isinstance(g, dict) and "lr" in g for g in groups):
        raise TypeError(f"expected an optimizer with param_groups (a list of dicts with 'lr'), got "
                        f"{type(optimizer).__name__}")
    return groups


class LRScheduler(abc.ABC):
    """Base class: subclasses define ``get_lr()`` (the lrs of epoch ``self.last_epoch``)."""

    def __init__(self, optimizer, last_epoch: int = -1):
        groups = _groups(optimizer)
        self.optimizer = optimizer
        if last_epoch == -1:
            for g in groups:
                g.setdefault("initial_lr", g["lr"])
        else:
            for i, g in enumerate(groups):
                if "initial_lr" not in g:
                    raise KeyError(f"param_groups[{i}] has no 'initial_lr': resume a scheduler (last_epoch >= 0) "
                                   "only with the optimizer state it was saved with")
        self.base_lrs = [g["initial_lr"] for g in groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._is_initial = True
        self.step()
        self._is_initial = False

    @abc.abstractmethod
    def get_lr(self) -> list:
        """The learning rates of epoch ``self.last_epoch``, one per param group."""

    def step(self) -> None:
        """Advance to the next epoch and write its lr into every param group."""
        self._step_count += 1
        self.last_epoch += 1
        values = self.get_lr()
        for g, lr in zip(_groups(self.optimizer), values):
            g["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list:
        """The lrs set by the last ``step()`` (one per param group)."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Everything but the optimizer (and, for LambdaLR, the functions)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(state_dict)

    def _current(self):
        return [g["lr"] for g in self.optimizer.param_groups]


class StepLR(LRScheduler):
    """Multiply the lr by ``gamma`` every ``step_size`` epochs (staircase decay)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if int(step_size) != step_size or step_size < 1:
            raise ValueError(f"StepLR: expected step_size to be a positive integer, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current()
        return [lr * self.gamma for lr in self._current()]


class ExponentialLR(LRScheduler):
    """Multiply the lr by ``gamma`` every epoch."""

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current()
        return [lr * self.gamma for lr in self._current()]


class LambdaLR(LRScheduler):
    """lr = initial_lr * lr_lambda(epoch); ``lr_lambda`` is a function or one per param group."""

    def __init__(self, optimizer, lr_lambda, last_epoch: int = -1):
        n = len(_groups(optimizer))
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"LambdaLR: expected {n} lr_lambdas (one per param group), got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        if not all(callable(f) for f in self.lr_lambdas):
            raise TypeError("LambdaLR: expected lr_lambda to be callable (or a list of callables)")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * f(self.last_epoch) for f, base in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self):
        d = super().state_dict()
        # plain functions are not state; callable objects (with a __dict__) are saved as torch does
        d["lr_lambdas"] = [None if not hasattr(f, "__dict__") or callable(getattr(f, "__code__", None))
                           else dict(f.__dict__) for f in self.lr_lambdas]
        return d

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        lambdas = state_dict.pop("lr_lambdas")
        super().load_state_dict(state_dict)
        for f, s in zip(self.lr_lambdas, lambdas):
            if s is not None:
                f.__dict__.update(s)


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the initial lr down to ``eta_min`` over ``T_max`` epochs, then back up
    (SGDR without restarts, Loshchilov & Hutter 2017), with torch's recursive update."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        if T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: expected T_max > 0, got {T_max!r}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        e, T, lo = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current()
        if self._step_count == 1 and e > 0:
            return [lo + (b - lo) * (1 + math.cos(e * math.pi / T)) / 2 for b in self.base_lrs]
        if (e - 1 - T) % (2 * T) == 0:
            return [lr + (b - lo) * (1 - math.cos(math.pi / T)) / 2 for b, lr in zip(self.base_lrs, self._current())]
        return [(1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (lr - lo) + lo
                for lr in self._current()]


class InverseTimeLR(LRScheduler):
    """lr = initial_lr / (1 + decay_rate * epoch): the notes' "1/(1 + decay_rate * epoch_num)" decay."""

    def __init__(self, optimizer, decay_rate: float, last_epoch: int = -1):
        if decay_rate < 0:
            raise ValueError(f"InverseTimeLR: expected decay_rate >= 0, got {decay_rate!r}")
        self.decay_rate = decay_rate
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [b / (1.0 + self.decay_rate * self.last_epoch) for b in self.base_lrs]


class InverseSqrtLR(LRScheduler):
    """lr = initial_lr * k / sqrt(epoch + 1): the notes' "k / sqrt(epoch_num)" decay (epochs from 1)."""

    def __init__(self, optimizer, k: float = 1.0, last_epoch: int = -1):
        if k <= 0:
            raise ValueError(f"InverseSqrtLR: expected k > 0, got {k!r}")
        self.k = k
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [b * self.k / math.sqrt(self.last_epoch + 1) for b in self.base_lrs]
