"""NumPy backend of the optimizer steps (fastml.optim.functional): in place, vectorised, computing in
the arrays' dtype (float32 or float64). Hyperparameters arrive validated; the arrays are validated here
(all of them, before anything is written). Same update rules as the compiled kernels; IEEE semantics
(NaN/Inf propagate silently, no NumPy warnings)."""
from __future__ import annotations

import bisect

import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _check_inplace(op, name, a, dtype, shape):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{op}: expected a numpy array for {name} (updated in place), got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{op}: expected {dtype} for {name} (updated in place; all arrays of a call share the "
                        f"dtype of params[0]), got {a.dtype}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{op}: expected {name} of shape {shape} (its parameter's), got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{op}: expected a C-contiguous array for {name} (updated in place, so it cannot be "
                         f"copied), got a strided view of shape {a.shape}")
    if not a.flags.writeable:
        raise ValueError(f"{op}: expected a writeable array for {name}, got a read-only one")


def validate(op, params, grads, states):
    """Checks every array of a call; returns the grads as arrays. ``states``: [(name, list or None)]."""
    p0 = params[0]
    if not isinstance(p0, np.ndarray):
        raise TypeError(f"{op}: expected a numpy array for params[0] (updated in place), got {type(p0).__name__}")
    dtype = p0.dtype
    if dtype not in _FLOATS:
        raise TypeError(f"{op}: expected float32 or float64 for params[0], got {dtype}")
    gs = []
    for i, p in enumerate(params):
        _check_inplace(op, f"params[{i}]", p, dtype, None)
        g = grads[i]
        if not isinstance(g, np.ndarray):
            raise TypeError(f"{op}: expected a numpy array for grads[{i}], got {type(g).__name__}")
        if g.dtype != dtype:
            raise TypeError(f"{op}: expected {dtype} for grads[{i}] (the dtype of params[0]), got {g.dtype}")
        if g.shape != p.shape:
            raise ValueError(f"{op}: expected grads[{i}] of shape {p.shape} (its parameter's), got {g.shape}")
        gs.append(g)
        for name, lst in states:
            if lst is not None:
                _check_inplace(op, f"{name}[{i}]", lst[i], dtype, p.shape)
    _check_disjoint(op, params, gs, states)
    return gs


try:
    from numpy.lib.array_utils import byte_bounds as _byte_bounds
except ImportError:  # numpy < 2.0
    _byte_bounds = np.byte_bounds


def _check_disjoint(op, params, grads, states):
    """Same rule as the compiled backend (csrc/bind/optim_slots.h): arrays updated in place share no
    memory with each other; a gradient shares none with them except, exactly, its own parameter."""
    written = [(f"params[{i}]", p) for i, p in enumerate(params)]
    written += [(f"{name}[{i}]", a) for name, lst in states if lst is not None for i, a in enumerate(lst)]
    ranges = sorted((_byte_bounds(a) + (name,) for name, a in written if a.size), key=lambda r: r[0])
    for (b0, e0, n0), (b1, e1, n1) in zip(ranges, ranges[1:]):
        if e0 > b1:
            raise ValueError(f"{op}: expected {n0} and {n1} not to share memory (both are updated in place)")
    starts = [r[0] for r in ranges]
    for i, g in enumerate(grads):
        if not g.size:
            continue
        gb, ge = _byte_bounds(g)
        k = bisect.bisect_left(starts, ge)
        while k > 0 and ranges[k - 1][1] > gb:
            k -= 1
            b, e, name = ranges[k]
            own = name == f"params[{i}]" and (b, e) == (gb, ge) and g.strides == params[i].strides
            if not own:
                raise ValueError(f"{op}: expected grads[{i}] not to share memory with {name} (updated in place)")


def _sign_decay(g, p, maximize, weight_decay):
    """The gradient torch's step uses: -g when maximizing, plus weight_decay * p (a new array)."""
    g = np.negative(g) if maximize else np.array(g, copy=True)
    if weight_decay != 0.0:
        g += p.dtype.type(weight_decay) * p
    return g


def _lerp_(a, b, w):
    """a <- a + w (b - a) (torch.lerp: for |w| >= 0.5 it evaluates b - (b - a)(1 - w))."""
    w = a.dtype.type(w)
    if abs(w) < 0.5:
        a += w * (b - a)
    else:
        np.subtract(b, (b - a) * (a.dtype.type(1) - w), out=a)


def sgd_step(ps, gs, bufs, *, lr, momentum, dampening, weight_decay, nesterov, maximize, first_step):
    gs = validate("sgd_step", ps, gs, [("momentum_buffers", bufs)])
    with np.errstate(all="ignore"):
        for i, p in enumerate(ps):
            t = p.dtype.type
            g = _sign_decay(gs[i], p, maximize, weight_decay)
            if momentum != 0.0:
                b = bufs[i]
                if first_step:
                    np.copyto(b, g)
                else:
                    b *= t(momentum)
                    b += t(1.0 - dampening) * g
                if nesterov:
                    g += t(momentum) * b
                else:
                    g = b
            p -= t(lr) * g


def rmsprop_step(ps, gs, sq, *, lr, alpha, eps, weight_decay, momentum, momentum_buffers, centered, grad_avgs,
                 maximize):
    gs = validate("rmsprop_step", ps, gs, [("square_avgs", sq), ("momentum_buffers", momentum_buffers),
                                           ("grad_avgs", grad_avgs)])
    with np.errstate(all="ignore"):
        for i, p in enumerate(ps):
            t = p.dtype.type
            g = _sign_decay(gs[i], p, maximize, weight_decay)
            s = sq[i]
            s *= t(alpha)
            s += t(1.0 - alpha) * g * g
            if centered:
                ga = grad_avgs[i]
                _lerp_(ga, g, 1.0 - alpha)
                avg = np.sqrt(s - ga * ga)
            else:
                avg = np.sqrt(s)
            avg += t(eps)
            if momentum > 0.0:
                b = momentum_buffers[i]
                b *= t(momentum)
                b += g / avg
                p -= t(lr) * b
            else:
                p += (t(-lr) * g) / avg


def adam_step(ps, gs, exp_avgs, exp_avg_sqs, *, step, lr, betas, eps, weight_decay, amsgrad, max_exp_avg_sqs,
              maximize, decoupled):
    op = "adamw_step" if decoupled else "adam_step"
    gs = validate(op, ps, gs, [("exp_avgs", exp_avgs), ("exp_avg_sqs", exp_avg_sqs),
                               ("max_exp_avg_sqs", max_exp_avg_sqs)])
    beta1, beta2 = betas
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    step_size = lr / bc1
    bc2_sqrt = bc2 ** 0.5
    with np.errstate(all="ignore"):
        for i, p in enumerate(ps):
            t = p.dtype.type
            if decoupled:
                g = _sign_decay(gs[i], p, maximize, 0.0)
                if weight_decay != 0.0:
                    p *= t(1.0 - lr * weight_decay)
            else:
                g = _sign_decay(gs[i], p, maximize, weight_decay)
            m, v = exp_avgs[i], exp_avg_sqs[i]
            _lerp_(m, g, 1.0 - beta1)
            v *= t(beta2)
            v += t(1.0 - beta2) * g * g
            if amsgrad:
                np.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
                v = max_exp_avg_sqs[i]
            denom = np.sqrt(v)
            denom /= t(bc2_sqrt)
            denom += t(eps)
            p += (t(-step_size) * m) / denom
