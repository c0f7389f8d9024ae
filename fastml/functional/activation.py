"""Elementwise activations and their backward passes (torch.nn.functional names and numerics).

All functions take any array ``np.asarray`` accepts (float32 runs the compiled kernels, float64 the
NumPy backend in float64, CUDA arrays the CUDA module), return an array of the input's dtype and
shape, and accept ``out=`` (C-contiguous, writeable, exact dtype and shape; may be the input itself).
NaN and +-Inf propagate as in torch.
"""
from __future__ import annotations

import numpy as np

from .. import _backend as _B
from .._backend import _C
from .._numpy import activation as _np_act

__all__ = [
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "sigmoid", "sigmoid_backward",
    "tanh", "tanh_backward", "gelu", "gelu_backward",
    "softmax", "log_softmax", "softmax_backward", "log_softmax_backward",
]

# Kinds of the compiled kernels (csrc/ops/activation/activation.h: ActKind).
_RELU, _LEAKY_RELU, _SIGMOID, _TANH, _GELU, _GELU_TANH = range(6)


def _forward(op, kind, input, out, param):
    if _B.is_device_array(input):
        return _B.cuda_module().activation_forward(kind, input, out, param)
    x = _B.as_float_array(input, op, "input")
    if _B.host_backend(x.dtype, op) == "cpu":
        return _C.activation_forward(kind, x, out, param)
    if out is not None:
        _B.check_out(out, x.shape, x.dtype, op)
        _B.check_out_overlap(out, op, exact_ok=(("input", x),))
    return _np_act.FORWARD[kind](_B.unalias(x, out), out, param)


def _backward(op, kind, grad_output, saved, saved_name, out, param):
    if _B.is_device_array(grad_output):
        return _B.cuda_module().activation_backward(kind, grad_output, saved, out, param)
    g = _B.as_float_array(grad_output, op, "grad_output")
    s = _B.as_float_array(saved, op, saved_name)
    if g.shape != s.shape:
        raise ValueError(f"{op}: expected grad_output of shape {s.shape} (the {saved_name}'s), got {g.shape}")
    if g.dtype != s.dtype:
        raise TypeError(f"{op}: expected {saved_name} of dtype {g.dtype} (grad_output's), got {s.dtype}")
    if _B.host_backend(g.dtype, op) == "cpu":
        return _C.activation_backward(kind, g, s, out, param)
    if out is not None:
        _B.check_out(out, g.shape, g.dtype, op)
        _B.check_out_overlap(out, op, exact_ok=(("grad_output", g), (saved_name, s)))
    return _np_act.BACKWARD[kind](_B.unalias(g, out), _B.unalias(s, out), out, param)


def _inplace_out(input, op):
    if not isinstance(input, np.ndarray) and not _B.is_device_array(input):
        raise TypeError(f"{op}: inplace=True needs an array to write to, got {type(input).__name__}")
    return input


def relu(input, inplace=False, *, out=None):
    """Rectified linear unit, ``y = max(x, 0)``; NaN propagates (as ``torch.relu``).

    Shapes: input (*) -> output (*), same dtype. ``inplace=True`` writes into ``input`` (which must be a
    C-contiguous writeable float array) and returns it.
    """
    if inplace:
        out = _inplace_out(input, "relu")
    if _B.cpu_fast_path(input):
        return _C.activation_forward(_RELU, input, out, 0.0)
    return _forward("relu", _RELU, input, out, 0.0)


def relu_backward(grad_output, input, *, out=None):
    """Gradient of relu: ``grad_input = grad_output * (input > 0)``.

    As torch's ``threshold_backward``: positions with ``input <= 0`` get 0, all others (NaN input
    included) pass ``grad_output`` through. Shapes: grad_output (*), input (*) -> grad_input (*).
    """
    if _B.cpu_fast_path(grad_output) and _B.cpu_fast_path(input):
        return _C.activation_backward(_RELU, grad_output, input, out, 0.0)
    return _backward("relu_backward", _RELU, grad_output, input, "input", out, 0.0)


def leaky_relu(input, negative_slope=0.01, inplace=False, *, out=None):
    """Leaky ReLU, ``y = x if x > 0 else negative_slope * x``. Shapes: (*) -> (*)."""
    if inplace:
        out = _inplace_out(input, "leaky_relu")
    slope = float(negative_slope)
    if _B.cpu_fast_path(input):
        return _C.activation_forward(_LEAKY_RELU, input, out, slope)
    return _forward("leaky_relu", _LEAKY_RELU, input, out, slope)


def leaky_relu_backward(grad_output, input, negative_slope=0.01, *, out=None):
    """Gradient of leaky_relu: ``grad_output * (1 if input > 0 else negative_slope)``."""
    slope = float(negative_slope)
    if _B.cpu_fast_path(grad_output) and _B.cpu_fast_path(input):
        return _C.activation_backward(_LEAKY_RELU, grad_output, input, out, slope)
    return _backward("leaky_relu_backward", _LEAKY_RELU, grad_output, input, "input", out, slope)


def sigmoid(input, *, out=None):
    """Logistic sigmoid, ``y = 1 / (1 + exp(-x))``, computed without overflow for any x.

    float32 kernels are within 3 ulp of the exact value. Shapes: (*) -> (*).
    """
    if _B.cpu_fast_path(input):
        return _C.activation_forward(_SIGMOID, input, out, 0.0)
    return _forward("sigmoid", _SIGMOID, input, out, 0.0)


def sigmoid_backward(grad_output, output, *, out=None):
    """Gradient of sigmoid from its *output* y: ``grad_input = grad_output * y * (1 - y)``."""
    if _B.cpu_fast_path(grad_output) and _B.cpu_fast_path(output):
        return _C.activation_backward(_SIGMOID, grad_output, output, out, 0.0)
    return _backward("sigmoid_backward", _SIGMOID, grad_output, output, "output", out, 0.0)


def tanh(input, *, out=None):
    """Hyperbolic tangent. float32 kernels are within 3 ulp. Shapes: (*) -> (*)."""
    if _B.cpu_fast_path(input):
        return _C.activation_forward(_TANH, input, out, 0.0)
    return _forward("tanh", _TANH, input, out, 0.0)


def tanh_backward(grad_output, output, *, out=None):
    """Gradient of tanh from its *output* y: ``grad_input = grad_output * (1 - y^2)``."""
    if _B.cpu_fast_path(grad_output) and _B.cpu_fast_path(output):
        return _C.activation_backward(_TANH, grad_output, output, out, 0.0)
    return _backward("tanh_backward", _TANH, grad_output, output, "output", out, 0.0)


def _gelu_kind(approximate, op):
    if approximate == "none":
        return _GELU
    if approximate == "tanh":
        return _GELU_TANH
    raise ValueError(f"{op}: expected approximate in ('none', 'tanh'), got {approximate!r}")


def gelu(input, approximate="none", *, out=None):
    """Gaussian error linear unit (Hendrycks & Gimpel, 2016).

    ``approximate='none'``: ``y = x * Phi(x) = x/2 * erfc(-x/sqrt(2))``;
    ``approximate='tanh'``: ``y = x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, evaluated as
    ``x * sigmoid(2u)`` so that it stays accurate in relative terms for x << 0. Shapes: (*) -> (*).

    Differences from torch's float32 CPU kernels: the exact form is accurate to a few ulp over the whole
    range (torch's loses most digits for x < -3) and ``gelu(+inf) = +inf`` (torch gives NaN); both
    forms give ``gelu(-inf) = NaN`` (-inf * 0) as torch does. On AVX-512 the exact form takes Phi from a
    piecewise polynomial for |x| < 8 (within 4 ulp of float64 there) and the erfc formula beyond.
    """
    kind = _gelu_kind(approximate, "gelu")
    if _B.cpu_fast_path(input):
        return _C.activation_forward(kind, input, out, 0.0)
    return _forward("gelu", kind, input, out, 0.0)


def gelu_backward(grad_output, input, approximate="none", *, out=None):
    """Gradient of gelu: ``grad_output * (Phi(x) + x phi(x))`` (exact), or the derivative of the tanh form."""
    kind = _gelu_kind(approximate, "gelu_backward")
    if _B.cpu_fast_path(grad_output) and _B.cpu_fast_path(input):
        return _C.activation_backward(kind, grad_output, input, out, 0.0)
    return _backward("gelu_backward", kind, grad_output, input, "input", out, 0.0)


# ---- softmax family ---------------------------------------------------------------------------------

def _softmax_forward(op, input, dim, log, out):
    if _B.is_device_array(input):
        return _B.cuda_module().softmax_forward(input, dim, log, out)
    x = _B.as_float_array(input, op, "input")
    if _B.host_backend(x.dtype, op) == "cpu":
        return _C.softmax_forward(x, dim, log, out)
    d = _np_act.norm_dim(dim, x.ndim, op)
    if out is not None:
        _B.check_out(out, x.shape, x.dtype, op)
        _B.check_out_overlap(out, op, exact_ok=(("input", x),))
    return _np_act.softmax(_B.unalias(x, out), d, log, out)


def _softmax_backward(op, grad_output, output, dim, log, out):
    if _B.is_device_array(grad_output) or _B.is_device_array(output):
        return _B.cuda_module().softmax_backward(grad_output, output, dim, log, out)
    g = _B.as_float_array(grad_output, op, "grad_output")
    y = _B.as_float_array(output, op, "output")
    if g.shape != y.shape:
        raise ValueError(f"{op}: expected grad_output of shape {y.shape} (the output's), got {g.shape}")
    if g.dtype != y.dtype:
        raise TypeError(f"{op}: expected output of dtype {g.dtype} (grad_output's), got {y.dtype}")
    if _B.host_backend(g.dtype, op) == "cpu":
        return _C.softmax_backward(g, y, dim, log, out)
    d = _np_act.norm_dim(dim, y.ndim, op)
    if out is not None:
        _B.check_out(out, g.shape, g.dtype, op)
        _B.check_out_overlap(out, op, exact_ok=(("grad_output", g), ("output", y)))
    return _np_act.softmax_backward(_B.unalias(g, out), _B.unalias(y, out), d, log, out)


def softmax(input, dim=-1, *, out=None):
    """Softmax along ``dim``: ``y = exp(x - max) / sum(exp(x - max))`` (torch.softmax numerics).

    Shapes: input (*) -> output (*), same dtype; any rank (a 0-d input is one row of length 1, so
    its softmax is 1), ``dim`` in ``[-ndim, ndim - 1]`` (else ValueError). Stable for any finite
    logits (max subtraction). Non-finite values as in torch: -inf entries get 0, a row of all -inf
    or one holding NaN or +inf is NaN. ``out=`` may be the input itself. float32 rows are exact to a
    few ulp (vectorised exp, one reciprocal per row).
    """
    if _B.cpu_fast_path(input):
        return _C.softmax_forward(input, dim, False, out)
    return _softmax_forward("softmax", input, dim, False, out)


def log_softmax(input, dim=-1, *, out=None):
    """Log-softmax along ``dim``: ``y = (x - max) - log(sum(exp(x - max)))`` (torch.log_softmax).

    Same shapes and rules as :func:`softmax`; -inf entries give -inf, all -inf rows NaN.
    """
    if _B.cpu_fast_path(input):
        return _C.softmax_forward(input, dim, True, out)
    return _softmax_forward("log_softmax", input, dim, True, out)


def softmax_backward(grad_output, output, dim=-1, *, out=None):
    """Gradient of softmax from its *output* y: ``grad_input = y * (g - sum(g * y, dim))``.

    Shapes: grad_output (*), output (*) -> grad_input (*), all the same shape and dtype.
    """
    if _B.cpu_fast_path(grad_output) and _B.cpu_fast_path(output):
        return _C.softmax_backward(grad_output, output, dim, False, out)
    return _softmax_backward("softmax_backward", grad_output, output, dim, False, out)


def log_softmax_backward(grad_output, output, dim=-1, *, out=None):
    """Gradient of log_softmax from its *output* y: ``grad_input = g - exp(y) * sum(g, dim)``."""
    if _B.cpu_fast_path(grad_output) and _B.cpu_fast_path(output):
        return _C.softmax_backward(grad_output, output, dim, True, out)
    return _softmax_backward("log_softmax_backward", grad_output, output, dim, True, out)
