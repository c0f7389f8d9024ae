"""scaled_dot_product_attention (+ _forward/_backward) on every backend / ISA against the float64 reference
(error <= 2x that of a plain float32 NumPy softmax(QK^T)V) and against torch."""
import warnings

import numpy as np
import pytest

import fastml
import fastml.functional as F
from fastml import _backend as B
from fastml.reference import attention as R
from _tolerance import assert_error_within, numeric_vjp

pytestmark = pytest.mark.filterwarnings("error")


def _qkv(rng, B_, H, L, S, E, Ev, Hkv=None, dtype=np.float32):
    Hkv = H if Hkv is None else Hkv
    q = rng.standard_normal((B_, H, L, E)).astype(dtype)
    k = rng.standard_normal((B_, Hkv, S, E)).astype(dtype)
    v = rng.standard_normal((B_, Hkv, S, Ev)).astype(dtype)
    return q, k, v


def _baseline_fwd(q, k, v, mask=None, causal=False, scale=None, gqa=False, window=None, dropout_p=0.0, seed=None,
                  align="top_left"):
    """Plain float32 NumPy softmax(Q K^T * scale + bias) V (the error yardstick)."""
    q, k, v = (np.asarray(a, np.float32) for a in (q, k, v))
    if gqa and k.shape[-3] != q.shape[-3]:
        k = np.repeat(k, q.shape[-3] // k.shape[-3], axis=-3)
        v = np.repeat(v, q.shape[-3] // v.shape[-3], axis=-3)
    sc = np.float32(1 / np.sqrt(q.shape[-1]) if scale is None else scale)
    s = q @ np.swapaxes(k, -1, -2) * sc + R.attention_bias(q.shape[-2], k.shape[-2], mask, causal, window,
                                                             dtype=np.float32, causal_alignment=align)
    m = np.max(s, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, np.float32(0))
    e = np.exp(s - m)
    z = e.sum(-1, keepdims=True)
    p = e / np.where(z > 0, z, np.float32(1))
    if dropout_p:
        n = int(np.prod(p.shape[:-2]))
        keep = R.dropout_keep_mask(seed, np.arange(n), np.arange(p.shape[-2]), np.arange(p.shape[-1]), dropout_p)
        p = p * keep.reshape(p.shape).astype(np.float32) / np.float32(1 - dropout_p)
    return p @ v


def _baseline_bwd(g, q, k, v, mask=None, causal=False, gqa=False, window=None, dropout_p=0.0, seed=None,
                  align="top_left"):
    """The whole float32 pipeline in NumPy: forward (output, logsumexp) then backward (the NumPy backend
    run in float32), so the yardstick carries the forward's float32 error into D = rowsum(dO o O) as the
    compiled backward does."""
    with fastml.use_backend("numpy"):
        o, lse = F.scaled_dot_product_attention_forward(q, k, v, mask, dropout_p, causal, None, gqa, seed=seed,
                                                        sliding_window=window, causal_alignment=align)
        return F.scaled_dot_product_attention_backward(g, q, k, v, o, lse, mask, dropout_p, causal, None, gqa, seed,
                                                       window, causal_alignment=align)


def _check(q, k, v, *, mask=None, causal=False, gqa=False, window=None, dropout_p=0.0, seed=None, bwd=True,
           rng=None, align="top_left"):
    kw = dict(attn_mask=mask, is_causal=causal, enable_gqa=gqa, sliding_window=window, dropout_p=dropout_p,
              seed=seed, causal_alignment=align)
    o, lse = F.scaled_dot_product_attention_forward(q, k, v, **kw)
    ro, rl = R.scaled_dot_product_attention_forward(q, k, v, **kw)
    assert o.dtype == q.dtype and o.shape == ro.shape and lse.shape == rl.shape
    assert np.all(np.isfinite(o))
    base = _baseline_fwd(q, k, v, mask, causal, None, gqa, window, dropout_p, seed, align)
    assert_error_within(o, ro, base, what="output")
    fin = np.isfinite(rl)
    np.testing.assert_array_equal(np.isfinite(lse), fin)
    np.testing.assert_allclose(lse[fin], rl[fin], rtol=1e-5, atol=1e-5)
    if not bwd:
        return o
    g = (rng or np.random.default_rng(1)).standard_normal(o.shape).astype(q.dtype)
    grads = F.scaled_dot_product_attention_backward(g, q, k, v, o, lse, mask, dropout_p, causal, None, gqa, seed,
                                                    window, causal_alignment=align)
    ref = R.scaled_dot_product_attention_backward(g, q, k, v, None, None, mask, dropout_p, causal, None, gqa, seed,
                                                  window, causal_alignment=align)
    bb = _baseline_bwd(g, q, k, v, mask, causal, gqa, window, dropout_p, seed, align)
    for name, a, r, b in zip(("grad_query", "grad_key", "grad_value"), grads, ref, bb):
        assert a.shape == r.shape and a.dtype == q.dtype
        assert np.all(np.isfinite(a)), name
        # 2.5x rather than 2x for the gradients: P is recomputed from scores and logsumexp through the
        # kernels' exp (2^(x log2 e): up to |x| 2^-24 relative plus 1 ulp; NumPy's is ~0.5 ulp), and
        # dS = P (dP - D) amplifies that relative error where dP and D nearly cancel (observed worst case
        # 2.05x over this file's cases).
        assert_error_within(a, r, b, factor=2.5, what=name)
    return o


# (B, H, L, S, E, Ev, causal): a covering set of L, S in {1, 7, 16, 17, 63, 64, 65, 1000}, E in {8, 31, 64, 128}
SHAPES = [
    (1, 1, 1, 1, 8, 8, False),
    (2, 3, 7, 17, 31, 20, False),
    (1, 2, 16, 63, 64, 64, True),
    (2, 1, 17, 64, 128, 33, True),
    (1, 2, 63, 65, 8, 16, False),
    (1, 1, 64, 7, 31, 31, True),
    (1, 1, 65, 1000, 64, 64, False),
    (1, 1, 1000, 65, 64, 32, True),
    (1, 1, 1000, 1000, 64, 64, True),
]


# Lengths at and around the kernels' block edges (forward: query rows in blocks of 60 on AVX2, 56 on
# AVX-512, 64 scalar under causal / window masks, otherwise in equal blocks of up to 1.25x that (75 rows: one
# block of 78 on AVX2, 76: two of 42 and 34), keys in blocks of 256; backward: keys in blocks of
# 60 / 56 / 64, queries in blocks of 256, 64 under causal masks) and the sequence lengths that broke other
# attention kernels (127, 128, 192, 704: e.g. NaN gradients at lengths of 64 mod 128), forward and backward.
EDGE_SHAPES = [
    (1, 1, 127, 128, 32, 32, False),
    (1, 1, 128, 192, 32, 16, True),
    (1, 1, 256, 240, 64, 64, False),
    (1, 2, 257, 704, 32, 32, True),
    (1, 1, 704, 60, 16, 16, False),
    (1, 1, 255, 61, 31, 31, True),
    (1, 1, 192, 257, 64, 64, False),
    (1, 1, 112, 56, 16, 16, True),
    (1, 1, 57, 113, 16, 16, False),
    (1, 1, 75, 300, 16, 16, False),
    (1, 2, 76, 90, 32, 24, False),
    (1, 1, 151, 70, 31, 31, False),
]


# The backward is checked up to L x S = 200000 (every edge shape; of SHAPES all but the L or S = 1000 ones, whose
# float64 reference backward would dominate the file's run time).
@pytest.mark.parametrize("shape", SHAPES + EDGE_SHAPES,
                         ids=lambda s: "x".join(map(str, s[:6])) + ("c" if s[6] else ""))
def test_attention_shapes(backend, rng, shape):
    B_, H, L, S, E, Ev, causal = shape
    q, k, v = _qkv(rng, B_, H, L, S, E, Ev)
    _check(q, k, v, causal=causal, bwd=L * S <= 200000, rng=rng)


def test_attention_masks_broadcast(backend, rng):
    q, k, v = _qkv(rng, 2, 3, 33, 40, 16, 24)
    pad = np.ones((2, 1, 1, 40), dtype=bool)
    pad[0, :, :, 30:] = False
    _check(q, k, v, mask=pad)                                           # key padding, broadcast over heads/rows
    fm = rng.standard_normal((33, 40)).astype(np.float32)
    _check(q, k, v, mask=fm)                                            # float (L, S) over batch and heads
    _check(q, k, v, mask=rng.standard_normal((3, 33, 1)).astype(np.float32), causal=True)  # along keys + causal
    _check(q, k, v, mask=rng.random((2, 3, 33, 40)) > 0.3)             # full bool mask (rows may die)


def test_attention_fully_masked_rows(backend, rng):
    q, k, v = _qkv(rng, 1, 2, 9, 20, 8, 8)
    m = rng.random((1, 2, 9, 20)) > 0.5
    m[0, 0, 3] = False
    m[0, 1, [0, 8]] = False
    o = _check(q, k, v, mask=m)
    assert np.all(o[0, 0, 3] == 0) and np.all(o[0, 1, [0, 8]] == 0)
    o, lse = F.scaled_dot_product_attention_forward(q, k, v, m)
    assert lse[0, 0, 3] == -np.inf
    g = np.ones_like(o)
    dq, dk, dv = F.scaled_dot_product_attention_backward(g, q, k, v, o, lse, m)
    assert np.all(dq[0, 0, 3] == 0) and np.all(dq[0, 1, [0, 8]] == 0)
    for a in (dq, dk, dv):
        assert np.all(np.isfinite(a))
    # no key at all
    o = F.scaled_dot_product_attention(q, k[:, :, :0], v[:, :, :0])
    assert o.shape == (1, 2, 9, 8) and np.all(o == 0)


def test_attention_gqa(backend, rng):
    q, k, v = _qkv(rng, 2, 6, 21, 70, 16, 12, Hkv=2)
    _check(q, k, v, gqa=True)
    _check(q, k, v, gqa=True, causal=True, mask=rng.standard_normal((6, 21, 70)).astype(np.float32))


def test_attention_sliding_window(backend, rng):
    q, k, v = _qkv(rng, 1, 2, 150, 150, 16, 16)
    for w in (1, 5, 64, 200):
        o = _check(q, k, v, window=w)
        i, j = np.arange(150)[:, None], np.arange(150)[None, :]
        band = (j <= i) & (j > i - w)
        assert np.array_equal(o, F.scaled_dot_product_attention(q, k, v, sliding_window=w))
        ro = R.scaled_dot_product_attention(q, k, v, band)
        np.testing.assert_allclose(o, ro, atol=2e-5)
    # a window of L keys or more is the causal mask, whatever int it is (2^63 and up do not fit an int64)
    o, lse = F.scaled_dot_product_attention_forward(q[:, :, :40], k, v, is_causal=True)
    for w in (40, 150, 2**40, 2**63, 2**70):
        ow, lw = F.scaled_dot_product_attention_forward(q[:, :, :40], k, v, sliding_window=w)
        np.testing.assert_array_equal(ow, o)
        np.testing.assert_array_equal(lw, lse)
        g = F.scaled_dot_product_attention_backward(np.ones_like(o), q[:, :, :40], k, v, o, lse, sliding_window=w)
        for a, b in zip(g, F.scaled_dot_product_attention_backward(np.ones_like(o), q[:, :, :40], k, v, o, lse,
                                                                     is_causal=True)):
            np.testing.assert_array_equal(a, b)


# Bottom-right alignment (causal_alignment="bottom_right", torch's causal_lower_right): key j allowed for
# query i iff j <= i + S - L, and the window (i + S - L - w, i + S - L]. L < S (new queries after a KV
# cache), L > S (the first L - S rows see no key: output 0, zero gradients), masks, GQA and dropout.
@pytest.mark.parametrize("L,S,window", [(5, 17, None), (17, 5, None), (63, 300, None), (65, 130, 7),
                                        (130, 65, 30), (1, 40, 9), (200, 1000, None)], ids=str)
def test_attention_causal_bottom_right(backend, rng, L, S, window):
    q, k, v = _qkv(rng, 1, 2, L, S, 16, 12)
    o = _check(q, k, v, causal=True, window=window, align="bottom_right", rng=rng, bwd=L * S <= 40000)
    d = S - L
    i, j = np.arange(L)[:, None], np.arange(S)[None, :]
    band = (j <= i + d) & ((j > i + d - window) if window else True)
    np.testing.assert_allclose(o, R.scaled_dot_product_attention(q, k, v, band), atol=2e-5)
    dead = ~band.any(axis=1)  # rows that see no key at all (L > S)
    assert dead.any() == (L > S) and np.all(o[:, :, dead] == 0)


def test_attention_causal_bottom_right_with_mask_gqa_dropout(backend, rng):
    q, k, v = _qkv(rng, 2, 6, 21, 70, 16, 12, Hkv=2)
    m = rng.random((2, 1, 21, 70)) > 0.2
    _check(q, k, v, gqa=True, causal=True, align="bottom_right", mask=m)
    _check(q, k, v, gqa=True, window=12, align="bottom_right", dropout_p=0.3, seed=11,
           mask=rng.standard_normal((6, 21, 70)).astype(np.float32))


def test_attention_causal_alignment_equal_cases(backend, rng):
    """L == S: both alignments are one mask. L = 1: bottom-right allows every key (the call runs unmasked,
    bitwise); a window then keeps the last w keys, i.e. attention over the cache's tail."""
    q, k, v = _qkv(rng, 1, 2, 40, 40, 16, 16)
    for w in (None, 6):
        a = F.scaled_dot_product_attention_forward(q, k, v, is_causal=True, sliding_window=w)
        b = F.scaled_dot_product_attention_forward(q, k, v, is_causal=True, sliding_window=w,
                                                   causal_alignment="bottom_right")
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    q, k, v = _qkv(rng, 1, 8, 1, 3000, 32, 32, Hkv=2)
    plain = F.scaled_dot_product_attention_forward(q, k, v, enable_gqa=True)
    br = F.scaled_dot_product_attention_forward(q, k, v, enable_gqa=True, is_causal=True,
                                                causal_alignment="bottom_right")
    for x, y in zip(plain, br):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True,
                                                                 causal_alignment="bottom_right"), plain[0])
    tail = F.scaled_dot_product_attention(q, k, v, enable_gqa=True, sliding_window=100,
                                          causal_alignment="bottom_right")
    ref = R.scaled_dot_product_attention(q, k[:, :, -100:], v[:, :, -100:], enable_gqa=True)
    assert_error_within(tail, ref, _baseline_fwd(q, k[:, :, -100:], v[:, :, -100:], gqa=True), what="tail")


@pytest.mark.skipif(not B.HAS_CPU_EXT, reason="compiled module missing")
@pytest.mark.parametrize("L", [1, 6, 16])
def test_attention_bottom_right_each_path(rng, L):
    """The general and the decode path on one bottom-right problem (windows cutting through the decode
    chunks), every ISA, against the reference."""
    q, k, v = _qkv(rng, 1, 3, L, 1500, 40, 24)
    for w in (None, 3, 600):
        kw = dict(is_causal=True, sliding_window=w, causal_alignment="bottom_right")
        ref, ref_lse = R.scaled_dot_product_attention_forward(q, k, v, **kw)
        base = _baseline_fwd(q, k, v, causal=True, window=w, align="bottom_right")
        for isa in B.available_isas():
            with fastml.use_isa(isa):
                for path in (1, 2):
                    o, lse = F.scaled_dot_product_attention_forward(q, k, v, **kw, _path=path)
                    assert_error_within(o, ref, base, what=f"path {path} {isa} window {w}")
                    np.testing.assert_allclose(lse, ref_lse, rtol=1e-5)


@pytest.mark.skipif(not B.HAS_CPU_EXT, reason="compiled module missing")
@pytest.mark.parametrize("L,S", [(7, 1000), (64, 700), (100, 300)], ids=str)
def test_attention_k_packed_per_block_same_bits(rng, L, S):
    """The general path packs K and V up front when a kv head has more than two query blocks of readers
    (here: GQA, 3 query heads on one kv head; unmasked, the heads are folded into one head of 3 L rows,
    which at L = 100 is four or more blocks on every ISA) and K block by block, V read in place, otherwise
    (the same problem with K and V repeated per head): the same sums, so the same bits, on every ISA."""
    q = rng.standard_normal((1, 3, L, 40)).astype(np.float32)
    k = rng.standard_normal((1, 1, S, 40)).astype(np.float32)
    v = rng.standard_normal((1, 1, S, 24)).astype(np.float32)
    kr, vr = np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1)
    for isa in B.available_isas():
        with fastml.use_isa(isa):
            for kw in (dict(), dict(is_causal=True, causal_alignment="bottom_right"), dict(sliding_window=50)):
                a = F.scaled_dot_product_attention_forward(q, k, v, enable_gqa=True, _path=1, **kw)
                b = F.scaled_dot_product_attention_forward(q, kr, vr, _path=1, **kw)
                for x, y in zip(a, b):
                    np.testing.assert_array_equal(x, y)


def test_attention_torch_causal_bias(backend, rng):
    """torch's CausalBias objects (causal_upper_left / causal_lower_right) as attn_mask: the same results as
    torch's SDPA with them, forward and backward; misuse raises as torch does."""
    torch = pytest.importorskip("torch")
    bias = pytest.importorskip("torch.nn.attention.bias")
    tf = torch.nn.functional
    for L, S in ((7, 19), (19, 7)):
        q, k, v = _qkv(rng, 2, 3, L, S, 16, 12)
        g = rng.standard_normal((2, 3, L, 12)).astype(np.float32)
        for make in (bias.causal_upper_left, bias.causal_lower_right):
            with warnings.catch_warnings():  # torch warns of NaN rows for lower-right with L > S (fastml: 0)
                warnings.simplefilter("ignore")
                cb = make(L, S)
            o, lse = F.scaled_dot_product_attention_forward(q, k, v, cb)
            tq, tk, tv = (torch.from_numpy(a.astype(np.float64)).requires_grad_() for a in (q, k, v))
            to = tf.scaled_dot_product_attention(tq, tk, tv, attn_mask=cb)
            np.testing.assert_allclose(o, to.detach().numpy(), rtol=1e-4, atol=2e-5)
            to.backward(torch.from_numpy(g.astype(np.float64)))
            for a, t in zip(F.scaled_dot_product_attention_backward(g, q, k, v, o, lse, cb), (tq, tk, tv)):
                np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-4, atol=5e-5)
            with pytest.raises(ValueError, match="is_causal=False"):
                F.scaled_dot_product_attention(q, k, v, cb, is_causal=True)
        with pytest.raises(ValueError, match=r"CausalBias for \(L, S\)"):
            F.scaled_dot_product_attention(q, k, v, bias.causal_upper_left(L + 1, S))
        with pytest.raises(ValueError, match="top_left aligned"):
            F.scaled_dot_product_attention(q, k, v, bias.causal_upper_left(L, S), causal_alignment="bottom_right")


def test_attention_dropout(backend, rng):
    q, k, v = _qkv(rng, 2, 2, 37, 70, 16, 16)
    a = F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, seed=7)
    b = F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, seed=7)
    c = F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    _check(q, k, v, dropout_p=0.3, seed=7)
    _check(q, k, v, dropout_p=0.5, seed=2**63 + 5, causal=True, mask=rng.random((37, 70)) > 0.2)
    keep = R.dropout_keep_mask(7, np.arange(4), np.arange(37), np.arange(70), 0.3)
    assert abs(keep.mean() - 0.7) < 0.02
    np.random.seed(3)
    d1 = F.scaled_dot_product_attention(q, k, v, dropout_p=0.3)
    np.random.seed(3)
    assert np.array_equal(d1, F.scaled_dot_product_attention(q, k, v, dropout_p=0.3))


def test_attention_backward_reference_vs_finite_differences(rng):
    q, k, v = _qkv(rng, 1, 2, 5, 6, 3, 4, dtype=np.float64)
    m = rng.random((5, 6)) > 0.3
    m[:, 0] = True
    for kw in (dict(), dict(attn_mask=m, is_causal=True), dict(dropout_p=0.4, seed=3),
               dict(sliding_window=2, scale=0.7)):
        g = rng.standard_normal((1, 2, 5, 4))
        dq, dk, dv = R.scaled_dot_product_attention_backward(g, q, k, v, None, None, **kw)
        f = R.scaled_dot_product_attention
        np.testing.assert_allclose(dq, numeric_vjp(lambda x: f(x, k, v, **kw), q, g), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(dk, numeric_vjp(lambda x: f(q, x, v, **kw), k, g), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(dv, numeric_vjp(lambda x: f(q, k, x, **kw), v, g), rtol=1e-6, atol=1e-8)
    qg, kg, vg = _qkv(rng, 1, 4, 3, 5, 2, 3, Hkv=2, dtype=np.float64)
    g = rng.standard_normal((1, 4, 3, 3))
    dq, dk, dv = R.scaled_dot_product_attention_backward(g, qg, kg, vg, enable_gqa=True)
    f = lambda a, b, c: R.scaled_dot_product_attention(a, b, c, enable_gqa=True)  # noqa: E731
    np.testing.assert_allclose(dk, numeric_vjp(lambda x: f(qg, x, vg), kg, g), rtol=1e-6, atol=1e-8)


def test_attention_float64_stays_float64(rng):
    q, k, v = _qkv(rng, 1, 2, 30, 40, 8, 8, dtype=np.float64)
    o, lse = F.scaled_dot_product_attention_forward(q, k, v, is_causal=True)
    assert o.dtype == np.float64
    np.testing.assert_allclose(o, R.scaled_dot_product_attention(q, k, v, is_causal=True), rtol=1e-12, atol=1e-13)
    grads = F.scaled_dot_product_attention_backward(np.ones_like(o), q, k, v, o, lse, is_causal=True)
    ref = R.scaled_dot_product_attention_backward(np.ones_like(o), q, k, v, is_causal=True)
    for a, r in zip(grads, ref):
        assert a.dtype == np.float64
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-12)


def test_attention_out_noncontiguous_3d(backend, rng):
    q, k, v = _qkv(rng, 1, 4, 20, 30, 16, 8)
    qs = np.swapaxes(np.swapaxes(q, 2, 3).copy(), 2, 3)  # strided view
    out = np.empty((1, 4, 20, 8), np.float32)
    r = F.scaled_dot_product_attention(qs, k, v, out=out)
    assert r is out
    assert np.array_equal(out, F.scaled_dot_product_attention(q, k, v))
    o3 = F.scaled_dot_product_attention(q[0], k[0], v[0])  # 3-d input
    assert np.array_equal(o3, out[0])
    o2 = F.scaled_dot_product_attention(q[0, 0], k[0, 0], v[0, 0])  # 2-d input
    np.testing.assert_allclose(o2, out[0, 0], atol=1e-6)


@pytest.mark.skipif(not B.HAS_CPU_EXT, reason="compiled module missing")
@pytest.mark.parametrize("L", [1, 5, 16])
def test_attention_decode_path(rng, L):
    q, k, v = _qkv(rng, 2, 2, L, 3000, 64, 40)
    m = rng.random((2, 1, L, 3000)) > 0.1
    for isa in B.available_isas():
        with fastml.use_isa(isa):
            for kw in (dict(), dict(attn_mask=m, is_causal=True), dict(dropout_p=0.2, seed=4),
                       dict(sliding_window=700)):
                dec = F.scaled_dot_product_attention_forward(q, k, v, **kw, _path=2)
                gen = F.scaled_dot_product_attention_forward(q, k, v, **kw, _path=1)
                ref = R.scaled_dot_product_attention(q, k, v, **kw)
                base = _baseline_fwd(q, k, v, kw.get("attn_mask"), kw.get("is_causal", False),
                                     window=kw.get("sliding_window"), dropout_p=kw.get("dropout_p", 0.0),
                                     seed=kw.get("seed"))
                if "sliding_window" in kw:  # row i sees keys (i - 700, i]: L rows at the start of 3000 keys
                    assert np.all(np.isfinite(dec[0]))
                assert_error_within(dec[0], ref, base, what=f"decode {isa}")
                assert_error_within(gen[0], ref, base, what=f"general {isa}")
                np.testing.assert_allclose(dec[1], gen[1], rtol=1e-5)


# The decode path's row kernels take the keys eight at a time (a last group of 1-7 repeats its last row in
# the unused chains), E in whole vectors plus a masked tail, Ev in chunks of eight vectors and then up to four:
# each split against the reference on every ISA.
@pytest.mark.skipif(not B.HAS_CPU_EXT, reason="compiled module missing")
@pytest.mark.parametrize("E,Ev", [(8, 8), (31, 72), (64, 64), (100, 128), (64, 31), (3, 136)], ids=str)
@pytest.mark.parametrize("L,S", [(1, 1), (1, 9), (3, 517), (2, 1031)], ids=str)
def test_attention_decode_row_kernel_tails(rng, E, Ev, L, S):
    q, k, v = _qkv(rng, 1, 2, L, S, E, Ev)
    ref, ref_lse = R.scaled_dot_product_attention_forward(q, k, v)
    base = _baseline_fwd(q, k, v)
    for isa in B.available_isas():
        with fastml.use_isa(isa):
            dec = F.scaled_dot_product_attention_forward(q, k, v, _path=2)
            assert_error_within(dec[0], ref, base, what=f"decode {isa}")
            np.testing.assert_allclose(dec[1], ref_lse, rtol=1e-5, atol=1e-5)


# Which path the automatic choice takes: calls that return the logsumexp (which a backward combines with
# scores it recomputes on the microkernels) keep the general path below S = 1024; the plain call, which
# keeps only the output, takes the decode path for L <= 8 (packing K and V would cost more than the
# products). Bitwise against the forced paths.
@pytest.mark.skipif(not B.HAS_CPU_EXT, reason="compiled module missing")
@pytest.mark.parametrize("L,S", [(1, 200), (8, 100), (9, 100), (16, 1024), (16, 1023)], ids=str)
def test_attention_automatic_path(rng, L, S):
    with fastml.use_backend("cpu"):
        _automatic_path(rng, L, S)


def _automatic_path(rng, L, S):
    q, k, v = _qkv(rng, 2, 3, L, S, 32, 24)
    gen = F.scaled_dot_product_attention_forward(q, k, v, _path=1)
    dec = F.scaled_dot_product_attention_forward(q, k, v, _path=2)
    auto = F.scaled_dot_product_attention_forward(q, k, v)
    split = L <= 16 and S >= 1024
    for a, b in zip(auto, dec if split else gen):
        assert np.array_equal(a, b)
    want = dec[0] if split or L <= 8 else gen[0]
    assert np.array_equal(F.scaled_dot_product_attention(q, k, v), want)  # the plain call's own fast path
    m = rng.standard_normal((L, S)).astype(np.float32)  # and the general parse, with a mask
    dec_m = F.scaled_dot_product_attention_forward(q, k, v, m, _path=2)[0]
    gen_m = F.scaled_dot_product_attention_forward(q, k, v, m, _path=1)[0]
    assert np.array_equal(F.scaled_dot_product_attention(q, k, v, m), dec_m if split or L <= 8 else gen_m)
    assert np.array_equal(F.scaled_dot_product_attention_forward(q, k, v, _path=3)[0], want)
    with pytest.raises(ValueError, match="expected path"):
        F.scaled_dot_product_attention_forward(q, k, v, _path=4)


# Strided query / key / value whose rows are contiguous are read in place by the compiled forward: a
# (B, L, H, E) buffer viewed as (B, H, L, E), and q/k/v sliced out of one packed (B, L, 3, H, E) projection
# (row stride 3 H E). The result must be bitwise the one of contiguous copies, on the general and decode
# paths, with GQA, masks, causal and dropout; the backward (which copies) must agree as well.
@pytest.mark.skipif(not B.HAS_CPU_EXT, reason="compiled module missing")
@pytest.mark.parametrize("L,S,path", [(37, 70, 1), (5, 300, 2), (130, 130, 0)], ids=str)
def test_attention_strided_rows_read_in_place(rng, L, S, path):
    Bt, H, Hkv, E, Ev = 2, 4, 2, 24, 16
    q = rng.standard_normal((Bt, L, H, E)).astype(np.float32).transpose(0, 2, 1, 3)
    kv = rng.standard_normal((Bt, S, 2, Hkv, E)).astype(np.float32)
    k = kv[:, :, 0].transpose(0, 2, 1, 3)          # row stride 2 Hkv E
    v = kv[:, :, 1, :, :Ev].transpose(0, 2, 1, 3)  # rows of Ev contiguous floats, row stride 2 Hkv E
    assert not q.flags.c_contiguous and not k.flags.c_contiguous and not v.flags.c_contiguous
    qc, kc, vc = (np.ascontiguousarray(a) for a in (q, k, v))
    m = rng.random((Bt, 1, L, S)) > 0.2
    for isa in B.available_isas():
        with fastml.use_isa(isa):
            for kw in (dict(enable_gqa=True), dict(enable_gqa=True, attn_mask=m, is_causal=True),
                       dict(enable_gqa=True, dropout_p=0.2, seed=9)):
                o, lse = F.scaled_dot_product_attention_forward(q, k, v, **kw, _path=path)
                oc, lsec = F.scaled_dot_product_attention_forward(qc, kc, vc, **kw, _path=path)
                assert np.array_equal(o, oc) and np.array_equal(lse, lsec), f"{isa} {kw}"
                g = rng.standard_normal(o.shape).astype(np.float32)
                grads = F.scaled_dot_product_attention_backward(g, q, k, v, o, lse, **kw)
                gradsc = F.scaled_dot_product_attention_backward(g, qc, kc, vc, oc, lsec, **kw)
                for a, b in zip(grads, gradsc):
                    assert np.array_equal(a, b)


@pytest.mark.skipif(not B.HAS_CPU_EXT, reason="compiled module missing")
def test_attention_threads_bitwise(rng, threads):
    q, k, v = _qkv(rng, 2, 4, 130, 150, 32, 24, Hkv=2)
    qd = q[:, :, :3]
    kw = dict(is_causal=True, enable_gqa=True, dropout_p=0.1, seed=5)
    res = []
    for nt in (1, 2):
        fastml.set_num_threads(nt)
        o, lse = F.scaled_dot_product_attention_forward(q, k, v, **kw)
        grads = F.scaled_dot_product_attention_backward(np.ones_like(o), q, k, v, o, lse, **kw)
        dec = F.scaled_dot_product_attention_forward(qd, np.tile(k, (1, 1, 10, 1)), np.tile(v, (1, 1, 10, 1)),
                                                     enable_gqa=True, _path=2)[0]
        res.append((o, lse, dec) + tuple(grads))
    for a, b in zip(*res):
        assert np.array_equal(a, b)


def test_attention_bad_inputs(backend, rng):
    q, k, v = _qkv(rng, 1, 4, 8, 9, 16, 16)
    out = np.full((1, 4, 8, 16), 7.0, np.float32)
    sdpa = F.scaled_dot_product_attention
    bad = [
        (lambda: sdpa(q, k[..., :15], v, out=out), "key of shape"),
        (lambda: sdpa(q, k, v[:, :, :8], out=out), "value of shape"),
        (lambda: sdpa(q, k, v, np.ones((3, 9), bool), out=out), "broadcastable"),
        (lambda: sdpa(q, k[:, :3], v[:, :3], enable_gqa=True, out=out), "divisible"),
        (lambda: sdpa(q, k[:, :2], v[:, :2], out=out), "enable_gqa"),
        (lambda: sdpa(q, k, v, dropout_p=1.0, out=out), "dropout_p"),
        (lambda: sdpa(q, k, v, sliding_window=0, out=out), "sliding_window"),
        (lambda: sdpa(q, k, v, is_causal=True, causal_alignment="lower_right", out=out), "causal_alignment"),
        (lambda: sdpa(q, k, v, causal_alignment=None), "causal_alignment"),
        (lambda: sdpa(q[0], k, v, out=out), "same number of dims"),
        (lambda: F.scaled_dot_product_attention_forward(q, k, v, dropout_p=0.1), "seed"),
        (lambda: sdpa(q, k, v, out=np.empty((1, 4, 8, 15), np.float32)), "out of shape"),
    ]
    for fn, msg in bad:
        with pytest.raises(ValueError, match=msg):
            fn()
        assert np.all(out == 7.0)
    with pytest.raises(TypeError):
        sdpa(q, k.astype(np.float64), v)
    o, lse = F.scaled_dot_product_attention_forward(q, k, v)
    with pytest.raises(ValueError, match="grad_output"):
        F.scaled_dot_product_attention_backward(o[..., :3, :], q, k, v, o, lse)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_out_overlapping_inputs_rejected(backend, rng, dtype):
    q, k, v = (a.astype(dtype) for a in _qkv(rng, 1, 4, 8, 9, 16, 16))
    big = np.zeros(4 * 8 * 16, dtype)
    cases = [(q, None, q.reshape(1, 4, 8, 16)), (k, None, k.reshape(-1)[:512].reshape(1, 4, 8, 16)),
             (v, None, v.reshape(-1)[:512].reshape(1, 4, 8, 16)),
             (big, big[:72].reshape(8, 9), big.reshape(1, 4, 8, 16))]
    for owner, mask, out in cases:
        before = owner.copy()
        for fn in (F.scaled_dot_product_attention, F.scaled_dot_product_attention_forward):
            with pytest.raises(ValueError, match="share memory"):
                fn(q, k, v, mask, out=out)
            assert np.array_equal(owner, before)  # nothing written


def test_attention_broadcast_kv_and_out_beside_them(backend, rng):
    # K and V broadcast over the heads (stride 0) span one head's memory; out placed right after them
    # lies inside the heads x one-head bytes that their nbytes would claim, and is no overlap.
    H, L, S, E = 4, 3, 40, 16
    store = np.zeros(2 * S * E + H * L * E, np.float32)
    kv = store[:2 * S * E].reshape(2, 1, 1, S, E)
    kv[:] = rng.standard_normal(kv.shape)
    k, v = (np.broadcast_to(kv[i], (1, H, S, E)) for i in (0, 1))
    q = rng.standard_normal((1, H, L, E)).astype(np.float32)
    want = F.scaled_dot_product_attention(q, np.ascontiguousarray(k), np.ascontiguousarray(v))
    for fn in (F.scaled_dot_product_attention, F.scaled_dot_product_attention_forward):
        out = store[2 * S * E:].reshape(1, H, L, E)
        out[:] = np.nan
        res = fn(q, k, v, out=out)
        assert (res[0] if isinstance(res, tuple) else res) is out
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(F.scaled_dot_product_attention(q, k, v), want, rtol=1e-5, atol=1e-6)


def test_attention_backward_dtype_mismatch(backend, rng):
    q, k, v = _qkv(rng, 1, 2, 5, 6, 8, 8)
    o, lse = F.scaled_dot_product_attention_forward(q, k, v)
    g = np.ones_like(o)
    for args, name in (((g.astype(np.float64), o, lse), "grad_output"), ((g, o.astype(np.float64), lse), "output"),
                       ((g, o, lse.astype(np.float64)), "logsumexp")):
        with pytest.raises(TypeError, match=name):
            F.scaled_dot_product_attention_backward(args[0], q, k, v, args[1], args[2])
    q64, k64, v64 = (a.astype(np.float64) for a in (q, k, v))
    o64, lse64 = F.scaled_dot_product_attention_forward(q64, k64, v64)
    with pytest.raises(TypeError, match="grad_output"):
        F.scaled_dot_product_attention_backward(g, q64, k64, v64, o64, lse64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_scalar_mask(backend, rng, dtype):
    q, k, v = (a.astype(dtype) for a in _qkv(rng, 1, 2, 5, 7, 8, 8))
    for m, full in ((np.asarray(0.5, dtype), np.full((5, 7), 0.5, dtype)),
                    (np.asarray(False), np.zeros((5, 7), bool))):
        got = F.scaled_dot_product_attention(q, k, v, m)
        np.testing.assert_array_equal(got, F.scaled_dot_product_attention(q, k, v, full))
        o, lse = F.scaled_dot_product_attention_forward(q, k, v, m)
        g = np.ones_like(o)
        for a, b in zip(F.scaled_dot_product_attention_backward(g, q, k, v, o, lse, m),
                        F.scaled_dot_product_attention_backward(g, q, k, v, o, lse, full)):
            np.testing.assert_array_equal(a, b)


def test_attention_torch_parity(backend, rng):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    cases = [dict(), dict(is_causal=True), dict(is_causal=True, short_keys=True), dict(attn_mask="bool"),
             dict(attn_mask="float"), dict(gqa=True), dict(scale=0.3)]
    for c in cases:
        Hkv = 2 if c.get("gqa") else 4
        q, k, v = _qkv(rng, 2, 4, 19, 23, 16, 12, Hkv=Hkv)   # L != S: causal is top-left aligned in both
        if c.get("short_keys"):   # L > S: causal rows past the last key see every key
            k, v = k[:, :, :11], v[:, :, :11]
        mask = None
        if c.get("attn_mask") == "bool":
            mask = rng.random((2, 1, 19, 23)) > 0.3
            mask[..., 0] = True
        elif c.get("attn_mask") == "float":
            mask = rng.standard_normal((19, 23)).astype(np.float32)
        kw = dict(is_causal=c.get("is_causal", False), scale=c.get("scale"), enable_gqa=c.get("gqa", False))
        o, lse = F.scaled_dot_product_attention_forward(q, k, v, mask, **kw)
        tq, tk, tv = (torch.from_numpy(a.astype(np.float64)).requires_grad_() for a in (q, k, v))
        tm = None if mask is None else torch.from_numpy(mask if mask.dtype == bool else mask.astype(np.float64))
        to = tf.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, **kw)
        np.testing.assert_allclose(o, to.detach().numpy(), rtol=1e-4, atol=2e-5)
        g = rng.standard_normal(o.shape).astype(np.float32)
        to.backward(torch.from_numpy(g.astype(np.float64)))
        grads = F.scaled_dot_product_attention_backward(g, q, k, v, o, lse, mask, **kw)
        for a, t in zip(grads, (tq, tk, tv)):
            np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-4, atol=5e-5)


@pytest.mark.skipif(not B.HAS_CPU_EXT, reason="compiled module missing")
def test_attention_memory_is_linear_in_length(python_run):
    code = r"""
import resource, numpy as np, fastml.functional as F
L = 16384
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((1, 1, L, 64)).astype(np.float32) for _ in range(3))
F.scaled_dot_product_attention(q[:, :, :64], k[:, :, :64], v[:, :, :64], is_causal=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
o, lse = F.scaled_dot_product_attention_forward(q, k, v, is_causal=True)
g = F.scaled_dot_product_attention_backward(np.ones_like(o), q, k, v, o, lse, is_causal=True)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert np.isfinite(o).all() and np.isfinite(g[0]).all()
print((after - before) * 1024)
"""
    r = python_run(["-c", code])
    assert r.returncode == 0, r.stderr
    grew = int(r.stdout.split()[-1])
    assert grew < 256 << 20, f"peak RSS grew by {grew / 2**20:.0f} MiB (L x S float32 would be 1024 MiB)"


@pytest.mark.skipif(not B.HAS_CPU_EXT, reason="compiled module missing")
def test_attention_decode_path_gqa_odd_dims(rng):
    q, k, v = _qkv(rng, 1, 8, 3, 2500, 31, 33, Hkv=2)   # E, Ev not multiples of any vector width
    ref = R.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    base = _baseline_fwd(q, k, v, gqa=True)
    for isa in B.available_isas():
        with fastml.use_isa(isa):
            dec = F.scaled_dot_product_attention_forward(q, k, v, enable_gqa=True, _path=2)[0]
        assert_error_within(dec, ref, base, what=f"decode gqa {isa}")


# GQA decode folds the query heads of a kv head into rows of one head, so K and V are streamed once per kv
# head: bitwise the result of K and V repeated per query head (no grouping to fold), with no mask, a mask
# per head or one broadcast over the heads, for L = 1 (rows one head apart) and L = 3 (the heads' rows
# contiguous), on q read in place with its heads apart (not foldable at L = 3) and under causal / dropout
# (not foldable: the band and the hash depend on the row).
@pytest.mark.skipif(not B.HAS_CPU_EXT, reason="compiled module missing")
@pytest.mark.parametrize("L", [1, 3])
def test_attention_decode_gqa_folded_heads(rng, L):
    Hq, Hkv, S = 8, 2, 1100
    q, k, v = _qkv(rng, 2, Hq, L, S, 40, 24, Hkv=Hkv)
    kr, vr = np.repeat(k, Hq // Hkv, axis=1), np.repeat(v, Hq // Hkv, axis=1)
    masks = [None, rng.standard_normal((2, Hq, L, S)).astype(np.float32),
             rng.standard_normal((2, 1, L, S)).astype(np.float32)]
    q_lhe = np.ascontiguousarray(q.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)  # heads E apart, rows Hq E
    for isa in B.available_isas():
        with fastml.use_isa(isa):
            for m in masks:
                for qq in (q, q_lhe):
                    got = F.scaled_dot_product_attention_forward(qq, k, v, m, enable_gqa=True, _path=2)
                    want = F.scaled_dot_product_attention_forward(q, kr, vr, m, _path=2)
                    for a, b in zip(got, want):
                        assert np.array_equal(a, b), (isa, m is None, qq is q)
            for kw in (dict(is_causal=True), dict(dropout_p=0.3, seed=2)):
                got = F.scaled_dot_product_attention_forward(q, k, v, enable_gqa=True, **kw, _path=2)
                want = F.scaled_dot_product_attention_forward(q, kr, vr, **kw, _path=2)
                for a, b in zip(got, want):
                    assert np.array_equal(a, b), (isa, kw)


def test_attention_empty_dims(backend, rng):
    q, k, v = _qkv(rng, 1, 2, 5, 6, 0, 3)
    o, lse = F.scaled_dot_product_attention_forward(q, k, v)   # E = 0: all scores 0, uniform weights
    np.testing.assert_allclose(o, np.broadcast_to(v.mean(axis=2, keepdims=True), o.shape), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(o, R.scaled_dot_product_attention(q, k, v), rtol=1e-5, atol=1e-6)
    dq, dk, dv = F.scaled_dot_product_attention_backward(np.ones_like(o), q, k, v, o, lse)
    assert dq.shape == q.shape and dk.shape == k.shape and np.all(np.isfinite(dv))
    q, k, v = _qkv(rng, 1, 2, 5, 6, 4, 0)
    o, lse = F.scaled_dot_product_attention_forward(q, k, v)   # Ev = 0: lse still defined
    assert o.shape == (1, 2, 5, 0)
    np.testing.assert_allclose(lse, R.scaled_dot_product_attention_forward(q, k, v)[1], rtol=1e-5)
    q, k, v = _qkv(rng, 1, 2, 0, 6, 4, 4)
    o, lse = F.scaled_dot_product_attention_forward(q, k, v)   # L = 0
    assert o.shape == (1, 2, 0, 4) and lse.shape == (1, 2, 0)
    dq, dk, dv = F.scaled_dot_product_attention_backward(o, q, k, v, o, lse)
    assert np.all(dk == 0) and np.all(dv == 0)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_plain_call_matches_general_path(rng, causal):
    # the plain 4-D call (no mask, dropout, window or out=) skips the general argument handling: bitwise the
    # general path's result (taken with out=) on contiguous, strided (B, L, H, E) views and empty dims
    for B_, H, L, S, E, Ev in ((2, 3, 7, 9, 16, 8), (1, 2, 1, 300, 64, 64), (1, 2, 5, 6, 0, 3), (1, 2, 0, 6, 4, 4)):
        q, k, v = _qkv(rng, B_, H, L, S, E, Ev)
        qs = np.ascontiguousarray(q.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)  # strided rows
        for qq in (q, qs):
            got = F.scaled_dot_product_attention(qq, k, v, is_causal=causal, scale=0.3 if E else None)
            out = np.empty(got.shape, np.float32)
            F.scaled_dot_product_attention(qq, k, v, is_causal=causal, scale=0.3 if E else None, out=out)
            np.testing.assert_array_equal(got, out)
            o, lse = F.scaled_dot_product_attention_forward(qq, k, v, is_causal=causal)
            out2 = np.empty(o.shape, np.float32)
            _, lse2 = F.scaled_dot_product_attention_forward(qq, k, v, is_causal=causal, out=out2)
            np.testing.assert_array_equal(o, out2)
            np.testing.assert_array_equal(lse, lse2)


@pytest.mark.skipif(not B.HAS_CPU_EXT, reason="compiled module missing")
def test_attention_packed_k_chunks(rng):
    # 8 kv heads x 16384 keys x E 64 exceed the forward's 16 MiB packed-K bound: packed in several chunks
    q, k, v = _qkv(rng, 2, 8, 20, 16384, 64, 16, Hkv=4)
    kw = dict(enable_gqa=True, attn_mask=rng.standard_normal((20, 16384)).astype(np.float32))
    o = F.scaled_dot_product_attention(q, k, v, **kw)
    ref = R.scaled_dot_product_attention(q, k, v, **kw)
    assert_error_within(o, ref, _baseline_fwd(q, k, v, kw["attn_mask"], gqa=True), what="chunked K")


def test_attention_nan_propagates_per_row(backend, rng):
    q, k, v = _qkv(rng, 1, 2, 70, 300, 16, 16)
    q[0, 1, 5, 3] = np.nan
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert np.all(np.isnan(o[0, 1, 5]))
    o[0, 1, 5] = 0
    assert np.all(np.isfinite(o))
    k[0, 0, 2, 0] = np.nan   # a NaN key reaches every row that may attend to it (rows >= 2 under causal)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert np.all(np.isfinite(o[0, 0, :2])) and np.all(np.isnan(o[0, 0, 2:]))
    qd, kd, vd = _qkv(rng, 1, 2, 3, 2100, 16, 16)   # decode path: split-K partials merged
    qd[0, 0, 1, 0] = np.nan
    o = F.scaled_dot_product_attention_forward(qd, kd, vd, _path=2)[0]
    assert np.all(np.isnan(o[0, 0, 1]))
    o[0, 0, 1] = 0
    assert np.all(np.isfinite(o))


@pytest.mark.parametrize("path", [1, 2], ids=["general", "decode"])
def test_attention_probabilities_each_accurate(backend, path):
    """With V the identity the output row is the softmax row itself, and with dO = e_0 the backward's
    grad_value column 0 is the recomputed P: each probability checked on its own (not through a sum) over
    scores exp's whole used range, [-80, 0]. Scores k_j (E = 1, q = 1, scale 1) are exact binary fractions,
    so score - max is exact and the only errors are exp's, the row sum's and the final division: each
    term within |x| 2^-24 (the rounding of x log2 e) plus a few ulp, relative, of the float64 value."""
    S = 100
    q = np.ones((1, 1, 1, 1), np.float32)
    k = (-0.8125 * np.arange(S, dtype=np.float32)).reshape(1, 1, S, 1)[:, :, ::-1].copy()  # max last
    v = np.eye(S, dtype=np.float32).reshape(1, 1, S, S)
    x = k.astype(np.float64).ravel()
    want = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    bound = (6 + np.abs(x)) * 2.0 ** -24
    o, lse = F.scaled_dot_product_attention_forward(q, k, v, scale=1.0, _path=path)
    np.testing.assert_array_less(np.abs(o.ravel() / want - 1), bound)
    go = np.zeros((1, 1, 1, S), np.float32)
    go[..., 0] = 1
    _, _, gv = F.scaled_dot_product_attention_backward(go, q, k, v, o, lse, scale=1.0)
    np.testing.assert_array_less(np.abs(gv[0, 0, :, 0] / want - 1), bound + 2.0 ** -23)
