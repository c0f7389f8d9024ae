"""NumPy backend of the activations. f(x, out, param) -> out; computes in x.dtype."""
import math

import numpy as np

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715

_erfc_impl = None


def _erfc(z):
    # scipy's erfc is vectorised (libm's through np.vectorize is exact but slow). Imported on first use:
    # scipy.special takes ~0.2 s to import and starts a second OpenBLAS thread pool.
    global _erfc_impl
    if _erfc_impl is None:
        try:
            from scipy.special import erfc as _erfc_impl
        except ImportError:  # pragma: no cover - depends on the environment
            from ..reference._special import erfc as _erfc_impl
    return _erfc_impl(z)


def _alloc(x, out):
    return np.empty_like(x) if out is None else out


def _sigmoid(x, out):
    # 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below: no overflow for any finite x
    y = _alloc(x, out)
    e = np.exp(-np.abs(x))
    np.divide(1.0, 1.0 + e, out=y, where=x >= 0)
    np.divide(e, 1.0 + e, out=y, where=~(x >= 0))
    y[np.isnan(x)] = np.nan
    return y


def relu(x, out, param):
    return _where(x < 0, x.dtype.type(0), x, out)


def _where(cond, a, b, out):
    r = np.where(cond, a, b).astype(b.dtype if isinstance(b, np.ndarray) else a.dtype, copy=False)
    if out is None:
        return r
    out[...] = r
    return out


def leaky_relu(x, out, slope):
    return _where(x > 0, x, x * x.dtype.type(slope), out)


def sigmoid(x, out, param):
    return _sigmoid(x, out)


def tanh(x, out, param):
    return np.tanh(x, out=_alloc(x, out))


def gelu(x, out, param):
    x64 = x.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):  # gelu(-inf) = -inf * 0 = NaN, as in torch
        y = x64 * (0.5 * _erfc(-x64 / math.sqrt(2.0)))
    return _store(y, x, out)


def _gelu_tanh_gate(x64):
    with np.errstate(over="ignore"):
        return _sigmoid(2.0 * _SQRT_2_OVER_PI * (x64 + _GELU_C * x64**3), None)


def gelu_tanh(x, out, param):
    x64 = x.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        return _store(x64 * _gelu_tanh_gate(x64), x, out)


def _store(y64, like, out):
    if out is None:
        return y64.astype(like.dtype, copy=False)
    out[...] = y64
    return out


def relu_backward(g, x, out, param):
    return _where(x <= 0, g.dtype.type(0), g, out)


def leaky_relu_backward(g, x, out, slope):
    return _where(x > 0, g, g * g.dtype.type(slope), out)


def sigmoid_backward(g, y, out, param):
    return np.multiply(g, y * (1 - y), out=_alloc(g, out))


def tanh_backward(g, y, out, param):
    return np.multiply(g, 1 - y * y, out=_alloc(g, out))


def gelu_backward(g, x, out, param):
    x64 = x.astype(np.float64, copy=False)
    with np.errstate(under="ignore"):
        pdf = np.exp(-0.5 * x64 * x64) / math.sqrt(2.0 * math.pi)
    d = 0.5 * _erfc(-x64 / math.sqrt(2.0)) + x64 * pdf
    return _store(g * d, g, out)


def gelu_tanh_backward(g, x, out, param):
    x64 = x.astype(np.float64, copy=False)
    s = _gelu_tanh_gate(x64)
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * x64 * x64)
    return _store(g * (s + x64 * 2.0 * s * (1.0 - s) * du), g, out)


# Indexed like the compiled module's activation kinds (csrc/ops/activation/activation.h).
FORWARD = (relu, leaky_relu, sigmoid, tanh, gelu, gelu_tanh)
BACKWARD = (relu_backward, leaky_relu_backward, sigmoid_backward, tanh_backward, gelu_backward, gelu_tanh_backward)


# ---- softmax family: f(x, dim, out) with dim already normalised -----------------------------------

def norm_dim(dim, ndim, op):
    """torch's rule: an integer in [-max(ndim, 1), max(ndim, 1) - 1]; returns it as a non-negative axis."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: expected an integer dim, got {type(dim).__name__}")
    span = max(ndim, 1)
    if not -span <= dim < span:
        raise ValueError(f"{op}: expected dim in [{-span}, {span - 1}], got {dim}")
    return int(dim) % span


def _rows(x, dim):
    return (x.reshape(1), 0) if x.ndim == 0 else (x, dim)


def softmax(x, dim, log, out):
    """exp(x - m) / sum exp(x - m) (or (x - m) - log sum) along dim, in x.dtype."""
    y = _alloc(x, out)
    if x.size == 0:
        return y
    xr, d = _rows(x, dim)
    yr = y.reshape(xr.shape)
    m = np.max(xr, axis=d, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # NaN / all -inf rows give NaN
        z = xr - m
        if log:
            s = np.sum(np.exp(z), axis=d, keepdims=True)
            np.subtract(z, np.log(s), out=yr)
        else:
            np.exp(z, out=yr)
            np.divide(yr, np.sum(yr, axis=d, keepdims=True), out=yr)
    return y


def softmax_backward(g, y, dim, log, out):
    """softmax: y * (g - sum g*y); log_softmax: g - exp(y) * sum g (along dim), in g.dtype."""
    dx = _alloc(g, out)
    if g.size == 0:
        return dx
    gr, d = _rows(g, dim)
    yr = y.reshape(gr.shape)
    dxr = dx.reshape(gr.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        if log:
            s = np.sum(gr, axis=d, keepdims=True)
            np.subtract(gr, np.exp(yr) * s, out=dxr)
        else:
            s = np.sum(gr * yr, axis=d, keepdims=True)
            np.multiply(gr - s, yr, out=dxr)
    return dx
