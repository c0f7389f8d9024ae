"""Special functions for the float64 references (scalar libm, vectorised with np.vectorize: exact, slow)."""
import math

import numpy as np

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def erfc(x):
    """Complementary error function, float64, via libm's erfc (correct to ~1 ulp)."""
    x = np.asarray(x, dtype=np.float64)
    return _erfc(x) if x.size else np.empty_like(x)


def normal_cdf(x):
    """Phi(x) = erfc(-x / sqrt(2)) / 2, accurate in relative terms in both tails."""
    return 0.5 * erfc(-np.asarray(x, dtype=np.float64) / math.sqrt(2.0))
