"""Winograd F(2x2x2,3x3x3) for 3x3x3 conv3d (``algorithm='winograd'``) and the Winograd weight gradient
F(3x3, 2x2) / F(3x3x3, 2x2x2) of the 'winograd' backward (csrc/ops/conv_fast/conv_fast_winograd.cpp).

Every backend x ISA against the float64 reference: error <= 2x that of the float32 NumPy computation (the
rule for every convolution algorithm). Shapes that exercise the kernels' edges: odd output sizes (half
tiles in D, H and W), one output voxel, per-dimension padding 0 / 1 (native) and 2 or asymmetric padding
(pre-padded), C_in above 128 (channel sums in chunks of 64), K below and above the microkernel rows, several
blocks whose tile rows cross image and tile-plane boundaries, tile sums longer than one float32 chunk; the
fused bias and activations, out=, channels-last input, the backward through the same kernels, 1 vs 2
threads bitwise, and the bindings' errors.
"""
import numpy as np
import pytest

import fastml
import fastml.functional as F
import fastml.reference as R
from fastml._backend import _C
from fastml.functional import conv as C

from _tolerance import EPS32, assert_error_within

pytestmark = pytest.mark.skipif("winograd" not in C._FAST_PATHS, reason="fastml.functional._conv_fast missing")

# (N, C, D, H, W, K, padding)
CASES = [
    (1, 1, 3, 3, 3, 1, 0),                # one output voxel, C = K = 1
    (2, 3, 5, 6, 7, 5, 1),                # odd output sizes: half tiles along every axis
    (1, 4, 4, 5, 9, 3, (0, 1, 0)),        # per-dimension native padding
    (2, 16, 9, 20, 30, 8, 1),             # 15 blocks of 7 tile rows across (n, tile plane) boundaries
    (1, 300, 4, 5, 6, 5, 1),              # C_in > 128: the channel sums in 5 chunks of <= 64
    (1, 160, 4, 6, 6, 16, 1),             # the smallest shape of the accuracy measurement, C_in > 128
    (1, 8, 3, 4, 35, 30, (1, 1, 0)),      # K = 30 (2 full rows of 14 + 2), 17 tiles along W
    (2, 6, 2, 2, 2, 7, 2),                # padding 2: pre-padded input
    (1, 5, 6, 5, 4, 4, ((1, 1, 0), (2, 0, 1))),   # asymmetric: pre-padded input
]


def _pad_args(p):
    """(conv3d padding argument, lo, hi) of a case's padding (an int, a 3-tuple, or (lo, hi) 3-tuples)."""
    if isinstance(p, int):
        return p, (p,) * 3, (p,) * 3
    if isinstance(p[0], int):
        return p, tuple(p), tuple(p)
    return None, tuple(p[0]), tuple(p[1])


def _data(rng, case):
    n, c, d, h, w, k, p = case
    x = rng.standard_normal((n, c, d, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    arg, lo, hi = _pad_args(p)
    if arg is None:  # asymmetric: the caller pads explicitly (torch has no such conv3d argument either)
        x = np.pad(x, ((0, 0), (0, 0)) + tuple(zip(lo, hi)))
        arg = 0
    return x, wt, b, arg


def _im2col32(x, w, b, p):
    """The float32 NumPy im2col computation: the accuracy baseline."""
    pads = ((p, p),) * 3 if isinstance(p, int) else tuple((q, q) for q in p)
    xp = np.pad(x, ((0, 0), (0, 0)) + pads)
    n, c = x.shape[:2]
    do, ho, wo = (s - 2 for s in xp.shape[2:])
    cols = np.stack([xp[:, :, a:a + do, i:i + ho, j:j + wo] for a in range(3) for i in range(3) for j in range(3)],
                    axis=2)
    y = np.matmul(w.reshape(w.shape[0], c * 27), cols.reshape(n, c * 27, do * ho * wo))
    return y.reshape(n, w.shape[0], do, ho, wo) + b.reshape(1, -1, 1, 1, 1)



def _within(got, ref, base, what, factor=2.0):
    ref = np.asarray(ref, dtype=np.float64)
    assert np.asarray(got).shape == ref.shape, what
    assert_error_within(got, ref, base, factor=factor,
                        floor=2 * EPS32 * max(float(np.abs(ref).max(initial=0)), 1e-30), what=what)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_accuracy(backend, rng, case):
    x, w, b, p = _data(rng, case)
    y = F.conv3d(x, w, b, padding=p, algorithm="winograd")
    _within(y, R.conv3d(x, w, b, padding=p), _im2col32(x, w, b, p), f"{backend} {case}")
    out = np.full(y.shape, np.nan, np.float32)
    assert F.conv3d(x, w, b, padding=p, algorithm="winograd", out=out) is out
    np.testing.assert_array_equal(out, y)


@pytest.mark.parametrize("act", ["relu", "gelu", "gelu_tanh", "sigmoid", "tanh"])
def test_fused_activation(backend, rng, act):
    x, w, b, p = _data(rng, CASES[3])
    y = F.conv3d(x, w, b, padding=p, algorithm="winograd", activation=act)
    with fastml.use_backend("numpy"):
        base = F.conv3d(x, w, b, padding=p, activation=act)
    _within(y, R.conv3d(x, w, b, padding=p, activation=act), base, f"{backend} {act}")


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[6], CASES[7]], ids=str)
def test_backward_grad_input(backend, rng, case):
    x, w, _, p = _data(rng, case)
    g = rng.standard_normal(R.conv3d(x, w, None, padding=p).shape).astype(np.float32)
    gx, gw, gb = F.conv3d_backward(g, x, w, padding=p, algorithm="winograd")
    rx, rw, rb = R.conv3d_backward(g, x, w, padding=p)
    with fastml.use_backend("numpy"):
        bx, bw, bb = F.conv3d_backward(g, x, w, padding=p)
    for name, u, r, s in (("grad_input", gx, rx, bx), ("grad_weight", gw, rw, bw), ("grad_bias", gb, rb, bb)):
        _within(u, r, s, f"{backend} {case} {name}")


def test_channels_last_input(rng):
    x, w, b, p = _data(rng, CASES[3])
    x_cl = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    y = F.conv3d(x, w, b, padding=p, algorithm="winograd")
    y_cl = F.conv3d(x_cl, w, b, padding=p, algorithm="winograd")
    assert np.moveaxis(y_cl, 1, -1).flags.c_contiguous          # the input's memory format
    np.testing.assert_array_equal(y_cl, y)
    out = np.moveaxis(np.zeros(np.moveaxis(y, 1, -1).shape, np.float32), -1, 1)
    assert F.conv3d(x, w, b, padding=p, algorithm="winograd", out=out) is out
    np.testing.assert_array_equal(out, y)


def test_auto_and_call_plan(rng):
    """What 'auto' picks for 3x3x3 conv3d; the cached plain call gives the same bits as the general path."""
    from fastml import _conv_geometry as G
    for (c, k, size, pad, stride), want in (((32, 32, 16, 1, 1), "winograd"), ((16, 8, 8, 1, 1), "winograd"),
                                            ((128, 64, 8, 1, 1), "winograd"), ((256, 256, 8, 1, 1), "winograd"),
                                            ((8, 64, 16, 1, 1), "im2col"), ((16, 4, 16, 1, 1), "im2col"),
                                            ((32, 32, 6, 0, 1), "im2col"), ((32, 32, 16, 1, 2), "im2col")):
        g = G.parse("t", 3, (2, c, size, size, size), (k, c, 3, 3, 3), stride, pad, 1, 1)
        assert C._select_algorithm(g) == want and C._select_algorithm(g, False, backward=True) == want, (c, k, size)
    x, w, b, p = _data(rng, (1, 16, 8, 8, 8, 8, 1))
    want = F.conv3d(x, w, b, padding=p, algorithm="winograd", out=np.empty((1, 8, 8, 8, 8), np.float32))
    for _ in range(2):   # the first call makes the plan, the second runs it
        np.testing.assert_array_equal(F.conv3d(x, w, b, padding=p), want)


def test_threads_bitwise(rng, threads):
    if not fastml._backend.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    x, w, b, p = _data(rng, CASES[3])
    g = np.cos(R.conv3d(x, w, None, padding=p)).astype(np.float32)
    res = []
    for n in (1, 2):
        fastml.set_num_threads(n)
        res.append([F.conv3d(x, w, b, padding=p, algorithm="winograd", activation="gelu")]
                   + list(F.conv3d_backward(g, x, w, padding=p, algorithm="winograd")))
    for u, v in zip(*res):
        np.testing.assert_array_equal(u, v)


def test_binding_errors():
    if not fastml._backend.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    x = np.zeros((1, 2, 4, 4, 4), np.float32)
    w = np.zeros((3, 2, 3, 3, 3), np.float32)
    f = _C.winograd_conv3d_forward
    for call, msg in (
        (lambda: f(x, w, None, (2, 1, 1)), "padding 0 or 1"),
        (lambda: f(x, w[:, :, :2], None, (1, 1, 1)), r"weight of shape \(K, 2, 3, 3, 3\)"),
        (lambda: f(x, w[:, :1], None, (1, 1, 1)), r"weight of shape \(K, 2, 3, 3, 3\)"),
        (lambda: f(x[:, :, :2, :2, :2], w, None, (0, 0, 0)), "at least as large as the kernel"),
        (lambda: f(x[0], w, None, (1, 1, 1)), r"input of shape \(N, C, D, H, W\)"),
        (lambda: f(x, w, np.zeros(2, np.float32), (1, 1, 1)), r"bias of shape \(3,\)"),
        (lambda: f(x, w, None, (1, 1, 1), "swish"), "activation"),
        (lambda: f(x, w, None, (1, 1, 1), "none", np.zeros((1, 3, 4, 4, 5), np.float32)), "out"),
    ):
        with pytest.raises(ValueError, match=msg):
            call()
    y = f(np.zeros((0, 2, 4, 4, 4), np.float32), w, None, (1, 1, 1))
    assert y.shape == (0, 3, 4, 4, 4)
    with pytest.raises(ValueError, match="'winograd' does not apply"):
        F.conv3d(x, w, stride=2, algorithm="winograd")
    with pytest.raises(ValueError, match="'winograd_f43' does not apply"):
        F.conv3d(x, w, algorithm="winograd_f43")


# (nd, input shape, K, padding): weight-gradient tile sums over several 64-tile chunks and blocks
WGRAD_CASES = [
    (2, (2, 128, 40, 40), 128, 1),        # 800 tiles: 2 blocks of 512 / 288, 13 chunks
    (2, (3, 5, 13, 70), 7, (0, 1)),       # odd sizes, 35 tiles per tile row
    (2, (1, 3, 6, 5), 4, 2),              # padding 2: pre-padded input
    (3, (1, 8, 12, 30, 40), 8, 1),        # 6 x 15 x 20 tiles
    (3, (2, 4, 3, 5, 4), 17, (1, 0, 1)),
]


@pytest.mark.parametrize("case", WGRAD_CASES, ids=str)
def test_grad_weight(backend, rng, case):
    nd, xs, k, p = case
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal((k, xs[1]) + (3,) * nd).astype(np.float32)
    rf, rb = getattr(R, f"conv{nd}d"), getattr(R, f"conv{nd}d_backward")
    fb = getattr(F, f"conv{nd}d_backward")
    g = rng.standard_normal(rf(x, w, None, padding=p).shape).astype(np.float32)
    gi, gw, gb = fb(g, x, w, padding=p, output_mask=(False, True, False), algorithm="winograd")
    assert gi is None and gb is None
    with fastml.use_backend("numpy"):
        base = fb(g, x, w, padding=p, output_mask=(False, True, False))[1]
    _within(gw, rb(g, x, w, padding=p)[1], base, f"{backend} {case}")


def test_grad_weight_binding():
    if not fastml._backend.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    f = _C.winograd_conv_backward_weight
    x = np.ones((2, 3, 5, 6), np.float32)
    g = np.ones((2, 4, 5, 6), np.float32)
    gw = f(g, x, [1, 1])
    assert gw.shape == (4, 3, 3, 3)
    np.testing.assert_array_equal(gw, R.conv2d_backward(g, x, np.zeros((4, 3, 3, 3)), padding=1)[1])
    assert np.array_equal(f(g[:0], x[:0], [1, 1]), np.zeros((4, 3, 3, 3), np.float32))
    for call, msg in (
        (lambda: f(g, x, [2, 1]), "padding 0 or 1"),
        (lambda: f(g, x, [1]), "2 or 3 paddings"),
        (lambda: f(g, x, [1, 1, 1]), "5 dimensions"),
        (lambda: f(g[:, :, :4], x, [1, 1]), "grad_output of shape"),
        (lambda: f(g[:1], x, [1, 1]), "grad_output of shape"),
        (lambda: f(g, x[:, :, :1, :1], [0, 0]), "at least as large as the kernel"),
    ):
        with pytest.raises(ValueError, match=msg):
            call()


def test_swapped_weight_is_the_flipped_copy(rng):
    """swapped=True (the backward's grad_input) reads w (C, K, k...) flipped and channel-swapped in place:
    bitwise the result of the explicit flipped copy, 2-D (both tiles) and 3-D."""
    if not fastml._backend.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    x = rng.standard_normal((2, 5, 9, 11)).astype(np.float32)
    w = rng.standard_normal((5, 7, 3, 3)).astype(np.float32)        # (C = 5 inputs here, K = 7 outputs)
    flipped = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    for m in (2, 4):
        want = _C.winograd_conv2d_forward(x, flipped, None, 1, "none", None, m)
        np.testing.assert_array_equal(_C.winograd_conv2d_forward(x, w, None, 1, "none", None, m, True), want)
    x3 = rng.standard_normal((2, 5, 4, 6, 7)).astype(np.float32)
    w3 = rng.standard_normal((5, 7, 3, 3, 3)).astype(np.float32)
    flipped3 = np.ascontiguousarray(w3.transpose(1, 0, 2, 3, 4)[:, :, ::-1, ::-1, ::-1])
    want = _C.winograd_conv3d_forward(x3, flipped3, None, (1, 0, 1))
    np.testing.assert_array_equal(_C.winograd_conv3d_forward(x3, w3, None, (1, 0, 1), "none", None, True), want)
    with pytest.raises(ValueError, match=r"weight of shape \(C, K, kH, kW\) with C=5"):
        _C.winograd_conv2d_forward(x, flipped, None, 1, "none", None, 2, True)
    with pytest.raises(ValueError, match=r"weight of shape \(5, K, 3, 3, 3\)"):
        _C.winograd_conv3d_forward(x3, flipped3, None, (1, 1, 1), "none", None, True)


def test_team_and_block_schedules_bitwise(rng, threads):
    """Three blocks of tiles: one thread runs them as whole blocks, two threads one block at a time with each
    phase shared (few blocks per thread); the results must be the same bits. Also one block (N1)."""
    if not fastml._backend.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    cases = [(F.conv2d, (3, 32, 16, 16), (32, 32, 3, 3)), (F.conv2d, (1, 64, 14, 14), (48, 64, 3, 3)),
             (F.conv3d, (3, 16, 8, 8, 8), (16, 16, 3, 3, 3)), (F.conv3d, (1, 160, 6, 6, 6), (24, 160, 3, 3, 3))]
    for f, xs, ws in cases:
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        res = []
        for n in (1, 2):
            fastml.set_num_threads(n)
            res.append(f(x, w, None, padding=1, algorithm="winograd", activation="relu"))
        np.testing.assert_array_equal(res[0], res[1], err_msg=str(xs))


@pytest.mark.parametrize("nd", [2, 3])
def test_exact_on_small_integers(backend, rng, nd):
    """F(2,3)'s matrices hold 0, +-1 and 1/2 only, so on small integers (|v| <= 3, C <= 24) every transform,
    product and sum is exact in float32: the forward, grad_input and grad_weight must equal the exact integer
    results bitwise, and the adjoint identities <dy, conv(x, w)> = <dx, x> = <dw, w> hold exactly."""
    xs = (2, 24, 5, 9, 11) if nd == 3 else (2, 24, 9, 11)
    x = rng.integers(-3, 4, xs).astype(np.float32)
    w = rng.integers(-3, 4, (10, 24) + (3,) * nd).astype(np.float32)
    f, fb = getattr(F, f"conv{nd}d"), getattr(F, f"conv{nd}d_backward")
    rf, rb = getattr(R, f"conv{nd}d"), getattr(R, f"conv{nd}d_backward")
    y = f(x, w, None, padding=1, algorithm="winograd")
    np.testing.assert_array_equal(y, rf(x, w, None, padding=1))
    g = rng.integers(-3, 4, y.shape).astype(np.float32)
    gx, gw, _ = fb(g, x, w, padding=1, algorithm="winograd", output_mask=(True, True, False))
    rx, rw, _ = rb(g, x, w, padding=1)
    np.testing.assert_array_equal(gx, rx)
    np.testing.assert_array_equal(gw, rw)
    dot = lambda a, b: float(np.dot(a.ravel().astype(np.float64), b.ravel().astype(np.float64)))
    assert dot(g, y) == dot(gx, x) == dot(gw, w)


# conv_transpose{2,3}d with stride 1 and a 3x3 (3x3x3) kernel is the convolution by the flipped,
# channel-swapped kernel with padding 2 - p: (nd, input, weight (C_in, C_out, k...), padding)
TRANSPOSED = [
    (2, (2, 32, 14, 15), (32, 33, 3, 3), 1),
    (2, (1, 40, 16, 14), (40, 32, 3, 3), 0),      # the equivalent padding 2: pre-padded
    (2, (2, 32, 18, 16), (32, 32, 3, 3), 2),      # the equivalent padding 0
    (3, (2, 16, 6, 9, 10), (16, 8, 3, 3, 3), 1),
    (3, (1, 20, 8, 8, 9), (20, 9, 3, 3, 3), (0, 1, 2)),
]


@pytest.mark.parametrize("case", TRANSPOSED, ids=str)
def test_conv_transpose_stride1_on_winograd(backend, rng, case):
    nd, xs, ws, p = case
    from fastml import _conv_geometry as G
    g = G.parse("t", nd, xs, ws, 1, p, 1, 1, transposed=True)
    assert C._transpose_as_conv(g) is not None                  # the route is taken
    f, fb = getattr(F, f"conv_transpose{nd}d"), getattr(F, f"conv_transpose{nd}d_backward")
    rf, rb = getattr(R, f"conv_transpose{nd}d"), getattr(R, f"conv_transpose{nd}d_backward")
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[1]).astype(np.float32)
    y = f(x, w, b, padding=p)
    with fastml.use_backend("numpy"):
        base = f(x, w, b, padding=p)
    _within(y, rf(x, w, b, padding=p), base, f"{backend} {case}")
    out = np.full(y.shape, np.nan, np.float32)
    assert f(x, w, b, padding=p, out=out) is out
    np.testing.assert_array_equal(out, y)
    np.testing.assert_array_equal(f(x[0], w, b, padding=p), y[0])  # unbatched
    g = rng.standard_normal(y.shape).astype(np.float32)
    got, ref = fb(g, x, w, padding=p), rb(g, x, w, padding=p)
    with fastml.use_backend("numpy"):
        base = fb(g, x, w, padding=p)
    for name, u, r, s in zip(("grad_input", "grad_weight", "grad_bias"), got, ref, base):
        _within(u, r, s, f"{backend} {case} {name}")


def test_conv_transpose_winograd_route_conditions():
    from fastml import _conv_geometry as G
    xs, ws = (2, 32, 14, 14), (32, 32, 3, 3)
    take = lambda **kw: C._transpose_as_conv(G.parse("t", 2, xs, kw.pop("w", ws), kw.pop("stride", 1),
                                                      kw.pop("padding", 1), kw.pop("dilation", 1),
                                                      kw.pop("groups", 1), transposed=True, **kw)) is not None
    assert take()
    assert not take(stride=2, output_padding=1)
    assert not take(dilation=2)
    assert not take(groups=2, w=(32, 16, 3, 3))
    assert not take(padding=3)                                   # the equivalent padding would be negative
    assert not take(w=(32, 32, 5, 5), padding=2)                 # not 3x3
    assert not take(w=(32, 8, 3, 3))                             # C_out 8: 'auto' keeps the general kernels
    assert not C._transpose_as_conv(G.parse("t", 1, (2, 32, 30), (32, 32, 3), 1, 1, 1, 1, transposed=True))


def test_nan_reaches_at_least_the_reference_outputs(backend, rng):
    """A NaN in the input reaches every output the float64 reference has as NaN, and no output outside the
    2x2x2 output tiles whose 4x4x4 input patch holds it (Winograd may spread it within those tiles); the
    weight gradient likewise, per input channel."""
    x = rng.standard_normal((1, 16, 5, 7, 9)).astype(np.float32)
    w = rng.standard_normal((8, 16, 3, 3, 3)).astype(np.float32)
    at = (2, 4, 5)
    x[(0, 3) + at] = np.nan
    y = F.conv3d(x, w, None, padding=1, algorithm="winograd")
    ref = np.isnan(R.conv3d(x, w, None, padding=1))
    assert np.isnan(y)[ref].all() and ref.any()
    # output o is in tile o // 2, whose patch holds the padded inputs 2 (o // 2) .. + 3, i.e. inputs - 1 .. + 2
    reads = [np.array([2 * (o // 2) - 1 <= a <= 2 * (o // 2) + 2 for o in range(n)]) for a, n in zip(at, y.shape[2:])]
    tiles = reads[0][:, None, None] & reads[1][None, :, None] & reads[2][None, None, :]
    assert not np.isnan(y[:, :, ~tiles]).any()
    g = rng.standard_normal(y.shape).astype(np.float32)
    gx, gw, _ = F.conv3d_backward(g, x, w, padding=1, algorithm="winograd", output_mask=(True, True, False))
    rx, rw, _ = R.conv3d_backward(g, x, w, padding=1)
    assert np.isnan(gw)[np.isnan(rw)].all() and np.isfinite(gw[:, np.arange(16) != 3]).all()
    assert np.isfinite(gx).all() and np.isfinite(rx).all()      # grad_input reads w and g only
