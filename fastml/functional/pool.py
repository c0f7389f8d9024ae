"""Max, average and adaptive pooling and their backward passes (torch.nn.functional names and numerics).

Layouts: (N, C, L), (N, C, H, W), (N, C, D, H, W), or the same without N (unbatched, as torch). float32
runs the compiled kernels (threaded over the N*C planes), float64 the NumPy backend in float64. A
strided input (e.g. a channels-last NHWC buffer viewed as NCHW) is copied once at the boundary.

Semantics (all torch's): output size ``floor((L + 2p - d(k-1) - 1) / s) + 1`` (ceil with ``ceil_mode``,
where the last window must start inside the input or the left padding); ``padding <= kernel_size // 2``;
avg_pool3d (forward and backward) also wants every input spatial size >= the kernel size, as torch;
max pooling takes ties to the first maximum in window order, a NaN wins (the last NaN of a window is the
one reported), and ``indices`` are flat within each (D, H, W) plane, int64 (a window lying wholly in the
padding, possible with dilation, gives -inf and, as torch, an index that may fall outside the plane: the
backward accepts an out-of-plane index only for such a window and drops its gradient); average pooling divides by
``divisor_override``, else by the window size clipped to input + padding (``count_include_pad=True``)
or by the number of input elements in the window; adaptive window i spans
``[floor(i L / out), ceil((i + 1) L / out))`` and ``None`` in output_size keeps that input size.

Every forward accepts ``out=`` for its values (C-contiguous, writeable, exact dtype and shape); the
backward passes accept ``out=`` for grad_input. Bad arguments raise ValueError / TypeError before
anything is written.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import _backend as _B
from .._backend import _C
from .._numpy import pool as _np_pool
from .._pool_args import adaptive_geometry, check_grad_output, divisor_arg, pool_geometry

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "max_pool1d_backward", "max_pool2d_backward", "max_pool3d_backward",
    "avg_pool1d_backward", "avg_pool2d_backward", "avg_pool3d_backward",
    "adaptive_avg_pool1d_backward", "adaptive_avg_pool2d_backward", "adaptive_avg_pool3d_backward",
    "adaptive_max_pool1d_backward", "adaptive_max_pool2d_backward", "adaptive_max_pool3d_backward",
]

# kinds of the compiled entry points (csrc/bind/bind_pool.cpp)
_MAX, _AVG, _ADAPTIVE_AVG, _ADAPTIVE_MAX = range(4)


def _geom_list(g):
    return (g.planes, *g.insz, *g.outsz, *g.k, *g.s, *g.p, *g.d)


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


@functools.lru_cache(maxsize=512)
def _pool_geometry_cached(op, shape, nd, kernel_size, stride, padding, dilation, ceil_mode):
    g = pool_geometry(op, shape, nd, kernel_size, stride, padding, dilation, ceil_mode)
    return g, _geom_list(g), tuple(g.out_shape)


@functools.lru_cache(maxsize=512)
def _adaptive_geometry_cached(op, shape, nd, output_size):
    g = adaptive_geometry(op, shape, nd, output_size)
    return g, _geom_list(g), tuple(g.out_shape)


def _adaptive(op, shape, nd, output_size):
    try:
        return _adaptive_geometry_cached(op, tuple(shape), nd, _hashable(output_size))
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        g = adaptive_geometry(op, shape, nd, output_size)
        return g, _geom_list(g), tuple(g.out_shape)


def _geometry(op, shape, nd, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    """pool_geometry, memoised per (shape, arguments): the per-call cost of a repeated layer is a lookup.
    Returns (geometry, the 19 ints the compiled entry takes, output shape)."""
    try:
        return _pool_geometry_cached(op, tuple(shape), nd, _hashable(kernel_size), _hashable(stride),
                                     _hashable(padding), _hashable(dilation), bool(ceil_mode))
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        g = pool_geometry(op, shape, nd, kernel_size, stride, padding, dilation, ceil_mode)
        return g, _geom_list(g), tuple(g.out_shape)


def _input(op, input, arg="input"):
    if _B.is_device_array(input):
        raise TypeError(f"{op}: no CUDA pooling kernels yet; pass a host (NumPy) array for {arg}")
    return _B.as_float_array(input, op, arg)


def _finish_numpy(op, res, out, shape, dtype):
    res = res.reshape(shape)
    if out is None:
        return res
    _B.check_out(out, shape, dtype, op)
    out[...] = res
    return out


def _forward(op, kind, x, g, return_indices=False, count_include_pad=True, divisor=None, out=None):
    if _B.host_backend(x.dtype, op) == "cpu":
        return _C.pool_forward(kind, x, _geom_list(g), tuple(g.out_shape), bool(return_indices),
                               bool(count_include_pad), divisor or 0, out)
    if out is not None:
        _B.check_out(out, g.out_shape, x.dtype, op)
        if np.shares_memory(out, x):
            raise ValueError(f"{op}: out must not share memory with input")
    xp = x.reshape((g.planes,) + g.insz)
    idx = None
    if kind == _MAX:
        y, idx = _np_pool.max_pool(xp, g, return_indices)
    elif kind == _AVG:
        y = _np_pool.avg_pool(xp, g, count_include_pad, divisor)
    elif kind == _ADAPTIVE_AVG:
        y = _np_pool.adaptive_avg(xp, g)
    else:
        y, idx = _np_pool.adaptive_max(xp, g)
    y = _finish_numpy(op, y, out, g.out_shape, x.dtype)
    if return_indices:
        return y, idx.reshape(g.out_shape)
    return y


def _indices(op, indices, shape):
    i = np.asarray(indices)
    if i.dtype.kind not in "iu":
        raise TypeError(f"{op}: expected an integer (int64) array for indices, got {i.dtype}")
    if i.shape != tuple(shape):
        raise ValueError(f"{op}: expected indices of shape {tuple(shape)}, got {i.shape}")
    return i.astype(np.int64, copy=False)


def _backward(op, kind, grad_output, input, g, indices=None, count_include_pad=True, divisor=None, out=None):
    gy = _input(op, grad_output, "grad_output")
    x = np.asarray(input) if not isinstance(input, np.ndarray) else input
    if gy.dtype != x.dtype:
        raise TypeError(f"{op}: expected grad_output of dtype {x.dtype} (the input's), got {gy.dtype}")
    check_grad_output(op, gy.shape, g)
    if indices is not None:
        indices = _indices(op, indices, g.out_shape)
    if _B.host_backend(gy.dtype, op) == "cpu":
        return _C.pool_backward(kind, gy, x if indices is None else None, indices, _geom_list(g), tuple(g.in_shape),
                                bool(count_include_pad), divisor or 0, out)
    if out is not None:
        _B.check_out(out, g.in_shape, gy.dtype, op)
        if np.shares_memory(out, gy) or np.shares_memory(out, x):
            raise ValueError(f"{op}: out must not share memory with an input")
    gyp = gy.reshape((g.planes,) + g.outsz)
    if kind in (_MAX, _ADAPTIVE_MAX):
        if indices is None:
            _, indices = _np_pool.max_pool(x.reshape((g.planes,) + g.insz), g, True)
        # windows wholly in the padding (value -inf) may report an index outside the plane: no gradient
        gx = _np_pool.scatter(gyp, indices, g, op, allow_empty=kind == _MAX)
    elif kind == _AVG:
        gx = _np_pool.avg_pool_backward(gyp, g, count_include_pad, divisor)
    else:
        gx = _np_pool.adaptive_avg_backward(gyp, g)
    return _finish_numpy(op, gx, out, g.in_shape, gy.dtype)


def _make(nd):
    sfx = f"{nd}d"

    def max_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
                 *, out=None):
        op = f"max_pool{sfx}"
        if _B.cpu_fast_path(input):
            _, gl, osh = _geometry(op, input.shape, nd, kernel_size, stride, padding, dilation, ceil_mode)
            return _C.pool_forward(_MAX, input, gl, osh, bool(return_indices), True, 0, out)
        x = _input(op, input)
        g = _geometry(op, x.shape, nd, kernel_size, stride, padding, dilation, ceil_mode)[0]
        return _forward(op, _MAX, x, g, return_indices=return_indices, out=out)

    def avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None, *, out=None):
        op = f"avg_pool{sfx}"
        divisor = divisor_arg(divisor_override, op)
        if _B.cpu_fast_path(input):
            _, gl, osh = _geometry(op, input.shape, nd, kernel_size, stride, padding, 1, ceil_mode)
            return _C.pool_forward(_AVG, input, gl, osh, False, bool(count_include_pad), divisor or 0, out)
        x = _input(op, input)
        g = _geometry(op, x.shape, nd, kernel_size, stride, padding, 1, ceil_mode)[0]
        return _forward(op, _AVG, x, g, count_include_pad=count_include_pad, divisor=divisor, out=out)

    def adaptive_avg_pool(input, output_size, *, out=None):
        op = f"adaptive_avg_pool{sfx}"
        if _B.cpu_fast_path(input):
            _, gl, osh = _adaptive(op, input.shape, nd, output_size)
            return _C.pool_forward(_ADAPTIVE_AVG, input, gl, osh, False, True, 0, out)
        x = _input(op, input)
        return _forward(op, _ADAPTIVE_AVG, x, _adaptive(op, x.shape, nd, output_size)[0], out=out)

    def adaptive_max_pool(input, output_size, return_indices=False, *, out=None):
        op = f"adaptive_max_pool{sfx}"
        x = _input(op, input)
        return _forward(op, _ADAPTIVE_MAX, x, _adaptive(op, x.shape, nd, output_size)[0],
                        return_indices=return_indices, out=out)

    def max_pool_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                          indices=None, *, out=None):
        op = f"max_pool{sfx}_backward"
        x = _input(op, input)
        g = _geometry(op, x.shape, nd, kernel_size, stride, padding, dilation, ceil_mode)[0]
        return _backward(op, _MAX, grad_output, x, g, indices=indices, out=out)

    def avg_pool_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                          count_include_pad=True, divisor_override=None, *, out=None):
        op = f"avg_pool{sfx}_backward"
        x = _input(op, input)
        g = _geometry(op, x.shape, nd, kernel_size, stride, padding, 1, ceil_mode)[0]
        return _backward(op, _AVG, grad_output, x, g, count_include_pad=count_include_pad,
                         divisor=divisor_arg(divisor_override, op), out=out)

    def _adaptive_g(op, grad_output, x):
        gs = np.shape(grad_output)
        if len(gs) != x.ndim:
            raise ValueError(f"{op}: expected grad_output with {x.ndim} dims (the input's), got shape {tuple(gs)}")
        return _adaptive(op, x.shape, nd, tuple(gs[-nd:]))[0]

    def adaptive_avg_pool_backward(grad_output, input, *, out=None):
        op = f"adaptive_avg_pool{sfx}_backward"
        x = _input(op, input)
        return _backward(op, _ADAPTIVE_AVG, grad_output, x, _adaptive_g(op, grad_output, x), out=out)

    def adaptive_max_pool_backward(grad_output, input, indices, *, out=None):
        op = f"adaptive_max_pool{sfx}_backward"
        x = _input(op, input)
        if indices is None:
            raise ValueError(f"{op}: indices are required (from adaptive_max_pool{sfx}(..., return_indices=True))")
        return _backward(op, _ADAPTIVE_MAX, grad_output, x, _adaptive_g(op, grad_output, x), indices=indices,
                         out=out)

    fns = (max_pool, avg_pool, adaptive_avg_pool, adaptive_max_pool, max_pool_backward, avg_pool_backward,
           adaptive_avg_pool_backward, adaptive_max_pool_backward)
    names = ("max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool", "max_pool_backward",
             "avg_pool_backward", "adaptive_avg_pool_backward", "adaptive_max_pool_backward")
    for f, n in zip(fns, names):
        base, _, rest = n.partition("_backward")
        f.__name__ = f.__qualname__ = f"{base}{sfx}" + ("_backward" if n.endswith("_backward") else "")
        f.__doc__ = _DOCS[n].format(nd=nd, sfx=sfx)
    return fns


_DOCS = {
    "max_pool": "{nd}-d max pooling (torch.nn.functional.max_pool{sfx}); returns y, or (y, indices) with "
                "return_indices=True (int64, flat within each spatial plane).",
    "avg_pool": "{nd}-d average pooling (torch.nn.functional.avg_pool{sfx}).",
    "adaptive_avg_pool": "{nd}-d adaptive average pooling (torch.nn.functional.adaptive_avg_pool{sfx}); "
                         "output_size 1 is global average pooling.",
    "adaptive_max_pool": "{nd}-d adaptive max pooling (torch.nn.functional.adaptive_max_pool{sfx}).",
    "max_pool_backward": "grad_input of max_pool{sfx}: grad_output scattered to the argmax of each window "
                         "(`indices` from the forward, or recomputed from `input` when None).",
    "avg_pool_backward": "grad_input of avg_pool{sfx}: each window adds grad_output / divisor to its inputs.",
    "adaptive_avg_pool_backward": "grad_input of adaptive_avg_pool{sfx}.",
    "adaptive_max_pool_backward": "grad_input of adaptive_max_pool{sfx}: grad_output scattered to `indices`.",
}

(max_pool1d, _avg_pool1d, adaptive_avg_pool1d, adaptive_max_pool1d, max_pool1d_backward, avg_pool1d_backward,
 adaptive_avg_pool1d_backward, adaptive_max_pool1d_backward) = _make(1)
(max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d, max_pool2d_backward, avg_pool2d_backward,
 adaptive_avg_pool2d_backward, adaptive_max_pool2d_backward) = _make(2)
(max_pool3d, avg_pool3d, adaptive_avg_pool3d, adaptive_max_pool3d, max_pool3d_backward, avg_pool3d_backward,
 adaptive_avg_pool3d_backward, adaptive_max_pool3d_backward) = _make(3)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, *, out=None):
    """1-d average pooling (torch.nn.functional.avg_pool1d, which has no divisor_override)."""
    return _avg_pool1d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, out=out)
