"""conv1d/2d/3d, conv_transpose1d/2d/3d and their backwards: the float64 reference on hand values and
against central differences, then every backend x ISA against the reference (error <= 2x that of the
same im2col computation in float32 NumPy), every algorithm on the same inputs, padding modes,
unbatched / channels-last / strided input, thread-count invariance, torch parity and bad input."""
import warnings

import numpy as np
import pytest

import fastml
import fastml.functional as F
import fastml.reference as R

from _tolerance import EPS32, assert_close, assert_error_within, numeric_vjp

# (nd, input shape, weight shape, kwargs)
CASES = [
    (2, (2, 4, 9, 8), (6, 4, 3, 3), dict(padding=1)),
    (2, (2, 4, 9, 8), (6, 2, 3, 2), dict(stride=2, padding=(1, 0), groups=2)),
    (2, (1, 3, 10, 7), (5, 3, 4, 2), dict(padding="same")),                       # even kernels
    (2, (2, 4, 9, 8), (6, 4, 3, 3), dict(padding="same", dilation=(2, 1))),
    (2, (2, 3, 8, 8), (4, 3, 3, 3), dict(padding="valid", stride=(2, 3), dilation=2)),
    (2, (2, 6, 7, 9), (6, 1, 3, 3), dict(padding=1, groups=6)),                   # depthwise
    (2, (3, 5, 6, 7), (17, 5, 1, 1), {}),                                          # 1x1
    (2, (2, 4, 1, 1), (7, 4, 1, 1), {}),                                           # 1x1 spatial
    (2, (1, 2, 3, 2), (3, 2, 5, 4), dict(padding=2)),                              # kernel larger than input
    (2, (2, 3, 9, 9), (4, 3, 1, 1), dict(stride=2)),                               # strided 1x1: im2col
    (2, (2, 3, 5, 4), (4, 3, 1, 2), dict(padding=(1, 2))),                         # padding > kernel extent
    (2, (2, 16, 6, 5), (8, 16, 3, 3), dict(padding=1)),                            # C/G >= 16: grad_input as a
    (2, (1, 32, 5, 6), (8, 16, 3, 2), dict(padding=(1, 0), groups=2, dilation=(1, 2))),  # flipped forward conv
    (2, (2, 16, 5, 20), (8, 16, 3, 3), dict(padding=1)),                         # stride 1, C/G >= 16
    (2, (1, 16, 6, 30), (4, 16, 5, 4), dict(padding=(2, 1))),                    # ... and >= 18 offsets, wide
    (2, (1, 32, 6, 40), (6, 16, 5, 5), dict(padding=(0, 2), groups=2)),          # rows: the shifted-GEMM path
    (3, (1, 16, 3, 4, 18), (4, 16, 2, 3, 3), dict(padding=1, dilation=(1, 2, 1))),
    (3, (2, 24, 3, 4, 21), (30, 24, 3, 3, 3), dict(padding=1)),                  # shifted, pixel rows: Kg tail
    (2, (1, 96, 4, 18), (32, 96, 3, 3), dict(padding=1)),                        # ... k[2] * C > KC
    (2, (1, 16, 6, 30), (29, 16, 3, 3), dict(padding=2, dilation=(1, 2))),       # ... W dilation
    (2, (1, 64, 5, 20), (64, 32, 3, 3), dict(padding=1, groups=2)),              # ... groups: X rows,
    (2, (2, 64, 7, 7), (64, 32, 3, 3), dict(padding=1, groups=2)),               # ... a small plane,
    (2, (1, 62, 9, 8), (62, 31, 3, 3), dict(padding=(2, 1), dilation=(2, 1), groups=2)),  # ... H dilation,
    (2, (1, 64, 6, 12), (64, 32, 3, 3), dict(padding=2, dilation=(1, 2), groups=2)),  # ... W dilation,
    (2, (1, 64, 20, 20), (64, 32, 3, 3), dict(padding=1, groups=2)),             # ... two row tiles,
    (2, (1, 64, 6, 9), (64, 32, 3, 3), dict(groups=2)),                          # ... no padding,
    (2, (1, 300, 6, 7), (64, 150, 3, 3), dict(padding=1, groups=2)),             # ... kW C/G > KC,
    (3, (1, 60, 3, 4, 5), (60, 30, 3, 3, 3), dict(padding=1, groups=2)),         # ... 3-D,
    (1, (1, 64, 600), (64, 32, 9), dict(padding=4, groups=2)),                   # ... row segments (W > 256)
    (2, (2, 48, 6, 7), (48, 24, 3, 3), dict(padding=1, groups=2)),               # backward on X rows from 16
    (2, (1, 64, 8, 9), (64, 16, 3, 3), dict(padding=(1, 2), groups=4)),          # output channels per group
    (2, (1, 32, 6, 8), (64, 16, 3, 3), dict(padding=1, groups=2)),               # (flipped: C/G 16)
    (2, (2, 64, 5, 6), (64, 16, 3, 3), dict(padding=1, groups=4)),               # 16 per group: two groups
    (2, (1, 48, 7, 7), (48, 16, 3, 3), dict(padding=1, groups=3)),               # per tile (G even), or one
    (2, (1, 16, 5, 20), (40, 16, 3, 3), dict(padding=1)),                        # shifted, weight rows (Kg > 32)
    (2, (1, 16, 28, 28), (8, 16, 5, 5), dict(padding=2)),                        # ... 32 x 32 (4 KiB) padded planes
    (2, (2, 64, 6, 7), (16, 64, 3, 3), dict(padding=1)),                         # shifted, few channels per group
    (2, (1, 272, 4, 12), (8, 272, 3, 3), dict(padding=1)),                       # ... (AVX2): chunks of offsets,
    (2, (2, 32, 7, 7), (32, 4, 3, 3), dict(padding=1, groups=8)),                # ... channel blocks (C/G > KC),
    (2, (1, 32, 7, 7), (32, 32, 3, 3), dict(padding=1)),                         # ... Kg 4, Kg 32 on a small plane,
    (2, (1, 32, 9, 12), (32, 2, 3, 3), dict(padding=2, dilation=2, groups=16)),  # ... dilation,
    (3, (1, 16, 4, 5, 6), (16, 2, 3, 3, 3), dict(padding=1, groups=8)),          # ... 3-D
    (2, (2, 16, 9, 10), (16, 4, 3, 3), dict(padding=1, groups=4)),               # Cg = Kg = 4: grad_input as a
    (2, (2, 16, 7, 9), (16, 8, 3, 3), dict(padding=(1, 2), groups=2)),           # flipped forward conv
    (1, (2, 16, 40), (8, 16, 5), dict(padding=2)),
    (1, (3, 5, 17), (6, 5, 3), dict(padding=1, stride=2)),
    (1, (2, 4, 16), (4, 2, 4), dict(padding="same", dilation=3, groups=2)),
    (3, (2, 3, 5, 6, 7), (4, 3, 3, 2, 3), dict(padding=(1, 0, 2), stride=(1, 2, 1), dilation=(2, 1, 1))),
    (3, (1, 2, 3, 4, 4), (2, 2, 1, 1, 1), {}),
]
IDS = [f"{nd}d-{x}-{w}-{'-'.join(f'{k}{v}' for k, v in kw.items())}" for nd, x, w, kw in CASES]

ACTS = (None, "relu", "gelu", "gelu_tanh", "sigmoid", "tanh")


def fwd(nd):
    return getattr(F, f"conv{nd}d")


def bwd(nd):
    return getattr(F, f"conv{nd}d_backward")


def within(got, ref, base, what):
    ref = np.asarray(ref, dtype=np.float64)
    assert np.asarray(got).shape == ref.shape, f"{what}: shape {np.asarray(got).shape} != {ref.shape}"
    assert_error_within(got, ref, base, floor=2 * EPS32 * max(float(np.abs(ref).max(initial=0)), 1e-30), what=what)


def numpy32(fn, *args, **kw):
    """The baseline: the same computation in float32 by the NumPy backend (im2col + matmul)."""
    with fastml.use_backend("numpy"):
        return fn(*args, **kw)


def data(rng, nd, xs, ws, dtype=np.float32):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    return x, w, b


# ---------------------------------------------------------------- the reference itself

def test_reference_hand_values():
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    w = np.array([[[1.0, 0.0, -1.0]]])
    np.testing.assert_array_equal(R.conv1d(x, w), [[[-2.0, -2.0]]])
    np.testing.assert_array_equal(R.conv1d(x, w, padding=1), [[[-2.0, -2.0, -2.0, 3.0]]])
    np.testing.assert_array_equal(R.conv1d(x, w, np.array([1.0]), stride=2, padding=1), [[[-1.0, -1.0]]])
    np.testing.assert_array_equal(R.conv1d(x, w, padding="same", padding_mode="replicate"), [[[-1, -2, -2, -1]]])
    np.testing.assert_array_equal(R.conv_transpose1d(np.array([[[1.0, 10.0]]]), np.array([[[1.0, 2.0, 3.0]]]),
                                                     stride=2), [[[1.0, 2.0, 13.0, 20.0, 30.0]]])
    gi, gw, gb = R.conv1d_backward(np.ones((1, 1, 2)), x, w)
    np.testing.assert_array_equal(gi, [[[1.0, 1.0, -1.0, -1.0]]])
    np.testing.assert_array_equal(gw, [[[3.0, 5.0, 7.0]]])
    np.testing.assert_array_equal(gb, [2.0])


GRAD_CASES = [
    (1, (2, 2, 6), (4, 1, 3), dict(stride=2, padding=1, groups=2), "zeros"),
    (2, (1, 2, 5, 4), (2, 2, 2, 3), dict(padding="same", dilation=(1, 2)), "zeros"),
    (2, (1, 2, 4, 5), (2, 1, 3, 2), dict(padding=1, groups=2), "reflect"),
    (2, (1, 1, 4, 4), (2, 1, 3, 3), dict(padding=(2, 1)), "circular"),
    (3, (1, 2, 3, 3, 4), (2, 2, 2, 2, 2), dict(padding=1, stride=(1, 2, 1)), "replicate"),
]


@pytest.mark.parametrize("nd,xs,ws,kw,mode", GRAD_CASES)
def test_reference_gradients_vs_finite_differences(rng, nd, xs, ws, kw, mode):
    x, w, b = data(rng, nd, xs, ws, np.float64)
    f = getattr(R, f"conv{nd}d")
    y = f(x, w, b, padding_mode=mode, **kw)
    g = rng.standard_normal(y.shape)
    gi, gw, gb = getattr(R, f"conv{nd}d_backward")(g, x, w, padding_mode=mode, **kw)
    np.testing.assert_allclose(gi, numeric_vjp(lambda v: f(v, w, b, padding_mode=mode, **kw), x, g), atol=1e-7)
    np.testing.assert_allclose(gw, numeric_vjp(lambda v: f(x, v, b, padding_mode=mode, **kw), w, g), atol=1e-7)
    np.testing.assert_allclose(gb, numeric_vjp(lambda v: f(x, w, v, padding_mode=mode, **kw), b, g), atol=1e-7)


def test_reference_transpose_gradients_vs_finite_differences(rng):
    x, w = rng.standard_normal((1, 4, 3, 2)), rng.standard_normal((4, 1, 2, 3))
    b = rng.standard_normal(2)
    kw = dict(stride=(2, 1), padding=(0, 1), output_padding=(1, 0), groups=2, dilation=(1, 2))
    y = R.conv_transpose2d(x, w, b, **kw)
    g = rng.standard_normal(y.shape)
    gi, gw, gb = R.conv_transpose2d_backward(g, x, w, **kw)
    np.testing.assert_allclose(gi, numeric_vjp(lambda v: R.conv_transpose2d(v, w, b, **kw), x, g), atol=1e-7)
    np.testing.assert_allclose(gw, numeric_vjp(lambda v: R.conv_transpose2d(x, v, b, **kw), w, g), atol=1e-7)
    np.testing.assert_allclose(gb, g.sum(axis=(0, 2, 3)))


# ---------------------------------------------------------------- every backend against the reference

@pytest.mark.parametrize("nd,xs,ws,kw", CASES, ids=IDS)
def test_forward(backend, rng, nd, xs, ws, kw):
    x, w, b = data(rng, nd, xs, ws)
    y = fwd(nd)(x, w, b, **kw)
    assert y.dtype == np.float32
    within(y, R.__dict__[f"conv{nd}d"](x, w, b, **kw), numpy32(fwd(nd), x, w, b, **kw), f"{backend} forward")


# grad_weight as dy cols^T in the weights' own layout (csrc/ops/conv/conv.cpp: kWeightRowsKg = 256 output
# channels per group and more): im2col, 1x1 and grouped
WIDE_CASES = [
    (2, (2, 16, 7, 6), (256, 16, 3, 3), dict(padding=1)),
    (2, (2, 8, 6, 5), (300, 8, 1, 1), {}),
    (2, (1, 8, 9, 7), (512, 4, 3, 3), dict(padding=1, stride=2, groups=2)),
]


@pytest.mark.parametrize("nd,xs,ws,kw", CASES + WIDE_CASES,
                         ids=IDS + [f"wide-{x}-{w}" for _, x, w, _ in WIDE_CASES])
def test_backward(backend, rng, nd, xs, ws, kw):
    x, w, _ = data(rng, nd, xs, ws)
    y = R.__dict__[f"conv{nd}d"](x, w, None, **kw)
    g = rng.standard_normal(y.shape).astype(np.float32)
    got = bwd(nd)(g, x, w, **kw)
    ref = R.__dict__[f"conv{nd}d_backward"](g, x, w, **kw)
    base = numpy32(bwd(nd), g, x, w, **kw)
    for name, a, r, bs in zip(("grad_input", "grad_weight", "grad_bias"), got, ref, base):
        assert a.dtype == np.float32
        within(a, r, bs, f"{backend} {name}")
    gi, gw, gb = bwd(nd)(g, x, w, output_mask=(False, True, False), **kw)
    assert gi is None and gb is None
    np.testing.assert_array_equal(gw, got[1])


@pytest.mark.parametrize("outer,channels,inner", [(0, 3, 5), (1, 1, 1), (2, 5, 15), (3, 4, 17), (8, 64, 3136),
                                                   (1, 700, 33)])
def test_channel_sums_are_the_float64_sums(rng, threads, outer, channels, inner):
    # _C.channel_sums (the convolutions' grad_bias): the float64 sum over axes 0 and 2 rounded once, with the
    # same bits as NumPy's on these data, for 1 and 2 threads; a non-contiguous array is refused
    if not fastml._backend.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    C = fastml._backend._C
    a = ((3.0 + rng.standard_normal((outer, channels, inner))) * 50.0).astype(np.float32)
    want = a.sum(axis=(0, 2), dtype=np.float64).astype(np.float32)
    for nt in (1, 2):
        fastml.set_num_threads(nt)
        got = C.channel_sums(a)
        assert got.shape == (channels,) and got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    if a.size and inner > 1:
        with pytest.raises(ValueError, match="C-contiguous"):
            C.channel_sums(a[:, :, ::2])


def test_grad_bias_is_the_rounded_float64_sum(backend, rng):
    # the bias gradient of every convolution backward: grad_output summed over batch and space in float64,
    # rounded once (a float32 running sum over 2 x 4096 values of ~1 would be ~1e-4 relative off)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    g = (1.0 + 1e-3 * rng.standard_normal((2, 5, 64, 64))).astype(np.float32)
    exact = g.astype(np.float64).sum(axis=(0, 2, 3)).astype(np.float32)
    _, _, gb = F.conv2d_backward(g, x, w, padding=1, output_mask=(False, False, True))
    np.testing.assert_array_equal(gb, exact)
    gt = (1.0 + 1e-3 * rng.standard_normal((2, 3, 66, 66))).astype(np.float32)
    _, _, gbt = F.conv_transpose2d_backward(gt, g, w, output_mask=(False, False, True))
    np.testing.assert_array_equal(gbt, gt.astype(np.float64).sum(axis=(0, 2, 3)).astype(np.float32))


@pytest.mark.parametrize("stride", [9, 2**20, 2**31 - 1, 2**39, 2**62, (2**35, 1), (1, 2**35)])
@pytest.mark.parametrize("algorithm", ["direct", "depthwise", "im2col", "auto"])
def test_stride_beyond_the_input(backend, rng, algorithm, stride):
    # a stride past the padded input leaves one output position along that axis (legal, as in torch); the
    # direct and depthwise kernels sized their buffers by the stride (a crash at 2^31 - 1) and must give
    # the general path's result, forward and backward
    depthwise = algorithm == "depthwise"
    x = rng.standard_normal((2, 2, 8, 9)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3) if depthwise else (3, 2, 3, 3)).astype(np.float32)
    kw = dict(stride=stride, padding=1, groups=2 if depthwise else 1)
    if backend == "numpy" and algorithm in ("direct", "depthwise"):
        algorithm = "auto"
    y = F.conv2d(x, w, algorithm=algorithm, **kw)
    ref = R.conv2d(x.astype(np.float64), w.astype(np.float64), **kw)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    g = rng.standard_normal(y.shape).astype(np.float32)
    got = F.conv2d_backward(g, x, w, algorithm=algorithm, **kw)
    want = F.conv2d_backward(g, x, w, algorithm="im2col" if backend != "numpy" else "auto", **kw)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(padding=2**40), dict(dilation=2**40), dict(padding=2**62), dict(stride=2**63),
                                dict(padding=2**39, stride=1)])
def test_sizes_beyond_2_40_are_value_errors(kw):
    # padding, dilation and output sizes >= 2^40 (and strides beyond int64) are refused before any kernel
    # runs, with the sizes in the message (not a MemoryError, an overflow, or a binding's TypeError)
    x = np.ones((1, 2, 8, 9), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="2\\^(40|63)"):
        F.conv2d(x, w, **kw)
    with pytest.raises(ValueError, match="2\\^(40|63)|expected every size > 0"):
        F.conv_transpose2d(x, w.transpose(1, 0, 2, 3).copy(), **kw)


def test_cached_geometry_keeps_every_check():
    # conv geometries are cached by argument values and types: after stride 1 / 2 / padding 1 were parsed,
    # True, 2.0 and 1.0 (equal and hashing alike) are still refused, lists still parse like tuples, and the
    # geometry handed out cannot be changed in place
    import dataclasses
    import fastml._conv_geometry as G

    x = np.ones((1, 3, 8, 8), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    for kw in (dict(stride=1), dict(stride=2), dict(padding=1), dict(groups=1)):
        F.conv2d(x, w, **kw)
    for kw, name in ((dict(stride=True), "stride"), (dict(stride=2.0), "stride"), (dict(padding=1.0), "padding"),
                     (dict(groups=True), "groups")):
        with pytest.raises(ValueError, match=name):
            F.conv2d(x, w, **kw)
    np.testing.assert_array_equal(F.conv2d(x, w, padding=[1, 1]), F.conv2d(x, w, padding=(1, 1)))
    g = G.parse("conv2d", 2, x.shape, w.shape, 1, [1, 1], 1, 1)
    assert g is G.parse("conv2d", 2, x.shape, w.shape, 1, [1, 1], 1, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.stride = (1, 2, 2)


@pytest.mark.parametrize("cin,cout,k,kw", [(3, 4, 3, dict(padding=1)), (8, 8, 3, dict(padding=1, groups=8)),
                                           (32, 32, 3, dict(padding=1)), (16, 8, 1, {}), (6, 5, 3, dict(stride=2)),
                                           (6, 5, 3, dict(padding="same", algorithm="im2col"))])
def test_cached_call_plan_matches_the_general_path(rng, cin, cout, k, kw):
    # conv2d's cached call (plain float32 NCHW input, no out=) against the general path (taken with out=):
    # bitwise equal, twice with different weights of the same shapes, and the same error on every call
    H = 16 if cin < 32 else 14
    x = rng.standard_normal((2, cin, H, H)).astype(np.float32)
    wshape = (cout, cin // kw.get("groups", 1), k, k)
    for _ in range(2):
        w = rng.standard_normal(wshape).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        y = F.conv2d(x, w, b, **kw)
        out = np.empty_like(y)
        F.conv2d(x, w, b, out=out, **kw)
        np.testing.assert_array_equal(y, out)
        # the same as conv1d over rows of height 1 and conv3d over a depth of 1
        y1 = F.conv1d(x[:, :, 0], w[:, :, k // 2], b, **kw)
        out1 = np.empty_like(y1)
        F.conv1d(x[:, :, 0], w[:, :, k // 2], b, out=out1, **kw)
        np.testing.assert_array_equal(y1, out1)
        kw3 = {**kw, "padding": kw["padding"] if isinstance(kw.get("padding"), str) else (0, kw.get("padding", 0),
                                                                                         kw.get("padding", 0))}
        y3 = F.conv3d(x[:, :, None], w[:, :, None], b, **kw3)
        out3 = np.empty_like(y3)
        F.conv3d(x[:, :, None], w[:, :, None], b, out=out3, **kw3)
        np.testing.assert_array_equal(y3, out3)
        np.testing.assert_allclose(y3[:, :, 0], y, rtol=1e-5, atol=1e-4)
        ya = F.conv2d(x, w, b, activation="gelu", **kw)  # the fused activation keeps its own plan
        F.conv2d(x, w, b, activation="gelu", out=out, **kw)
        np.testing.assert_array_equal(ya, out)
    bad = rng.standard_normal((cout + 1,)).astype(np.float32)
    for _ in range(2):
        with pytest.raises(ValueError, match="bias"):
            F.conv2d(x, w, bad, **kw)
        with pytest.raises(ValueError, match="activation"):
            F.conv2d(x, w, b, activation="swish", **kw)


def test_float64_runs_in_float64(backend, rng):
    x, w, b = data(rng, 2, (2, 3, 6, 5), (4, 3, 3, 3), np.float64)
    y = F.conv2d(x, w, b, padding=1)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, R.conv2d(x, w, b, padding=1), rtol=1e-12, atol=1e-12)
    g = np.ones_like(y)
    for a, r in zip(F.conv2d_backward(g, x, w, padding=1), R.conv2d_backward(g, x, w, padding=1)):
        assert a.dtype == np.float64
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", ACTS)
# shifted path: weight rows, pixel rows on the padded grid, pixel rows on X (AVX-512), two groups per tile
@pytest.mark.parametrize("k,groups,width", ((9, 1, 30), (32, 1, 30), (64, 2, 30), (32, 2, 6)))
def test_fused_activation(backend, rng, act, k, groups, width):
    x, w, b = data(rng, 2, (2, 16 * groups, 4, width), (k, 16, 5, 5))
    kw = dict(padding=2, groups=groups)
    y = F.conv2d(x, w, b, activation=act, **kw)
    ref = R.conv2d(x, w, b, activation=act, **kw)
    if act in ("sigmoid", "tanh"):
        # saturating: the epilogue runs the activation op's own kernels on the accumulated values, so
        # compare with conv + that op (a few ulps), and loosely with the reference
        z = F.conv2d(x, w, b, **kw)
        assert_close(y, getattr(F, act)(z), ulps=8, atol=1e-7, what=f"{backend} {act}")
        np.testing.assert_allclose(y, ref, atol=2e-5)
    else:
        within(y, ref, numpy32(F.conv2d, x, w, b, activation=act, **kw), f"{backend} {act}")


TRANSPOSE_CASES = [
    (1, (2, 4, 7), (4, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    (2, (2, 4, 5, 6), (4, 3, 3, 2), dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2,
                                         dilation=(1, 2))),
    (2, (1, 3, 4, 4), (3, 2, 1, 1), {}),
    (2, (1, 4, 5, 5), (4, 16, 3, 3), dict(padding=1)),
    (2, (2, 2, 3, 3), (2, 3, 3, 3), dict(stride=1, dilation=2, output_padding=1)),  # output_padding < dilation
    (3, (1, 2, 3, 4, 3), (2, 2, 2, 3, 2), dict(stride=2, padding=(0, 1, 0))),
]


@pytest.mark.parametrize("nd,xs,ws,kw", TRANSPOSE_CASES)
def test_conv_transpose(backend, rng, nd, xs, ws, kw):
    x, w, _ = data(rng, nd, xs, ws)
    b = rng.standard_normal(ws[1] * kw.get("groups", 1)).astype(np.float32)
    f = getattr(F, f"conv_transpose{nd}d")
    fb = getattr(F, f"conv_transpose{nd}d_backward")
    y = f(x, w, b, **kw)
    within(y, getattr(R, f"conv_transpose{nd}d")(x, w, b, **kw), numpy32(f, x, w, b, **kw), f"{backend} forward")
    g = rng.standard_normal(y.shape).astype(np.float32)
    got = fb(g, x, w, **kw)
    ref = getattr(R, f"conv_transpose{nd}d_backward")(g, x, w, **kw)
    base = numpy32(fb, g, x, w, **kw)
    for name, a, r, bs in zip(("grad_input", "grad_weight", "grad_bias"), got, ref, base):
        within(a, r, bs, f"{backend} {name}")


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, (2, 0), "same"])
def test_padding_modes(backend, rng, mode, padding):
    x, w, b = data(rng, 2, (2, 4, 6, 5), (6, 2, 3, 2))
    kw = dict(padding=padding, groups=2, padding_mode=mode)
    y = F.conv2d(x, w, b, **kw)
    within(y, R.conv2d(x, w, b, **kw), numpy32(F.conv2d, x, w, b, **kw), f"{backend} {mode}")
    g = rng.standard_normal(y.shape).astype(np.float32)
    got = F.conv2d_backward(g, x, w, **kw)
    for a, r, bs in zip(got, R.conv2d_backward(g, x, w, **kw), numpy32(F.conv2d_backward, g, x, w, **kw)):
        within(a, r, bs, f"{backend} {mode} backward")


def test_unbatched(backend, rng):
    x, w, b = data(rng, 2, (4, 7, 6), (5, 4, 3, 3))
    y = F.conv2d(x, w, b, padding=1)
    assert y.shape == (5, 7, 6)
    np.testing.assert_allclose(y, F.conv2d(x[None], w, b, padding=1)[0], rtol=1e-6, atol=1e-5)
    gi, gw, gb = F.conv2d_backward(np.ones_like(y), x, w, padding=1)
    assert gi.shape == x.shape and gw.shape == w.shape and gb.shape == (5,)
    y1 = F.conv1d(x[:, 0], w[:, :, 0], b, padding=1)
    assert y1.shape == (5, 6)
    yt = F.conv_transpose2d(x, w.transpose(1, 0, 2, 3)[:4, :4].copy(), None, stride=2)
    assert yt.shape == (4, 15, 13)


@pytest.mark.parametrize("algorithm", ["auto", "im2col", "1x1"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_channels_last(backend, rng, algorithm, nd):
    sp = {1: (11,), 2: (7, 6), 3: (3, 4, 5)}[nd]
    k = 1 if algorithm == "1x1" else 3
    pad = 0 if algorithm == "1x1" else 1
    x_cl = rng.standard_normal((2,) + sp + (6,)).astype(np.float32)
    x = np.moveaxis(x_cl, -1, 1)                      # NC* view of a channels-last buffer
    w = rng.standard_normal((8, 3) + (k,) * nd).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    y = fwd(nd)(x, w, b, padding=pad, groups=2, algorithm=algorithm, activation="relu")
    assert np.moveaxis(y, 1, -1).flags.c_contiguous     # same memory format as the input
    ref = R.__dict__[f"conv{nd}d"](x, w, b, padding=pad, groups=2, activation="relu")
    within(y, ref, numpy32(fwd(nd), np.ascontiguousarray(x), w, b, padding=pad, groups=2, activation="relu"),
           f"{backend} channels-last")
    out = np.empty(y.shape, np.float32)                 # a C-contiguous out= from channels-last input
    fwd(nd)(x, w, b, padding=pad, groups=2, algorithm=algorithm, activation="relu", out=out)
    np.testing.assert_allclose(out, y, rtol=1e-5, atol=1e-5)   # other output layout: other summation order


@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_channels_last_padding_mode(backend, rng, mode):
    x = np.moveaxis(rng.standard_normal((2, 6, 5, 4)).astype(np.float32), -1, 1)
    w = rng.standard_normal((3, 4, 3, 2)).astype(np.float32)
    y = F.conv2d(x, w, padding=(1, 2), padding_mode=mode)
    assert np.moveaxis(y, 1, -1).flags.c_contiguous
    ref = R.conv2d(x, w, padding=(1, 2), padding_mode=mode)
    within(y, ref, numpy32(F.conv2d, np.ascontiguousarray(x), w, padding=(1, 2), padding_mode=mode), mode)


def test_channels_last_unbatched_and_out(backend, rng):
    x = np.moveaxis(rng.standard_normal((6, 5, 4)).astype(np.float32), -1, 0)   # (C, H, W) over HWC
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    y = F.conv2d(x, w, padding=1)
    assert y.shape == (3, 6, 5) and np.moveaxis(y, 0, -1).flags.c_contiguous
    np.testing.assert_allclose(y, R.conv2d(x, w, padding=1), rtol=1e-5, atol=1e-5)
    out = np.moveaxis(np.zeros((1, 6, 5, 3), np.float32), -1, 1)               # channels-last out=
    r = F.conv2d(x[None], w, padding=1, out=out)
    assert r is out
    np.testing.assert_allclose(out[0], y, rtol=1e-6, atol=1e-6)


def test_empty_batch(backend, rng):
    x, w, b = data(rng, 2, (0, 3, 5, 5), (4, 3, 3, 3))
    assert F.conv2d(x, w, b, padding=1).shape == (0, 4, 5, 5)
    gi, gw, gb = F.conv2d_backward(np.empty((0, 4, 5, 5), np.float32), x, w, padding=1)
    assert gi.shape == x.shape and not gw.any() and not gb.any()
    assert F.conv_transpose2d(x[:, :, :, :], w.transpose(1, 0, 2, 3).copy()[:3]).shape == (0, 4, 7, 7)


def test_noncontiguous_input(backend, rng):
    big = rng.standard_normal((2, 8, 14, 12)).astype(np.float32)
    x = big[:, ::2, ::2, 1::2]
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)[:, :, ::-1]
    y = F.conv2d(x, w, None, padding=1)
    within(y, R.conv2d(x, w, None, padding=1), numpy32(F.conv2d, x.copy(), w.copy(), None, padding=1), "strided")
    g = np.ones(y.shape, np.float32)[:, :, ::1]
    for a, r in zip(F.conv2d_backward(g, x, w, padding=1), R.conv2d_backward(g, x, w, padding=1)):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)


def test_algorithms_agree(rng):
    """Every compiled general path on the same inputs (the NumPy backend ignores the choice); the
    specialised kernels are tested through this API in test_conv_algorithms.py."""
    if not fastml._backend.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    x, w, b = data(rng, 2, (2, 6, 9, 7), (10, 3, 1, 1))
    ref = R.conv2d(x, w, b, groups=2)
    ys = {a: F.conv2d(x, w, b, groups=2, algorithm=a) for a in ("auto", "1x1", "im2col")}
    for a, y in ys.items():
        within(y, ref, numpy32(F.conv2d, x, w, b, groups=2), a)
    for a in ("depthwise", "winograd", "winograd_f43", "direct"):   # none applies to groups 2, C/G 3
        with pytest.raises(ValueError, match=f"{a!r} does not apply"):
            F.conv2d(x, w, b, groups=2, algorithm=a)
    with pytest.raises(ValueError, match="1x1"):
        F.conv2d(x, rng.standard_normal((4, 6, 3, 3)).astype(np.float32), algorithm="1x1")


def test_out_argument(backend, rng):
    x, w, b = data(rng, 2, (2, 3, 6, 6), (4, 3, 3, 3))
    out = np.full((2, 4, 6, 6), np.nan, np.float32)
    r = F.conv2d(x, w, b, padding=1, out=out)
    assert r is out
    np.testing.assert_allclose(out, R.conv2d(x, w, b, padding=1), rtol=1e-4, atol=1e-4)
    out_t = np.full((2, 3, 8, 8), np.nan, np.float32)
    r = F.conv_transpose2d(out[:, :, :, :], w, None, out=out_t)
    assert r is out_t
    np.testing.assert_allclose(out_t, R.conv_transpose2d(out, w), rtol=1e-4, atol=1e-3)


def test_batch_and_threads_bitwise(rng, threads):
    """1, 2 and 3 threads: forward, grad_input and grad_weight bitwise identical (fixed reduction split)."""
    if not fastml._backend.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    cases = [((4, 16, 20, 20), (16, 16, 3, 3), dict(padding=1)),
             ((1, 8, 40, 33), (12, 8, 3, 3), dict(padding=1, stride=2)),
             ((3, 32, 16, 16), (24, 32, 1, 1), {}),
             ((2, 16, 12, 40), (16, 16, 5, 5), dict(padding=2)),
             ((2, 16, 10, 30), (32, 16, 5, 5), dict(padding=2)),
             ((3, 16, 9, 9), (256, 16, 3, 3), dict(padding=1)),  # grad_weight in the weights' layout
             ((2, 8, 8, 8), (512, 4, 3, 3), dict(padding=1, groups=2)),
             ((3, 64, 7, 7), (64, 32, 3, 3), dict(padding=1, groups=2)),  # pixel rows (AVX-512): blocked gw
             ((1, 64, 20, 20), (64, 32, 3, 3), dict(padding=1, groups=2)),
             ((2, 64, 9, 9), (64, 16, 3, 3), dict(padding=1, groups=4)),
             # batch 1 and small spans: the units' rows shared among the threads (RowSplit in conv.cpp)
             ((1, 40, 7, 7), (70, 40, 3, 3), dict(padding=1)),
             ((1, 24, 30, 30), (50, 24, 1, 1), {}),
             ((2, 64, 5, 5), (40, 64, 1, 1), {})]
    for xs, ws, kw in cases:
        x, w, b = data(rng, 2, xs, ws)
        res = []
        for n in (1, 2, 3):
            fastml.set_num_threads(n)
            y = F.conv2d(x, w, b, **kw)
            g = np.cos(y)
            res.append((y,) + F.conv2d_backward(g, x, w, **kw) + (F.conv_transpose2d(y, w, None, **kw),))
        for other in res[1:]:
            for a, c in zip(res[0], other):
                np.testing.assert_array_equal(a, c)


def test_column_tiles_spanning_images_match_single_images(rng):
    """Outputs of fewer than 256 pixels per image are computed in column tiles that span several images;
    each image's result (forward and grad_input) must be bitwise that of the image alone (bias, groups,
    strides, activation), and the weight gradient over spanning units within the error rule."""
    if not fastml._backend.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    cases = [((8, 32, 14, 14), (48, 32, 3, 3), dict(padding=1, stride=2)),
             ((5, 16, 9, 9), (20, 8, 3, 3), dict(padding=1, groups=2, activation="relu")),
             ((11, 4, 6, 7), (9, 4, 2, 3), dict(stride=(1, 2))),
             ((3, 20, 15, 15), (30, 20, 5, 5), dict(padding=2, dilation=1)),  # 225 pixels, 3 x 225 columns
             ((3, 8, 40, 40), (16, 8, 3, 3), dict(padding=1, stride=2)),  # 400 pixels: tiles, not spans
             ((2, 128, 5, 5), (1024, 128, 3, 3), dict(stride=2))]  # W^T of 4.7 MB: grad_input on sgemm
    for xs, ws, kw in cases + [((6, 40, 7, 7), (300, 40, 1, 1), {})]:  # 1x1, Kg >= 256 (gw's own layout)
        x, w, b = data(rng, 2, xs, ws)
        algo = "auto" if ws[2:] == (1, 1) else "im2col"
        y = F.conv2d(x, w, b, algorithm=algo, **kw)
        for n in range(xs[0]):
            np.testing.assert_array_equal(y[n:n + 1], F.conv2d(x[n:n + 1], w, b, algorithm=algo, **kw))
        # grad_input (col2im of one product per span, or the flipped forward): bitwise per image too
        kb = {k: v for k, v in kw.items() if k != "activation"}
        g = np.cos(y)
        gi = F.conv2d_backward(g, x, w, output_mask=(True, False, False), **kb)[0]
        for n in range(xs[0]):
            np.testing.assert_array_equal(
                gi[n:n + 1], F.conv2d_backward(g[n:n + 1], x[n:n + 1], w, output_mask=(True, False, False), **kb)[0])
        # the weight gradient sums the same spanning units (its order changes: against the reference)
        gw = F.conv2d_backward(g, x, w, output_mask=(False, True, False), **kb)[1]
        within(gw, R.conv2d_backward(g, x, w, **kb)[1], numpy32(F.conv2d_backward, g, x, w, **kb)[1], "grad_weight")


# ---------------------------------------------------------------- torch parity

TORCH_CASES = [
    (2, (2, 4, 9, 8), (6, 2, 3, 2), dict(stride=2, padding=1, groups=2)),
    (2, (1, 3, 10, 7), (5, 3, 4, 2), dict(padding="same", dilation=(1, 2))),
    (2, (2, 6, 7, 9), (6, 1, 3, 3), dict(padding=1, groups=6)),
    (2, (2, 16, 6, 5), (8, 16, 3, 3), dict(padding=1)),                            # C/G >= 16: grad_input as a
    (2, (1, 32, 5, 6), (8, 16, 3, 2), dict(padding=(1, 0), groups=2, dilation=(1, 2))),  # flipped forward conv
    (2, (2, 16, 5, 20), (8, 16, 3, 3), dict(padding=1)),                         # stride 1, C/G >= 16
    (2, (1, 16, 6, 30), (4, 16, 5, 4), dict(padding=(2, 1))),                    # ... and >= 18 offsets, wide
    (2, (1, 32, 6, 40), (6, 16, 5, 5), dict(padding=(0, 2), groups=2)),          # rows: the shifted-GEMM path
    (3, (1, 16, 3, 4, 18), (4, 16, 2, 3, 3), dict(padding=1, dilation=(1, 2, 1))),
    (1, (2, 16, 40), (8, 16, 5), dict(padding=2)),
    (1, (3, 5, 17), (6, 5, 3), dict(padding=1, stride=2)),
    (3, (2, 3, 5, 6, 7), (4, 3, 3, 2, 3), dict(padding=(1, 0, 2), stride=(1, 2, 1))),
]


@pytest.mark.parametrize("nd,xs,ws,kw", TORCH_CASES)
def test_torch_parity(rng, nd, xs, ws, kw):
    torch = pytest.importorskip("torch")
    x, w, b = data(rng, nd, xs, ws)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    with warnings.catch_warnings():  # torch warns that 'same' with even kernels pads a copy
        warnings.simplefilter("ignore")
        yt = getattr(torch.nn.functional, f"conv{nd}d")(xt, wt, bt, **kw)
    y = fwd(nd)(x, w, b, **kw)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-4)
    g = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(g))
    for a, t in zip(bwd(nd)(g, x, w, **kw), (xt.grad, wt.grad, bt.grad)):
        np.testing.assert_allclose(a, t.numpy(), rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_torch_parity_padding_mode(rng, mode):
    torch = pytest.importorskip("torch")
    m = torch.nn.Conv2d(4, 6, (3, 2), padding="same", padding_mode=mode, groups=2)
    x = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yt = m(xt)
    w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    y = F.conv2d(x, w, b, padding="same", groups=2, padding_mode=mode)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    g = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(g))
    gi, gw, gb = F.conv2d_backward(g, x, w, padding="same", groups=2, padding_mode=mode)
    np.testing.assert_allclose(gi, xt.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw, m.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gb, m.bias.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_torch_parity_transpose(rng):
    torch = pytest.importorskip("torch")
    x, w = rng.standard_normal((2, 4, 5, 6)).astype(np.float32), rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    kw = dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2, dilation=(1, 2))
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv_transpose2d(xt, wt, bt, **kw)
    y = F.conv_transpose2d(x, w, b, **kw)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-4)
    g = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(g))
    for a, t in zip(F.conv_transpose2d_backward(g, x, w, **kw), (xt.grad, wt.grad, bt.grad)):
        np.testing.assert_allclose(a, t.numpy(), rtol=1e-4, atol=2e-4)


# ---------------------------------------------------------------- bad input

def _bad_calls(rng):
    x, w, b = data(rng, 2, (2, 4, 6, 6), (6, 4, 3, 3))
    return [
        (ValueError, "C_in=4", lambda o: F.conv2d(x, w[:, :3], out=o)),                          # channel mismatch
        (ValueError, "groups dividing C_in", lambda o: F.conv2d(x, w, groups=3, out=o)),
        (ValueError, "groups dividing C_out", lambda o: F.conv2d(x, w[:5, :1], groups=4, out=o)),
        (ValueError, "output size", lambda o: F.conv2d(x, rng.standard_normal((6, 4, 7, 7)).astype(np.float32),
                                                       out=o)),
        (ValueError, "4-D weight", lambda o: F.conv2d(x, w[0], out=o)),
        (ValueError, "3-D \\(unbatched\\) or 4-D", lambda o: F.conv2d(x[0, 0], w, out=o)),
        (ValueError, "padding='same' requires stride 1", lambda o: F.conv2d(x, w, stride=2, padding="same", out=o)),
        (ValueError, "'valid' or 'same'", lambda o: F.conv2d(x, w, padding="full", out=o)),
        (ValueError, "bias of shape \\(6,\\)", lambda o: F.conv2d(x, w, b[:5], out=o)),
        (ValueError, "stride >= 1", lambda o: F.conv2d(x, w, stride=0, out=o)),
        (ValueError, "padding_mode", lambda o: F.conv2d(x, w, padding=1, padding_mode="mirror", out=o)),
        (ValueError, "padding <= 5", lambda o: F.conv2d(x, w, padding=6, padding_mode="reflect", out=o)),
        (ValueError, "activation", lambda o: F.conv2d(x, w, activation="swish", out=o)),
        (ValueError, "algorithm", lambda o: F.conv2d(x, w, algorithm="fft", out=o)),
        (ValueError, "out of shape", lambda o: F.conv2d(x, w, padding=1, out=o)),
        (TypeError, "dtype float32", lambda o: F.conv2d(x, w.astype(np.float64), out=o)),
        (TypeError, "float32 or float64", lambda o: F.conv2d(x.astype(np.int32), w, out=o)),
        (ValueError, "output_padding smaller", lambda o: F.conv_transpose2d(x, w[:4], output_padding=1)),
        (ValueError, "grad_output of shape", lambda o: F.conv2d_backward(np.ones((2, 6, 3, 3), np.float32), x, w)),
        (ValueError, "output_mask", lambda o: F.conv2d_backward(np.ones((2, 6, 4, 4), np.float32), x, w,
                                                                output_mask=(True,))),
    ]


def test_bad_inputs_raise_and_write_nothing(backend, rng):
    for exc, msg, call in _bad_calls(rng):
        out = np.full((2, 6, 4, 4), 7.0, np.float32)
        with pytest.raises(exc, match=msg):
            call(out)
        assert np.all(out == 7.0), msg


@pytest.mark.parametrize("xs,ws,kw", [
    ((3, 16, 64, 64), (24, 16, 3, 3), dict(padding=1, stride=2, algorithm="im2col")),
    ((3, 16, 32, 32), (20, 16, 1, 1), dict(algorithm="1x1", activation="relu")),
    ((3, 16, 64, 64), (30, 8, 3, 3), dict(padding=1, stride=2, groups=2, activation="relu"))],
    ids=["3x3s2", "1x1", "groups2"])
def test_weights_in_place_and_packed_agree_bitwise(backend, rng, xs, ws, kw):
    """The forward reads small calls' weights in place and packs them for calls with many output columns
    (weights_in_place in conv.cpp: over 2048 output pixels per group and call): one image alone (1024
    columns) and in a batch of three (3072) must give the same bits, and both match the reference."""
    if backend == "numpy":
        pytest.skip("a compiled-kernel layout property")
    x, w, b = data(rng, 2, xs, ws)
    batch = F.conv2d(x, w, b, **kw)
    alone = F.conv2d(x[:1], w, b, **kw)
    np.testing.assert_array_equal(alone[0], batch[0])
    ref_kw = {k: v for k, v in kw.items() if k != "algorithm"}
    within(batch, R.conv2d(x, w, b, **ref_kw), numpy32(F.conv2d, x, w, b, **ref_kw), f"{backend} {ws}")
