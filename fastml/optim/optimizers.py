"""torch.optim-like optimizer classes over NumPy arrays, built on :mod:`fastml.optim.functional`.

    opt = fastml.optim.Adam(params, lr=1e-3)          # params: list of float32/float64 arrays, in place
    for batch in data:
        grads = compute_grads(params, batch)           # list of arrays shaped like params
        opt.step(grads)

* Every call to ``step`` is one multi-tensor call of the functional step (one parallel region).
* State buffers are allocated once, at construction, as C-contiguous zeros of each parameter's
  dtype and shape; ``zero_state()`` resets them (and the step count) without reallocating.
* ``param_groups`` is a list holding one dict (``params`` plus every hyperparameter, ``lr`` included),
  read at every step, so a learning-rate scheduler changes ``group['lr']`` exactly as with torch.
  ``opt.lr`` is a shortcut for ``param_groups[0]['lr']``. One group only.
* ``state_dict()`` / ``load_state_dict()`` round-trip exactly (copies of every buffer, the step
  count, the hyperparameters), in torch's layout: ``{'state': {i: {...}}, 'param_groups': [{...}]}``
  with parameters named by index.
"""
from __future__ import annotations

import copy

import numpy as np

from . import functional as _F

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW"]


class Optimizer:
    """Base class: one parameter group, state buffers named by ``_buffers``, a step counter."""

    _buffers: tuple = ()

    def __init__(self, params, defaults):
        if isinstance(params, np.ndarray):
            raise TypeError(f"{type(self).__name__}: params should be a list of arrays, got a single ndarray")
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
                raise TypeError(f"{type(self).__name__}: expected float32/float64 numpy arrays for params, got "
                                f"{getattr(p, 'dtype', type(p).__name__)} at index {i}")
            if p.dtype != params[0].dtype:
                raise TypeError(f"{type(self).__name__}: expected every parameter of dtype {params[0].dtype}, got "
                                f"{p.dtype} at index {i}")
            if not p.flags.c_contiguous or not p.flags.writeable:
                raise ValueError(f"{type(self).__name__}: parameter {i} must be C-contiguous and writeable "
                                 f"(it is updated in place)")
        self.defaults = dict(defaults)
        self.param_groups = [dict(params=params, **defaults)]
        self.steps = 0
        self.state_buffers = {}
        for name in self._needed(self._hparams()):
            self._buffer(name)

    def _buffer(self, name):
        """The state list ``name`` (C-contiguous zeros shaped like the parameters), allocated on first use."""
        bufs = self.state_buffers.get(name)
        if bufs is None:
            bufs = self.state_buffers[name] = [np.zeros(p.shape, p.dtype) for p in self.params]
        return bufs

    # the hyperparameters of the single group
    @property
    def params(self):
        return self.param_groups[0]["params"]

    @property
    def lr(self):
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        self.param_groups[0]["lr"] = value

    def _needed(self, hp):
        """Names of the state lists a step with hyperparameters ``hp`` uses."""
        return self._buffers

    def _hparams(self):
        # only the optimizer's own hyperparameters: schedulers add keys such as 'initial_lr' to the group
        return {k: v for k, v in self.param_groups[0].items() if k in self.defaults}

    def step(self, grads):
        """Applies one update with ``grads`` (a list of arrays matching ``params``; a single array is
        accepted for a single parameter). Returns None."""
        grads = list(grads) if isinstance(grads, (list, tuple)) else [grads]
        self._step(grads, self._hparams())

    def zero_state(self):
        """Resets every state buffer to zero and the step count to 0 (no reallocation)."""
        for bufs in self.state_buffers.values():
            for b in bufs:
                b.fill(0)
        self.steps = 0
        self._loaded(set())

    def state_dict(self):
        """``{'state': {i: {'step': int, <buffer>: copy, ...}}, 'param_groups': [{hyperparameters,
        'params': [0, 1, ...]}]}``: independent copies, enough to resume bit-exactly."""
        state = {}
        for i in range(len(self.params)):
            s = {"step": self.steps}
            for name, bufs in self.state_buffers.items():
                if self._exported(name):
                    s[name] = bufs[i].copy()
            state[i] = s
        group = copy.deepcopy(self._hparams())
        group["params"] = list(range(len(self.params)))
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict):
        """Restores a ``state_dict()`` of an optimizer of the same class over parameters of the same
        shapes: buffers are copied into this optimizer's arrays (allocated if missing). Everything is
        checked before anything changes."""
        name = type(self).__name__
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(f"{name}.load_state_dict: expected one group of {len(self.params)} parameters, got "
                             f"{[len(g['params']) for g in groups]}")
        hp = {k: v for k, v in groups[0].items() if k != "params"}
        if set(hp) != set(self._hparams()):
            raise ValueError(f"{name}.load_state_dict: hyperparameters {sorted(hp)} do not match "
                             f"{sorted(self._hparams())}")
        state = state_dict["state"]
        steps = {int(s.get("step", 0)) for s in state.values()} or {0}
        if len(steps) != 1:
            raise ValueError(f"{name}.load_state_dict: parameters have different step counts {sorted(steps)}")
        names = set()
        for i, s in state.items():
            if not 0 <= int(i) < len(self.params):
                raise ValueError(f"{name}.load_state_dict: state for unknown parameter {i}")
            p = self.params[int(i)]
            for k, b in s.items():
                if k == "step":
                    continue
                if k not in self._buffers:
                    raise ValueError(f"{name}.load_state_dict: unknown state {k!r}")
                if np.shape(b) != p.shape:
                    raise ValueError(f"{name}.load_state_dict: {k} of parameter {i} has shape {np.shape(b)}, "
                                     f"expected {p.shape}")
                names.add(k)
        self.param_groups[0].update(copy.deepcopy(hp))
        for k in names:
            bufs = self._buffer(k)
            for i, b in enumerate(bufs):
                s = state.get(i, {})
                if k in s:
                    np.copyto(b, np.asarray(s[k]), casting="same_kind")
                else:
                    b.fill(0)
        for k in set(self.state_buffers) - names:
            for b in self.state_buffers[k]:
                b.fill(0)
        self.steps = steps.pop()
        self._loaded(names)

    def _exported(self, name):
        return True

    def _loaded(self, names):
        pass

    def __repr__(self):
        hp = ", ".join(f"{k}={v!r}" for k, v in self._hparams().items())
        return f"{type(self).__name__}({len(self.params)} params, {hp})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum/Nesterov (``torch.optim.SGD``); see
    :func:`fastml.optim.functional.sgd_step` for the maths. The first step sets the momentum buffer
    to the gradient (torch's ``buf is None`` case) through ``first_step=True``."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False):
        if lr < 0.0 or momentum < 0.0 or weight_decay < 0.0:
            raise ValueError(f"SGD: expected lr, momentum, weight_decay >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov requires momentum > 0 and dampening == 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    _buffers = ("momentum_buffer",)
    _momentum_started = False  # torch: state['momentum_buffer'] is None until momentum is first used

    def _exported(self, name):
        return self._momentum_started

    def _loaded(self, names):
        self._momentum_started = "momentum_buffer" in names

    def _needed(self, hp):
        return ("momentum_buffer",) if hp["momentum"] != 0 else ()

    def _step(self, grads, hp):
        bufs = self._buffer("momentum_buffer") if hp["momentum"] != 0 else None
        # torch creates the buffer (b = g) the first time momentum is used; so does first_step here
        first = not self._momentum_started
        _F.sgd_step(self.params, grads, bufs, first_step=first, **hp)
        if bufs is not None:
            self._momentum_started = True
        self.steps += 1


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e; ``torch.optim.RMSprop``), with momentum and centering; see
    :func:`fastml.optim.functional.rmsprop_step`."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, *,
                 maximize=False):
        if lr < 0.0 or eps < 0.0 or momentum < 0.0 or weight_decay < 0.0 or not 0.0 <= alpha < 1.0:
            raise ValueError("RMSprop: expected lr, eps, momentum, weight_decay >= 0 and 0 <= alpha < 1")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    _buffers = ("square_avg", "momentum_buffer", "grad_avg")

    def _needed(self, hp):
        return ("square_avg",) + (("momentum_buffer",) if hp["momentum"] > 0 else ()) + (
            ("grad_avg",) if hp["centered"] else ())

    def _step(self, grads, hp):
        need = self._needed(hp)
        _F.rmsprop_step(self.params, grads, self._buffer("square_avg"),
                        momentum_buffers=self._buffer("momentum_buffer") if "momentum_buffer" in need else None,
                        grad_avgs=self._buffer("grad_avg") if "grad_avg" in need else None, **hp)
        self.steps += 1


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015; ``torch.optim.Adam``) with AMSGrad; see
    :func:`fastml.optim.functional.adam_step`."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False):
        name = type(self).__name__
        if lr < 0.0 or eps < 0.0 or weight_decay < 0.0:
            raise ValueError(f"{name}: expected lr, eps, weight_decay >= 0, got {lr}, {eps}, {weight_decay}")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{name}: expected betas as a pair (beta1, beta2), got {betas!r}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"{name}: expected 0 <= betas < 1, got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    _buffers = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def _needed(self, hp):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if hp["amsgrad"] else ())

    def _step(self, grads, hp):
        fn = _F.adamw_step if self._decoupled else _F.adam_step
        fn(self.params, grads, self._buffer("exp_avg"), self._buffer("exp_avg_sq"), step=self.steps + 1,
           max_exp_avg_sqs=self._buffer("max_exp_avg_sq") if hp["amsgrad"] else None, **hp)
        self.steps += 1


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019; ``torch.optim.AdamW``): Adam with decoupled weight decay
    ``p <- p (1 - lr weight_decay)``; see :func:`fastml.optim.functional.adamw_step`."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize)
