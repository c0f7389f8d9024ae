"""Tolerances from numerics (DESIGN.md section 3, rule 4).

* Elementwise ops: ``|got - ref| <= atol + rtol * |ref|`` with rtol counted in float32 (or float64) eps
  units; NaN must match NaN and +-inf must match exactly.
* Accumulation-heavy ops: the error against the float64 reference may be at most ``factor`` times the
  error of a plain float32 NumPy computation of the same thing (``assert_error_within``).
"""
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2^-23
EPS64 = float(np.finfo(np.float64).eps)


def eps_of(dtype):
    return EPS32 if np.dtype(dtype) == np.float32 else EPS64


def assert_close(got, ref, *, ulps=4, atol=None, dtype=None, cond=None, what=""):
    """Elementwise check. ``ulps`` is the rtol in eps units of ``dtype`` (default: got's dtype).

    ``cond`` (optional, elementwise): the relative condition number |x f'(x) / f(x)| of the function at
    each point; the bound becomes ``ulps * (1 + cond)`` eps, since rounding the intermediate values of
    any float32 evaluation is amplified by it (e.g. gelu's far negative tail)."""
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    dt = np.dtype(dtype or got.dtype)
    eps = eps_of(dt)
    if atol is None:
        atol = float(np.finfo(dt).tiny) * 4  # denormal results are not held to a relative bound
    g = got.astype(np.float64)
    nan_ref, nan_got = np.isnan(ref), np.isnan(g)
    assert np.array_equal(nan_ref, nan_got), (
        f"{what}: NaN mismatch at {np.argwhere(nan_ref != nan_got)[:5].tolist()}")
    inf_ref = np.isinf(ref)
    assert np.array_equal(g[inf_ref], ref[inf_ref]), f"{what}: infinities differ"
    fin = ~nan_ref & ~inf_ref
    assert np.all(np.isfinite(g[fin])), f"{what}: non-finite result where the reference is finite"
    err = np.abs(g[fin] - ref[fin])
    scale = 1.0 if cond is None else 1.0 + np.broadcast_to(np.asarray(cond, dtype=np.float64), ref.shape)[fin]
    bound = atol + ulps * scale * eps * np.abs(ref[fin])
    bad = err > bound
    if bad.any():
        i = np.argmax(err - bound)
        idx = np.argwhere(fin)[i].tolist()
        raise AssertionError(
            f"{what}: {bad.sum()} of {fin.sum()} elements out of tolerance (rtol {ulps} eps, atol {atol:g}); "
            f"worst at {idx}: got {g[fin][i]!r}, reference {ref[fin][i]!r}")


def assert_error_within(got, ref, baseline, *, factor=2.0, floor=None, what=""):
    """The error of ``got`` against the float64 ``ref`` is at most ``factor`` times that of ``baseline`` (a
    plain float32 NumPy computation of the same thing), measured two ways:

    * root-mean-square: ``rms(got - ref) <= factor * max(rms(baseline - ref), floor)``, the precision of
      the whole result, a statistic that one draw does not move much;
    * maximum: ``max|got - ref| <= 2 * factor * max(max|baseline - ref|, floor)``, so that no element is far
      off even when the rest are exact.

    The maximum alone is held to the looser factor because it is one draw of a heavy tail: the same float32
    computation (OpenBLAS's im2col convolution, 3360 outputs, K = 432) gives maxima from 1.3e-5 to 4.2e-5
    over eight random inputs at a steady rms of 2.9e-6 to 3.1e-6, and which BLAS kernel NumPy runs (so its
    summation order) changes with the CPU. ``floor`` defaults to one eps of max|ref|."""
    got, ref, baseline = (np.asarray(a, dtype=np.float64) for a in (got, ref, baseline))
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    if floor is None:
        floor = EPS32 * max(float(np.max(np.abs(ref), initial=0.0)), 1e-30)
    if got.size == 0:
        return
    d_got, d_base = np.abs(got - ref), np.abs(baseline - ref)
    r_got, r_base = (float(np.sqrt(np.mean(np.square(d)))) for d in (d_got, d_base))
    assert r_got <= factor * max(r_base, floor), (
        f"{what}: rms error {r_got:.3g} > {factor} x baseline rms error {max(r_base, floor):.3g}")
    e_got, e_base = float(np.max(d_got)), max(float(np.max(d_base)), floor)
    assert e_got <= 2 * factor * e_base, (
        f"{what}: max error {e_got:.3g} > {2 * factor} x baseline max error {e_base:.3g}")


def condition_number(f, x, h=1e-7):
    """|x f'(x) / f(x)| of an elementwise float64 function, by central differences (0 where f = 0)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        d = (f(x * (1 + h) + h) - f(x * (1 - h) - h)) / (2 * (x * h + h))
        fx = f(x)
        c = np.abs(x * d / fx)
    return np.nan_to_num(c, nan=0.0, posinf=0.0)


def numeric_vjp(f, x, g, h=1e-6):
    """Central-difference vector-Jacobian product: d/dx sum(g * f(x)) at float64 ``x``, element by element
    (the oracle for a backward pass: compare ``<op>_backward(g, x)`` with it)."""
    x = np.asarray(x, dtype=np.float64)
    num = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num[i] = np.sum(g * (f(xp) - f(xm))) / (2 * h)
    return num
