"""Pooling: references on hand-computed values and finite differences, then every backend x ISA
against them (exact for max values and indices, a few eps for averages), then torch parity."""
import numpy as np
import pytest

import fastml
import fastml.functional as F
import fastml.reference as R
from _tolerance import EPS32, numeric_vjp

NAN, INF = np.nan, np.inf


def _close_avg(got, ref, x, what=""):
    """Averages: the sum order differs between backends, so allow a few eps of the summed magnitudes."""
    eps = EPS32 if np.asarray(got).dtype != np.float64 else np.finfo(np.float64).eps
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, what
    ax = np.abs(np.asarray(x, np.float64))
    scale = float(np.max(ax[np.isfinite(ax)], initial=1.0))
    np.testing.assert_allclose(got, ref, rtol=8 * eps, atol=16 * eps * max(scale, 1e-30), err_msg=what)


def _rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ---- the references themselves -------------------------------------------------------------------

def test_reference_hand_values():
    x = np.arange(5.0).reshape(1, 1, 5)
    y, i = R.max_pool1d(x, 2, 2, 1, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(y, [[[0, 2, 4]]])
    np.testing.assert_array_equal(i, [[[0, 2, 4]]])
    np.testing.assert_allclose(R.avg_pool1d(x, 2, 2, 1, ceil_mode=True), [[[0, 1.5, 3.5]]])
    # windows [-1, 1], [1, 3], [3, 5]: the last one overhangs the input by one padded element
    np.testing.assert_allclose(R.avg_pool1d(x, 3, 2, 1, ceil_mode=True), [[[1 / 3, 2, 7 / 3]]])
    np.testing.assert_allclose(R.avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), [[[0.5, 2, 3.5]]])
    y, i = R.max_pool1d(np.array([[[1.0, NAN, 2.0, NAN, 3.0]]]), 5, return_indices=True)
    assert np.isnan(y[0, 0, 0]) and i[0, 0, 0] == 3  # torch's scan: the last NaN wins
    y, i = R.max_pool1d(np.array([[[1.0, 1.0, 1.0]]]), 3, return_indices=True)
    assert y[0, 0, 0] == 1 and i[0, 0, 0] == 0  # ties: first maximum
    y, i = R.max_pool1d(np.full((1, 1, 3), -INF), 2, 1, 1, return_indices=True)
    np.testing.assert_array_equal(i, [[[0, 0, 1, 2]]])
    # a window whose taps are all padding: -inf, index of its first non-negative tap (torch gives 2)
    y, i = R.max_pool1d(np.array([[[7.0, 8.0]]]), 2, 1, 1, dilation=3, return_indices=True)
    assert y[0, 0, 0] == -INF and i[0, 0, 0] == 2
    np.testing.assert_allclose(R.adaptive_avg_pool1d(np.arange(5.0).reshape(1, 5), 3), [[0.5, 2.0, 3.5]])
    np.testing.assert_allclose(R.avg_pool2d(np.ones((1, 4, 4)), 2, divisor_override=3), np.full((1, 2, 2), 4 / 3))


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2),
                                dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                                dict(kernel_size=(2, 3), stride=1, padding=(1, 0), divisor_override=5)])
def test_reference_avg_backward_matches_finite_differences(rng, kw):
    x = rng.standard_normal((1, 2, 5, 6))
    y = R.avg_pool2d(x, **kw)
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(R.avg_pool2d_backward(g, x, **kw), numeric_vjp(lambda v: R.avg_pool2d(v, **kw), x, g),
                               rtol=1e-6, atol=1e-8)
    ya = R.adaptive_avg_pool2d(x, (3, 4))
    ga = rng.standard_normal(ya.shape)
    np.testing.assert_allclose(R.adaptive_avg_pool2d_backward(ga, x),
                               numeric_vjp(lambda v: R.adaptive_avg_pool2d(v, (3, 4)), x, ga), rtol=1e-6, atol=1e-8)


def test_reference_max_backward_matches_finite_differences(rng):
    x = rng.permutation(60).astype(np.float64).reshape(1, 2, 5, 6)  # distinct values: differentiable
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    y = R.max_pool2d(x, **kw)
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(R.max_pool2d_backward(g, x, **kw), numeric_vjp(lambda v: R.max_pool2d(v, **kw), x, g),
                               rtol=1e-6, atol=1e-8)


# ---- every backend against the reference ---------------------------------------------------------

# (nd, shape, kwargs) of max/avg configs; avg drops dilation
CONFIGS = [
    (1, (2, 3, 19), dict(kernel_size=3, stride=2, padding=1)),
    (1, (2, 2, 20), dict(kernel_size=4, stride=1, padding=2, dilation=2, ceil_mode=True)),
    (2, (2, 3, 11, 19), dict(kernel_size=2)),
    (2, (2, 3, 11, 19), dict(kernel_size=3, stride=2, padding=1)),
    (2, (1, 2, 9, 33), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True)),
    (2, (1, 2, 10, 12), dict(kernel_size=3, stride=1, padding=1, dilation=(2, 3))),
    (2, (1, 2, 7, 40), dict(kernel_size=3, stride=3, padding=1, ceil_mode=True)),
    (2, (1, 1, 6, 6), dict(kernel_size=5, stride=4, padding=2, ceil_mode=True)),  # ceil window starts in padding
    (3, (1, 2, 5, 6, 7), dict(kernel_size=(2, 3, 3), stride=(1, 2, 2), padding=(1, 1, 1))),
    (3, (2, 1, 4, 5, 9), dict(kernel_size=2, stride=2, ceil_mode=True)),
    # wide windows with a W stride > 2 (each output reduced along W by vector loads)
    (1, (2, 3, 300), dict(kernel_size=100)),
    (1, (2, 2, 203), dict(kernel_size=9, stride=4, padding=2)),
    (2, (1, 3, 28, 30), dict(kernel_size=7)),
    (2, (1, 2, 17, 40), dict(kernel_size=(3, 5), stride=(2, 3), padding=(1, 2))),
    (2, (1, 2, 12, 45), dict(kernel_size=4, stride=4, ceil_mode=True)),
]
_MAX = {1: (F.max_pool1d, R.max_pool1d, F.max_pool1d_backward, R.max_pool1d_backward),
        2: (F.max_pool2d, R.max_pool2d, F.max_pool2d_backward, R.max_pool2d_backward),
        3: (F.max_pool3d, R.max_pool3d, F.max_pool3d_backward, R.max_pool3d_backward)}
_AVG = {1: (F.avg_pool1d, R.avg_pool1d, F.avg_pool1d_backward, R.avg_pool1d_backward),
        2: (F.avg_pool2d, R.avg_pool2d, F.avg_pool2d_backward, R.avg_pool2d_backward),
        3: (F.avg_pool3d, R.avg_pool3d, F.avg_pool3d_backward, R.avg_pool3d_backward)}


def _avg_kw(kw):
    return {k: v for k, v in kw.items() if k != "dilation"}


@pytest.mark.parametrize("nd,shape,kw", CONFIGS)
def test_max_pool_matches_reference(backend, rng, nd, shape, kw):
    f, rf, fb, rfb = _MAX[nd]
    x = _rand(rng, shape)
    y, i = f(x, return_indices=True, **kw)
    ry, ri = rf(x, return_indices=True, **kw)
    assert y.dtype == np.float32 and i.dtype == np.int64
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(f(x, **kw), ry)
    g = _rand(rng, y.shape)
    ref = rfb(g, x, indices=ri, **kw)
    # a position that is the maximum of several windows sums their gradients (in any order)
    _close_avg(fb(g, x, indices=i, **kw), ref, g)
    _close_avg(fb(g, x, **kw), ref, g)


@pytest.mark.parametrize("nd,shape,kw", CONFIGS)
@pytest.mark.parametrize("cip", [True, False])
def test_avg_pool_matches_reference(backend, rng, nd, shape, kw, cip):
    f, rf, fb, rfb = _AVG[nd]
    kw = _avg_kw(kw)
    x = _rand(rng, shape)
    y = f(x, count_include_pad=cip, **kw)
    _close_avg(y, rf(x, count_include_pad=cip, **kw), x)
    g = _rand(rng, y.shape)
    _close_avg(fb(g, x, count_include_pad=cip, **kw), rfb(g, x, count_include_pad=cip, **kw), g)
    if nd > 1:
        dk = dict(kw, divisor_override=3)
        _close_avg(f(x, count_include_pad=cip, **dk), rf(x, count_include_pad=cip, **dk), x)
        _close_avg(fb(g, x, count_include_pad=cip, **dk), rfb(g, x, count_include_pad=cip, **dk), g)


@pytest.mark.parametrize("ow", [1, 7, 8, 9, 15, 16, 17, 33])
@pytest.mark.parametrize("kw", [dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=3, stride=1)],
                         ids=["2x2s2", "3x3s2p1", "3x3s1p1", "3x3s1"])
def test_pool2d_output_widths(backend, rng, ow, kw):
    k, s, p = kw["kernel_size"], kw["stride"], kw.get("padding", 0)
    W = (ow - 1) * s + k - 2 * p
    x = _rand(rng, (1, 2, 5, W))
    y, i = F.max_pool2d(x, return_indices=True, **kw)
    ry, ri = R.max_pool2d(x, return_indices=True, **kw)
    assert y.shape[-1] == ow
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(i, ri)
    _close_avg(F.avg_pool2d(x, **kw), R.avg_pool2d(x, **kw), x)
    g = _rand(rng, y.shape)
    _close_avg(F.avg_pool2d_backward(g, x, **kw), R.avg_pool2d_backward(g, x, **kw), g)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)])
def test_max_backward_any_indices(backend, rng, kw):
    # any in-plane index is legal (torch scatters wherever it points), not only the window's own taps
    x = _rand(rng, (2, 3, 8, 10))
    y, i = F.max_pool2d(x, return_indices=True, **kw)
    g = _rand(rng, y.shape)
    for idx in (rng.integers(0, 80, size=y.shape), np.zeros(y.shape, np.int64), i):
        _close_avg(F.max_pool2d_backward(g, x, indices=idx, **kw), R.max_pool2d_backward(g, x, indices=idx, **kw), g)
    j = i.copy()
    j[1, 2, 3, 4] = j[1, 2, 3, 3]  # one index in the neighbouring window
    _close_avg(F.max_pool2d_backward(g, x, indices=j, **kw), R.max_pool2d_backward(g, x, indices=j, **kw), g)


def _scatter_in_order(g, idx, in_shape, nsp):
    """torch's max backward: per plane, a zeroed float32 grad_input and grad_input[idx] += grad_output in
    increasing output order (np.add.at is unbuffered and sequential); out-of-plane indices dropped."""
    planes = int(np.prod(in_shape[:-nsp]))
    plane = int(np.prod(in_shape[-nsp:]))
    gp, ip = g.reshape(planes, -1), idx.reshape(planes, -1)
    out = np.zeros((planes, plane), np.float32)
    for p in range(planes):
        keep = (ip[p] >= 0) & (ip[p] < plane)
        np.add.at(out[p], ip[p][keep], gp[p][keep])
    return out.reshape(in_shape)


def _equals_scatter(backend, got, want, g):
    """The compiled backends equal the in-order scatter bitwise, the NumPy backend within rounding."""
    if backend == "numpy":
        _close_avg(got, want, g)
    else:
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


_GATHER = [  # (nd, kw): the gather geometries (no dilation, stride 1 or 2 in W) and a few around them
    (2, dict(kernel_size=2, stride=2)),
    (2, dict(kernel_size=2, stride=2, ceil_mode=True)),
    (2, dict(kernel_size=3, stride=2, padding=1)),
    (2, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, dict(kernel_size=3, stride=1, padding=1)),
    (2, dict(kernel_size=(3, 2), stride=(2, 1))),
    (2, dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True)),
    (2, dict(kernel_size=4, stride=2, padding=2)),
    (2, dict(kernel_size=3, stride=3)),  # stride 3: the scatter
    (2, dict(kernel_size=3, stride=2, dilation=2)),  # dilation: the scatter
    (1, dict(kernel_size=3, stride=2, padding=1)),
    (1, dict(kernel_size=2, stride=1, ceil_mode=True)),
    (3, dict(kernel_size=2, stride=2)),
    (3, dict(kernel_size=3, stride=(1, 2, 2), padding=1)),
    (3, dict(kernel_size=(2, 3, 3), stride=(2, 2, 1), padding=(1, 1, 1), ceil_mode=True)),
]


def _gather_shape(nd, W):
    lead = {1: (2, 3), 2: (2, 3, 7), 3: (1, 2, 4, 5)}[nd]
    return lead + (W,)


def _has_output(case, W):
    nd, kw = _GATHER[case]
    try:
        R.__dict__[f"max_pool{nd}d"](np.zeros(_gather_shape(nd, W)), **kw)
    except ValueError:  # the window does not fit this width
        return False
    return True


@pytest.mark.parametrize("case,W", [(c, W) for c in range(len(_GATHER))
                                    for W in (1, 2, 3, 15, 16, 17, 33, 70) + ((48, 112) if _GATHER[c][0] == 2 else ())
                                    if _has_output(c, W)])
def test_max_backward_bitwise_scatter_order(backend, rng, case, W):
    # every geometry, with the forward's indices (ties: windows sharing a maximum), with foreign in-plane
    # indices (the scatter fallback) and with repeated indices, equals the in-order float32 scatter bitwise
    # (2-D widths 48 and 112: the 2x2 and 3x3 p1 gathers' rows in whole vector blocks, with no masked block after)
    nd, kw = _GATHER[case]
    shape = _gather_shape(nd, W)
    f, fb = _MAX[nd][0], _MAX[nd][2]
    x = rng.integers(-2, 3, size=shape).astype(np.float32)  # many ties: shared maxima
    x.reshape(-1)[::7] = _rand(rng, x.size)[::7]
    y, i = f(x, return_indices=True, **kw)
    g = _rand(rng, y.shape)
    g.reshape(-1)[::5] = 0.0
    g.reshape(-1)[1::11] = -0.0
    plane = int(np.prod(shape[-nd:]))
    foreign = i.copy().reshape(-1)
    foreign[::3] = rng.integers(0, plane, size=foreign[::3].size)
    same = np.zeros_like(i) + (plane - 1)  # every output on one element
    for idx in (i, foreign.reshape(i.shape), same):
        want = _scatter_in_order(g, idx, x.shape, nd)
        got = fb(g, x, indices=idx, **kw)
        _equals_scatter(backend, got, want, g)
    got = fb(g, x, **kw)  # recomputed indices
    want = _scatter_in_order(g, i, x.shape, nd)
    if backend != "numpy":
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


_S1 = [  # stride-1 windows (nd, shape, kw)
    (2, (2, 3, 56, 56), dict(kernel_size=3, stride=1, padding=1)),  # Inception's branch pool
    (2, (1, 4, 16, 18), dict(kernel_size=3, stride=1, padding=1)),
    (2, (1, 2, 20, 33), dict(kernel_size=5, stride=1, padding=2)),  # YOLO's SPPF
    (2, (1, 2, 9, 17), dict(kernel_size=3, stride=1, padding=1, ceil_mode=True)),
    (2, (2, 2, 7, 40), dict(kernel_size=(2, 4), stride=1, padding=(1, 2))),  # even kernels: padded on one side
    (2, (1, 3, 13, 16), dict(kernel_size=(7, 3), stride=1, padding=(3, 0))),
    (2, (1, 2, 5, 70), dict(kernel_size=(1, 13), stride=1, padding=(0, 6))),
    (2, (1, 1, 70, 3), dict(kernel_size=(66, 1), stride=1)),  # more window rows than the separable path keeps
    (2, (1, 2, 3, 80), dict(kernel_size=(2, 65), stride=1, padding=(1, 32))),  # and more columns
    (1, (2, 3, 100), dict(kernel_size=9, stride=1, padding=4)),
    (1, (1, 2, 5), dict(kernel_size=2, stride=1, padding=1)),
]


@pytest.mark.parametrize("nd,shape,kw", _S1)
def test_max_pool_stride1_separable(backend, rng, nd, shape, kw):
    # stride-1 windows (row winners joined down the window rows) give the window scan's values and indices,
    # bitwise, as the float64 reference and torch do: ties between -0 and +0 keep the first in window order, the
    # last NaN wins, infinities, a window of -inf only takes its first tap inside the input; one plane's only
    # NaN in its last row (the values-only path takes the NaN rule after a probe)
    f, rf = _MAX[nd][0], _MAX[nd][1]
    x = rng.integers(-2, 3, size=shape).astype(np.float32)
    x.reshape(-1)[::7] = _rand(rng, x.size)[::7]
    flat = x.reshape(-1, *shape[-nd:])
    z = flat[0].reshape(-1)
    z[(z == 0) & (np.arange(z.size) % 3 == 1)] = -0.0  # zeros of both signs
    if len(flat) > 1:
        flat[1].reshape(-1)[::23] = NAN
        flat[1].reshape(-1)[5::31] = INF
    if len(flat) > 2:
        flat[2].reshape(-1)[-1] = NAN
    if len(flat) > 3:
        flat[3] = -INF
        flat[3].reshape(-1)[::19] = NAN
    y = f(x, **kw)
    yi, i = f(x, return_indices=True, **kw)
    ry, ri = rf(x, return_indices=True, **kw)
    for got in (y, yi):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ry))
        np.testing.assert_array_equal(got, ry)
    np.testing.assert_array_equal(y.view(np.int32)[~np.isnan(y)], yi.view(np.int32)[~np.isnan(y)])
    np.testing.assert_array_equal(i, ri)
    torch = pytest.importorskip("torch")
    yt, it = getattr(torch.nn.functional, f"max_pool{nd}d")(torch.from_numpy(x), return_indices=True, **kw)
    yt = yt.numpy()
    np.testing.assert_array_equal(i, it.numpy())
    if backend != "numpy":
        np.testing.assert_array_equal(y.view(np.int32)[~np.isnan(y)], yt.view(np.int32)[~np.isnan(yt)])


@pytest.mark.parametrize("nd,shape,kw,mode", [
    (nd, shape, kw, mode) for nd, shape, kw in _S1
    for mode in (dict(), dict(count_include_pad=False), dict(divisor_override=7),
                 dict(ceil_mode=True, count_include_pad=False))
    if nd > 1 or "divisor_override" not in mode])  # avg_pool1d has no divisor_override, as in torch
def test_avg_pool_stride1_separable(backend, rng, nd, shape, kw, mode):
    # stride-1 averages (each row's sums once, then the window rows' sums) and their backward (the same sums
    # over gy / divisor, with padding k - 1 - p) against the float64 reference and torch: every divisor rule
    # (padding counted or not, divisor_override); a window of -0 only averages to +0, and an all -0 gradient
    # gives +0, as in torch (the sums start at +0)
    f, rf, fb, rfb = _AVG[nd]
    kw = dict(kw, **mode)
    x = _rand(rng, shape)
    x.reshape(-1, *shape[-nd:])[0] = -0.0
    y = f(x, **kw)
    _close_avg(y, rf(x.astype(np.float64), **kw), x)
    first = y.reshape(-1, *y.shape[-nd:])[0]
    assert np.all(first == 0) and not np.any(np.signbit(first))
    g = _rand(rng, y.shape)
    g.reshape(-1, *y.shape[-nd:])[0] = -0.0
    gx = fb(g, x, **kw)
    _close_avg(gx, rfb(g.astype(np.float64), x, **kw), g)
    first = gx.reshape(-1, *shape[-nd:])[0]
    assert np.all(first == 0) and not np.any(np.signbit(first))
    torch = pytest.importorskip("torch")
    xt = torch.from_numpy(x).requires_grad_()
    yt = getattr(torch.nn.functional, f"avg_pool{nd}d")(xt, **kw)
    _close_avg(y, yt.detach().numpy(), x)
    yt.backward(torch.from_numpy(g))
    _close_avg(gx, xt.grad.numpy(), g)


@pytest.mark.parametrize("kw", [dict(kernel_size=(3, 2, 2), stride=(1, 2, 2), padding=(1, 0, 0)),
                                dict(kernel_size=3, stride=(1, 2, 2), padding=1)])
@pytest.mark.parametrize("H,W", [(6, 16), (9, 33), (32, 48)])
def test_max_pool3d_backward_one_depth_slice(backend, rng, kw, H, W):
    # a 3D pool over a single depth slice with depth taps in the padding: the 2D windows of the paired-row
    # gather (2x2 s2, 3x3 s2 p1 in H, W), but with tap codes counted over the depth taps too, which that
    # path must not take
    x = rng.integers(-2, 3, size=(2, 3, 1, H, W)).astype(np.float32)
    x.reshape(-1)[::5] = _rand(rng, x.size)[::5]
    y, i = F.max_pool3d(x, return_indices=True, **kw)
    g = _rand(rng, y.shape)
    want = _scatter_in_order(g, i, x.shape, 3)
    got = F.max_pool3d_backward(g, x, indices=i, **kw)
    _equals_scatter(backend, got, want, g)


@pytest.mark.parametrize("W", [7, 8, 33, 64, 65, 95, 127])
def test_max_backward_index_wrapping_past_the_row(backend, rng, W):
    # a window that hangs over the left (right) edge: an index one before (after) its row, i.e. the last
    # (first) element of the previous (next) row, is not one of its taps; it is legal and is scattered there
    # (W >= 64 take the gather: at 95 and 127, 48 and 64 windows a row, the right edge's window is in the last
    # whole vector of windows; at 65 in a partial one)
    kw = dict(kernel_size=3, stride=2, padding=1)
    x = _rand(rng, (2, 3, 9, W))
    y, i = F.max_pool2d(x, return_indices=True, **kw)
    g = _rand(rng, y.shape)
    oH, oW = y.shape[-2:]
    j = i.copy()
    for oh in range(1, oH):
        j[0, 1, oh, 0] = (2 * oh) * W - 1  # window (oh, 0) covers columns -1..1 of rows 2oh-1..2oh+1
        if 2 * (oW - 1) + 1 >= W and 2 * oh + 1 < x.shape[2]:  # the last window reaches past the right edge
            j[1, 2, oh, oW - 1] = (2 * oh) * W + W  # first element of the next row
    want = _scatter_in_order(g, j, x.shape, 2)
    got = F.max_pool2d_backward(g, x, indices=j, **kw)
    _equals_scatter(backend, got, want, g)


@pytest.mark.parametrize("big", [2**32, 2**31, 2**30, -2**32, 2**62])
@pytest.mark.parametrize("nd,shape,kw", [(2, (2, 3, 12, 20), dict(kernel_size=3, stride=2, padding=1)),
                                         (3, (1, 2, 4, 6, 8), dict(kernel_size=2, stride=2)),
                                         (3, (1, 2, 5, 6, 8), dict(kernel_size=3, stride=2, padding=1))])
def test_max_backward_huge_index_is_an_error(backend, rng, big, nd, shape, kw):
    # an index whose low 32 bits name a valid tap is still outside the plane: an error, nothing written
    x = _rand(rng, shape)
    y, i = _MAX[nd][0](x, return_indices=True, **kw)
    j = i.copy()
    j.reshape(-1)[j.size // 2 + 1] += big
    out = np.full(x.shape, 7.0, np.float32)
    with pytest.raises(ValueError, match="indices in"):
        _MAX[nd][2](_rand(rng, y.shape), x, indices=j, out=out, **kw)
    assert np.all(out == 7.0)


@pytest.mark.parametrize("kw", [dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=2, padding=1)])
def test_max_backward_threads_bitwise_and_checked_first(backend, rng, threads, kw):
    # enough planes for two threads: 1 and 2 threads give the same bits, and so do the one-pass write of a new
    # grad_input and the two passes into out=; a bad index in the first, a middle or the last plane stops
    # the call, before anything is written into out=
    x = _rand(rng, (4, 16, 40, 40))
    y, i = F.max_pool2d(x, return_indices=True, **kw)
    g = _rand(rng, y.shape)
    outs = []
    for nt in (1, 2):
        fastml.set_num_threads(nt)
        outs.append(F.max_pool2d_backward(g, x, indices=i, **kw))
        if backend != "numpy":
            np.testing.assert_array_equal(outs[-1].view(np.int32), _scatter_in_order(g, i, x.shape, 2).view(np.int32))
        out = np.full(x.shape, 7.0, np.float32)
        assert F.max_pool2d_backward(g, x, indices=i, out=out, **kw) is out
        np.testing.assert_array_equal(out.view(np.int32), outs[-1].view(np.int32))
    np.testing.assert_array_equal(outs[0].view(np.int32), outs[1].view(np.int32))
    for plane in [(0, 0), (2, 7), (-1, -1)]:
        bad = i.copy()
        bad[plane][-1, -1] = 1600
        for nt in (1, 2):
            fastml.set_num_threads(nt)
            with pytest.raises(ValueError, match="indices in"):
                F.max_pool2d_backward(g, x, indices=bad, **kw)
            out = np.full(x.shape, 7.0, np.float32)
            with pytest.raises(ValueError, match="indices in"):
                F.max_pool2d_backward(g, x, indices=bad, out=out, **kw)
            assert np.all(out == 7.0)
    torch = pytest.importorskip("torch")
    xt = torch.from_numpy(x).requires_grad_()
    torch.nn.functional.max_pool2d(xt, **kw).backward(torch.from_numpy(g))
    if backend != "numpy":
        np.testing.assert_array_equal(outs[1], xt.grad.numpy())


@pytest.mark.parametrize("shape,kw", [((2, 3, 4, 4, 8), dict(kernel_size=2, stride=2)),
                                      ((1, 2, 6, 4, 16), dict(kernel_size=2, stride=2)),
                                      ((1, 2, 5, 6, 8), dict(kernel_size=(2, 2, 2), stride=(3, 2, 2))),
                                      ((1, 1, 4, 6, 8), dict(kernel_size=2, stride=2, padding=(1, 1, 0)))])
def test_max_pool3d_2x2_backward(backend, rng, shape, kw):
    # 3-d windows of 2 (the gather path): depth and height windows must not overwrite each other
    x = _rand(rng, shape)
    y, i = F.max_pool3d(x, return_indices=True, **kw)
    g = _rand(rng, y.shape)
    ref = R.max_pool3d_backward(g, x, **kw)
    for idx in (None, i):
        got = F.max_pool3d_backward(g, x, indices=idx, **kw)
        np.testing.assert_array_equal(got, ref.astype(np.float32))
    torch = pytest.importorskip("torch")
    xt = torch.from_numpy(x).requires_grad_()
    torch.nn.functional.max_pool3d(xt, **kw).backward(torch.from_numpy(g))
    for idx in (None, i):
        np.testing.assert_array_equal(F.max_pool3d_backward(g, x, indices=idx, **kw), xt.grad.numpy())


def test_avg_pool3d_input_smaller_than_kernel(backend):
    # torch's avg_pool3d refuses an input smaller than the kernel even where padding gives an output
    x = np.zeros((1, 1, 2, 4, 4), np.float32)
    for kw in (dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=(3, 2, 2), stride=1, padding=1,
                                                             ceil_mode=True)):
        for fn in (F.avg_pool3d, R.avg_pool3d):
            with pytest.raises(ValueError, match="smaller than kernel size"):
                fn(x, **kw)
        for fn in (F.avg_pool3d_backward, R.avg_pool3d_backward):
            with pytest.raises(ValueError, match="smaller than kernel size"):
                fn(np.zeros((1, 1, 2, 4, 4), np.float32), x, **kw)
        torch = pytest.importorskip("torch")
        with pytest.raises(RuntimeError, match="smaller than kernel size"):
            torch.nn.functional.avg_pool3d(torch.from_numpy(x), **kw)
    assert F.avg_pool3d(x, (2, 3, 3), 1, 1).shape == (1, 1, 3, 4, 4)  # as torch: sizes >= kernel are fine


def test_windows_reaching_past_the_input(backend, rng):
    # taps that land in the right padding for every window (L - 1 + p < (k - 1) d) read padding only, and a
    # window of 2^31 - 1 taps over 9 values (ceil_mode, stride = kernel) is the mean / max of the 9 values:
    # the NumPy backend cuts such taps (and the padding only they read) instead of padding the input to the
    # window's size (16 GiB here)
    x = _rand(rng, (2, 3, 3, 5))
    for kw in (dict(kernel_size=3, padding=1, dilation=2), dict(kernel_size=(3, 2), padding=1, dilation=(2, 4),
                                                               stride=2, ceil_mode=True)):
        y, i = F.max_pool2d(x, return_indices=True, **kw)
        yr, ir = R.max_pool2d(x.astype(np.float64), return_indices=True, **kw)
        np.testing.assert_array_equal(y, yr.astype(np.float32))
        np.testing.assert_array_equal(i, ir)
    x2 = _rand(rng, (2, 3, 2, 2))
    for cip in (True, False):
        kw = dict(kernel_size=4, stride=1, padding=(2, 1), count_include_pad=cip)  # rows: L - 1 + p = 3 = k - 1
        _close_avg(F.avg_pool2d(x2, **kw), R.avg_pool2d(x2.astype(np.float64), **kw), x2)
        g = _rand(rng, R.avg_pool2d(x2, **kw).shape)
        _close_avg(F.avg_pool2d_backward(g, x2, **kw), R.avg_pool2d_backward(g.astype(np.float64), x2, **kw), g)
    x1 = _rand(rng, (2, 4, 9))
    big = 2**31 - 1
    y, i = F.max_pool1d(x1, big, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(y[..., 0], x1.max(axis=-1))
    np.testing.assert_array_equal(i[..., 0], x1.argmax(axis=-1))
    gi = F.max_pool1d_backward(np.ones(y.shape, np.float32), x1, big, ceil_mode=True, indices=i)
    np.testing.assert_array_equal(gi, x1 == x1.max(axis=-1, keepdims=True))
    for cip in (True, False):  # the window's taps on the input: 9 (the rest lies past the right edge)
        a = F.avg_pool1d(x1, big, ceil_mode=True, count_include_pad=cip)
        np.testing.assert_allclose(a[..., 0], x1.astype(np.float64).mean(axis=-1), rtol=1e-6, atol=1e-7)
        ga = F.avg_pool1d_backward(np.ones(a.shape, np.float32), x1, big, ceil_mode=True, count_include_pad=cip)
        np.testing.assert_allclose(ga, np.full(x1.shape, 1 / 9), rtol=1e-6)
    # strides 1 and 2 (the compiled backward's row gathers) with 2^31 - 1 taps and 2^30 - 1 padding: every
    # window holds the 9 values, so each output is their sum / k and each input's gradient 9 / k (or 5 / k)
    for s, n_out in ((1, 9), (2, 5)):
        a = F.avg_pool1d(x1, big, s, 2**30 - 1)
        assert a.shape == (2, 4, n_out)
        np.testing.assert_allclose(a, np.broadcast_to(x1.astype(np.float64).sum(-1, keepdims=True) / big, a.shape),
                                   rtol=1e-5, atol=1e-15)
        ga = F.avg_pool1d_backward(np.ones(a.shape, np.float32), x1, big, s, 2**30 - 1)
        np.testing.assert_allclose(ga, np.full(x1.shape, n_out / big), rtol=1e-6)


def test_max_backward_indices_of_windows_in_padding(backend, rng):
    # windows wholly in the padding give -inf and (as torch) an index outside the plane; the backward takes
    # them back and drops their gradient; an out-of-plane index anywhere else still raises
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 1, 6)
    args = ((2, 1), 1, (1, 0), (2, 1), True)
    y, i = F.max_pool2d(x, *args, return_indices=True)
    assert np.all(i >= 6)
    g = np.ones_like(y)
    want = F.max_pool2d_backward(g, x, *args)
    np.testing.assert_array_equal(F.max_pool2d_backward(g, x, *args, indices=i), want)
    np.testing.assert_array_equal(R.max_pool2d_backward(g, x, *args, indices=i), want)
    np.testing.assert_array_equal(want, np.zeros_like(x))
    x3 = _rand(rng, (2, 3, 4, 2, 5))
    kw = dict(kernel_size=(2, 2, 2), stride=(2, 1, 1), padding=(0, 1, 1), dilation=(1, 3, 2))
    y, i = F.max_pool3d(x3, return_indices=True, **kw)
    g = _rand(rng, y.shape)
    want = R.max_pool3d_backward(g, x3, **kw)
    assert np.all(np.isneginf(y))  # every window misses the input in H; (as torch) the indices are in-plane
    for idx in (None, i):
        _close_avg(F.max_pool3d_backward(g, x3, indices=idx, **kw), want, g)
    # out-of-plane indices there are taken and go nowhere
    np.testing.assert_array_equal(F.max_pool3d_backward(g, x3, indices=np.full(i.shape, -5), **kw), 0 * x3)
    np.testing.assert_array_equal(R.max_pool3d_backward(g, x3, indices=np.full(i.shape, 99), **kw), 0 * x3)
    kw["dilation"] = 1  # no empty window: an out-of-plane index is an error
    y, i = F.max_pool3d(x3, return_indices=True, **kw)
    i[0, 1, 1, 0, 2] = 40
    for fn in (F.max_pool3d_backward, R.max_pool3d_backward):
        with pytest.raises(ValueError, match="indices in"):
            fn(_rand(rng, y.shape), x3, indices=i, **kw)


def test_max_pool_special_values(backend, rng):
    # small integers: many ties (first maximum wins), plus NaN (last NaN wins) and -inf
    x = rng.integers(-2, 3, size=(2, 3, 12, 21)).astype(np.float32)
    x[0, 0, 3, 4] = x[0, 0, 3, 6] = x[0, 0, 4, 5] = NAN
    x[1, 2] = -INF
    x[1, 1, :, :7] = -INF
    x[0, 2, 5, 5:] = INF
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2), dict(kernel_size=3, stride=1,
                                                                                  padding=1, dilation=2),
               dict(kernel_size=(2, 5), stride=(2, 5)), dict(kernel_size=(3, 9), stride=(3, 4), padding=(1, 3))):
        y, i = F.max_pool2d(x, return_indices=True, **kw)
        ry, ri = R.max_pool2d(x, return_indices=True, **kw)
        np.testing.assert_array_equal(y, ry)
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_array_equal(F.max_pool2d(x, **kw), ry)
    # every tap of a window in the padding: -inf with torch's index
    y, i = F.max_pool1d(np.array([[[7.0, 8.0]]], np.float32), 2, 1, 1, dilation=3, return_indices=True)
    assert y[0, 0, 0] == -INF and i[0, 0, 0] == 2


def test_unbatched_tiny_strided_and_channels_last(backend, rng):
    x = _rand(rng, (3, 9, 10))
    np.testing.assert_array_equal(F.max_pool2d(x, 3, 2, 1), R.max_pool2d(x, 3, 2, 1))
    assert F.max_pool2d(x, 3, 2, 1).shape == (3, 5, 5)
    one = _rand(rng, (2, 4, 1, 1))
    np.testing.assert_array_equal(F.max_pool2d(one, 1), one)
    _close_avg(F.avg_pool2d(one, 1), one, one)
    _close_avg(F.adaptive_avg_pool2d(one, 1), one, one)
    nhwc = _rand(rng, (2, 9, 11, 5))
    x = nhwc.transpose(0, 3, 1, 2)  # channels-last buffer viewed as NCHW
    y, i = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    ry, ri = R.max_pool2d(np.ascontiguousarray(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(i, ri)
    _close_avg(F.avg_pool2d(x[:, :, ::2], 2), R.avg_pool2d(np.ascontiguousarray(x[:, :, ::2]), 2), x)
    g = _rand(rng, y.shape).transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)
    _close_avg(F.avg_pool2d_backward(g, x, 3, 2, 1), R.avg_pool2d_backward(g, x, 3, 2, 1), g)


@pytest.mark.parametrize("nd,shape,osz", [(1, (2, 3, 10), 3), (1, (2, 3, 7), 7), (2, (2, 3, 10, 13), (3, None)),
                                          (2, (2, 3, 10, 13), (4, 5)), (2, (2, 3, 7, 7), 1), (2, (1, 2, 5, 5), 8),
                                          (3, (1, 2, 5, 6, 7), (2, 4, None)), (3, (1, 2, 4, 4, 4), 1),
                                          (2, (2, 3, 12, 18), (4, 6)), (3, (1, 2, 4, 6, 8), (2, 3, 4)),
                                          (1, (2, 3, 64), 16)])
def test_adaptive_matches_reference(backend, rng, nd, shape, osz):
    fa, ra = getattr(F, f"adaptive_avg_pool{nd}d"), getattr(R, f"adaptive_avg_pool{nd}d")
    fm, rm = getattr(F, f"adaptive_max_pool{nd}d"), getattr(R, f"adaptive_max_pool{nd}d")
    x = rng.integers(-3, 4, size=shape).astype(np.float32)  # ties
    x.flat[5] = NAN
    y = fa(x, osz)
    _close_avg(y, ra(x, osz), x)
    g = _rand(rng, y.shape)
    _close_avg(getattr(F, f"adaptive_avg_pool{nd}d_backward")(g, x), getattr(R, f"adaptive_avg_pool{nd}d_backward")(g, x), g)
    ym, im = fm(x, osz, return_indices=True)
    rym, rim = rm(x, osz, return_indices=True)
    np.testing.assert_array_equal(ym, rym)
    np.testing.assert_array_equal(im, rim)
    _close_avg(getattr(F, f"adaptive_max_pool{nd}d_backward")(g, x, im),
               getattr(R, f"adaptive_max_pool{nd}d_backward")(g, x, rim), g)


def test_empty_batch(backend):
    x = np.zeros((0, 3, 8, 8), np.float32)
    y, i = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert y.shape == i.shape == (0, 3, 4, 4)
    assert F.avg_pool2d(x, 2).shape == (0, 3, 4, 4)
    assert F.adaptive_avg_pool2d(x, 1).shape == (0, 3, 1, 1)
    assert F.max_pool2d_backward(np.zeros((0, 3, 4, 4), np.float32), x, 2).shape == x.shape
    assert F.avg_pool2d_backward(np.zeros((0, 3, 4, 4), np.float32), x, 2).shape == x.shape
    assert F.adaptive_max_pool2d(np.ones((1, 2, 3, 3), np.float32), (0, 2)).shape == (1, 2, 0, 2)


def test_float64_stays_float64(rng):
    x = rng.standard_normal((2, 3, 8, 9))
    y, i = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, R.max_pool2d(x, 3, 2, 1))
    a = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    assert a.dtype == np.float64
    _close_avg(a, R.avg_pool2d(x, 3, 2, 1, count_include_pad=False), x)
    assert F.adaptive_avg_pool2d(x, (3, 2)).dtype == np.float64


def test_out_argument(backend, rng):
    x = _rand(rng, (2, 3, 8, 8))
    out = np.empty((2, 3, 4, 4), np.float32)
    r = F.max_pool2d(x, 2, out=out)
    assert r is out
    np.testing.assert_array_equal(out, R.max_pool2d(x, 2))
    r = F.avg_pool2d(x, 2, out=out)
    assert r is out
    gx = np.empty_like(x)
    assert F.avg_pool2d_backward(out, x, 2, out=gx) is gx


def test_threads_bitwise_identical(rng, threads):
    x = _rand(rng, (4, 16, 40, 41))
    res = []
    for n in (1, 2):
        fastml.set_num_threads(n)
        y, i = F.max_pool2d(x, 3, 2, 1, return_indices=True)
        a = F.avg_pool2d(x, 3, 2, 1)
        g = F.avg_pool2d_backward(a, x, 3, 2, 1)
        m = F.max_pool2d_backward(y, x, 3, 2, 1)
        res.append((y, i, a, g, m, F.adaptive_avg_pool2d(x, 1), F.adaptive_avg_pool2d(x, (5, 7))))
    for u, v in zip(*res):
        assert u.tobytes() == v.tobytes()


BAD = [
    (lambda x: F.max_pool2d(x[0, 0], 2), ValueError, "3-D or 4-D"),
    (lambda x: F.max_pool2d(x, 0), ValueError, "kernel_size > 0"),
    (lambda x: F.max_pool2d(x, 2, stride=0), ValueError, "stride > 0"),
    (lambda x: F.max_pool2d(x, 2, padding=2), ValueError, "at most half"),
    (lambda x: F.max_pool2d(x, 2, dilation=0), ValueError, "dilation > 0"),
    (lambda x: F.max_pool2d(x, 9), ValueError, "output size"),
    (lambda x: F.max_pool2d(x, (2, 2, 2)), ValueError, "2 ints"),
    (lambda x: F.max_pool2d(x, 2.5), TypeError, "int"),
    (lambda x: F.avg_pool2d(x, 2, divisor_override=0), ValueError, "divisor_override"),
    (lambda x: F.avg_pool2d(x, 2, divisor_override=2**64), ValueError, "within int64"),
    (lambda x: F.max_pool2d(x.astype(np.float16), 2), TypeError, "float16"),
    (lambda x: F.max_pool2d(x.astype(np.int32), 2), TypeError, "int32"),
    (lambda x: F.adaptive_avg_pool2d(x, (2, -1)), ValueError, "output_size"),
    (lambda x: F.max_pool2d_backward(np.zeros((1, 2, 3, 3), x.dtype), x, 2), ValueError, "grad_output"),
    (lambda x: F.max_pool2d_backward(np.zeros((1, 2, 4, 4), x.dtype), x, 2,
                                     indices=np.full((1, 2, 4, 4), 64)), ValueError, "indices"),
    (lambda x: F.max_pool2d_backward(np.zeros((1, 2, 4, 4), x.dtype), x, 2,
                                     indices=np.zeros((1, 2, 4, 4), np.float32)), TypeError, "indices"),
    (lambda x: F.adaptive_max_pool2d_backward(np.zeros((1, 2, 4, 4), x.dtype), x, None), ValueError, "indices"),
    (lambda x: F.max_pool2d(x, 1, out=x), ValueError, "share memory"),
    (lambda x: F.avg_pool2d_backward(x, x, 1, out=x), ValueError, "share memory"),
    (lambda x: F.max_pool2d(x, 2, out=np.zeros((1, 2, 4, 5), np.float32)), ValueError, "shape"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_inputs(backend, case):
    fn, exc, text = BAD[case]
    x = np.ones((1, 2, 8, 8), np.float32)
    with pytest.raises(exc, match=text):
        fn(x)
    out = np.full((1, 2, 8, 8), 7.0, np.float32)
    with pytest.raises(ValueError):
        F.max_pool2d_backward(np.zeros((1, 2, 4, 4), np.float32), x, 2, indices=np.full((1, 2, 4, 4), -1), out=out)
    assert np.all(out == 7.0)  # nothing written on error


# ---- torch parity --------------------------------------------------------------------------------

@pytest.mark.parametrize("nd,shape,kw", CONFIGS)
def test_torch_parity(backend, rng, nd, shape, kw):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = _rand(rng, shape)
    x.flat[3] = NAN
    xt = torch.from_numpy(x).requires_grad_()
    yt, it = getattr(tf, f"max_pool{nd}d")(xt, return_indices=True, **kw)
    y, i = _MAX[nd][0](x, return_indices=True, **kw)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(i, it.numpy())
    g = _rand(rng, y.shape)
    yt.backward(torch.from_numpy(g))
    _close_avg(_MAX[nd][2](g, x, indices=i, **kw), xt.grad.numpy(), g)
    x = _rand(rng, shape)
    for cip in (True, False):
        akw = _avg_kw(kw)
        xt = torch.from_numpy(x).requires_grad_()
        at = getattr(tf, f"avg_pool{nd}d")(xt, count_include_pad=cip, **akw)
        a = _AVG[nd][0](x, count_include_pad=cip, **akw)
        _close_avg(a, at.detach().numpy(), x)
    for osz in (1, 3):
        xt = torch.from_numpy(x).requires_grad_()
        yt = getattr(tf, f"adaptive_avg_pool{nd}d")(xt, osz)
        _close_avg(getattr(F, f"adaptive_avg_pool{nd}d")(x, osz), yt.detach().numpy(), x)
        yt, it = getattr(tf, f"adaptive_max_pool{nd}d")(torch.from_numpy(x), osz, return_indices=True)
        y, i = getattr(F, f"adaptive_max_pool{nd}d")(x, osz, return_indices=True)
        np.testing.assert_array_equal(y, yt.numpy())
        np.testing.assert_array_equal(i, it.numpy())


@pytest.mark.parametrize("nd,shape,kw", CONFIGS)
def test_torch_parity_avg_backward(backend, rng, nd, shape, kw):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = _rand(rng, shape)
    akw = _avg_kw(kw)
    for cip in (True, False):
        xt = torch.from_numpy(x).requires_grad_()
        at = getattr(tf, f"avg_pool{nd}d")(xt, count_include_pad=cip, **akw)
        g = _rand(rng, tuple(at.shape))
        at.backward(torch.from_numpy(g))
        _close_avg(_AVG[nd][2](g, x, count_include_pad=cip, **akw), xt.grad.numpy(), g)
    xt = torch.from_numpy(x).requires_grad_()
    yt = getattr(tf, f"adaptive_avg_pool{nd}d")(xt, 3)
    g = _rand(rng, tuple(yt.shape))
    yt.backward(torch.from_numpy(g))
    _close_avg(getattr(F, f"adaptive_avg_pool{nd}d_backward")(g, x), xt.grad.numpy(), g)


def test_bench_cases_compute_the_same_thing(threads):
    """The fastml, NumPy and torch rows of the quick pooling bench cases return the same values, so the
    GB/s and ratios compare like with like."""
    from fastml.bench import cases as C

    torch = C.torch_or_none()
    fastml.set_num_threads(1)
    cases = [c for c in C.select_cases(["pool"], quick=True)]
    assert {c.op for c in cases} >= {"max_pool2d", "max_pool2d_with_indices", "max_pool2d_backward", "avg_pool2d",
                                     "avg_pool2d_backward", "adaptive_avg_pool2d"}
    for case in cases:
        prepared = case.build()
        assert prepared.bytes > 0
        outs = {}
        for name, fn in prepared.impls.items():
            r = fn()
            r = r[0] if isinstance(r, tuple) else r
            outs[name] = np.array(r.numpy() if torch is not None and isinstance(r, torch.Tensor) else r, copy=True)
        for name, got in outs.items():
            np.testing.assert_allclose(got, outs["fastml"], rtol=1e-5, atol=1e-5, err_msg=f"{case.name} {name}")


@pytest.mark.parametrize("shape", [(2, 3, 9, 40), (1, 2, 12, 50), (1, 1, 3, 17), (2, 2, 31, 36)])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_3x3_s2_rows_shared_by_consecutive_output_rows(backend, rng, shape, padding, ceil_mode):
    # 3x3 s2 averages reuse the sum of the input row an output row shares with the previous one; the
    # max reduces every row again, values only and with indices (both must give the same bits, NaN, -0
    # and +-inf included)
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 6, replace=False)] = [np.nan, -0.0, 0.0, np.inf, -np.inf, np.nan]
    y = F.max_pool2d(x, 3, 2, padding, ceil_mode=ceil_mode)
    yi, _ = F.max_pool2d(x, 3, 2, padding, ceil_mode=ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y.view(np.uint32), yi.view(np.uint32))
    np.testing.assert_array_equal(y, R.max_pool2d(x, 3, 2, padding, ceil_mode=ceil_mode))
    xf = np.nan_to_num(x, nan=0.5, posinf=3.0, neginf=-3.0)
    for cip in (True, False):
        _close_avg(F.avg_pool2d(xf, 3, 2, padding, ceil_mode=ceil_mode, count_include_pad=cip),
                   R.avg_pool2d(xf, 3, 2, padding, ceil_mode=ceil_mode, count_include_pad=cip), xf)


@pytest.mark.parametrize("k", [2, 3])
def test_max_values_fast_path_falls_back_on_nan_and_mixed_inf(backend, rng, k):
    # values-only 2x2 s2 / 3x3 s2 p1 max takes plain max with a NaN probe (a sum of the taps) and redoes a
    # chunk with torch's NaN rule when the probe is NaN: NaN taps (distinct payloads: the last one wins),
    # +inf and -inf in one chunk (probe NaN, no NaN tap), NaN only in the extra third tap of a chunk's last
    # lane (column 31 for lanes 0-15 with padding 1), and signed-zero ties (the first one wins). Bitwise
    # against the with-indices path, which compares instead.
    x = rng.integers(-1, 2, size=(2, 3, 9, 70)).astype(np.float32)
    x[x == 0] = -0.0
    x[:, :, ::2, ::3] = 0.0
    bits = x.view(np.uint32)
    bits[0, 0, 2, 4] = 0x7FC00001
    bits[0, 0, 2, 5] = 0x7FC00002  # one window (output (1, 2)) for k = 2 and k = 3: the later payload wins
    bits[0, 0, 3, 40] = 0xFFC00003
    x[0, 1, 4, 10], x[0, 1, 4, 20] = np.inf, -np.inf
    x[1, 2, 6, 31] = np.nan
    x[1, 1, 7, 63] = np.nan
    kw = dict(kernel_size=k, stride=2, padding=k - 2)
    y = F.max_pool2d(x, **kw)
    yi, _ = F.max_pool2d(x, return_indices=True, **kw)
    np.testing.assert_array_equal(y.view(np.uint32), yi.view(np.uint32))
    np.testing.assert_array_equal(y, R.max_pool2d(x, **kw))
    assert np.isnan(y[1, 2, 3]).any() and np.isposinf(y[0, 1, 2]).any()
    if backend != "numpy":
        assert y.view(np.uint32)[0, 0, 1, 2] == 0x7FC00002


@pytest.mark.parametrize("hw", [(2, 16), (9, 17), (8, 50), (17, 112), (112, 112), (6, 16), (10, 34)])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("k,p", [(2, 0), (3, 1)])
def test_s2_planes(backend, rng, hw, ceil_mode, k, p):
    # 2x2 s2 and 3x3 s2 p1 planes whose windows all end inside the input run each output row (3x3 max: each
    # pair of rows sharing their middle input row; 3x3 average: with the carried row sum) as one range kernel;
    # the columns past the last whole vector, the 3x3 max's top row and unpaired last row, and the NaN rows
    # take the per-row path; ceil_mode on odd sizes adds a clipped last window and takes the general loop.
    # All against the reference: values and indices exactly (ties, signed zeros, NaN payloads, both
    # infinities, -inf windows), averages with an override of the divisor and without counting the padding
    x = rng.integers(-2, 3, size=(2, 3) + hw).astype(np.float32)
    x[x == 0] = -0.0
    x[:, :, ::3, ::5] = 0.0
    x[1, 0, :, :2] = -np.inf  # the left windows of a 3x3 p1 plane are all -inf (their indices: torch's)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 5, replace=False)] = [np.nan, np.inf, -np.inf, np.nan, np.inf]
    y, i = F.max_pool2d(x, k, 2, p, ceil_mode=ceil_mode, return_indices=True)
    ry, ri = R.max_pool2d(x, k, 2, p, ceil_mode=ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(F.max_pool2d(x, k, 2, p, ceil_mode=ceil_mode).view(np.uint32), y.view(np.uint32))
    xf = np.nan_to_num(x, nan=0.5, posinf=3.0, neginf=-3.0)
    for kw in (dict(), dict(divisor_override=3), dict(count_include_pad=False)):
        _close_avg(F.avg_pool2d(xf, k, 2, p, ceil_mode=ceil_mode, **kw),
                   R.avg_pool2d(xf, k, 2, p, ceil_mode=ceil_mode, **kw), xf)


@pytest.mark.parametrize("div", [None, 2, 8, 2 ** 20, 3])
def test_avg_2x2_divides_exactly(backend, rng, div):
    # float32 row sums over the divisor, and in the backward each input element's one share gy / divisor, with
    # denormal and huge values: the backward applies a power-of-two divisor as a multiply by its reciprocal,
    # which must round exactly like the division
    x = (rng.standard_normal((2, 3, 8, 40)) * 1e-38).astype(np.float32)
    x[0, 1] = (rng.uniform(-1, 1, (8, 40)) * 8e37).astype(np.float32)  # sums of four stay finite
    x[1, 2, :, ::7] = np.float32(1e-45)
    d = np.float32(4 if div is None else div)
    s = (x[:, :, 0::2, 0::2] + x[:, :, 0::2, 1::2]) + (x[:, :, 1::2, 0::2] + x[:, :, 1::2, 1::2])
    y = F.avg_pool2d(x, 2, 2, divisor_override=div)
    gy = x[:, :, ::2, ::2].copy()  # the same mix of tiny, huge and denormal values as gradients
    gx = F.avg_pool2d_backward(gy, x, 2, 2, divisor_override=div)
    want_gx = np.repeat(np.repeat(gy / d, 2, axis=2), 2, axis=3)
    if backend == "numpy":  # float64 inside: the same value up to one rounding
        _close_avg(y, s / d, x)
        _close_avg(gx, want_gx, gy)
    else:
        np.testing.assert_array_equal(y.view(np.uint32), (s / d).view(np.uint32))
        np.testing.assert_array_equal(gx, want_gx)  # (a share of -0 is stored as +0: compared as values)


@pytest.mark.parametrize("hw", [(2, 2), (5, 7), (9, 33), (17, 34), (4, 64), (3, 113)])
def test_avg_2x2_backward_whole_planes(backend, rng, hw):
    # 2x2 s2 windows all inside the plane: each output row's share goes straight to its two input rows (a
    # partial last vector where the width is not a multiple of the lanes); an odd last row or column, which
    # no window covers, is zero, also when out= held NaN before; the values are gy / 4 exactly (as the
    # general path and torch give them, a -0 share stored as +0)
    x = rng.standard_normal((2, 3) + hw).astype(np.float32)
    gy = rng.standard_normal((2, 3, hw[0] // 2, hw[1] // 2)).astype(np.float32)
    gy[0, 0, 0, :] = -0.0
    want = np.zeros_like(x)
    want[:, :, :2 * (hw[0] // 2), :2 * (hw[1] // 2)] = np.repeat(np.repeat(gy / np.float32(4), 2, axis=2), 2, axis=3)
    out = np.full_like(x, np.nan)
    gx = F.avg_pool2d_backward(gy, x, 2, 2, out=out)
    assert gx is out
    if backend == "numpy":
        _close_avg(gx, want, gy)
        return
    np.testing.assert_array_equal(gx.view(np.uint32), (want + np.float32(0)).view(np.uint32))
    np.testing.assert_array_equal(F.avg_pool2d_backward(gy, x, 2, 2, divisor_override=3),
                                  R.avg_pool2d_backward(gy, x, 2, 2, divisor_override=3).astype(np.float32))


@pytest.mark.parametrize("hw", [(6, 16), (8, 34), (10, 50), (12, 64), (112, 112), (6, 40)])
@pytest.mark.parametrize("kw", [dict(), dict(divisor_override=4), dict(divisor_override=7)])
def test_avg_3x3_s2_p1_backward_planes(backend, rng, hw, kw):
    # 3x3 s2 p1 windows with one divisor (padding counted, or an override): window row k's column share S_k
    # (q = gy / div; column 2j: q[j]; 2j + 1: q[j + 1] + q[j]) goes to input rows 2k and 2k + 1, and row 2k + 1
    # also gets S_{k + 1}: the float32 sums below in that order, bitwise, over out= holding NaN; without
    # counting the padding the divisors vary and the general path runs, against the reference
    x = rng.standard_normal((2, 3) + hw).astype(np.float32)
    oh, ow = hw[0] // 2, hw[1] // 2
    gy = rng.standard_normal((2, 3, oh, ow)).astype(np.float32)
    gy[0, 1, 2, :] = -0.0
    q = gy / np.float32(kw.get("divisor_override", 9))
    S = np.zeros(gy.shape[:3] + (hw[1],), np.float32)
    S[..., 0::2] = q
    S[..., 1::2] = np.concatenate([q[..., 1:], np.zeros_like(q[..., :1])], axis=-1) + q
    want = np.empty_like(x)
    want[:, :, 0::2] = S + np.float32(0)
    want[:, :, 1::2] = (S + np.float32(0)) + np.concatenate([S[:, :, 1:], np.zeros_like(S[:, :, :1])], axis=2)
    out = np.full_like(x, np.nan)
    gx = F.avg_pool2d_backward(gy, x, 3, 2, 1, out=out, **kw)
    assert gx is out
    if backend == "numpy":
        _close_avg(gx, want, gy)
    else:
        np.testing.assert_array_equal(gx.view(np.uint32), want.view(np.uint32))
    _close_avg(F.avg_pool2d_backward(gy, x, 3, 2, 1, count_include_pad=False, **kw),
               R.avg_pool2d_backward(gy, x, 3, 2, 1, count_include_pad=False, **kw), gy)


@pytest.mark.parametrize("W", [33, 70])
@pytest.mark.parametrize("k,p", [(2, 0), (2, 1), (3, 0), (3, 1)])
@pytest.mark.parametrize("where", ["none", "first", "last", "tail"])
def test_max_values_row_ranges(backend, rng, W, k, p, where):
    # values-only stride-2 rows of 8-lane vectors run whole ranges of chunks with one NaN probe and redo the
    # range with torch's steps when it is NaN: a NaN in the range's first or last chunk, or only in the
    # scalar tail after it, must give the with-indices path's bits (2-D rows, the paired 3x3 rows, a 3-D
    # window of 2 x 2 tap rows and one of 5 x 4 = 20 tap rows, more than the range kernel takes)
    x = rng.standard_normal((1, 2, 6, 11, W)).astype(np.float32)
    x[x > 2.2] = -0.0
    col = {"none": None, "first": 1, "last": 2 * ((W + 2 * p - k) // 2) - 8, "tail": W - 1}[where]
    if col is not None:
        x[0, 1, :, 4, col] = np.nan
        x[0, 0, 2, 7, col] = np.inf
        x[0, 0, 2, 8, col] = -np.inf
    y2 = F.max_pool2d(x[:, :, 0], k, 2, p)
    np.testing.assert_array_equal(y2, R.max_pool2d(x[:, :, 0], k, 2, p))  # 3-D: against the with-indices path
    for y, yi in ((y2, F.max_pool2d(x[:, :, 0], k, 2, p, return_indices=True)[0]),
                  (F.max_pool3d(x, (2, k, k), (1, 2, 2), (0, p, p)),
                   F.max_pool3d(x, (2, k, k), (1, 2, 2), (0, p, p), return_indices=True)[0]),
                  (F.max_pool3d(x, (5, 4, k), (1, 2, 2), (0, 0, p)),
                   F.max_pool3d(x, (5, 4, k), (1, 2, 2), (0, 0, p), return_indices=True)[0])):
        np.testing.assert_array_equal(y.view(np.uint32), yi.view(np.uint32))


@pytest.mark.parametrize("W", [33, 70, 112])
@pytest.mark.parametrize("k,p", [(2, 0), (3, 0), (3, 1)])
def test_max_values_nan_at_every_tap(backend, rng, W, k, p):
    # the values-only range kernels' NaN probe leaves out the 3-wide windows' third tap wherever it is another
    # lane's first (all but the range's last column): one plane per input position (row, column), holding a
    # NaN there and nowhere else, must give the with-indices path's bits and the reference's values, for 2-D
    # rows (paired 3x3 rows and the unpaired ones) and 3-D windows of 2 depth rows
    H = 9
    x = rng.standard_normal((H * W, 2, H, W)).astype(np.float32)
    planes = np.arange(H * W)
    x[planes, 1, planes // W, planes % W] = np.nan
    x = x.reshape(1, H * W, 2, H, W)
    y2 = F.max_pool2d(x[:, :, 1], k, 2, p)
    # the reference's values, vectorised (np.max propagates NaN; one NaN per plane, so no payload to choose)
    xp = np.pad(x[:, :, 1], ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    want = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::2, ::2].max(axis=(4, 5))
    np.testing.assert_array_equal(y2, want)
    if p == 1:  # 3x3 s2 p1 windows cover every input position: each plane's NaN reaches an output
        assert np.isnan(y2).any(axis=(2, 3)).all()
    for y, yi in ((y2, F.max_pool2d(x[:, :, 1], k, 2, p, return_indices=True)[0]),
                  (F.max_pool3d(x, (2, k, k), (1, 2, 2), (0, p, p)),
                   F.max_pool3d(x, (2, k, k), (1, 2, 2), (0, p, p), return_indices=True)[0])):
        np.testing.assert_array_equal(y.view(np.uint32), yi.view(np.uint32))


@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (4, 4), (1, 17), (7, 7), (56, 56)])
def test_global_average_pool_each_plane_alone(backend, rng, threads, hw):
    # global average pooling runs planes 16 (avx512) or 8 (avx2) at a time: every plane's mean is what it
    # is alone, on 1 and 2 threads, and within float32 rounding of the float64 mean
    nc = (40, 50) if hw[0] * hw[1] <= 64 else (3, 13)  # enough planes to split over 2 threads
    x = (rng.standard_normal(nc + hw) * 10 + 3).astype(np.float32)
    fastml.set_num_threads(2)
    y = F.adaptive_avg_pool2d(x, 1)
    fastml.set_num_threads(1)
    np.testing.assert_array_equal(F.adaptive_avg_pool2d(x, 1), y)
    flat = x.reshape(-1, 1, *hw)
    for i in (0, 15, 16, 17, 38, flat.shape[0] - 1):
        np.testing.assert_array_equal(F.adaptive_avg_pool2d(flat[i:i + 1], 1).ravel(), y.reshape(-1)[i:i + 1])
    want = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(y, want, rtol=1e-5 * max(1, np.sqrt(hw[0] * hw[1]) / 4), atol=1e-5)
