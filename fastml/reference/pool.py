"""Float64 references of the pooling ops: direct loops over every window (see fastml.functional.pool).

Max pooling follows torch's CPU kernel exactly: each window starts from value -inf and the index of its
first tap that is not in the left padding (per dim: start rounded up to the first non-negative tap);
then a tap replaces the running maximum when ``v > max or isnan(v)``. So ties go to the first maximum
in window (row-major) order, a NaN wins and the last NaN of a window is the one reported, and a window
whose taps all lie in the padding gives -inf. Indices are flat within each (D, H, W) plane.
"""
import math

import numpy as np

from .._pool_args import (adaptive_bounds, adaptive_geometry, check_grad_output, divisor_arg, empty_windows,
                          pool_geometry)

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "max_pool1d_backward", "max_pool2d_backward", "max_pool3d_backward",
    "avg_pool1d_backward", "avg_pool2d_backward", "avg_pool3d_backward",
    "adaptive_avg_pool1d_backward", "adaptive_avg_pool2d_backward", "adaptive_avg_pool3d_backward",
    "adaptive_max_pool1d_backward", "adaptive_max_pool2d_backward", "adaptive_max_pool3d_backward",
]


def _planes(x, g):
    return np.asarray(x, dtype=np.float64).reshape((g.planes,) + g.insz)


def _flat(pos, sz):
    return (pos[0] * sz[1] + pos[1]) * sz[2] + pos[2]


def _max_window(xp, starts, g):
    """(value, flat index) of one window of plane xp: torch's scan rule."""
    first = tuple(st if st >= 0 else st + (-st + di - 1) // di * di for st, di in zip(starts, g.d))
    best, bi = -math.inf, _flat(first, g.insz)
    for t in np.ndindex(*g.k):
        pos = tuple(st + ti * di for st, ti, di in zip(starts, t, g.d))
        if all(0 <= q < L for q, L in zip(pos, g.insz)):
            v = xp[pos]
            if v > best or math.isnan(v):
                best, bi = v, _flat(pos, g.insz)
    return best, bi


def _max_pool(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    x = np.asarray(input)
    g = pool_geometry(op, x.shape, nd, kernel_size, stride, padding, dilation, ceil_mode)
    xp = _planes(x, g)
    out = np.empty((g.planes,) + g.outsz)
    idx = np.empty((g.planes,) + g.outsz, dtype=np.int64)
    for pl in range(g.planes):
        for o in np.ndindex(*g.outsz):
            starts = tuple(oi * si - pi for oi, si, pi in zip(o, g.s, g.p))
            out[(pl,) + o], idx[(pl,) + o] = _max_window(xp[pl], starts, g)
    out, idx = out.reshape(g.out_shape), idx.reshape(g.out_shape)
    return (out, idx) if return_indices else out


def _avg_windows(g, count_include_pad, divisor):
    """Yield (out position, clipped start, clipped end, divisor) of every avg window."""
    for o in np.ndindex(*g.outsz):
        starts = [oi * si - pi for oi, si, pi in zip(o, g.s, g.p)]
        ends = [min(st + ki, L + pi) for st, ki, L, pi in zip(starts, g.k, g.insz, g.p)]
        pool_size = math.prod(e - s for s, e in zip(starts, ends))
        cs = [max(s, 0) for s in starts]
        ce = [min(e, L) for e, L in zip(ends, g.insz)]
        if divisor is not None:
            div = divisor
        elif count_include_pad:
            div = pool_size
        else:
            div = math.prod(e - s for s, e in zip(cs, ce))
        yield o, cs, ce, div


def _avg_pool(op, nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    x = np.asarray(input)
    g = pool_geometry(op, x.shape, nd, kernel_size, stride, padding, 1, ceil_mode)
    divisor = divisor_arg(divisor_override, op)
    xp = _planes(x, g)
    out = np.empty((g.planes,) + g.outsz)
    for o, cs, ce, div in _avg_windows(g, count_include_pad, divisor):
        box = xp[:, cs[0]:ce[0], cs[1]:ce[1], cs[2]:ce[2]]
        out[(slice(None),) + o] = box.reshape(g.planes, -1).sum(axis=1) / div
    return out.reshape(g.out_shape)


def _max_pool_backward(op, nd, grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices):
    x = np.asarray(input)
    g = pool_geometry(op, x.shape, nd, kernel_size, stride, padding, dilation, ceil_mode)
    gy = np.asarray(grad_output, dtype=np.float64)
    check_grad_output(op, gy.shape, g)
    if indices is None:
        _, indices = _max_pool(op, nd, x, kernel_size, stride, padding, dilation, ceil_mode, True)
    return _scatter(op, gy, np.asarray(indices), g, allow_empty=True)


def _scatter(op, gy, indices, g, allow_empty=False):
    """Indices must lie in the plane, except (max pooling) where the output's window has no tap inside the
    input: max pooling gives -inf there and (as torch) any index; its gradient goes nowhere."""
    if indices.shape != gy.shape:
        raise ValueError(f"{op}: expected indices of shape {gy.shape}, got {indices.shape}")
    plane = math.prod(g.insz)
    gi = np.zeros((g.planes, plane))
    gyp, ip = gy.reshape(g.planes, -1), indices.reshape(g.planes, -1)
    empty = empty_windows(g) if allow_empty else None
    empty = np.zeros(gyp.shape[1], bool) if empty is None else empty.reshape(-1)
    for pl in range(g.planes):
        for j in range(gyp.shape[1]):
            i = int(ip[pl, j])
            if not 0 <= i < plane:
                if empty[j]:
                    continue
                raise ValueError(f"{op}: expected indices in [0, {plane}), got {i}")
            gi[pl, i] += gyp[pl, j]
    return gi.reshape(g.in_shape)


def _avg_pool_backward(op, nd, grad_output, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                       divisor_override):
    x = np.asarray(input)
    g = pool_geometry(op, x.shape, nd, kernel_size, stride, padding, 1, ceil_mode)
    divisor = divisor_arg(divisor_override, op)
    gy = np.asarray(grad_output, dtype=np.float64)
    check_grad_output(op, gy.shape, g)
    gyp = gy.reshape((g.planes,) + g.outsz)
    gi = np.zeros((g.planes,) + g.insz)
    for o, cs, ce, div in _avg_windows(g, count_include_pad, divisor):
        gi[:, cs[0]:ce[0], cs[1]:ce[1], cs[2]:ce[2]] += (gyp[(slice(None),) + o] / div)[:, None, None, None]
    return gi.reshape(g.in_shape)


def _adaptive_boxes(g):
    bounds = [adaptive_bounds(L, o) for L, o in zip(g.insz, g.outsz)]
    for o in np.ndindex(*g.outsz):
        yield o, [bounds[i][o[i]] for i in range(3)]


def _adaptive_avg(op, nd, input, output_size):
    x = np.asarray(input)
    g = adaptive_geometry(op, x.shape, nd, output_size)
    xp = _planes(x, g)
    out = np.empty((g.planes,) + g.outsz)
    for o, b in _adaptive_boxes(g):
        box = xp[:, b[0][0]:b[0][1], b[1][0]:b[1][1], b[2][0]:b[2][1]].reshape(g.planes, -1)
        out[(slice(None),) + o] = box.sum(axis=1) / box.shape[1]
    return out.reshape(g.out_shape)


def _adaptive_max(op, nd, input, output_size, return_indices):
    x = np.asarray(input)
    g = adaptive_geometry(op, x.shape, nd, output_size)
    xp = _planes(x, g)
    out = np.empty((g.planes,) + g.outsz)
    idx = np.empty((g.planes,) + g.outsz, dtype=np.int64)
    for pl in range(g.planes):
        for o, b in _adaptive_boxes(g):
            best, bi = -math.inf, _flat(tuple(lo for lo, _ in b), g.insz)
            for pos in np.ndindex(*(hi - lo for lo, hi in b)):
                pos = tuple(q + lo for q, (lo, _) in zip(pos, b))
                v = xp[(pl,) + pos]
                if v > best or math.isnan(v):
                    best, bi = v, _flat(pos, g.insz)
            out[(pl,) + o], idx[(pl,) + o] = best, bi
    out, idx = out.reshape(g.out_shape), idx.reshape(g.out_shape)
    return (out, idx) if return_indices else out


def _adaptive_avg_backward(op, nd, grad_output, input):
    x = np.asarray(input)
    gy = np.asarray(grad_output, dtype=np.float64)
    g = adaptive_geometry(op, x.shape, nd, tuple(gy.shape[-nd:]) if gy.ndim >= nd else 1)
    check_grad_output(op, gy.shape, g)
    gyp = gy.reshape((g.planes,) + g.outsz)
    gi = np.zeros((g.planes,) + g.insz)
    for o, b in _adaptive_boxes(g):
        n = math.prod(hi - lo for lo, hi in b)
        gi[:, b[0][0]:b[0][1], b[1][0]:b[1][1], b[2][0]:b[2][1]] += (gyp[(slice(None),) + o] / n)[:, None, None, None]
    return gi.reshape(g.in_shape)


def _adaptive_max_backward(op, nd, grad_output, input, indices):
    x = np.asarray(input)
    gy = np.asarray(grad_output, dtype=np.float64)
    g = adaptive_geometry(op, x.shape, nd, tuple(gy.shape[-nd:]) if gy.ndim >= nd else 1)
    check_grad_output(op, gy.shape, g)
    return _scatter(op, gy, np.asarray(indices), g)


def _make(nd):
    def max_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        return _max_pool(f"max_pool{nd}d", nd, input, kernel_size, stride, padding, dilation, ceil_mode,
                         return_indices)

    def max_pool_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                          indices=None):
        return _max_pool_backward(f"max_pool{nd}d_backward", nd, grad_output, input, kernel_size, stride, padding,
                                  dilation, ceil_mode, indices)

    def avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        return _avg_pool(f"avg_pool{nd}d", nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                         divisor_override)

    def avg_pool_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                          count_include_pad=True, divisor_override=None):
        return _avg_pool_backward(f"avg_pool{nd}d_backward", nd, grad_output, input, kernel_size, stride, padding,
                                  ceil_mode, count_include_pad, divisor_override)

    def adaptive_avg(input, output_size):
        return _adaptive_avg(f"adaptive_avg_pool{nd}d", nd, input, output_size)

    def adaptive_max(input, output_size, return_indices=False):
        return _adaptive_max(f"adaptive_max_pool{nd}d", nd, input, output_size, return_indices)

    def adaptive_avg_backward(grad_output, input):
        return _adaptive_avg_backward(f"adaptive_avg_pool{nd}d_backward", nd, grad_output, input)

    def adaptive_max_backward(grad_output, input, indices):
        return _adaptive_max_backward(f"adaptive_max_pool{nd}d_backward", nd, grad_output, input, indices)

    return (max_pool, max_pool_backward, avg_pool, avg_pool_backward, adaptive_avg, adaptive_max,
            adaptive_avg_backward, adaptive_max_backward)


(max_pool1d, max_pool1d_backward, _avg_pool1d, avg_pool1d_backward, adaptive_avg_pool1d, adaptive_max_pool1d,
 adaptive_avg_pool1d_backward, adaptive_max_pool1d_backward) = _make(1)
(max_pool2d, max_pool2d_backward, avg_pool2d, avg_pool2d_backward, adaptive_avg_pool2d, adaptive_max_pool2d,
 adaptive_avg_pool2d_backward, adaptive_max_pool2d_backward) = _make(2)
(max_pool3d, max_pool3d_backward, avg_pool3d, avg_pool3d_backward, adaptive_avg_pool3d, adaptive_max_pool3d,
 adaptive_avg_pool3d_backward, adaptive_max_pool3d_backward) = _make(3)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """1-d average pooling (torch's avg_pool1d has no divisor_override)."""
    return _avg_pool1d(input, kernel_size, stride, padding, ceil_mode, count_include_pad)
