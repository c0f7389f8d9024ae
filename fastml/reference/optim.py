"""Float64 reference optimizer steps: the oracle of tests/test_optim.py.

Same signatures as :mod:`fastml.optim.functional`, but functional: the inputs are never modified.
Each function copies every array to float64, applies the textbook update (torch.optim's rules, written
for clarity rather than in torch's operation order) and returns the new arrays as lists of float64
arrays (``None`` for state a configuration does not use):

* ``sgd_step``     -> ``(params, momentum_buffers)``
* ``rmsprop_step`` -> ``(params, square_avgs, momentum_buffers, grad_avgs)``
* ``adam_step`` / ``adamw_step`` -> ``(params, exp_avgs, exp_avg_sqs, max_exp_avg_sqs)``

No argument validation beyond what the maths needs; no floating-point warnings (IEEE semantics).
"""
from __future__ import annotations

import numpy as np

__all__ = ["sgd_step", "rmsprop_step", "adam_step", "adamw_step"]


def _list64(x):
    if x is None:
        return None
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    return [np.array(a, dtype=np.float64, copy=True) for a in xs]


def _grad(g, p, maximize, weight_decay):
    g = -g if maximize else g
    return g + weight_decay * p if weight_decay != 0.0 else g


def sgd_step(params, grads, momentum_buffers=None, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, maximize=False, first_step=False):
    """p <- p - lr * d with d = g (+ momentum: b = g on the first step, else momentum b + (1 - dampening) g;
    d = g + momentum b if nesterov else b), g = (+-grad) + weight_decay p."""
    ps, gs, bs = _list64(params), _list64(grads), _list64(momentum_buffers)
    with np.errstate(all="ignore"):
        for i in range(len(ps)):
            g = _grad(gs[i], ps[i], maximize, weight_decay)
            if momentum != 0.0:
                bs[i] = g.copy() if first_step else momentum * bs[i] + (1.0 - dampening) * g
                g = g + momentum * bs[i] if nesterov else bs[i]
            ps[i] = ps[i] - lr * g
    return ps, (bs if momentum != 0.0 else None)


def rmsprop_step(params, grads, square_avgs, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 momentum_buffers=None, centered=False, grad_avgs=None, maximize=False):
    """s <- alpha s + (1 - alpha) g^2; gbar <- alpha gbar + (1 - alpha) g (centered);
    d = sqrt(s - gbar^2) + eps (centered) or sqrt(s) + eps; b <- momentum b + g / d, p <- p - lr b
    (momentum > 0) or p <- p - lr g / d."""
    ps, gs, ss = _list64(params), _list64(grads), _list64(square_avgs)
    bs = _list64(momentum_buffers) if momentum > 0.0 else None
    gas = _list64(grad_avgs) if centered else None
    with np.errstate(all="ignore"):
        for i in range(len(ps)):
            g = _grad(gs[i], ps[i], maximize, weight_decay)
            ss[i] = alpha * ss[i] + (1.0 - alpha) * g * g
            if centered:
                gas[i] = alpha * gas[i] + (1.0 - alpha) * g
                d = np.sqrt(ss[i] - gas[i] ** 2) + eps
            else:
                d = np.sqrt(ss[i]) + eps
            if momentum > 0.0:
                bs[i] = momentum * bs[i] + g / d
                ps[i] = ps[i] - lr * bs[i]
            else:
                ps[i] = ps[i] - lr * g / d
    return ps, ss, bs, gas


def _adam(decoupled, params, grads, exp_avgs, exp_avg_sqs, step, lr, betas, eps, weight_decay, amsgrad,
          max_exp_avg_sqs, maximize):
    beta1, beta2 = betas
    ps, gs, ms, vs = _list64(params), _list64(grads), _list64(exp_avgs), _list64(exp_avg_sqs)
    vmaxs = _list64(max_exp_avg_sqs) if amsgrad else None
    with np.errstate(all="ignore"):
        for i in range(len(ps)):
            if decoupled:
                g = _grad(gs[i], ps[i], maximize, 0.0)
                ps[i] = ps[i] * (1.0 - lr * weight_decay)
            else:
                g = _grad(gs[i], ps[i], maximize, weight_decay)
            ms[i] = beta1 * ms[i] + (1.0 - beta1) * g
            vs[i] = beta2 * vs[i] + (1.0 - beta2) * g * g
            v = vs[i]
            if amsgrad:
                vmaxs[i] = np.maximum(vmaxs[i], vs[i])
                v = vmaxs[i]
            m_hat = ms[i] / (1.0 - beta1 ** step)
            v_hat = v / (1.0 - beta2 ** step)
            ps[i] = ps[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return ps, ms, vs, vmaxs


def adam_step(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
              weight_decay=0.0, amsgrad=False, max_exp_avg_sqs=None, maximize=False):
    """Adam with bias-corrected moments: p <- p - lr m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - b1^t),
    v_hat = max-or-v / (1 - b2^t); L2 weight decay folded into g."""
    return _adam(False, params, grads, exp_avgs, exp_avg_sqs, step, lr, betas, eps, weight_decay, amsgrad,
                 max_exp_avg_sqs, maximize)


def adamw_step(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
               weight_decay=1e-2, amsgrad=False, max_exp_avg_sqs=None, maximize=False):
    """AdamW: p <- p (1 - lr weight_decay), then the Adam update without weight decay."""
    return _adam(True, params, grads, exp_avgs, exp_avg_sqs, step, lr, betas, eps, weight_decay, amsgrad,
                 max_exp_avg_sqs, maximize)
