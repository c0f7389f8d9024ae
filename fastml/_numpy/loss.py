"""NumPy backend of the losses. Arguments arrive validated (fastml.functional.loss); everything is
computed in the input's dtype, and reductions add in float64 before rounding to that dtype."""
import numpy as np

from .activation import softmax as _softmax

NONE, MEAN, SUM = 0, 1, 2


def _reduce(loss, red, dtype, count=None):
    if red == NONE:
        return loss.astype(dtype, copy=False)
    total = np.sum(loss, dtype=np.float64)
    if red == MEAN:
        n = loss.size if count is None else count
        total = total / n if n else np.float64(np.nan)
    return np.asarray(total, dtype=dtype)


def check_targets(t, C, ignore_index, op="cross_entropy"):
    """ValueError naming the first class index outside [0, C) that is not ignore_index."""
    flat = t.reshape(-1)
    bad = (flat != ignore_index) & ((flat < 0) | (flat >= C))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{op}: expected class indices in [0, {C}) or ignore_index={ignore_index} in target, "
                         f"got {int(flat[i])} at flat position {i}")


def _layout(x, t, probs):
    """(x as (N, C, *), t as (N, *) or (N, C, *), unbatched)."""
    if x.ndim == 1:
        return x[None], t[None], True
    return x, t, False


def cross_entropy(x, t, w, ignore_index, red, eps, probs):
    dt = x.dtype
    x3, t3, unbatched = _layout(x, t, probs)
    C = x3.shape[1]
    wb = None if w is None else w.reshape((1, C) + (1,) * (x3.ndim - 2))
    logp = _softmax(x3, 1, True, None)
    with np.errstate(invalid="ignore"):
        if probs:
            q = t3 * dt.type(1.0 - eps) + dt.type(eps / C)
            lq = logp * q if wb is None else logp * q * wb
            loss = -np.sum(lq, axis=1)
            out = _reduce(loss, red, dt, loss.size)
        else:
            check_targets(t3, C, ignore_index)
            ignore = t3 == ignore_index
            tc = np.where(ignore, 0, t3)
            lp_t = np.take_along_axis(logp, tc[:, None], axis=1)[:, 0]
            wt = np.where(ignore, 0, 1 if w is None else w[tc]).astype(dt)
            loss = np.where(ignore, dt.type(0), -wt * lp_t)
            if eps > 0:
                smooth = -np.sum(logp if wb is None else logp * wb, axis=1)
                loss = dt.type(1.0 - eps) * loss + dt.type(eps / C) * np.where(ignore, dt.type(0), smooth)
            if red == MEAN:
                denom = np.sum(wt, dtype=np.float64)
                with np.errstate(divide="ignore"):
                    out = np.asarray(np.sum(loss, dtype=np.float64) / denom, dtype=dt)
            else:
                out = _reduce(loss, red, dt)
    if unbatched and red == NONE:
        out = out[0]
    return out


def cross_entropy_backward(go, x, t, w, ignore_index, red, eps, probs):
    dt = x.dtype
    x3, t3, unbatched = _layout(x, t, probs)
    C = x3.shape[1]
    wb = None if w is None else w.reshape((1, C) + (1,) * (x3.ndim - 2))
    p = _softmax(x3, 1, False, None)
    go = np.asarray(go, dtype=dt)
    if red == NONE and unbatched:
        go = go[None]
    with np.errstate(invalid="ignore", divide="ignore"):
        if probs:
            q = t3 * dt.type(1.0 - eps) + dt.type(eps / C)
            wq = q if wb is None else q * wb
            if red == MEAN:
                go = go / dt.type(x3.size // C if C else 0)
            gs = go[:, None] if red == NONE else go
            grad = gs * (p * np.sum(wq, axis=1, keepdims=True) - wq)
        else:
            check_targets(t3, C, ignore_index, "cross_entropy_backward")
            ignore = t3 == ignore_index
            tc = np.where(ignore, 0, t3)
            wt = np.where(ignore, 0, 1 if w is None else w[tc]).astype(dt)
            if red == MEAN:
                go = np.asarray(go / np.sum(wt, dtype=np.float64), dtype=dt)
            gs = go[:, None] if red == NONE else go
            wsum = C if w is None else np.sum(w, dtype=np.float64)
            a = (dt.type(1.0 - eps) * wt + dt.type(eps / C * wsum))[:, None]
            g = a * p
            if eps > 0:
                g = g - dt.type(eps / C) * (1 if wb is None else wb)
            onehot = np.zeros_like(g)
            np.put_along_axis(onehot, tc[:, None], 1, axis=1)
            g = g - dt.type(1.0 - eps) * wt[:, None] * onehot
            grad = np.where(ignore[:, None], dt.type(0), gs * g)
    grad = grad.astype(dt, copy=False)
    return grad[0] if unbatched else grad


def _log_sigmoid(x):
    with np.errstate(over="ignore"):
        return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def binary_cross_entropy_with_logits(x, t, w, red, pw):
    with np.errstate(invalid="ignore"):
        ls = _log_sigmoid(x)
        if pw is not None:
            ls = ls * ((pw - 1) * t + 1)
        loss = (1 - t) * x - ls
        if w is not None:
            loss = loss * w
    return _reduce(loss, red, x.dtype)


def binary_cross_entropy_with_logits_backward(go, x, t, w, red, pw):
    dt = x.dtype
    with np.errstate(invalid="ignore", divide="ignore"):
        if pw is not None:
            pt = pw * t
            grad = (pt + 1 - t) * _sigmoid(x) - pt
        else:
            grad = _sigmoid(x) - t
        grad = grad * go
        if w is not None:
            grad = grad * w
        if red == MEAN:
            grad = grad / dt.type(x.size)
    return grad.astype(dt, copy=False)


def mse_loss(x, t, red):
    with np.errstate(invalid="ignore", over="ignore"):
        d = x - t
        return _reduce(d * d, red, x.dtype)


def mse_loss_backward(go, x, t, red):
    dt = x.dtype
    with np.errstate(invalid="ignore", over="ignore"):
        grad = dt.type(2) * (x - t) * go
        if red == MEAN:
            grad = grad / dt.type(x.size)
    return grad.astype(dt, copy=False)
