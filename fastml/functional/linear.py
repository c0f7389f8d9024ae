"""Linear layers and matrix products on the packed SGEMM engine (csrc/gemm).

* ``linear(input, weight, bias=None)``: ``y = x W^T + b`` as ``torch.nn.functional.linear``; the bias is
  added in the GEMM epilogue (no second pass over y).
* ``linear_backward(grad_output, input, weight, output_mask)``: ``(grad_input, grad_weight, grad_bias)``.
* ``matmul(a, b)``: NumPy ``matmul`` semantics (1-D promotion, batch broadcasting).

float32 runs the compiled engine (bitwise identical results for any thread count); float64 runs the
NumPy backend in float64; other dtypes raise TypeError.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _backend as _B
from .._backend import _C
from .._numpy import linear as _np_lin
from .._numpy.linear import _rows

__all__ = ["linear", "linear_backward", "matmul"]


def _no_device(x, op):
    if _B.is_device_array(x):
        raise TypeError(f"{op}: CUDA arrays are not supported by this op yet; pass a host (NumPy) array")


def _common_dtype(op, *arrays):
    dt = arrays[0].dtype
    for a in arrays[1:]:
        if a.dtype != dt:
            raise TypeError(f"{op}: expected all arrays of dtype {dt}, got {a.dtype}")
    return dt


def _check_linear_shapes(op, x, w, b):
    if w.ndim != 2:
        raise ValueError(f"linear: expected weight of shape (out_features, in_features), got {w.shape}")
    if x.ndim < 1:
        raise ValueError(f"{op}: expected input of shape (..., in_features), got a 0-d array")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"{op}: expected input of shape (..., {w.shape[1]}) (weight is {w.shape}), got {x.shape}")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"{op}: expected bias of shape ({w.shape[0]},), got {b.shape}")


def linear(input, weight, bias=None, *, out=None):
    """``y = input @ weight.T + bias`` (``torch.nn.functional.linear``).

    Shapes: input (*, in_features), weight (out_features, in_features), bias (out_features,) or None
    -> (*, out_features). ``out`` must be C-contiguous, writeable, of the result's shape and dtype.
    """
    if (_B.cpu_fast_path(input) and _B.cpu_fast_path(weight) and input.ndim == 2 and weight.ndim == 2
            and (bias is None or _B.cpu_fast_path(bias))):
        return _C.linear_forward(input, weight, bias, out)  # hot path: the binding validates shapes and out
    _no_device(input, "linear")
    x = _B.as_float_array(input, "linear", "input")
    w = _B.as_float_array(weight, "linear", "weight")
    b = None if bias is None else _B.as_float_array(bias, "linear", "bias")
    _common_dtype("linear", *([x, w] if b is None else [x, w, b]))
    _check_linear_shapes("linear", x, w, b)
    shape = x.shape[:-1] + (w.shape[0],)
    if out is not None:
        _B.check_out(out, shape, x.dtype, "linear")
    if _B.host_backend(x.dtype, "linear") != "cpu":
        return _np_lin.linear(x, w, b, out)
    x2 = x.reshape(_rows(x), w.shape[1])
    out2 = None if out is None else out.reshape(_rows(out), w.shape[0])
    y = _C.linear_forward(x2, w, b, out2)
    return out if out is not None else y.reshape(shape)


def linear_backward(grad_output, input, weight, output_mask=(True, True, True)):
    """Gradients of ``linear``: ``grad_input = g @ W``, ``grad_weight = g^T x`` (summed over the
    leading dims of input), ``grad_bias = g.sum(leading dims)``; ``None`` where ``output_mask`` is False.

    Shapes: grad_output (*, out_features), input (*, in_features), weight (out_features, in_features).
    """
    if (_B.cpu_fast_path(grad_output) and _B.cpu_fast_path(input) and _B.cpu_fast_path(weight)
            and grad_output.ndim == 2 and input.ndim == 2 and weight.ndim == 2 and len(output_mask) == 3
            and grad_output.shape == (input.shape[0], weight.shape[0]) and input.shape[1] == weight.shape[1]):
        return _C.linear_backward2d(grad_output, input, weight, *(bool(m) for m in output_mask))  # hot path
    for a in (grad_output, input, weight):
        _no_device(a, "linear_backward")
    g = _B.as_float_array(grad_output, "linear_backward", "grad_output")
    x = _B.as_float_array(input, "linear_backward", "input")
    w = _B.as_float_array(weight, "linear_backward", "weight")
    _common_dtype("linear_backward", g, x, w)
    _check_linear_shapes("linear_backward", x, w, None)
    if len(output_mask) != 3:
        raise ValueError(f"linear_backward: expected output_mask of 3 booleans, got {tuple(output_mask)}")
    want = x.shape[:-1] + (w.shape[0],)
    if g.shape != want:
        raise ValueError(f"linear_backward: expected grad_output of shape {want}, got {g.shape}")
    mask = tuple(bool(m) for m in output_mask)
    if _B.host_backend(g.dtype, "linear_backward") != "cpu":
        return _np_lin.linear_backward(g, x, w, mask)
    out_f, in_f = w.shape
    g2 = np.ascontiguousarray(g).reshape(_rows(g), out_f)
    gi = gw = gb = None
    if mask[0]:
        gi = np.empty(x.shape, dtype=np.float32)
        _C.sgemm(g2, np.ascontiguousarray(w), gi.reshape(_rows(gi), in_f))
    if mask[1]:
        gw = np.empty((out_f, in_f), dtype=np.float32)
        _C.sgemm(g2, np.ascontiguousarray(x).reshape(_rows(x), in_f), gw, trans_a=True)
    if mask[2]:
        # float64 accumulation, rounded once (core/reduce.h): a float32 row-order sum over a large batch
        # would carry an error growing with the batch size.
        gb = _C.column_sums(g2)
    return gi, gw, gb


def _unit_rows(a):
    """A view the engine can read: rows contiguous, non-negative strides (else one copy)."""
    if (a.shape[-1] > 1 and a.strides[-1] != a.itemsize or any(s < 0 for s in a.strides)
            or a.shape[-2] > 1 and a.strides[-2] < a.shape[-1] * a.itemsize):
        return np.ascontiguousarray(a)
    return a


def matmul(a, b, *, out=None):
    """Matrix product with NumPy ``matmul`` semantics: 1-D operands are promoted (and the added
    dimension removed from the result), leading dimensions broadcast. float32 on the compiled engine.

    Shapes: a (..., M, K) or (K,), b (..., K, N) or (K,) -> (..., M, N) with the broadcast batch shape.
    """
    if _B.cpu_fast_path(a) and _B.cpu_fast_path(b):  # hot paths (per-call overhead matters for small products)
        if a.ndim == 2 and b.ndim == 2:
            return _C.matmul2d(a, b, out)
        if (a.ndim == 3 and b.ndim == 3 and a.shape[0] == b.shape[0] and a.shape[2] == b.shape[1]
                and a.flags.c_contiguous and b.flags.c_contiguous  # same batch, nothing to broadcast or view
                and (out is None or (type(out) is np.ndarray and out.dtype == _B.F32 and out.flags.c_contiguous
                                     and out.flags.writeable and out.shape == (a.shape[0], a.shape[1], b.shape[2])))):
            return _C.matmul3d(a, b, out)
    _no_device(a, "matmul")
    _no_device(b, "matmul")
    x = _B.as_float_array(a, "matmul", "a")
    y = _B.as_float_array(b, "matmul", "b")
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"matmul: expected arrays of at least 1 dimension, got shapes {x.shape} and {y.shape}")
    xa = x[None, :] if x.ndim == 1 else x
    ya = y[:, None] if y.ndim == 1 else y
    M, K = xa.shape[-2:]
    K2, N = ya.shape[-2:]
    if K != K2:
        raise ValueError(f"matmul: expected b with {K} rows in its last two dims (a is {x.shape}), got {y.shape}")
    try:
        batch = np.broadcast_shapes(xa.shape[:-2], ya.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions {xa.shape[:-2]} and {ya.shape[:-2]} do not broadcast") from None
    shape = batch + ((M,) if x.ndim > 1 else ()) + ((N,) if y.ndim > 1 else ())
    dtype = np.result_type(x.dtype, y.dtype)
    if out is not None:
        _B.check_out(out, shape, dtype, "matmul")
        if np.may_share_memory(out, x) or np.may_share_memory(out, y):
            raise ValueError("matmul: expected out not to share memory with a or b")
    if dtype != _B.F32 or _B.host_backend(dtype, "matmul") != "cpu":
        return _np_lin.matmul(x, y, out)
    res = out if out is not None else np.empty(shape, dtype=np.float32)
    xa, ya = _unit_rows(xa), _unit_rows(ya)
    if ya.ndim == 2:
        # No batch in b: fold a's batch dims into the rows of one GEMM when they are uniformly strided.
        xr = xa.reshape(_rows(xa), K) if xa.ndim > 2 else xa  # a view when possible, else one copy
        _C.sgemm(xr, ya, res.reshape(xr.shape[0], N))
        return out if out is not None else (res if res.ndim else res[()])
    # operands that already have the whole batch shape need no broadcast view (~3 us each for small products)
    fa = xa if xa.shape[:-2] == batch else np.broadcast_to(xa, batch + (M, K))
    fb = ya if ya.shape[:-2] == batch else np.broadcast_to(ya, batch + (K, N))
    _batched(fa, fb, res.reshape(batch + (M, N)))
    return out if out is not None else (res if res.ndim else res[()])


def _batch_stride(a):
    """The one stride (bytes) that walks all batch dims of ``a`` (..., r, c) in order, or None when they
    do not merge into one (e.g. a (4, 1) batch broadcast to (4, 8): strides (s, 0))."""
    inner = expect = None  # the innermost (non-1) batch dim's stride; the stride the next one out needs
    for n, st in zip(reversed(a.shape[:-2]), reversed(a.strides[:-2])):
        if n == 1:
            continue
        if inner is None:
            inner = st
        elif st != expect:
            return None
        expect = st * n
    return 0 if inner is None else inner


def _batched(fa, fb, res):
    """res (batch..., M, N) = fa @ fb, the operands broadcast to the whole batch shape: one sgemm_batched
    over batch views when each operand's batch dims merge into one stride (a broadcast one has stride 0);
    otherwise split along the first batch dim (a few calls instead of copying the broadcast operand:
    (4, 1, 256, 64) @ (1, 8, 64, 256) 1.25 -> 1.05-1.10 ms), or copy when that would mean many calls."""
    nb = math.prod(fa.shape[:-2])
    sa, sb = _batch_stride(fa), _batch_stride(fb)
    if (sa is None or sb is None) and fa.ndim > 3 and fa.shape[0] <= 64:
        for i in range(fa.shape[0]):
            _batched(fa[i], fb[i], res[i])
        return
    def as3(f, st):  # (nb, r, c): a view along the merged stride, else a copy
        if st is None:
            return f.reshape((nb,) + f.shape[-2:])
        return np.lib.stride_tricks.as_strided(f, (nb,) + f.shape[-2:], (st,) + f.strides[-2:])
    _C.sgemm_batched(as3(fa, sa), as3(fb, sb), res.reshape((nb,) + res.shape[-2:]))
