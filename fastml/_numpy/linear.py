"""NumPy backend of linear / linear_backward / matmul: computes in the input's dtype (BLAS through NumPy)."""
import math

import numpy as np


def _rows(a):
    """Number of rows once the leading dims are flattened (reshape(-1, n) fails on empty arrays)."""
    return math.prod(a.shape[:-1])


def linear(x, w, b, out):
    y = np.matmul(x, w.T, out=out)
    if b is not None:
        y += b
    return y


def linear_backward(g, x, w, output_mask):
    g2 = g.reshape(_rows(g), w.shape[0])
    x2 = x.reshape(_rows(x), w.shape[1])
    gi = np.matmul(g, w) if output_mask[0] else None
    gw = np.matmul(g2.T, x2) if output_mask[1] else None
    gb = g2.sum(axis=0, dtype=np.float64).astype(g.dtype) if output_mask[2] else None  # one rounding
    return gi, gw, gb


def matmul(a, b, out):
    return np.matmul(a, b, out=out)
