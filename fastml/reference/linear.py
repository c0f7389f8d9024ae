"""Float64 references for linear, linear_backward and matmul (the test oracle).

``linear``: y = x W^T + b with x (..., in_features), W (out_features, in_features), b (out_features,).
``linear_backward``: grad_input = g W, grad_weight = g^T x (summed over all leading dims), grad_bias = sum g.
``matmul``: NumPy matmul semantics (1-D promotion, batch broadcasting), computed in float64.
"""
import numpy as np

def _rows(a):
    """Number of rows once the leading dims are flattened (reshape(-1, n) fails on empty arrays)."""
    return int(np.prod(a.shape[:-1], dtype=np.int64))


__all__ = ["linear", "linear_backward", "matmul"]


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def linear(input, weight, bias=None):
    x, w = _f64(input), _f64(weight)
    y = np.matmul(x, w.T)
    if bias is not None:
        y = y + _f64(bias)
    return y


def linear_backward(grad_output, input, weight, output_mask=(True, True, True)):
    g, x, w = _f64(grad_output), _f64(input), _f64(weight)
    g2 = g.reshape(_rows(g), w.shape[0])
    x2 = x.reshape(_rows(x), w.shape[1])
    gi = np.matmul(g, w) if output_mask[0] else None
    gw = np.matmul(g2.T, x2) if output_mask[1] else None
    gb = g2.sum(axis=0) if output_mask[2] else None
    return gi, gw, gb


def matmul(a, b):
    return np.matmul(_f64(a), _f64(b))
