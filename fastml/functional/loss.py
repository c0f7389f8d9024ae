"""Losses and their gradients (torch.nn.functional names, arguments and numerics).

Losses run on host (NumPy) arrays only: a CUDA array raises TypeError. float32 class-index
``cross_entropy`` runs the compiled fused log-softmax + NLL kernels, float32 ``mse_loss`` and
``binary_cross_entropy_with_logits`` (weight / pos_weight varying along the last dim only) the compiled
elementwise kernels; everything else (float64, probability targets, other broadcasts) runs on the NumPy
backend in the input's dtype. Reductions ('mean', 'sum') are added
in float64 in a fixed order, so results do not depend on the thread count, and return a 0-d array of the
input's dtype. 'mean' over zero elements (or zero total weight) is NaN, as in torch.

Shape rules (checked before anything is computed; violations raise ValueError, wrong dtypes TypeError):

* cross_entropy: input (C,), (N, C) or (N, C, d1, ...); target int64 class indices of shape (), (N,) or
  (N, d1, ...), or float class probabilities of the input's shape and dtype; weight (C,).
* binary_cross_entropy_with_logits: target of the input's shape; weight and pos_weight broadcastable
  to the input's shape (pos_weight (C,) applies along the last dim, as in torch) without enlarging it.
* mse_loss: target of exactly the input's shape (torch broadcasts with a warning; fastml requires
  equal shapes).

``out=`` (keyword-only, every function): the array to write the result into, which is then returned. It
must be a C-contiguous, writeable NumPy array of the input's dtype and of the result's exact shape (the
input's for the ``*_backward`` gradients; the per-position loss shape for reduction='none', else ``()``, a
0-d array), or the call raises (TypeError for a wrong dtype / type, ValueError otherwise) before anything
is computed or written. Aliasing rules (checked the same way on every backend): the gradients' ``out``
may be the input itself; for ``mse_loss``/``binary_cross_entropy_with_logits`` (both directions) it may also
be the target or an elementwise grad_output. A partial overlap with any of those raises, and so does any
shared memory with ``weight``/``pos_weight`` or, for ``cross_entropy``, with anything other than the
backward's input.
"""
from __future__ import annotations

import numpy as np

from .. import _backend as _B
from .._backend import _C
from .._numpy import loss as _np_loss

__all__ = [
    "cross_entropy", "cross_entropy_backward",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
    "mse_loss", "mse_loss_backward",
]

_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def _reduction(reduction, op):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: expected reduction in ('none', 'mean', 'sum'), got {reduction!r}")
    return _REDUCTIONS[reduction]


def _host_only(op, *arrays):
    for a in arrays:
        if a is not None and _B.is_device_array(a):
            raise TypeError(f"{op}: losses run on host (NumPy) arrays, got a device array ({type(a).__name__})")
    if _B.forced_backend() == "cuda":
        raise TypeError(f"{op}: losses run on host (NumPy) arrays; the 'cuda' backend is forced")


def _into(result, out):
    if out is None:
        return result
    out[...] = result
    return out


def _same_dtype(a, x, op, arg):
    if a.dtype != x.dtype:
        raise TypeError(f"{op}: expected {arg} of dtype {x.dtype} (the input's), got {a.dtype}")
    return a


def _grad_output(grad_output, x, red, loss_shape, op):
    if red != 0:
        g = np.asarray(grad_output)
        if g.dtype.kind not in "fiu":
            raise TypeError(f"{op}: expected a float grad_output, got {g.dtype}")
        if g.size != 1:
            raise ValueError(f"{op}: expected a scalar grad_output for reduction='{'mean' if red == 1 else 'sum'}', "
                             f"got shape {g.shape}")
        return np.asarray(g.reshape(()), dtype=x.dtype)
    g = _same_dtype(_B.as_float_array(grad_output, op, "grad_output"), x, op, "grad_output")
    if g.shape != tuple(loss_shape):
        raise ValueError(f"{op}: expected grad_output of shape {tuple(loss_shape)} (the loss's with "
                         f"reduction='none'), got {g.shape}")
    return g


# ---- cross_entropy --------------------------------------------------------------------------------

def _ce_args(op, input, target, weight, label_smoothing):
    x = _B.as_float_array(input, op, "input")
    if x.ndim == 0:
        raise ValueError(f"{op}: expected input of shape (C,), (N, C) or (N, C, d1, ...), got a 0-d array")
    C = x.shape[0] if x.ndim == 1 else x.shape[1]
    if C == 0:
        raise ValueError(f"{op}: expected at least one class (C >= 1), got input of shape {x.shape}")
    t = np.asarray(target)
    if t.dtype.kind == "f":
        probs = True
        _same_dtype(t, x, op, "probability target")
        if t.shape != x.shape:
            raise ValueError(f"{op}: expected probability target of shape {x.shape} (the input's), got {t.shape}")
    elif t.dtype.kind in "iu":
        probs = False
        if t.dtype != np.int64:
            raise TypeError(f"{op}: expected int64 class indices for target, got {t.dtype}")
        expected = () if x.ndim == 1 else x.shape[:1] + x.shape[2:]
        if t.shape != expected:
            raise ValueError(f"{op}: expected target of shape {expected} for input of shape {x.shape}, got {t.shape}")
    else:
        raise TypeError(f"{op}: expected int64 class indices or float probabilities for target, got {t.dtype}")
    w = None
    if weight is not None:
        w = _same_dtype(_B.as_float_array(weight, op, "weight"), x, op, "weight")
        if w.shape != (C,):
            raise ValueError(f"{op}: expected weight of shape ({C},), got {w.shape}")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"{op}: expected label_smoothing in [0, 1], got {label_smoothing}")
    return x, t, w, eps, probs


def _ce_loss_shape(x, t, probs):
    """Shape of the reduction='none' loss: the target's for class indices, the input's without C for
    probabilities."""
    if not probs:
        return t.shape
    return x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, *,
                  out=None):
    """Cross-entropy between logits and class targets (torch.nn.functional.cross_entropy).

    input (C,), (N, C) or (N, C, d1, ...) logits; target int64 class indices (shape without the C axis)
    or float class probabilities (input's shape). With class indices, per position
    ``loss = (1 - eps) * w_t * (-log p_t) + eps / C * sum_c w_c * (-log p_c)``, ``p = softmax(input, C axis)``,
    positions whose target equals ``ignore_index`` contribute 0; 'mean' divides by the sum of ``w_t``
    over the non-ignored positions. With probabilities, ``q = target * (1 - eps) + eps / C`` and
    ``loss = -sum_c w_c q_c log p_c``; 'mean' divides by the number of positions (N * d1 * ...).
    A class index outside [0, C) (other than ignore_index) raises ValueError naming it.
    Returns the (N, d1, ...) losses for reduction='none' (``()`` for a (C,) input), else a 0-d array;
    with ``out=`` (that shape, the input's dtype; sharing no memory with any argument) writes it there
    and returns ``out``.
    """
    op = "cross_entropy"
    _host_only(op, input, target, weight, out)
    red = _reduction(reduction, op)
    x, t, w, eps, probs = _ce_args(op, input, target, weight, label_smoothing)
    ignore_index = int(ignore_index)
    if not probs and _B.host_backend(x.dtype, op) == "cpu":
        return _C.cross_entropy_forward(x, t, w, ignore_index, red, eps, out)
    if out is not None:
        _B.check_out(out, _ce_loss_shape(x, t, probs) if red == 0 else (), x.dtype, op)
        _B.check_out_overlap(out, op, disjoint=(("input", x), ("target", t), ("weight", w)))
    return _into(_np_loss.cross_entropy(x, t, w, ignore_index, red, eps, probs), out)


def cross_entropy_backward(grad_output, input, target, weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0, *, out=None):
    """Gradient of :func:`cross_entropy` with respect to ``input`` (same shape as input).

    ``grad_output`` is a scalar for 'mean'/'sum' and has the 'none' loss's shape otherwise. With class
    indices, per non-ignored position (upstream gradient g, divided by the weight sum for 'mean'):
    ``dx_c = g * ((a p_c - eps / C * w_c) - [c == t] (1 - eps) w_t)``, ``a = (1 - eps) w_t + eps / C * sum(w)``;
    ignored positions get 0. With probabilities ``dx_c = g * (p_c sum_k w_k q_k - w_c q_c)``.
    ``out=`` (the input's shape and dtype) receives the gradient and is returned; it may be the input
    itself, but must not share memory with grad_output, target or weight.
    """
    op = "cross_entropy_backward"
    _host_only(op, grad_output, input, target, weight, out)
    red = _reduction(reduction, op)
    x, t, w, eps, probs = _ce_args(op, input, target, weight, label_smoothing)
    go = _grad_output(grad_output, x, red, _ce_loss_shape(x, t, probs), op)
    ignore_index = int(ignore_index)
    if not probs and _B.host_backend(x.dtype, op) == "cpu":
        return _C.cross_entropy_backward(go, x, t, w, ignore_index, red, eps, out)
    if out is not None:
        _B.check_out(out, x.shape, x.dtype, op)
        _B.check_out_overlap(out, op, exact_ok=(("input", x),),
                             disjoint=(("grad_output", go), ("target", t), ("weight", w)))
    return _into(_np_loss.cross_entropy_backward(go, x, t, w, ignore_index, red, eps, probs), out)


# ---- binary_cross_entropy_with_logits ---------------------------------------------------------------

def _broadcast_param(a, x, op, arg):
    if a is None:
        return None
    a = _same_dtype(_B.as_float_array(a, op, arg), x, op, arg)
    try:
        shape = np.broadcast_shapes(a.shape, x.shape)
    except ValueError:
        shape = None
    if shape != x.shape:
        raise ValueError(f"{op}: expected {arg} broadcastable to the input's shape {x.shape}, got {a.shape}")
    return a


def _bce_args(op, input, target, weight, pos_weight):
    x = _B.as_float_array(input, op, "input")
    t = _same_dtype(_B.as_float_array(target, op, "target"), x, op, "target")
    if t.shape != x.shape:
        raise ValueError(f"{op}: expected target of shape {x.shape} (the input's), got {t.shape}")
    return x, t, _broadcast_param(weight, x, op, "weight"), _broadcast_param(pos_weight, x, op, "pos_weight")


_MSE, _BCE = 0, 1  # kinds of the compiled elementwise losses (csrc/ops/pointwise_loss/pointwise_loss.h)


def _last_dim_vector(a, x):
    """(ok, values): a (C,) float array when ``a`` (already checked broadcastable to x) varies along the last
    dim only (the compiled kernels' layout); ok=False for any other broadcast (the NumPy path runs it)."""
    if a is None:
        return True, None
    C = x.shape[-1] if x.ndim else 1
    if a.size == 1:
        return True, np.full(C, a.reshape(()), dtype=a.dtype)
    if a.ndim >= 1 and a.shape[-1] == C and a.size == C:
        return True, np.ascontiguousarray(a.reshape(C))
    return False, None


def _bce_compiled(x, w, pw, op):
    if _B.host_backend(x.dtype, op) != "cpu":
        return None
    ok_w, wv = _last_dim_vector(w, x)
    ok_p, pv = _last_dim_vector(pw, x)
    return (wv, pv) if ok_w and ok_p else None


def _bce_params_disjoint(out, w, pw, op):
    """out may not share memory with weight / pos_weight, checked on the caller's arrays on every backend
    (the compiled path may pass the kernels an expanded copy, which the binding could not relate to out)."""
    if isinstance(out, np.ndarray):
        _B.check_out_overlap(out, op, disjoint=(("weight", w), ("pos_weight", pw)))


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None, *, out=None):
    """Binary cross-entropy on logits (torch.nn.functional.binary_cross_entropy_with_logits).

    ``loss = weight * ((1 - t) x - (1 + (pos_weight - 1) t) * log_sigmoid(x))`` with the stable
    ``log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|))``. Shapes: input (*), target (*) -> (*) or a 0-d array.
    ``out=`` (that shape, the input's dtype) receives the loss and is returned; it may be the input or the
    target itself.
    """
    op = "binary_cross_entropy_with_logits"
    _host_only(op, input, target, weight, pos_weight, out)
    red = _reduction(reduction, op)
    x, t, w, pw = _bce_args(op, input, target, weight, pos_weight)
    _bce_params_disjoint(out, w, pw, op)
    vecs = _bce_compiled(x, w, pw, op)
    if vecs is not None:
        return _C.pointwise_loss_forward(_BCE, x, t, vecs[0], vecs[1], red, out)
    if out is not None:
        _B.check_out(out, x.shape if red == 0 else (), x.dtype, op)
        _B.check_out_overlap(out, op, exact_ok=(("input", x), ("target", t)))
    return _into(_np_loss.binary_cross_entropy_with_logits(x, t, w, red, pw), out)


def binary_cross_entropy_with_logits_backward(grad_output, input, target, weight=None, reduction="mean",
                                              pos_weight=None, *, out=None):
    """``dx = grad_output * weight * ((pos_weight t + 1 - t) sigmoid(x) - pos_weight t)`` (/ numel for 'mean').

    ``out=`` (the input's shape and dtype) receives dx and is returned; it may be the input, the target or
    grad_output itself.
    """
    op = "binary_cross_entropy_with_logits_backward"
    _host_only(op, grad_output, input, target, weight, pos_weight, out)
    red = _reduction(reduction, op)
    x, t, w, pw = _bce_args(op, input, target, weight, pos_weight)
    go = _grad_output(grad_output, x, red, x.shape, op)
    _bce_params_disjoint(out, w, pw, op)
    vecs = _bce_compiled(x, w, pw, op)
    if vecs is not None:
        return _C.pointwise_loss_backward(_BCE, go, x, t, vecs[0], vecs[1], red, out)
    if out is not None:
        _B.check_out(out, x.shape, x.dtype, op)
        _B.check_out_overlap(out, op, exact_ok=(("input", x), ("target", t), ("grad_output", go)))
    return _into(_np_loss.binary_cross_entropy_with_logits_backward(go, x, t, w, red, pw), out)


# ---- mse_loss -------------------------------------------------------------------------------------------

def _mse_args(op, input, target):
    x = _B.as_float_array(input, op, "input")
    t = _same_dtype(_B.as_float_array(target, op, "target"), x, op, "target")
    if t.shape != x.shape:
        raise ValueError(f"{op}: expected target of shape {x.shape} (the input's; fastml does not broadcast), "
                         f"got {t.shape}")
    return x, t


def mse_loss(input, target, reduction="mean", *, out=None):
    """Mean squared error ``(x - t)^2``, reduced. Shapes: input (*), target (*) (equal) -> (*) or 0-d.

    ``out=`` (that shape, the input's dtype) receives the loss and is returned; it may be the input or the
    target itself.
    """
    op = "mse_loss"
    _host_only(op, input, target, out)
    red = _reduction(reduction, op)
    x, t = _mse_args(op, input, target)
    if _B.host_backend(x.dtype, op) == "cpu":
        return _C.pointwise_loss_forward(_MSE, x, t, None, None, red, out)
    if out is not None:
        _B.check_out(out, x.shape if red == 0 else (), x.dtype, op)
        _B.check_out_overlap(out, op, exact_ok=(("input", x), ("target", t)))
    return _into(_np_loss.mse_loss(x, t, red), out)


def mse_loss_backward(grad_output, input, target, reduction="mean", *, out=None):
    """``dx = 2 (x - t) * grad_output`` (/ numel for 'mean').

    ``out=`` (the input's shape and dtype) receives dx and is returned; it may be the input, the target or
    grad_output itself.
    """
    op = "mse_loss_backward"
    _host_only(op, grad_output, input, target, out)
    red = _reduction(reduction, op)
    x, t = _mse_args(op, input, target)
    go = _grad_output(grad_output, x, red, x.shape, op)
    if _B.host_backend(x.dtype, op) == "cpu":
        return _C.pointwise_loss_backward(_MSE, go, x, t, None, None, red, out)
    if out is not None:
        _B.check_out(out, x.shape, x.dtype, op)
        _B.check_out_overlap(out, op, exact_ok=(("input", x), ("target", t), ("grad_output", go)))
    return _into(_np_loss.mse_loss_backward(go, x, t, red), out)
