"""softmax / log_softmax and their backward passes: references on hand-computed values, then every
backend x ISA against them (row lengths around the vector widths, every dim and rank, strided axes,
non-finite values), both compiled row variants, threads, bad inputs, and torch parity."""
import math

import numpy as np
import pytest

import fastml
import fastml.functional as F
import fastml.reference as R
from fastml import _backend as B
from _tolerance import EPS32, eps_of, numeric_vjp

SIZES = [1, 7, 8, 9, 15, 16, 17, 31, 33, 97, 1025]
FWD = {False: (F.softmax, R.softmax), True: (F.log_softmax, R.log_softmax)}
BWD = {False: (F.softmax_backward, R.softmax_backward), True: (F.log_softmax_backward, R.log_softmax_backward)}


def _stats64(x, dim):
    """|x - max| and |log sum exp(x - max)| in float64 (the scales the float32 rounding errors scale with)."""
    x = np.asarray(x, np.float64)
    m = np.max(x, axis=dim, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.nan_to_num(x - m, nan=0.0, neginf=0.0)
        ls = np.nan_to_num(np.log(np.sum(np.exp(z), axis=dim, keepdims=True)), nan=0.0)
    return np.abs(z), np.abs(ls)


def check_forward(y, x, dim, log, ulps=None):
    """softmax: relative error <= ulps eps (1 + |x - m|) (exp <= 2 ulp, reciprocal, the row sum's rounding);
    log_softmax: |err| <= ulps eps (|x - m| + |log s| + 1), the rounding of the two terms it subtracts."""
    ref = FWD[log][1](x, dim)
    assert y.shape == ref.shape and y.dtype == np.asarray(x).dtype
    eps = eps_of(y.dtype)
    fin = np.isfinite(ref)
    assert np.array_equal(np.isnan(y), np.isnan(ref)), "NaN positions differ"
    assert np.array_equal(y[np.isinf(ref)], ref[np.isinf(ref)]), "infinities differ"
    with np.errstate(invalid="ignore"):
        err = np.abs(y.astype(np.float64) - ref)[fin]
    # rounding the row sum of D positive terms: relative error <= (D - 1) eps / 2 in the worst case
    sum_err = 0.5 * (np.asarray(x).shape[dim] if np.asarray(x).ndim else 1)
    if log:
        az, als = _stats64(x, dim) if np.asarray(x).ndim else (np.zeros(()), np.zeros(()))
        # + 1: the row sum s is rounded (relative eps), which moves log s by eps in absolute terms
        bound = eps * ((ulps or 8) * (np.broadcast_to(az + als, ref.shape)[fin] + np.abs(ref[fin]) + 1.0) + sum_err)
    else:
        # exp's condition number at z = x - m is |z|: rounding x - m costs eps |z| relative
        az = _stats64(x, dim)[0] if np.asarray(x).ndim else np.zeros(())
        cond = 1.0 + np.broadcast_to(az, ref.shape)[fin]
        bound = eps * ((ulps or 16) * cond + sum_err) * np.abs(ref[fin]) + 4 * float(np.finfo(y.dtype).tiny)
    bad = err > bound
    assert not bad.any(), f"{bad.sum()} elements out of tolerance; worst {err.max():.3g}"


def check_backward(dx, g, y, dim, log, ulps=16):
    """Bound from the rounding of each term: softmax y (g - sum g y) -> eps y (|g| + sum |g y|);
    log_softmax g - exp(y) sum g -> eps (|g| + exp(y) sum |g|)."""
    ref = BWD[log][1](g, y, dim)
    g64, y64 = np.asarray(g, np.float64), np.asarray(y, np.float64)
    eps = eps_of(dx.dtype)
    if y64.ndim == 0:
        g64, y64, dim = g64.reshape(1), y64.reshape(1), 0
    if log:
        scale = np.abs(g64) + np.exp(y64) * np.sum(np.abs(g64), axis=dim, keepdims=True)
    else:
        scale = np.abs(y64) * (np.abs(g64) + np.sum(np.abs(g64 * y64), axis=dim, keepdims=True))
    scale = scale.reshape(ref.shape)
    assert dx.shape == ref.shape and dx.dtype == np.asarray(g).dtype
    err = np.abs(dx.astype(np.float64) - ref)
    assert np.all(err <= ulps * eps * scale + 1e-38), f"worst error {err.max():.3g}"


# ---- the references themselves ---------------------------------------------------------------------

def test_reference_hand_values():
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(R.softmax([1.0, 2.0, 3.0]), e / e.sum(), rtol=1e-15)
    np.testing.assert_allclose(R.log_softmax([1.0, 2.0, 3.0]), [1 - math.log(e.sum())] * 1 + [2 - math.log(e.sum()),
                               3 - math.log(e.sum())], rtol=1e-15)
    np.testing.assert_allclose(R.softmax([[0.0, 0.0], [0.0, math.log(3.0)]], 1), [[0.5, 0.5], [0.25, 0.75]])
    np.testing.assert_allclose(R.softmax([[0.0, 0.0], [0.0, math.log(3.0)]], 0), [[0.5, 0.25], [0.5, 0.75]])
    assert R.softmax(np.float64(7.0)) == 1.0 and R.log_softmax(np.float64(7.0)) == 0.0
    # large logits: softmax([1e4, 1e4 - ln 3]) = [3/4, 1/4]
    np.testing.assert_allclose(R.softmax([1e4, 1e4 - math.log(3.0)]), [0.75, 0.25], rtol=1e-12)
    # -inf entries get 0 / -inf; all -inf and NaN rows are NaN
    np.testing.assert_array_equal(R.softmax([-np.inf, 0.0]), [0.0, 1.0])
    np.testing.assert_array_equal(R.log_softmax([-np.inf, 0.0]), [-np.inf, 0.0])
    assert np.isnan(R.softmax([-np.inf, -np.inf])).all() and np.isnan(R.softmax([np.nan, 1.0])).all()
    # backward: y = [1/4, 3/4], g = [1, 0]: y (g - sum g y) = [1/4 * 3/4, -3/4 * 1/4]
    np.testing.assert_allclose(R.softmax_backward([1.0, 0.0], [0.25, 0.75]), [0.1875, -0.1875])
    np.testing.assert_allclose(R.log_softmax_backward([1.0, 0.0], np.log([0.25, 0.75])), [0.75, -0.75])


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape,dim", [((5,), 0), ((3, 4), 0), ((3, 4), 1), ((2, 3, 4), 1)])
def test_reference_backward_matches_finite_differences(rng, log, shape, dim):
    fwd, bwd = FWD[log][1], BWD[log][1]
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    y = fwd(x, dim)
    num = numeric_vjp(lambda v: fwd(v, dim), x, g)
    np.testing.assert_allclose(bwd(g, y, dim), num, rtol=1e-6, atol=1e-8)


# ---- every backend against the references -------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_row_lengths(backend, rng, n, log, dtype):
    x = (rng.standard_normal((6, n)) * 5).astype(dtype)
    y = FWD[log][0](x, -1)
    check_forward(y, x, -1, log)
    s = np.exp(y.astype(np.float64)) if log else y.astype(np.float64)
    np.testing.assert_allclose(s.sum(-1), 1.0, rtol=0, atol=(n + 8) * eps_of(dtype))


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape,dim", [
    ((7, 9, 33), 0), ((7, 9, 33), 1), ((7, 9, 33), -3), ((3, 1025, 2), 1), ((2, 17, 16), 1), ((4, 5, 65), 1),
    ((2, 3, 130), 1), ((3, 1, 5), 1), ((1, 1), 0), ((2, 3, 4, 5), 2), ((2, 3, 4, 5), 0), ((40, 3, 200), 0),
])
def test_softmax_dims_and_ranks(backend, rng, shape, dim, log):
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    y = FWD[log][0](x, dim)
    check_forward(y, x, dim, log)
    if not log:
        np.testing.assert_allclose(y.astype(np.float64).sum(dim), 1.0, atol=(shape[dim] + 8) * EPS32)


def test_softmax_zero_d_empty_and_length_one(backend):
    for log in (False, True):
        f = FWD[log][0]
        assert f(np.float32(3.0)).shape == () and f(np.float32(3.0)) == (0.0 if log else 1.0)
        assert f(np.array(2.0, np.float32), 0) == (0.0 if log else 1.0)
        for shape, dim in [((0,), 0), ((3, 0), 1), ((0, 4), 1), ((0, 4), 0), ((2, 0, 3), 2)]:
            y = f(np.zeros(shape, np.float32), dim)
            assert y.shape == shape and y.dtype == np.float32
        x = np.array([[1e4], [-3.0], [0.0]], np.float32)
        np.testing.assert_array_equal(f(x, 1), np.full((3, 1), 0.0 if log else 1.0, np.float32))
        np.testing.assert_array_equal(f(x.T, 0), np.full((1, 3), 0.0 if log else 1.0, np.float32))
    g = np.float32(2.0)
    assert F.softmax_backward(g, np.float32(1.0)) == 0.0
    assert F.log_softmax_backward(g, np.float32(0.0)) == 0.0


@pytest.mark.parametrize("log", [False, True])
def test_softmax_noncontiguous(backend, rng, log):
    base = (rng.standard_normal((9, 40, 12)) * 3).astype(np.float32)
    for x, dim in [(base[:, ::2, 1:], 1), (base[::2, :, ::3], -1), (base.transpose(2, 0, 1), 0), (base[..., 5], 1)]:
        check_forward(FWD[log][0](x, dim), x, dim, log)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dim", [-1, 0])
def test_softmax_large_logits(backend, rng, log, dim):
    x = (1e4 + rng.standard_normal((33, 33)) * 3).astype(np.float32)
    x[5] = -1e4 + rng.standard_normal(33)
    x[:, 7] = 3e4
    y = FWD[log][0](x, dim)
    assert np.all(np.isfinite(y))
    check_forward(y, x, dim, log)


def _nonfinite_rows(n):
    x = np.tile(np.linspace(-3, 3, n, dtype=np.float32), (6, 1))
    x[0, ::3] = -np.inf            # some -inf: those get 0 / -inf
    x[1, :] = -np.inf              # all -inf: NaN, as torch
    x[2, n // 2] = np.nan          # NaN propagates to the whole row
    x[3, -1] = np.inf              # +inf: NaN row
    x[4, 0] = np.nan
    x[4, 1:] = -np.inf             # NaN among -inf
    x[5, :-1] = -np.inf            # a single finite value: 1 / 0
    return x


@pytest.mark.parametrize("n", [2, 7, 17, 33, 100])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_nonfinite(backend, n, log):
    x = _nonfinite_rows(n)
    for arr, dim in [(x, 1), (np.ascontiguousarray(x.T), 0), (np.ascontiguousarray(x.T)[:, None, :], 0)]:
        y = FWD[log][0](arr, dim)
        check_forward(y, arr, dim, log)
    y = FWD[log][0](x, 1)
    assert np.isnan(y[1]).all() and np.isnan(y[2]).all() and np.isnan(y[3]).all() and np.isnan(y[4]).all()
    assert np.all(y[0, ::3] == (-np.inf if log else 0.0))
    np.testing.assert_array_equal(y[5, -1], 0.0 if log else 1.0)


@pytest.mark.parametrize("variant", [1, 2])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_row_variants(rng, log, variant):
    """Both compiled row kernels (three-pass, online) on every ISA, including long rows with late maxima."""
    if not B.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    for isa in fastml.available_isas():
        with fastml.use_isa(isa):
            for n in SIZES + [64, 65, 5000]:
                x = (rng.standard_normal((4, n)) * 6).astype(np.float32)
                x[1] = np.linspace(-50, 50, n)  # the running max rises block after block
                x[2, -1] = 80.0
                check_forward(B._C.softmax_forward(x, -1, log, None, variant), x, -1, log)
            for n in (5, 40, 100):
                x = _nonfinite_rows(n)
                check_forward(B._C.softmax_forward(x, 1, log, None, variant), x, 1, log)


def test_softmax_long_rows_auto_online(rng):
    x = (rng.standard_normal((2, 600_000)) * 4).astype(np.float32)  # longer than half of any L2 here
    for log in (False, True):
        check_forward(FWD[log][0](x, 1), x, 1, log, ulps=64 if not log else 8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape,dim", [((5, 1), 1), ((4, 7), 1), ((3, 17), 1), ((2, 1025), 1), ((33, 9), 1),
                                       ((7, 9, 33), 1), ((9, 70), 0), ((2, 3, 4, 5), 2)])
def test_softmax_backward(backend, rng, shape, dim, log, dtype):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = FWD[log][0](x, dim)
    g = rng.standard_normal(shape).astype(dtype)
    dx = BWD[log][0](g, y, dim)
    check_backward(dx, g, y, dim, log)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_backward_matches_finite_differences(backend, rng, log):
    x = rng.standard_normal((3, 6))
    g = rng.standard_normal((3, 6))
    y = FWD[log][0](x.astype(np.float32), 1)
    dx = BWD[log][0](g.astype(np.float32), y, 1)
    num = numeric_vjp(lambda v: FWD[log][1](v, 1), x, g)
    np.testing.assert_allclose(dx, num, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_out_and_inplace(backend, rng, log):
    f, bwd = FWD[log][0], BWD[log][0]
    for shape, dim in [((5, 33), 1), ((5, 33), 0)]:
        x = rng.standard_normal(shape).astype(np.float32)
        ref = f(x.copy(), dim)
        out = np.empty_like(x)
        assert f(x, dim, out=out) is out
        np.testing.assert_array_equal(out, ref)
        xi = x.copy()
        assert f(xi, dim, out=xi) is xi
        np.testing.assert_array_equal(xi, ref)
        g = rng.standard_normal(shape).astype(np.float32)
        gref = bwd(g, ref, dim)
        gi = g.copy()
        assert bwd(gi, ref, dim, out=gi) is gi
        np.testing.assert_array_equal(gi, gref)
        yi = ref.copy()
        assert bwd(g, yi, dim, out=yi) is yi
        np.testing.assert_array_equal(yi, gref)


def test_softmax_bad_inputs(backend):
    x = np.ones((3, 4), np.float32)
    for f in (F.softmax, F.log_softmax):
        with pytest.raises(TypeError, match="expected float32 or float64"):
            f(np.ones((3, 4), np.int64))
        with pytest.raises(TypeError, match="float16"):
            f(np.ones(4, np.float16))
        with pytest.raises(ValueError, match=r"expected dim in \[-2, 1\], got 2"):
            f(x, 2)
        with pytest.raises(ValueError, match=r"expected dim in \[-2, 1\], got -3"):
            f(x, -3)
        with pytest.raises(ValueError, match=r"expected dim in \[-1, 0\], got 1"):
            f(np.float32(1.0), 1)
        with pytest.raises(TypeError, match="integer dim"):
            f(x, 1.0)
        with pytest.raises(TypeError, match="integer dim"):
            f(x, None)
        with pytest.raises(ValueError, match=r"expected out of shape \(3, 4\)"):
            f(x, out=np.empty((4, 3), np.float32))
        with pytest.raises(TypeError, match="expected float32 for out"):
            f(x, out=np.empty((3, 4), np.float64))
        with pytest.raises(ValueError, match="C-contiguous"):
            f(x, out=np.empty((3, 8), np.float32)[:, ::2])
    for bwd in (F.softmax_backward, F.log_softmax_backward):
        with pytest.raises(ValueError, match="expected grad_output of shape"):
            bwd(np.ones((3, 5), np.float32), x)
        with pytest.raises(ValueError, match="expected dim"):
            bwd(x, x, 5)
        with pytest.raises(TypeError, match="expected output of dtype"):
            bwd(x, x.astype(np.float64))


def test_softmax_bad_out_writes_nothing(backend):
    x = np.ones((3, 4), np.float32)
    out = np.full((3, 4), 7.0, np.float32)
    with pytest.raises(ValueError):
        F.softmax(x, 5, out=out)
    np.testing.assert_array_equal(out, 7.0)


def test_softmax_partial_overlap_rejected(backend):
    buf = np.zeros(40, np.float32)
    for fn in (F.softmax, F.log_softmax):
        with pytest.raises(ValueError, match="partially overlaps input"):
            fn(buf[:32].reshape(4, 8), out=buf[8:].reshape(4, 8))
    y = F.softmax(np.ones((4, 8), np.float32))
    with pytest.raises(ValueError, match="partially overlaps"):
        F.softmax_backward(buf[:32].reshape(4, 8), y, out=buf[8:].reshape(4, 8))
    # a strided input that shares memory with out is read before out is written (as if copied first)
    buf = np.arange(64, dtype=np.float32) / 64
    x = buf[::2].reshape(4, 8)
    want = F.softmax(x.copy())
    np.testing.assert_array_equal(F.softmax(x, out=buf[32:].reshape(4, 8)), want)


def test_softmax_lists_accepted():
    np.testing.assert_allclose(F.softmax([0.0, 0.0]), [0.5, 0.5])


@pytest.mark.parametrize("shape,dim", [((600, 300), 1), ((300, 600), 0), ((40, 30, 70), 1), ((3000, 7), 1)])
def test_softmax_threads_bitwise_identical(rng, threads, shape, dim):
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    res = []
    for nt in (1, 2):
        fastml.set_num_threads(nt)
        res.append([F.softmax(x, dim), F.log_softmax(x, dim)])
        res[-1] += [F.softmax_backward(g, res[-1][0], dim), F.log_softmax_backward(g, res[-1][1], dim)]
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


@pytest.mark.torch
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape,dim", [((64, 1025), -1), ((7, 33, 17), 1), ((9, 5, 3), 0), ((4, 16), 1),
                                       ((5,), 0)])
def test_softmax_torch_parity(backend, rng, shape, dim, log):
    # every backend and ISA (four scalar sum chains once gave log_softmax_backward twice torch's error)
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    x.flat[::11] = -np.inf
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = (torch.log_softmax if log else torch.softmax)(xt, dim)
    g = rng.standard_normal(shape).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    y = FWD[log][0](x, dim)
    ref_t = yt.detach().numpy()
    fin = np.isfinite(ref_t)
    assert np.array_equal(np.isinf(y), np.isinf(ref_t))
    np.testing.assert_allclose(y[fin], ref_t[fin], rtol=2e-6, atol=1e-6 if log else 1e-7)
    # backward from torch's own output, against the float64 backward of the same (g, y): at least about as
    # accurate as torch (y (g - sum g y) and g - e^y sum g cancel, so the two float32 results may differ
    # by more than a few ulp from each other while both are correct to that cancellation)
    gx = BWD[log][0](g, ref_t, dim)
    gref = BWD[log][1](g.astype(np.float64), ref_t.astype(np.float64), dim)
    e_ours = np.abs(gx - gref).max()
    e_torch = np.abs(xt.grad.numpy() - gref).max()
    assert e_ours <= 2 * e_torch + 4 * EPS32 * np.abs(gref).max(), (e_ours, e_torch)
    # non-finite rows behave as torch's
    z = _nonfinite_rows(9)
    zt = (torch.log_softmax if log else torch.softmax)(torch.from_numpy(z), 1).numpy()
    zy = FWD[log][0](z, 1)
    assert np.array_equal(np.isnan(zy), np.isnan(zt)) and np.array_equal(np.isinf(zy), np.isinf(zt))


class _FakeDeviceArray:
    """Stands in for a CuPy array / torch CUDA tensor: only the interface attribute matters for routing."""
    __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (0, False), "version": 3}


def test_softmax_device_arrays_route_to_cuda_module(monkeypatch):
    calls = []

    class FakeCuda:
        def softmax_forward(self, input, dim, log, out):
            calls.append(("forward", dim, log, out))
            return "fwd"

        def softmax_backward(self, grad_output, output, dim, log, out):
            calls.append(("backward", dim, log, out))
            return "bwd"

    monkeypatch.setattr(B, "cuda_module", lambda: FakeCuda())
    d = _FakeDeviceArray()
    assert F.softmax(d, 1) == "fwd" and F.log_softmax(d, 0) == "fwd"
    assert F.softmax_backward(d, d, -1) == "bwd" and F.log_softmax_backward(d, d, 1, out=d) == "bwd"
    assert calls == [("forward", 1, False, None), ("forward", 0, True, None), ("backward", -1, False, None),
                     ("backward", 1, True, d)]


def test_log_softmax_strided_log_of_sums(backend, rng):
    """The strided log_softmax takes the log of each column's sum with a vector log: sums from 1 (one
    dominant logit) to 1e5 (uniform columns), checked against float64 to a few ulp."""
    for D in (1, 2, 3, 7, 21, 100, 1000, 12345, 100000):
        x = np.zeros((D, 20), np.float32)
        np.testing.assert_allclose(F.log_softmax(x, 0)[0], -np.log(np.float64(D)), rtol=4 * EPS32, atol=0)
    x = np.zeros((3, 4096), np.float32)
    x[1:] = np.log(rng.random((2, 4096)) * 2).astype(np.float32)  # sums spread over [1, 5)
    check_forward(F.log_softmax(x, 0), x, 0, True, ulps=4)
