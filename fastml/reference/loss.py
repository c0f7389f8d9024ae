"""Float64 references of the losses (see fastml.functional.loss for the docs and the shape rules).

cross_entropy follows torch's definition exactly (aten/src/ATen/native/LossNLL.cpp): class-index targets
are ``(1 - eps) * nll + eps / C * smooth`` with ``smooth = -sum_c w_c log p_c``, both normalised by the sum
of the target weights of the non-ignored positions for 'mean'; probability targets are smoothed as
``q * (1 - eps) + eps / C`` and 'mean' divides by the number of positions (numel / C).
"""
import numpy as np

from .activation import log_softmax, softmax

__all__ = [
    "cross_entropy", "cross_entropy_backward",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
    "mse_loss", "mse_loss_backward",
]

_REDUCTIONS = ("none", "mean", "sum")


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def _check_reduction(reduction, op):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: expected reduction in {_REDUCTIONS}, got {reduction!r}")


def _reduce(loss, reduction, count):
    if reduction == "none":
        return loss
    total = np.sum(loss)
    if reduction == "sum":
        return np.float64(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.float64(total) / np.float64(count)  # empty input -> NaN, as torch


def _ce_layout(input, target):
    """(x as (N, C, *), target as (N, *) or (N, C, *), unbatched flag)."""
    x = _f64(input)
    t = np.asarray(target)
    if x.ndim == 1:
        return x[None], t[None], True
    return x, t, False


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    _check_reduction(reduction, "cross_entropy")
    x, t, unbatched = _ce_layout(input, target)
    C = x.shape[1]
    eps = float(label_smoothing)
    w = np.ones(C) if weight is None else _f64(weight)
    wb = w.reshape((1, C) + (1,) * (x.ndim - 2))
    logp = log_softmax(x, 1)
    with np.errstate(invalid="ignore"):
        if t.dtype.kind == "f":
            q = _f64(t) * (1.0 - eps) + eps / C
            loss = -np.sum(logp * q * wb, axis=1)
            out = _reduce(loss, reduction, loss.size)
        else:
            t = t.astype(np.int64)
            ignore = t == ignore_index
            tc = np.where(ignore, 0, t)
            bad = ~ignore & ((tc < 0) | (tc >= C))
            if bad.any():
                raise ValueError(f"cross_entropy: target {int(t[bad].flat[0])} is out of bounds for {C} classes")
            lp_t = np.take_along_axis(logp, tc[:, None], axis=1)[:, 0]
            wt = np.where(ignore, 0.0, w[tc])
            nll = np.where(ignore, 0.0, -wt * lp_t)
            # torch adds the smoothing term only when eps > 0 (so a -inf logit does not give 0 * inf)
            smooth = np.where(ignore, 0.0, -np.sum(logp * wb, axis=1)) if eps > 0 else np.zeros_like(nll)
            if reduction == "none":
                out = (1.0 - eps) * nll + (eps / C) * smooth
            else:
                total = (1.0 - eps) * np.sum(nll) + (eps / C) * np.sum(smooth)
                if reduction == "sum":
                    out = np.float64(total)
                else:
                    with np.errstate(divide="ignore"):
                        out = np.float64(total) / np.sum(wt)
    if unbatched and reduction == "none":
        out = out[0]
    return np.asarray(out, dtype=np.float64)


def cross_entropy_backward(grad_output, input, target, weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0):
    """d loss / d input (same shape as input), for the loss's grad_output (scalar, or the 'none' shape)."""
    _check_reduction(reduction, "cross_entropy_backward")
    x, t, unbatched = _ce_layout(input, target)
    C = x.shape[1]
    eps = float(label_smoothing)
    w = np.ones(C) if weight is None else _f64(weight)
    wb = w.reshape((1, C) + (1,) * (x.ndim - 2))
    p = softmax(x, 1)
    go = _f64(grad_output)
    if reduction == "none" and unbatched:
        go = go[None]
    with np.errstate(invalid="ignore", divide="ignore"):
        if t.dtype.kind == "f":
            q = _f64(t) * (1.0 - eps) + eps / C
            wq = q * wb
            if reduction == "mean":
                go = go / (x.size // C if C else 0)
            gs = go[:, None] if reduction == "none" else go
            grad = gs * (p * np.sum(wq, axis=1, keepdims=True) - wq)
        else:
            t = t.astype(np.int64)
            ignore = t == ignore_index
            tc = np.where(ignore, 0, t)
            wt = np.where(ignore, 0.0, w[tc])
            if reduction == "mean":
                go = go / np.sum(wt)
            gs = go[:, None] if reduction == "none" else go
            onehot = np.zeros_like(x)
            np.put_along_axis(onehot, tc[:, None], 1.0, axis=1)
            a = ((1.0 - eps) * wt + (eps / C) * np.sum(w))[:, None]
            g = a * p - (1.0 - eps) * wt[:, None] * onehot - (eps / C) * wb
            grad = np.where(ignore[:, None], 0.0, gs * g)
    return grad[0] if unbatched else grad


def _log_sigmoid(x):
    with np.errstate(over="ignore"):
        return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """(1 - t) x - lw * log_sigmoid(x), lw = 1 + (pos_weight - 1) t, times weight (torch's formula)."""
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    x, t = _f64(input), _f64(target)
    with np.errstate(invalid="ignore"):
        ls = _log_sigmoid(x)
        if pos_weight is not None:
            ls = ls * ((_f64(pos_weight) - 1.0) * t + 1.0)
        loss = (1.0 - t) * x - ls
        if weight is not None:
            loss = loss * _f64(weight)
    return np.asarray(_reduce(loss, reduction, loss.size), dtype=np.float64)


def binary_cross_entropy_with_logits_backward(grad_output, input, target, weight=None, reduction="mean",
                                              pos_weight=None):
    """((pw t + 1 - t) sigmoid(x) - pw t) * grad_output * weight (/ numel for 'mean')."""
    _check_reduction(reduction, "binary_cross_entropy_with_logits_backward")
    x, t, go = _f64(input), _f64(target), _f64(grad_output)
    with np.errstate(invalid="ignore", divide="ignore"):
        if pos_weight is not None:
            pt = _f64(pos_weight) * t
            grad = (pt + 1.0 - t) * _sigmoid(x) - pt
        else:
            grad = _sigmoid(x) - t
        grad = grad * go
        if weight is not None:
            grad = grad * _f64(weight)
        if reduction == "mean":
            grad = grad / x.size
    return np.asarray(grad, dtype=np.float64)


def mse_loss(input, target, reduction="mean"):
    """(x - t)^2, reduced."""
    _check_reduction(reduction, "mse_loss")
    x, t = _f64(input), _f64(target)
    with np.errstate(invalid="ignore", over="ignore"):
        loss = (x - t) ** 2
    return np.asarray(_reduce(loss, reduction, loss.size), dtype=np.float64)


def mse_loss_backward(grad_output, input, target, reduction="mean"):
    """2 (x - t) * grad_output (/ numel for 'mean')."""
    _check_reduction(reduction, "mse_loss_backward")
    x, t, go = _f64(input), _f64(target), _f64(grad_output)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        grad = 2.0 * (x - t) * go
        if reduction == "mean":
            grad = grad / x.size
    return np.asarray(grad, dtype=np.float64)
