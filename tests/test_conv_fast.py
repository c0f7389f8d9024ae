"""Specialised conv2d kernels (fastml/functional/_conv_fast.py): depthwise, direct (tiny C_in), Winograd.

Every backend x ISA against the float64 direct-loop reference (fastml/reference/_conv_fast_ref.py):
error <= 2x that of the same convolution computed in float32 by NumPy (tap by tap), Winograd within
its measured factor of a float32 im2col + GEMM; backward passes against the reference, central finite
differences and torch autograd; output widths around the vector widths, strides, paddings, dilations,
multipliers, activations, NaN, out=, non-contiguous input, thread-count invariance, bad input.
"""
import numpy as np
import pytest

import fastml
from fastml._numpy import conv_fast as NPC
from fastml.functional import _conv_fast as CF
from fastml.reference import _conv_fast_ref as R
from _tolerance import EPS32, assert_error_within, numeric_vjp

ACTS = [None, "relu", "gelu", "gelu_tanh", "sigmoid", "tanh"]


def _within(got, ref, base, what):
    ref = np.asarray(ref, dtype=np.float64)
    assert np.asarray(got).shape == ref.shape, what
    assert_error_within(got, ref, base, floor=2 * EPS32 * max(float(np.abs(ref).max(initial=0)), 1e-30), what=what)


def _rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def _wout(w, k, s, p, d):
    return (w + 2 * p - d * (k - 1) - 1) // s + 1


def test_reference_hand_values():
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)             # [[1 2 3] [4 5 6] [7 8 9]]
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])              # x[i,j] - x[i+1,j+1]
    np.testing.assert_array_equal(R.conv2d(x, w), [[[[-4.0, -4.0], [-4.0, -4.0]]]])
    np.testing.assert_array_equal(R.conv2d(x, np.ones((1, 1, 2, 2)), [0.5], padding=(1, 1), stride=(2, 2)),
                                  [[[[1.5, 5.5], [11.5, 28.5]]]])   # corners of the zero-padded 5x5
    np.testing.assert_array_equal(R.conv2d(x, np.ones((1, 1, 2, 2)), dilation=(2, 2)), [[[[20.0]]]])
    two = np.concatenate([x, 2 * x], axis=1)                 # depthwise, multiplier 2: k reads channel k // 2
    y = R.conv2d(two, np.array([1.0, -1.0, 1.0, 3.0]).reshape(4, 1, 1, 1), groups=2)
    np.testing.assert_array_equal(y[0, :, 0, 0], [1.0, -1.0, 2.0, 6.0])
    gx, gw, gb = R.conv2d_backward(np.ones((1, 1, 2, 2)), x, w)
    np.testing.assert_array_equal(gx[0, 0], [[1, 1, 0], [1, 0, -1], [0, -1, -1]])
    np.testing.assert_array_equal(gw[0, 0], [[12, 16], [24, 28]])
    np.testing.assert_array_equal(gb, [4.0])


# (N, C, H, W, m, k, stride, pad, dil): output widths 1, 7, 8, 9, 15, 16, 17, 33 and the other edges
DW_CASES = [
    (2, 3, 5, 3, 1, 3, 1, 0, 1),      # W_out 1
    (1, 2, 6, 9, 1, 3, 1, 0, 1),      # W_out 7, batch 1
    (2, 3, 8, 8, 2, 3, 1, 1, 1),      # W_out 8, multiplier 2
    (2, 2, 9, 9, 1, 3, 1, 1, 1),      # 9
    (1, 3, 7, 15, 1, 5, 1, 2, 1),     # 15, k5 p2
    (2, 2, 6, 31, 1, 3, 2, 1, 1),     # 16, stride 2
    (1, 2, 5, 17, 3, 3, 1, 1, 1),     # 17, multiplier 3
    (2, 3, 9, 37, 1, 3, 1, 1, 2),     # 33, dilation 2
    (1, 4, 1, 1, 1, 3, 1, 1, 1),      # 1x1 input (padding only)
    (2, 2, 5, 6, 2, 3, 2, 3, 1),      # padding larger than k // 2
    (1, 3, 11, 12, 1, 7, 2, 3, 2),    # k7 s2 d2
    (1, 2, 4, 5, 1, 1, 1, 0, 1),      # 1x1 kernel
    (2, 2, 10, 20, 1, (3, 5), (2, 1), (0, 2), (1, 2)),  # asymmetric everything
    (1, 2, 12, 13, 1, 9, 1, 4, 1),    # 81 taps: grad_weight totals in groups of kernel rows
    (1, 1, 3, 80, 1, (1, 70), 3, 0, 1),  # 70 taps in one row: column groups, stride 3
    (1, 2, 9, 23, 1, 3, 4, 1, 1),     # stride 4 (grad_input: 4-column groups from the phases)
    (1, 3, 6, 29, 1, 5, 4, 0, 1),     # stride 4, no padding (phase 0 first)
    (2, 2, 7, 22, 1, 2, 2, 0, 1),     # k2 s2, no padding
    # 5 and 7 kernel rows (row-shared blocks of 4 / 3 output rows): every remainder of rows, 2+ column blocks
    (2, 2, 10, 21, 1, 5, 1, 2, 1),    # k5: rows 4 + 4 + 2, W_out 21
    (1, 2, 9, 12, 1, 5, 1, 2, 1),     # k5: rows 4 + 4 + 1
    (1, 3, 9, 40, 2, 7, 1, 3, 1),     # k7: rows 3 x 3, W_out 40, multiplier 2
    (1, 2, 8, 11, 1, 7, 1, 3, 1),     # k7: rows 3 + 3 + 2
    (1, 2, 7, 11, 1, 7, 1, 3, 1),     # k7: rows 3 + 3 + 1
    (1, 2, 13, 19, 1, 5, 2, 2, 1),    # k5 s2: rows 4 + 3
    (1, 2, 16, 17, 1, 7, 2, 3, 1),    # k7 s2: rows 3 + 3 + 2
    (1, 2, 11, 26, 1, (5, 3), (1, 2), (2, 1), (1, 2)),  # 5 rows, 3 columns: column stride and dilation
    # narrow planes (output width <= 14, strides 1): the flattened-grid kernel, one or several register blocks
    (2, 3, 7, 7, 1, 5, 1, 2, 1),      # EfficientNet's 7x7: 5 grid vectors (AVX-512), one partial block
    (1, 2, 14, 14, 2, 7, 1, 3, 1),    # 14x14 k7, multiplier 2: 280 grid points, blocks 8 + 8 + 2 (AVX-512)
    (1, 2, 40, 5, 1, (5, 3), 1, (2, 0), 1),  # tall and narrow, 5x3 taps, no column padding (W_out 3)
    (1, 2, 6, 8, 1, 5, 1, (0, 3), 1),  # rows unpadded (H_out 2), columns padded past k // 2
    # small planes, multiplier 1: channels in the vector lanes, whole and partial channel blocks
    (2, 37, 7, 7, 1, 5, 2, 2, 1),     # stride 2 (4 x 4 outputs)
    (1, 20, 9, 9, 1, 3, 1, 1, 2),     # 3x3, dilation 2
    (1, 17, 11, 6, 1, (7, 2), (1, 2), (3, 1), 1),  # 7 x 2 taps, stride (1, 2)
    (1, 20, 56, 56, 1, 5, 1, 2, 1),   # weight gradient in the lanes over 3136 pixels (AVX-512)
]


def _norm(case):
    n, c, h, w, m, k, s, p, d = case
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    return n, c, h, w, m, pair(k), pair(s), pair(p), pair(d)


def _dw_data(rng, case, dtype=np.float32):
    n, c, h, w, m, k, s, p, d = _norm(case)
    x = _rand(rng, (n, c, h, w), dtype)
    wt = _rand(rng, (c * m, 1) + k, dtype)
    b = _rand(rng, (c * m,), dtype)
    return x, wt, b, s, p, d


@pytest.mark.parametrize("case", DW_CASES, ids=str)
def test_depthwise_forward(backend, rng, case):
    x, w, b, s, p, d = _dw_data(rng, case)
    y = CF.depthwise_conv2d(x, w, b, s, p, d)
    ref = R.conv2d(x, w, b, s, p, d, groups=x.shape[1])
    _within(y, ref, NPC.conv2d(x, w, b, s, p, d, x.shape[1]), f"{backend} {case}")
    y0 = CF.depthwise_conv2d(x, w, None, s, p, d)
    _within(y0, R.conv2d(x, w, None, s, p, d, groups=x.shape[1]), NPC.conv2d(x, w, None, s, p, d, x.shape[1]),
            f"{backend} {case} no bias")


@pytest.mark.parametrize("case", DW_CASES, ids=str)
def test_depthwise_backward(backend, rng, case):
    x, w, _, s, p, d = _dw_data(rng, case)
    c = x.shape[1]
    y = R.conv2d(x, w, None, s, p, d, groups=c)
    g = _rand(rng, y.shape)
    got = CF.depthwise_conv2d_backward(g, x, w, s, p, d, (True, True, True))
    ref = R.conv2d_backward(g, x, w, s, p, d, groups=c)
    base = NPC.conv2d_backward(g, x, w, s, p, d, c, (True, True, True))
    for name, a, r, bs in zip(("grad_input", "grad_weight", "grad_bias"), got, ref, base):
        assert a.dtype == np.float32
        _within(a, r, bs, f"{backend} {case} {name}")
    gx, gw, gb = CF.depthwise_conv2d_backward(g, x, w, s, p, d, (False, True, False))
    assert gx is None and gb is None and np.array_equal(gw, got[1])


@pytest.mark.parametrize("k,p,s", [(5, 2, 1), (7, 3, 1), ((5, 3), (2, 1), 1), (3, 1, 1), (3, 1, 2), (5, 2, 2)],
                         ids=str)
def test_depthwise_small_planes_match_wide_plane_columns_bitwise(backend, rng, k, p, s):
    """Small output planes take other kernels than wide ones: channels in the vector lanes (multiplier 1,
    the forward) or the flattened grid (grad_input's correlation), against the per-plane row blocks. All sum
    each output's taps in the same order. A small image and the same image with zero columns and then
    other data appended on the right (wide enough for the row blocks) give the same bits in the small
    image's output columns: its right padding and the appended zeros are the same zeros. Images of 9 x 12
    and 7 x 7 (the lanes kernel's bounds differ per ISA); 37 channels: two whole blocks of 16 lanes and a
    partial one (AVX2: four of 8 and a partial one)."""
    kh, kw = k if isinstance(k, tuple) else (k, k)
    ph, pw = p if isinstance(p, tuple) else (p, p)
    w, b = _rand(rng, (37, 1, kh, kw)), _rand(rng, (37,))
    for h, wd in ((9, 12), (7, 7)):
        x = _rand(rng, (2, 37, h, wd))
        wide = np.concatenate([x, np.zeros((2, 37, h, pw), np.float32), _rand(rng, (2, 37, h, 64))], axis=3)
        for bias, act in ((b, None), (None, "relu")):
            y = CF.depthwise_conv2d(x, w, bias, (s, s), (ph, pw), (1, 1), activation=act)
            yw = CF.depthwise_conv2d(wide, w, bias, (s, s), (ph, pw), (1, 1), activation=act)
            assert y.shape[3] <= 14 and yw.shape[3] > 28
            np.testing.assert_array_equal(y, yw[..., :y.shape[3]])
        if s == 1:  # grad_input runs the forward kernels on the flipped taps (stride 1)
            g = _rand(rng, y.shape)
            gw_ = np.concatenate([g, np.zeros(g.shape[:3] + (yw.shape[3] - g.shape[3],), np.float32)], axis=3)
            gx = CF.depthwise_conv2d_backward(g, x, w, (1, 1), (ph, pw), (1, 1), (True, False, False))[0]
            gxw = CF.depthwise_conv2d_backward(gw_, wide, w, (1, 1), (ph, pw), (1, 1), (True, False, False))[0]
            np.testing.assert_array_equal(gx, gxw[..., :x.shape[3]])


# (N, C, H, W, K, k, stride, pad, dil)
DIRECT_CASES = [
    (2, 1, 5, 5, 6, 5, 1, 0, 1),      # LeNet-like, W_out 1
    (1, 3, 9, 13, 8, 7, 2, 3, 1),     # stem-like, W_out 7
    (2, 3, 8, 10, 9, 3, 1, 0, 1),     # W_out 8, K 9 (register block tail)
    (2, 2, 9, 9, 1, 3, 1, 1, 1),      # 9, K 1
    (1, 4, 6, 15, 17, 3, 1, 1, 1),    # 15, C 4, K 17
    (2, 3, 7, 31, 16, 3, 2, 1, 1),    # 16, stride 2
    (1, 1, 6, 21, 6, 5, 1, 0, 1),     # 17
    (1, 3, 9, 37, 5, 3, 1, 1, 2),     # 33, dilation 2
    (1, 2, 1, 1, 4, 3, 1, 1, 1),      # 1x1 input
    (2, 3, 5, 6, 3, 3, 2, 3, 1),      # padding larger than k // 2
    (1, 2, 10, 20, 7, (3, 5), (2, 1), (0, 2), (1, 2)),
    (1, 2, 4, 75, 3, (2, 67), (1, 4), (1, 0), 1),  # > 64 taps per kernel row, stride 4
]


def _direct_data(rng, case, dtype=np.float32):
    n, c, h, w, k_out, k, s, p, d = _norm(case)
    x = _rand(rng, (n, c, h, w), dtype)
    wt = _rand(rng, (k_out, c) + k, dtype)
    b = _rand(rng, (k_out,), dtype)
    return x, wt, b, s, p, d


@pytest.mark.parametrize("case", DIRECT_CASES, ids=str)
def test_direct_forward(backend, rng, case):
    x, w, b, s, p, d = _direct_data(rng, case)
    y = CF.direct_conv2d(x, w, b, s, p, d)
    _within(y, R.conv2d(x, w, b, s, p, d), NPC.conv2d(x, w, b, s, p, d, 1), f"{backend} {case}")


@pytest.mark.parametrize("case", DIRECT_CASES, ids=str)
def test_direct_backward(backend, rng, case):
    x, w, _, s, p, d = _direct_data(rng, case)
    g = _rand(rng, R.conv2d(x, w, None, s, p, d).shape)
    got = CF.direct_conv2d_backward(g, x, w, s, p, d, (True, True, True))
    ref = R.conv2d_backward(g, x, w, s, p, d)
    base = NPC.conv2d_backward(g, x, w, s, p, d, 1, (True, True, True))
    for name, a, r, bs in zip(("grad_input", "grad_weight", "grad_bias"), got, ref, base):
        _within(a, r, bs, f"{backend} {case} {name}")


@pytest.mark.parametrize("act", ACTS)
def test_activations_fused(backend, rng, act):
    x, w, b, s, p, d = _dw_data(rng, (2, 3, 7, 19, 2, 3, 1, 1, 1))
    y = CF.depthwise_conv2d(x, w, b, s, p, d, activation=act)
    _within(y, R.conv2d(x, w, b, s, p, d, groups=3, activation=act),
            NPC.conv2d(x, w, b, s, p, d, 3, activation=act), f"depthwise {act}")
    x, w, b, s, p, d = _direct_data(rng, (2, 3, 9, 18, 10, 3, 2, 1, 1))
    y = CF.direct_conv2d(x, w, None, s, p, d, activation=act)
    _within(y, R.conv2d(x, w, None, s, p, d, activation=act), NPC.conv2d(x, w, None, s, p, d, 1, activation=act),
            f"direct {act}")
    x, w = _rand(rng, (1, 8, 9, 10)), _rand(rng, (20, 8, 3, 3))
    y = CF.winograd_conv2d(x, w, None, activation=act, tile="f23")
    # the fused activation applied to the Winograd pre-activation (whose accuracy is tested below)
    pre = CF.winograd_conv2d(x, w, None, tile="f23").astype(np.float64)
    base = pre.astype(np.float32) if act is None else NPC._ACT[act](pre.astype(np.float32), None, 0.0)
    _within(y, R._act(pre, act), base, f"winograd {act}")


# ---- Winograd accuracy -------------------------------------------------------------------------------
# Measured max|error| / max|error of float32 im2col + GEMM| over 3 seeds x (C 3, 16, 64, 128, 256):
# F(2x2,3x3) <= 1.43, F(4x4,3x3) <= 23.6 (~5-12 at C <= 64, ~12-17 at C 128, ~18-24 at C 256).
# F(4x4,3x3) scales input values by up to 10 per axis in B^T d B and combines products with weights up
# to 8 in A^T, so rounding errors of the transformed-domain sums are amplified relative to a direct
# sum (Barabasz et al., "Error analysis and improving the accuracy of Winograd convolution for deep
# neural networks", ACM TOMS 2020, report the same order for these interpolation points). The bounds
# keep ~25% headroom over the worst measured ratio.
WINO_FACTOR = {"f23": 2.0, "f43": 30.0}
WINO_CASES = [(2, 3, 9, 9, 8, 1), (1, 16, 14, 14, 16, 1), (1, 64, 12, 12, 32, 0), (1, 256, 6, 6, 17, 1),
              (2, 5, 5, 7, 1, 0), (1, 1, 3, 3, 33, 0), (1, 4, 1, 1, 3, 1), (2, 6, 13, 17, 19, 1)]


def _im2col32(x, w, p):
    n, c, h, wd = x.shape
    k = w.shape[0]
    ho, wo = h + 2 * p - 2, wd + 2 * p - 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    cols = np.stack([xp[:, :, a:a + ho, b:b + wo] for a in range(3) for b in range(3)], axis=2)
    return np.matmul(w.reshape(k, c * 9), cols.reshape(n, c * 9, ho * wo)).reshape(n, k, ho, wo)


@pytest.mark.parametrize("tile", ["f43", "f23"])
@pytest.mark.parametrize("case", WINO_CASES, ids=str)
def test_winograd_accuracy(backend, rng, tile, case):
    n, c, h, w, k, p = case
    x, wt, b = _rand(rng, (n, c, h, w)), _rand(rng, (k, c, 3, 3)), _rand(rng, (k,))
    y = CF.winograd_conv2d(x, wt, b, tile=tile, padding=p)
    ref = R.conv2d(x, wt, b, (1, 1), (p, p), (1, 1))
    base = _im2col32(x, wt, p) + b.reshape(1, k, 1, 1)
    factor = WINO_FACTOR[tile] if backend != "numpy" else 2.0
    assert_error_within(y, ref, base, factor=factor, floor=2 * EPS32 * max(float(np.abs(ref).max(initial=0)), 1e-30),
                        what=f"{backend} {tile} {case}")


# ---- finite differences and torch ---------------------------------------------------------------------

def test_backward_finite_differences(rng):
    """Compiled float32 backward vs central differences of the float64 reference forward."""
    for kind, case in (("depthwise", (1, 2, 5, 6, 2, 3, 2, 1, 2)), ("direct", (1, 2, 5, 6, 3, 3, 2, 2, 1))):
        if kind == "depthwise":
            x, w, _, s, p, d = _dw_data(rng, case, np.float64)
            groups, bwd = x.shape[1], CF.depthwise_conv2d_backward
        else:
            x, w, _, s, p, d = _direct_data(rng, case, np.float64)
            groups, bwd = 1, CF.direct_conv2d_backward
        g = rng.standard_normal(R.conv2d(x, w, None, s, p, d, groups=groups).shape)
        num_x = numeric_vjp(lambda v: R.conv2d(v, w, None, s, p, d, groups=groups), x, g)
        num_w = numeric_vjp(lambda v: R.conv2d(x, v, None, s, p, d, groups=groups), w, g)
        for dtype in (np.float32, np.float64):
            gx, gw, gb = bwd(g.astype(dtype), x.astype(dtype), w.astype(dtype), s, p, d)
            assert gx.dtype == dtype
            tol = 1e-4 if dtype == np.float32 else 1e-7
            np.testing.assert_allclose(gx, num_x, rtol=tol, atol=tol * np.abs(num_x).max(), err_msg=kind)
            np.testing.assert_allclose(gw, num_w, rtol=tol, atol=tol * np.abs(num_w).max(), err_msg=kind)
            np.testing.assert_allclose(gb, g.sum(axis=(0, 2, 3)), rtol=tol, atol=tol, err_msg=kind)


@pytest.mark.parametrize("kind", ["depthwise", "direct", "winograd"])
def test_matches_torch(backend, rng, kind):
    torch = pytest.importorskip("torch")
    if kind == "depthwise":
        x, w, b, s, p, d = _dw_data(rng, (2, 4, 11, 19, 2, 3, 2, 1, 2))
        groups = 4
    elif kind == "direct":
        x, w, b, s, p, d = _direct_data(rng, (2, 3, 12, 21, 11, 5, 2, 2, 1))
        groups = 1
    else:
        x, w, b = _rand(rng, (2, 8, 10, 11)), _rand(rng, (12, 8, 3, 3)), _rand(rng, (12,))
        s, p, d, groups = (1, 1), (1, 1), (1, 1), 1
    tx, tw, tb = (torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, s, p, d, groups)
    if kind == "winograd":
        for tile, f in WINO_FACTOR.items():
            y = CF.winograd_conv2d(x, w, b, tile=tile)
            base = _im2col32(x, w, 1) + b.reshape(1, -1, 1, 1)
            assert_error_within(y, ty.detach().numpy(), base, factor=f if backend != "numpy" else 2.0, what=tile)
        return
    fn = CF.depthwise_conv2d if kind == "depthwise" else CF.direct_conv2d
    bwd = CF.depthwise_conv2d_backward if kind == "depthwise" else CF.direct_conv2d_backward
    y = fn(x, w, b, s, p, d)
    _within(y, ty.detach().numpy(), NPC.conv2d(x, w, b, s, p, d, groups), f"{kind} forward")
    g = _rand(rng, y.shape)
    ty.backward(torch.from_numpy(g.astype(np.float64)))
    got = bwd(g, x, w, s, p, d)
    base = NPC.conv2d_backward(g, x, w, s, p, d, groups, (True, True, True))
    for a, t, bs, name in zip(got, (tx.grad, tw.grad, tb.grad), base, ("gx", "gw", "gb")):
        _within(a, t.numpy(), bs, f"{kind} {name}")


# ---- semantics: NaN, out=, strided input, threads, dtypes -------------------------------------------------

def test_nan_propagates_like_reference(backend, rng):
    x, w, b, s, p, d = _dw_data(rng, (1, 2, 9, 20, 1, 3, 1, 1, 1))
    x[0, 1, 4, 17] = np.nan
    for y, ref in ((CF.depthwise_conv2d(x, w, b, s, p, d), R.conv2d(x, w, b, s, p, d, groups=2)),):
        assert np.array_equal(np.isnan(y), np.isnan(ref))
    xd, wd, bd, s, p, d = _direct_data(rng, (1, 3, 9, 20, 9, 3, 2, 1, 1))
    xd[0, 2, 3, 5] = np.nan
    y = CF.direct_conv2d(xd, wd, bd, s, p, d)
    assert np.array_equal(np.isnan(y), np.isnan(R.conv2d(xd, wd, bd, s, p, d)))
    g = _rand(rng, y.shape)
    gx, gw, gb = CF.direct_conv2d_backward(g, xd, wd, s, p, d)
    assert np.isnan(gw).any() and not np.isnan(gx).any() and not np.isnan(gb).any()
    # Winograd mixes a whole alpha x alpha input tile into each output tile: a NaN reaches at least the
    # outputs whose receptive field holds it (a superset, as with any Winograd implementation)
    xw, ww = _rand(rng, (1, 4, 10, 10)), _rand(rng, (5, 4, 3, 3))
    xw[0, 3, 5, 6] = np.nan
    y = CF.winograd_conv2d(xw, ww, None)
    ref_nan = np.isnan(R.conv2d(xw, ww, None, (1, 1), (1, 1), (1, 1)))
    assert np.isnan(y)[ref_nan].all()


def test_out_and_strided_input(backend, rng):
    x, w, b, s, p, d = _dw_data(rng, (2, 3, 9, 18, 1, 3, 2, 1, 1))
    want = CF.depthwise_conv2d(x, w, b, s, p, d, activation="relu")
    out = np.full(want.shape, 7.0, np.float32)
    got = CF.depthwise_conv2d(x, w, b, s, p, d, activation="relu", out=out)
    assert got is out and np.array_equal(out, want)
    wide = np.zeros((2, 3, 9, 36), np.float32)
    wide[..., ::2] = x
    assert np.array_equal(CF.depthwise_conv2d(wide[..., ::2], w, b, s, p, d, activation="relu"), want)
    xd, wd, bd, s, p, d = _direct_data(rng, (2, 3, 8, 11, 5, 3, 1, 1, 1))
    want = CF.direct_conv2d(xd, wd, bd, s, p, d)
    xt = np.ascontiguousarray(xd.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # Fortran-ish strides
    out = np.empty_like(want)
    assert CF.direct_conv2d(xt, wd, bd, s, p, d, out=out) is out and np.array_equal(out, want)
    xw, ww = _rand(rng, (1, 4, 9, 9)), _rand(rng, (6, 4, 3, 3))
    want = CF.winograd_conv2d(xw, ww, None, padding=0)
    out = np.empty_like(want)
    assert CF.winograd_conv2d(xw, ww, None, padding=0, out=out) is out and np.array_equal(out, want)


def test_float64_stays_float64(rng):
    x, w, b, s, p, d = _dw_data(rng, (1, 2, 6, 7, 2, 3, 1, 1, 1), np.float64)
    y = CF.depthwise_conv2d(x, w, b, s, p, d, activation="gelu")
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, R.conv2d(x, w, b, s, p, d, groups=2, activation="gelu"), rtol=1e-12, atol=1e-12)
    xw, ww = _rand(rng, (1, 3, 6, 6), np.float64), _rand(rng, (4, 3, 3, 3), np.float64)
    np.testing.assert_allclose(CF.winograd_conv2d(xw, ww, None), R.conv2d(xw, ww, None, (1, 1), (1, 1), (1, 1)),
                               rtol=1e-12, atol=1e-12)


def test_empty_batch(backend, rng):
    x, w = np.zeros((0, 3, 8, 8), np.float32), _rand(rng, (6, 1, 3, 3))
    assert CF.depthwise_conv2d(x, w, None, 1, 1, 1).shape == (0, 6, 8, 8)
    gx, gw, gb = CF.depthwise_conv2d_backward(np.zeros((0, 6, 8, 8), np.float32), x, w, 1, 1, 1)
    assert gx.shape == x.shape and not gw.any() and not gb.any()
    wd = _rand(rng, (4, 3, 3, 3))
    assert CF.direct_conv2d(x, wd, None, 1, 1, 1).shape == (0, 4, 8, 8)
    gx, gw, gb = CF.direct_conv2d_backward(np.zeros((0, 4, 8, 8), np.float32), x, wd, 1, 1, 1)
    assert gx.shape == x.shape and not gw.any() and not gb.any()
    assert CF.winograd_conv2d(x, wd, None).shape == (0, 4, 8, 8)


def test_threads_bitwise_identical(rng, threads):
    if not fastml._backend.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    cases = [("depthwise", _dw_data(rng, (4, 16, 30, 33, 1, 3, 1, 1, 1))),
             ("depthwise", _dw_data(rng, (6, 40, 7, 7, 1, 5, 1, 2, 1))),  # channels in the lanes, many items
             ("direct", _direct_data(rng, (4, 3, 40, 41, 16, 5, 2, 2, 1)))]
    xw, ww, bw = _rand(rng, (3, 16, 20, 21)), _rand(rng, (24, 16, 3, 3)), _rand(rng, (24,))
    xb, wb = _rand(rng, (2, 4, 200, 203)), _rand(rng, (8, 4, 3, 3))  # several tile blocks per call
    results = []
    for nt in (1, 2):
        fastml.set_num_threads(nt)
        r = []
        for kind, (x, w, b, s, p, d) in cases:
            fwd = CF.depthwise_conv2d if kind == "depthwise" else CF.direct_conv2d
            bwd = CF.depthwise_conv2d_backward if kind == "depthwise" else CF.direct_conv2d_backward
            y = fwd(x, w, b, s, p, d)
            r += [y, *bwd(np.cos(y), x, w, s, p, d)]
        r += [CF.winograd_conv2d(xw, ww, bw, tile=t) for t in ("f43", "f23")]
        r += [CF.winograd_conv2d(xb, wb, None, tile=t, activation="relu") for t in ("f43", "f23")]
        results.append(r)
    for a, b in zip(*results):
        assert a.tobytes() == b.tobytes()


# ---- bad input: a clear error and nothing written -------------------------------------------------------

def _bad_cases(x, w, b):
    dw = CF.depthwise_conv2d
    dr = CF.direct_conv2d
    return [
        (lambda o: dw(x[0], w, b, 1, 1, 1, out=o), ValueError, "input of shape"),
        (lambda o: dw(x, w[:, :, :, 0], b, 1, 1, 1, out=o), ValueError, "weight of shape"),
        (lambda o: dw(x, np.concatenate([w, w[:1]]), b, 1, 1, 1, out=o), ValueError, "(C*m, 1, kH, kW)"),
        (lambda o: dw(x, w, b[:-1], 1, 1, 1, out=o), ValueError, "bias of shape"),
        (lambda o: dw(x, w, b, 0, 1, 1, out=o), ValueError, "stride >= 1"),
        (lambda o: dw(x, w, b, 1, -1, 1, out=o), ValueError, "padding >= 0"),
        (lambda o: dw(x, w, b, 1, 1, 0, out=o), ValueError, "dilation >= 1"),
        (lambda o: dw(x, w, b, 1, 0, 9, out=o), ValueError, "at least as large as the dilated kernel"),
        (lambda o: dw(x, w, b, 1, 1, 1, activation="softplus", out=o), ValueError, "activation"),
        (lambda o: dw(x, w.astype(np.float16), b, 1, 1, 1, out=o), TypeError, "float"),
        (lambda o: dw(x, w, b, (1, 1, 1), 1, 1, out=o), ValueError, "stride"),
        (lambda o: dw(x.astype(np.int32), w, b, 1, 1, 1, out=o), TypeError, "float"),
        (lambda o: dr(x, w, b, 1, 1, 1, out=o), ValueError, "(K, C, kH, kW)"),
        (lambda o: CF.winograd_conv2d(x, np.zeros((3, 3, 5, 5), np.float32), None, out=o), ValueError, "3x3"),
        (lambda o: CF.winograd_conv2d(x, np.zeros((3, 3, 3, 3), np.float32), None, padding=2, out=o), ValueError,
         "padding 0 or 1"),
        (lambda o: CF.winograd_conv2d(x, np.zeros((3, 3, 3, 3), np.float32), None, tile="f63", out=o), ValueError,
         "tile"),
    ]


def test_bad_inputs_raise_and_write_nothing(backend, rng):
    x, w, b = _rand(rng, (2, 3, 8, 8)), _rand(rng, (3, 1, 3, 3)), _rand(rng, (3,))
    for i, (call, exc, msg) in enumerate(_bad_cases(x, w, b)):
        out = np.full((2, 3, 8, 8), 5.0, np.float32)
        with pytest.raises(exc, match=None) as info:
            call(out)
        assert msg in str(info.value), f"case {i}: {info.value}"
        assert np.all(out == 5.0), f"case {i} wrote into out"
    y = CF.depthwise_conv2d(x, w, b, 1, 1, 1)
    for bad_out in (np.zeros((2, 3, 8, 7), np.float32), np.zeros((2, 3, 8, 8), np.float64),
                    np.zeros((2, 3, 8, 16), np.float32)[..., ::2]):
        sentinel = bad_out.copy()
        with pytest.raises((ValueError, TypeError)):
            CF.depthwise_conv2d(x, w, b, 1, 1, 1, out=bad_out)
        assert np.array_equal(bad_out, sentinel)
    with pytest.raises(ValueError, match="out not to share memory"):
        CF.depthwise_conv2d(y, np.ones((3, 1, 1, 1), np.float32), None, 1, 0, 1, out=y)
    with pytest.raises(ValueError, match="grad_output of shape"):
        CF.depthwise_conv2d_backward(y[:, :, :-1], x, w, 1, 1, 1)
    with pytest.raises(ValueError, match="output_mask"):
        CF.direct_conv2d_backward(y, x, np.zeros((3, 3, 3, 3), np.float32), 1, 1, 1, (True, True))
