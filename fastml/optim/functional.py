"""Optimizer steps as plain functions over explicit state (torch.optim's update rules, in place).

Every function takes either one array per argument or a list of arrays (one per parameter tensor);
a list is one multi-tensor call: the compiled backend makes ONE call into C++ and runs ONE parallel
region over the elements of all tensors together, so 200 small tensors cost one fork-join.

Arrays
    ``params`` and every state list are updated in place: each must be a C-contiguous, writeable
    float32 array (float64 runs on the NumPy backend, in float64), all of one dtype, and shaped like its
    parameter. ``grads`` may be any array of that dtype and shape (a strided grad is copied once).
    Lists must all have the same length. Everything (arrays and hyperparameters) is validated for every
    tensor before anything is written: a bad call raises ``ValueError``/``TypeError`` and leaves all
    arrays untouched. The arrays updated in place (params and state) must not share memory with each
    other, and a gradient must not share memory with any of them except its own parameter (exactly the
    same array): shared memory raises ``ValueError``.

Numerics
    The update formulas and their order of float32 operations follow ``torch.optim``'s single-tensor
    path (``foreach=False``) of torch 2.13, including which multiply-adds torch fuses, so that
    trajectories match torch to float32 rounding (the one unavoidable difference: torch's CPU ``sqrt``
    goes through MKL VML, which is not correctly rounded, while fastml's is). Scalar coefficients
    (bias corrections, step sizes) are computed once per call in double, then rounded to float32 as
    torch does. NaN/Inf in a gradient propagate as in torch.

CUDA
    If the first parameter is a device array, the call goes to ``fastml._C_cuda`` with the same
    function name and the same arguments (normalised to lists; state lists that are not needed are
    ``None``).
"""
from __future__ import annotations

import math

import numpy as np

from .. import _backend as _B
from .._backend import _C
from .._numpy import optim as _np_optim

__all__ = ["sgd_step", "rmsprop_step", "adam_step", "adamw_step"]


# ---- argument normalisation and validation (shared by every backend) --------------------------------

def _as_list(x):
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _number(op, name, value):
    if type(value) is float and value == value:  # the common case, checked cheaply
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: expected a real number for {name}, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{op}: expected a number for {name}, got nan")
    return v


def _nonneg(op, name, value):
    v = _number(op, name, value)
    if v < 0.0:
        raise ValueError(f"{op}: expected {name} >= 0, got {v!r}")
    return v


def _unit(op, name, value):
    v = _number(op, name, value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{op}: expected 0 <= {name} < 1, got {v!r}")
    return v


def _flag(op, name, value):
    if value is True or value is False:
        return value
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: expected a bool for {name}, got {type(value).__name__}")
    return bool(value)


def _state(op, name, value, n, needed):
    """A state list that must be present (``needed``) or may be None; its length must be n."""
    lst = _as_list(value)
    if lst is None:
        if needed:
            raise ValueError(f"{op}: {needed}")
        return None
    if len(lst) != n:
        raise ValueError(f"{op}: expected {n} arrays in {name} (one per parameter), got {len(lst)}")
    return lst


def _lists(op, params, grads):
    ps, gs = _as_list(params), _as_list(grads)
    if len(gs) != len(ps):
        raise ValueError(f"{op}: expected {len(ps)} arrays in grads (one per parameter), got {len(gs)}")
    return ps, gs


def _host_backend(op, params):
    """'cpu' (compiled float32 kernels) or 'numpy' for a call whose first parameter is ``params[0]``."""
    p0 = params[0]
    if not isinstance(p0, np.ndarray):
        raise TypeError(f"{op}: expected numpy arrays for params (updated in place), got {type(p0).__name__}")
    return _B.host_backend(p0.dtype, op)


# ---- public steps ---------------------------------------------------------------------------------

def sgd_step(params, grads, momentum_buffers=None, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, maximize=False, first_step=False):
    r"""One SGD step (``torch.optim.SGD``, ``foreach=False``), in place.

    .. math::
        g &\leftarrow \pm g + \lambda p \qquad (-g \text{ if maximize}; \lambda = \text{weight\_decay})\\
        b &\leftarrow \begin{cases} g & \text{first step}\\ \mu b + (1-\tau) g & \text{otherwise}\end{cases}
            \qquad (\mu = \text{momentum} > 0,\ \tau = \text{dampening})\\
        g &\leftarrow g + \mu b \text{ (nesterov) or } b\\
        p &\leftarrow p - \eta g

    float32 rounding as torch: ``g + lambda p``, ``(mu b) + (1 - tau) g``, ``g + mu b`` and
    ``p - eta g`` are each one fused multiply-add; ``mu b`` is rounded on its own.

    First step: torch marks it by a missing momentum buffer (``None``) and then sets ``b = g`` without
    dampening. Here the buffers are always arrays and ``first_step=True`` says the same thing: the
    buffers' contents are ignored and overwritten with ``g``. A zero-initialised buffer with
    ``first_step=False`` is *not* equivalent when ``dampening != 0`` (it gives ``(1 - tau) g``).
    The optimizer class ``fastml.optim.SGD`` passes ``first_step`` for you.

    Compared with the revision notes' "momentum" (``V = beta V + (1 - beta) dW; W -= alpha V``): that
    is torch's rule with ``dampening = momentum = beta``, except that torch (and fastml) start with
    ``b = g`` instead of ``b = (1 - beta) g``.

    Arguments: params, grads, momentum_buffers: arrays or equal-length lists of arrays (shape of each
    parameter); momentum_buffers is required when momentum > 0 and unused otherwise. lr, momentum and
    weight_decay >= 0; dampening any number; nesterov needs momentum > 0 and dampening == 0.
    """
    op = "sgd_step"
    ps, gs = _lists(op, params, grads)
    lr = _nonneg(op, "lr", lr)
    momentum = _nonneg(op, "momentum", momentum)
    dampening = _number(op, "dampening", dampening)
    weight_decay = _nonneg(op, "weight_decay", weight_decay)
    nesterov, maximize = _flag(op, "nesterov", nesterov), _flag(op, "maximize", maximize)
    first_step = _flag(op, "first_step", first_step)
    if nesterov and (momentum <= 0.0 or dampening != 0.0):
        raise ValueError(f"{op}: nesterov requires momentum > 0 and dampening == 0, got momentum={momentum!r}, "
                         f"dampening={dampening!r}")
    bufs = _state(op, "momentum_buffers", momentum_buffers, len(ps),
                  "momentum > 0 requires momentum_buffers" if momentum > 0.0 else None)
    if momentum == 0.0:
        bufs = None
    if not ps:
        return
    if type(ps[0]) is np.ndarray and _host_backend(op, ps) == "cpu":
        _C.sgd_step(ps, gs, bufs, lr, momentum, dampening, weight_decay, nesterov, maximize, first_step)
        return
    kw = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
              maximize=maximize, first_step=first_step)
    if _B.is_device_array(ps[0]):
        return _B.cuda_module().sgd_step(ps, gs, bufs, **kw)
    _host_backend(op, ps)
    _np_optim.sgd_step(ps, gs, bufs, **kw)


def rmsprop_step(params, grads, square_avgs, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 momentum_buffers=None, centered=False, grad_avgs=None, maximize=False):
    r"""One RMSprop step (``torch.optim.RMSprop``, ``foreach=False``), in place.

    .. math::
        g &\leftarrow \pm g + \lambda p\\
        s &\leftarrow \alpha s + (1-\alpha) g^2\\
        \bar g &\leftarrow \bar g + (1-\alpha)(g - \bar g) \quad\text{(centered only)}\\
        d &= \sqrt{s - \bar g^2} + \epsilon \text{ (centered) or } \sqrt{s} + \epsilon\\
        b &\leftarrow \mu b + g / d,\ p \leftarrow p - \eta b \quad (\mu = \text{momentum} > 0)\\
        p &\leftarrow p - \eta\, g / d \quad (\text{momentum} = 0)

    All state starts at zero (as torch initialises it), so there is no first-step flag. float32
    rounding as torch: ``(alpha s) + ((1 - alpha) g) g`` and ``s - gbar gbar`` are fused, ``gbar`` is
    updated by torch's ``lerp`` (one fused multiply-add), ``p - eta b`` is fused, ``p + (-eta g)/d`` is not.

    The revision notes' RMSprop (``S = beta S + (1 - beta) dW^2; W -= alpha dW / (sqrt(S) + eps)``) is
    this rule with ``alpha = beta`` and no weight decay, momentum or centering.

    Arguments: square_avgs (required), momentum_buffers (required when momentum > 0), grad_avgs
    (required when centered): arrays or lists like params. lr, eps, momentum, weight_decay >= 0;
    0 <= alpha < 1.
    """
    op = "rmsprop_step"
    ps, gs = _lists(op, params, grads)
    lr = _nonneg(op, "lr", lr)
    alpha = _unit(op, "alpha", alpha)
    eps = _nonneg(op, "eps", eps)
    weight_decay = _nonneg(op, "weight_decay", weight_decay)
    momentum = _nonneg(op, "momentum", momentum)
    centered, maximize = _flag(op, "centered", centered), _flag(op, "maximize", maximize)
    sq = _state(op, "square_avgs", square_avgs, len(ps), "square_avgs is required")
    bufs = _state(op, "momentum_buffers", momentum_buffers, len(ps),
                  "momentum > 0 requires momentum_buffers" if momentum > 0.0 else None)
    gavg = _state(op, "grad_avgs", grad_avgs, len(ps), "centered=True requires grad_avgs" if centered else None)
    if momentum == 0.0:
        bufs = None
    if not centered:
        gavg = None
    if not ps:
        return
    if type(ps[0]) is np.ndarray and _host_backend(op, ps) == "cpu":
        _C.rmsprop_step(ps, gs, sq, bufs, gavg, lr, alpha, eps, weight_decay, momentum, centered, maximize)
        return
    kw = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, momentum_buffers=bufs,
              centered=centered, grad_avgs=gavg, maximize=maximize)
    if _B.is_device_array(ps[0]):
        return _B.cuda_module().rmsprop_step(ps, gs, sq, **kw)
    _host_backend(op, ps)
    _np_optim.rmsprop_step(ps, gs, sq, **kw)


def _adam(op, decoupled, params, grads, exp_avgs, exp_avg_sqs, step, lr, betas, eps, weight_decay, amsgrad,
          max_exp_avg_sqs, maximize):
    ps, gs = _lists(op, params, grads)
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"{op}: expected an int for step (the 1-based step count), got {type(step).__name__}")
    step = int(step)
    if step < 1:
        raise ValueError(f"{op}: expected step >= 1 (the 1-based count after this update), got {step}")
    lr = _nonneg(op, "lr", lr)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"{op}: expected betas as a pair (beta1, beta2), got {betas!r}")
    beta1, beta2 = _unit(op, "betas[0]", betas[0]), _unit(op, "betas[1]", betas[1])
    eps = _nonneg(op, "eps", eps)
    weight_decay = _nonneg(op, "weight_decay", weight_decay)
    amsgrad, maximize = _flag(op, "amsgrad", amsgrad), _flag(op, "maximize", maximize)
    m = _state(op, "exp_avgs", exp_avgs, len(ps), "exp_avgs is required")
    v = _state(op, "exp_avg_sqs", exp_avg_sqs, len(ps), "exp_avg_sqs is required")
    vmax = _state(op, "max_exp_avg_sqs", max_exp_avg_sqs, len(ps),
                  "amsgrad=True requires max_exp_avg_sqs" if amsgrad else None)
    if not amsgrad:
        vmax = None
    if not ps:
        return
    if type(ps[0]) is np.ndarray and _host_backend(op, ps) == "cpu":
        _C.adam_step(ps, gs, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled, maximize)
        return
    kw = dict(step=step, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
              max_exp_avg_sqs=vmax, maximize=maximize)
    if _B.is_device_array(ps[0]):
        return getattr(_B.cuda_module(), op)(ps, gs, m, v, **kw)
    _host_backend(op, ps)
    _np_optim.adam_step(ps, gs, m, v, decoupled=decoupled, **kw)


def adam_step(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
              weight_decay=0.0, amsgrad=False, max_exp_avg_sqs=None, maximize=False):
    r"""One Adam step (Kingma & Ba, 2015; ``torch.optim.Adam``, ``foreach=False``), in place.

    ``step`` is the 1-based step count *after* this update (1 on the first call).

    .. math::
        g &\leftarrow \pm g + \lambda p\\
        m &\leftarrow m + (1-\beta_1)(g - m) \qquad (= \beta_1 m + (1-\beta_1) g,\ \text{torch's lerp})\\
        v &\leftarrow \beta_2 v + (1-\beta_2) g^2\\
        \hat v &= \max(\hat v, v) \text{ (amsgrad, stored in max\_exp\_avg\_sqs) or } v\\
        p &\leftarrow p - \frac{\eta}{1-\beta_1^t} \cdot \frac{m}{\sqrt{\hat v}/\sqrt{1-\beta_2^t} + \epsilon}

    Bias corrections ``1 - beta^t`` and the step size are computed in double once per call, then
    rounded to float32 (as torch's Python scalars are). float32 rounding as torch: ``m + w (g - m)`` and
    ``(beta2 v) + ((1 - beta2) g) g`` are fused, ``sqrt(v) / sqrt(bc2) + eps`` and
    ``p + (-step_size m) / denom`` are not. ``max`` propagates NaN (``torch.maximum``).

    Compared with the revision notes' Adam (``V_corr = V/(1-b1^t)``, ``S_corr = S/(1-b2^t)``,
    ``W -= alpha V_corr / (sqrt(S_corr) + eps)``): identical in exact arithmetic (eps is outside the
    square root in both), but torch divides ``sqrt(v)`` by ``sqrt(1 - b2^t)`` and folds ``1/(1 - b1^t)``
    into the step size rather than forming corrected copies of m and v; the notes' default beta2 is
    0.99, torch's (and fastml's) is 0.999.

    Arguments: exp_avgs, exp_avg_sqs (required), max_exp_avg_sqs (required when amsgrad): arrays or
    lists like params, zero before the first step. lr, eps, weight_decay >= 0; 0 <= beta1, beta2 < 1.
    """
    _adam("adam_step", False, params, grads, exp_avgs, exp_avg_sqs, step, lr, betas, eps, weight_decay, amsgrad,
          max_exp_avg_sqs, maximize)


def adamw_step(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
               weight_decay=1e-2, amsgrad=False, max_exp_avg_sqs=None, maximize=False):
    r"""One AdamW step (Loshchilov & Hutter, 2019; ``torch.optim.AdamW``, ``foreach=False``), in place.

    Adam with decoupled weight decay: instead of adding ``lambda p`` to the gradient, the parameter is
    first shrunk, ``p <- p * (1 - eta lambda)`` (the factor computed in double, rounded to float32,
    one rounded multiply as torch's ``mul_``), then the Adam update of :func:`adam_step` runs with
    ``lambda = 0``. Same arguments as :func:`adam_step`; ``weight_decay`` defaults to 1e-2.
    """
    _adam("adamw_step", True, params, grads, exp_avgs, exp_avg_sqs, step, lr, betas, eps, weight_decay, amsgrad,
          max_exp_avg_sqs, maximize)
