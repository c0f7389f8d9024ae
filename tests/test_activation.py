"""Elementwise activations: references on hand-computed values, then every backend x ISA against them."""
import math

import numpy as np
import pytest

import fastml
import fastml.functional as F
import fastml.reference as R
from _tolerance import assert_close, condition_number

SIZES = [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 97, 1025, 70001]  # 70001 > grain: exercises the thread split

# name -> (forward, reference forward, backward, reference backward, saved = "input"|"output", kwargs)
OPS = {
    "relu": (F.relu, R.relu, F.relu_backward, R.relu_backward, "input", {}),
    "leaky_relu": (F.leaky_relu, R.leaky_relu, F.leaky_relu_backward, R.leaky_relu_backward, "input",
                   {"negative_slope": 0.2}),
    "sigmoid": (F.sigmoid, R.sigmoid, F.sigmoid_backward, R.sigmoid_backward, "output", {}),
    "tanh": (F.tanh, R.tanh, F.tanh_backward, R.tanh_backward, "output", {}),
    "gelu": (F.gelu, R.gelu, F.gelu_backward, R.gelu_backward, "input", {}),
    "gelu_tanh": (F.gelu, R.gelu, F.gelu_backward, R.gelu_backward, "input", {"approximate": "tanh"}),
}
# rtol in eps units: the kernels' documented accuracy plus the rounding of the float32 input path.
ULPS = {"relu": 0, "leaky_relu": 1, "sigmoid": 4, "tanh": 4, "gelu": 8, "gelu_tanh": 8}
# float64 (NumPy backend): erfc's condition number grows like 2 z^2 in the tail, so two correct erfc
# implementations (scipy vs libm) differ by ~1e3 eps there.
ULPS64 = {"gelu": 4096, "gelu_tanh": 64}
BWD_ULPS = {"relu": 0, "leaky_relu": 1, "sigmoid": 4, "tanh": 4, "gelu": 16, "gelu_tanh": 16}


# ---- the references themselves -------------------------------------------------------------------

def test_reference_hand_values():
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(R.relu(x), [0.0, 0.0, 3.0])
    np.testing.assert_allclose(R.leaky_relu(x, 0.1), [-0.2, 0.0, 3.0])
    np.testing.assert_allclose(R.sigmoid(x), [1 / (1 + math.e**2), 0.5, 1 / (1 + math.e**-3)], rtol=1e-15)
    np.testing.assert_allclose(R.tanh(x), [math.tanh(-2), 0.0, math.tanh(3)], rtol=1e-15)
    # gelu(x) = x Phi(x); Phi(1) = 0.8413447460685429
    np.testing.assert_allclose(R.gelu(np.array([1.0, -1.0])), [0.8413447460685429, -0.15865525393145707],
                               rtol=1e-14)
    # tanh form at x = 1: 0.5 (1 + tanh(sqrt(2/pi) * 1.044715))
    u = math.sqrt(2 / math.pi) * 1.044715
    np.testing.assert_allclose(R.gelu(np.array([1.0]), approximate="tanh"), [0.5 * (1 + math.tanh(u))], rtol=1e-14)


def test_reference_extremes_no_warnings():
    x = np.array([-1000.0, -50.0, 50.0, 1000.0, np.inf, -np.inf, np.nan])
    s = R.sigmoid(x)
    assert s[0] == 0.0 and s[3] == 1.0 and np.isnan(s[-1])
    assert R.gelu(np.array([-40.0]))[0] == 0.0 or abs(R.gelu(np.array([-40.0]))[0]) < 1e-300


@pytest.mark.parametrize("name", list(OPS))
def test_reference_backward_matches_finite_differences(name):
    fwd, rfwd, bwd, rbwd, saved, kw = OPS[name]
    x = np.array([-3.1, -1.2, -0.3, 0.4, 1.7, 2.9])
    h = 1e-6
    fd = (rfwd(x + h, **kw) - rfwd(x - h, **kw)) / (2 * h)
    g = np.ones_like(x)
    s = x if saved == "input" else rfwd(x, **kw)
    np.testing.assert_allclose(rbwd(g, s, **kw), fd, rtol=1e-6, atol=1e-9)


# ---- every backend against the references ---------------------------------------------------------

def _inputs(rng, n, dtype):
    x = rng.standard_normal(n) * 4
    x[: n // 7] = np.linspace(-30, 30, n // 7)  # include the saturated ranges
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", list(OPS))
def test_activation_forward_sizes(backend, rng, name, n, dtype):
    fwd, rfwd, *_, kw = OPS[name]
    x = _inputs(rng, n, dtype)
    y = fwd(x, **kw)
    assert y.dtype == dtype and y.shape == x.shape
    cond = condition_number(lambda v: rfwd(v, **kw), x)
    assert_close(y, rfwd(x, **kw), ulps=ULPS[name] if dtype == np.float32 else ULPS64.get(name, 64), cond=cond,
                 what=f"{name} n={n}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", list(OPS))
def test_activation_backward_sizes(backend, rng, name, n, dtype):
    fwd, rfwd, bwd, rbwd, saved, kw = OPS[name]
    x = _inputs(rng, n, dtype)
    g = rng.standard_normal(n).astype(dtype)
    s = x if saved == "input" else fwd(x, **kw)
    gx = bwd(g, s, **kw)
    assert gx.dtype == dtype and gx.shape == x.shape
    # the reference gets the same (rounded) saved tensor, so only the kernel's error is measured
    ref = rbwd(g, s, **kw)
    ulps = BWD_ULPS[name] if dtype == np.float32 else ULPS64.get(name, 64)
    # (1 - y^2), y(1 - y): cancellation near saturation is inherent to the output-based formulas
    atol = 4 * np.finfo(dtype).eps * np.abs(g).max(initial=0.0) if saved == "output" else None
    if name.startswith("gelu") and dtype == np.float32:
        atol = 1e-30  # intermediates (the Gaussian density, 1 - s) underflow first for |x| > ~13
    cond = condition_number(lambda v: rbwd(np.ones_like(v), v if saved == "input" else rfwd(v, **kw), **kw), x)
    assert_close(gx, ref, ulps=ulps, atol=atol, cond=cond, what=f"{name}_backward n={n}")


@pytest.mark.parametrize("name", list(OPS))
def test_activation_nonfinite(backend, name):
    fwd, rfwd, bwd, rbwd, saved, kw = OPS[name]
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 88.8, -88.8, 1e30, -1e30] * 3,
                 dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = rfwd(x, **kw)
    assert_close(fwd(x, **kw), ref, ulps=ULPS[name] + 1, what=name)


@pytest.mark.parametrize("name", list(OPS))
def test_activation_noncontiguous_and_nd(backend, rng, name):
    fwd, rfwd, *_, kw = OPS[name]
    base = rng.standard_normal((6, 10, 9)).astype(np.float32)
    x = base[:, ::2, 1:]  # strided view, rank 3
    y = fwd(x, **kw)
    assert y.shape == x.shape and y.flags.c_contiguous
    assert_close(y, rfwd(x, **kw), ulps=ULPS[name], what=name)


@pytest.mark.parametrize("name", list(OPS))
def test_activation_out_and_inplace(backend, rng, name):
    fwd, rfwd, bwd, rbwd, saved, kw = OPS[name]
    x = rng.standard_normal(100).astype(np.float32)
    ref = fwd(x.copy(), **kw)
    out = np.empty_like(x)
    assert fwd(x, out=out, **kw) is out
    np.testing.assert_array_equal(out, ref)
    xi = x.copy()
    assert fwd(xi, out=xi, **kw) is xi  # exact aliasing is allowed
    np.testing.assert_array_equal(xi, ref)
    g = rng.standard_normal(100).astype(np.float32)
    s = x if saved == "input" else ref
    gref = bwd(g, s, **kw)
    gi = g.copy()
    assert bwd(gi, s, out=gi, **kw) is gi
    np.testing.assert_array_equal(gi, gref)


@pytest.mark.parametrize("fn", [F.relu, F.leaky_relu])
def test_inplace_flag(backend, fn):
    x = np.array([-1.0, 2.0], dtype=np.float32)
    y = fn(x, inplace=True)
    assert y is x and x[0] <= 0 and x[1] == 2.0


def test_bad_inputs(backend):
    x = np.ones(8, dtype=np.float32)
    with pytest.raises(TypeError, match="expected float32 or float64"):
        F.relu(np.ones(4, dtype=np.int64))
    with pytest.raises(TypeError, match="float16"):
        F.sigmoid(np.ones(4, dtype=np.float16))
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="fast")
    with pytest.raises(ValueError, match=r"expected out of shape \(8,\)"):
        F.tanh(x, out=np.empty(7, np.float32))
    with pytest.raises(TypeError, match="expected float32 for out"):
        F.tanh(x, out=np.empty(8, np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        F.tanh(x, out=np.empty(16, np.float32)[::2])
    ro = np.empty(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        F.tanh(x, out=ro)
    with pytest.raises(ValueError, match="expected grad_output of shape"):
        F.relu_backward(np.ones(3, np.float32), x)
    with pytest.raises(TypeError, match="inplace=True needs an array"):
        F.relu([1.0, 2.0], inplace=True)


def test_partial_overlap_rejected(backend):
    buf = np.zeros(20, np.float32)
    for fn in (F.relu, F.sigmoid, F.tanh, F.gelu):
        with pytest.raises(ValueError, match="partially overlaps input"):
            fn(buf[:16], out=buf[4:])
    with pytest.raises(ValueError, match="partially overlaps"):
        F.sigmoid_backward(buf[:16], np.full(16, 0.5, np.float32), out=buf[4:])
    x = np.linspace(-3, 3, 16, dtype=np.float32)
    np.testing.assert_array_equal(F.sigmoid(x, out=x), F.sigmoid(np.linspace(-3, 3, 16, dtype=np.float32)))
    # a strided input that shares memory with out is read before out is written (as if copied first)
    buf = np.linspace(-3, 3, 32, dtype=np.float32)
    xs = buf[::2]
    want = F.sigmoid(xs.copy())
    np.testing.assert_array_equal(F.sigmoid(xs, out=buf[16:]), want)


def test_lists_accepted():
    np.testing.assert_array_equal(F.relu([-1.0, 2.0]), [0.0, 2.0])


@pytest.mark.parametrize("name", list(OPS))
def test_threads_bitwise_identical(rng, threads, name):
    fwd, rfwd, bwd, rbwd, saved, kw = OPS[name]
    x = rng.standard_normal(300_001).astype(np.float32)
    fastml.set_num_threads(1)
    a = fwd(x, **kw)
    fastml.set_num_threads(2)
    b = fwd(x, **kw)
    np.testing.assert_array_equal(a, b)


def _piecewise_sweep():
    """Every interval edge of the compiled piecewise polynomials (k/4 up to 8, csrc poly_tables.h: exact
    GELU and tanh on AVX-512) and GELU's thresholds 5.5 and 8 - 2^-10, each with both float32 neighbours
    and for both signs, then a dense grid over [-9, 9]."""
    edges = np.concatenate([np.arange(33) / 4.0, [5.5, 8 - 2.0**-10]]).astype(np.float32)
    pts = np.concatenate([edges, np.nextafter(edges, np.float32(-1)), np.nextafter(edges, np.float32(np.inf))])
    return np.concatenate([pts, -pts, np.linspace(-9, 9, 200_001, dtype=np.float32)])


def test_gelu_interval_edges_and_dense_grid(backend):
    x = _piecewise_sweep()
    xd = x.astype(np.float64)
    assert_close(F.gelu(x), R.gelu(xd), ulps=ULPS["gelu"], cond=condition_number(R.gelu, xd), what="gelu")
    g = np.ones_like(x)
    cond = condition_number(lambda v: R.gelu_backward(np.ones_like(v), v), xd)
    assert_close(F.gelu_backward(g, x), R.gelu_backward(g.astype(np.float64), xd), ulps=BWD_ULPS["gelu"],
                 atol=1e-30, cond=cond, what="gelu_backward")
    if backend == "cpu-avx512":
        # the piecewise polynomial (|x| < 8) evaluates Phi directly, without the erfc formula's
        # amplification in the negative tail: 4 ulp with no condition-number allowance (3.7 measured
        # over every 64th float32), and its derivative 4 ulp times (1 + cond) (2.0 measured)
        table = x > -(8 - 2.0**-10)  # the forward's polynomial lanes (x >= 5.5 gives x)
        assert_close(F.gelu(x[table]), R.gelu(xd[table]), ulps=4, what="gelu (polynomial)")
        near = np.abs(x) < 8  # the backward's
        assert_close(F.gelu_backward(g[near], x[near]), R.gelu_backward(g[near].astype(np.float64), xd[near]),
                     ulps=4, atol=1e-30, cond=cond[near], what="gelu_backward (polynomial)")


def test_tanh_interval_edges_and_dense_grid(backend):
    x = _piecewise_sweep()
    x = np.concatenate([x, np.float32(2.0) ** -np.arange(1, 150, dtype=np.float32)])  # down to denormals
    ref = R.tanh(x.astype(np.float64))
    assert_close(F.tanh(x), ref, ulps=ULPS["tanh"], what="tanh")
    if backend == "cpu-avx512":  # the piecewise polynomial: 1.4 ulp measured over every 64th float32
        assert_close(F.tanh(x), ref, ulps=2, what="tanh (polynomial)")


@pytest.mark.parametrize("far", [-20.0, 9.0, np.inf, np.nan])
def test_tanh_lane_does_not_depend_on_its_neighbours(backend, rng, far):
    x = rng.uniform(-7.9, 7.9, 256).astype(np.float32)
    y = x.copy()
    y[5::16] = far
    keep = np.ones(256, bool)
    keep[5::16] = False
    np.testing.assert_array_equal(F.tanh(y)[keep], F.tanh(x)[keep])


@pytest.mark.parametrize("far", [-20.0, 4.5, 9.0, np.inf, -np.inf, np.nan])
def test_gelu_lane_does_not_depend_on_its_neighbours(backend, rng, far):
    # lanes beyond the polynomial's range take the erfc / exp formulas, and only vectors holding such a
    # lane compute them: every other lane must come out the same with or without such a neighbour
    x = rng.uniform(-7.5, 5.0, 256).astype(np.float32)
    g = rng.standard_normal(256).astype(np.float32)
    y = x.copy()
    y[3::16] = far  # one lane in every 16-float vector (and every 8-float one)
    keep = np.ones(256, bool)
    keep[3::16] = False
    with np.errstate(invalid="ignore"):  # gelu(-inf) = -inf * 0 (NaN, as in torch) on the NumPy backend
        fy, by = F.gelu(y), F.gelu_backward(g, y)
    np.testing.assert_array_equal(fy[keep], F.gelu(x)[keep])
    np.testing.assert_array_equal(by[keep], F.gelu_backward(g, x)[keep])



@pytest.mark.torch
@pytest.mark.parametrize("name", list(OPS))
def test_torch_parity(backend, rng, name):
    # every backend and ISA (the AVX2 reciprocal once left sigmoid(large x) 1 ulp below 1: gelu_tanh was
    # then less accurate than torch's, which only an AVX2 run showed)
    torch = pytest.importorskip("torch")
    fwd, rfwd, bwd, rbwd, saved, kw = OPS[name]
    x = (rng.standard_normal(4099) * 5).astype(np.float32)
    tfn = {"relu": torch.relu, "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, 0.2),
           "sigmoid": torch.sigmoid, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu,
           "gelu_tanh": lambda t: torch.nn.functional.gelu(t, approximate="tanh")}[name]
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = tfn(xt)
    g = rng.standard_normal(4099).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    y = fwd(x, **kw)
    # torch's own float32 kernels are a few ulp off the exact value too: compare both to float64
    ref = rfwd(x, **kw)
    cond = condition_number(lambda v: rfwd(v, **kw), x)
    assert_close(y, ref, ulps=ULPS[name], cond=cond, what=name)
    # torch's float32 gelu loses accuracy in the negative tail (its tanh form cancels in 1 + tanh u,
    # its erf form has ~1e-3 relative error near x = -3): agree loosely, and be at least as accurate.
    yt_np = yt.detach().numpy()
    np.testing.assert_allclose(y, yt_np, rtol=2e-3, atol=1e-6)
    if name.startswith("gelu"):
        assert np.abs(y - ref).max() <= np.abs(yt_np - ref).max() + 1e-7
    # output-based backwards (sigmoid, tanh) get torch's own output: near saturation 1 - y^2 and y (1 - y)
    # cancel, so a 1-ulp difference between two correct forward results would dominate the comparison
    s = x if saved == "input" else yt_np
    np.testing.assert_allclose(bwd(g, s, **kw), xt.grad.numpy(), rtol=2e-5, atol=2e-6)
