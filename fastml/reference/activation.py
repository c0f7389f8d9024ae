"""Float64 references of the elementwise activations (see fastml.functional.activation for the docs)."""
import math

import numpy as np

from ._special import normal_cdf

__all__ = [
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "sigmoid", "sigmoid_backward",
    "tanh", "tanh_backward", "gelu", "gelu_backward",
    "softmax", "log_softmax", "softmax_backward", "log_softmax_backward",
]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def relu(input, inplace=False):
    x = _f64(input)
    return np.where(x < 0, 0.0, x)  # NaN is not < 0, so it propagates (as torch.relu)


def relu_backward(grad_output, input):
    g, x = _f64(grad_output), _f64(input)
    return np.where(x <= 0, 0.0, g)  # torch threshold_backward: x <= 0 -> 0, else (NaN included) grad


def leaky_relu(input, negative_slope=0.01, inplace=False):
    x = _f64(input)
    return np.where(x > 0, x, x * negative_slope)


def leaky_relu_backward(grad_output, input, negative_slope=0.01):
    g, x = _f64(grad_output), _f64(input)
    return np.where(x > 0, g, g * negative_slope)


def _stable_sigmoid(x):
    out = np.empty_like(x)
    pos = x >= 0
    neg = ~pos & ~np.isnan(x)
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[neg])
    out[neg] = e / (1.0 + e)
    out[np.isnan(x)] = np.nan
    return out


def sigmoid(input):
    return _stable_sigmoid(_f64(input))


def sigmoid_backward(grad_output, output):
    g, y = _f64(grad_output), _f64(output)
    return g * y * (1.0 - y)


def tanh(input):
    return np.tanh(_f64(input))


def tanh_backward(grad_output, output):
    g, y = _f64(grad_output), _f64(output)
    return g * (1.0 - y * y)


def _gelu_tanh_gate(x):
    u = _SQRT_2_OVER_PI * (x + _GELU_C * x**3)
    with np.errstate(over="ignore"):
        return _stable_sigmoid(2.0 * u)  # 0.5 (1 + tanh u) = sigmoid(2u), no cancellation for x << 0


def _check_approximate(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: expected approximate in ('none', 'tanh'), got {approximate!r}")


def gelu(input, approximate="none"):
    _check_approximate(approximate)
    x = _f64(input)
    with np.errstate(invalid="ignore"):  # gelu(-inf) = -inf * 0 = NaN, as in torch
        if approximate == "tanh":
            return x * _gelu_tanh_gate(x)
        return x * normal_cdf(x)


def gelu_backward(grad_output, input, approximate="none"):
    _check_approximate(approximate)
    g, x = _f64(grad_output), _f64(input)
    if approximate == "tanh":
        s = _gelu_tanh_gate(x)
        du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * x * x)
        return g * (s + x * 2.0 * s * (1.0 - s) * du)
    with np.errstate(under="ignore"):
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return g * (normal_cdf(x) + x * pdf)


# ---- softmax family --------------------------------------------------------------------------------

def _norm_dim(dim, ndim, op):
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: expected an integer dim, got {type(dim).__name__}")
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    if not lo <= dim <= hi:
        raise ValueError(f"{op}: expected dim in [{lo}, {hi}], got {dim}")
    return int(dim) % max(ndim, 1)


def _shifted(x, dim):
    """(x - max, log(sum(exp(x - max)))) along dim; NaN / all -inf rows give NaN as in torch."""
    m = np.max(x, axis=dim, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf = NaN, propagated on purpose
        z = x - m
        s = np.sum(np.exp(z), axis=dim, keepdims=True)
        with np.errstate(divide="ignore"):
            ls = np.log(s)
    return z, s, ls


def softmax(input, dim=-1):
    """exp(x - max) / sum(exp(x - max)) along ``dim`` (float64)."""
    x = _f64(input)
    d = _norm_dim(dim, x.ndim, "softmax")
    if x.size == 0:
        return x.copy()
    if x.ndim == 0:
        return softmax(x.reshape(1), 0).reshape(())
    z, s, _ = _shifted(x, d)
    with np.errstate(invalid="ignore"):
        return np.exp(z) / s


def log_softmax(input, dim=-1):
    """(x - max) - log(sum(exp(x - max))) along ``dim`` (float64)."""
    x = _f64(input)
    d = _norm_dim(dim, x.ndim, "log_softmax")
    if x.size == 0:
        return x.copy()
    if x.ndim == 0:
        return log_softmax(x.reshape(1), 0).reshape(())
    z, _, ls = _shifted(x, d)
    with np.errstate(invalid="ignore"):
        return z - ls


def softmax_backward(grad_output, output, dim=-1):
    """grad_input = y * (g - sum(g * y)) along ``dim``, from the softmax output y."""
    g, y = _f64(grad_output), _f64(output)
    d = _norm_dim(dim, y.ndim, "softmax_backward")
    if y.ndim == 0:
        return softmax_backward(g.reshape(1), y.reshape(1), 0).reshape(())
    with np.errstate(invalid="ignore"):
        return y * (g - np.sum(g * y, axis=d, keepdims=True))


def log_softmax_backward(grad_output, output, dim=-1):
    """grad_input = g - exp(y) * sum(g) along ``dim``, from the log_softmax output y."""
    g, y = _f64(grad_output), _f64(output)
    d = _norm_dim(dim, y.ndim, "log_softmax_backward")
    if y.ndim == 0:
        return log_softmax_backward(g.reshape(1), y.reshape(1), 0).reshape(())
    with np.errstate(invalid="ignore"):
        return g - np.exp(y) * np.sum(g, axis=d, keepdims=True)
