"""cross_entropy and its gradient: the reference on hand-computed values and finite differences, then every
backend x ISA against it over layouts ((C,), (N, C), (N, C, d1, ...)), class counts around the vector
widths, weights, ignore_index, label smoothing, probability targets and every reduction; torch parity
(forward and autograd) for all options; non-finite and large logits; threads; bad inputs."""
import itertools
import math

import numpy as np
import pytest

import fastml
import fastml.functional as F
import fastml.reference as R
from fastml import _backend as B
from _tolerance import eps_of, numeric_vjp

REDUCTIONS = ("none", "mean", "sum")


def _make(rng, shape, dtype=np.float32, probs=False, ignore=True, scale=3.0):
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    C = shape[0] if len(shape) == 1 else shape[1]
    if probs:
        t = rng.random(shape).astype(dtype)
        t /= t.sum(axis=0 if len(shape) == 1 else 1, keepdims=True)
        return x, t
    tshape = () if len(shape) == 1 else shape[:1] + shape[2:]
    t = rng.integers(0, C, tshape).astype(np.int64)
    if ignore and t.ndim:
        t.flat[::4] = -100
    return x, np.asarray(t)


def _ce_scales(x, t, w, eps):
    """Per-position error scales in float64: each term of the loss with its rounding (|x - m|, log s,
    the row sum of C terms) taken in absolute value, so |err| <= k eps * scale."""
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x, t = x[None], np.asarray(t)[None]
    C = x.shape[1]
    w = np.ones(C) if w is None else np.asarray(w, np.float64)
    wb = w.reshape((1, C) + (1,) * (x.ndim - 2))
    m = np.max(x, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        az = np.nan_to_num(np.abs(x - m), nan=0.0, posinf=0.0)
        ls = np.log(np.sum(np.exp(-az), axis=1, keepdims=True))
    term = az + ls + 1.0 + C / 2.0
    if np.asarray(t).dtype.kind == "f":
        q = np.asarray(t, np.float64) * (1 - eps) + eps / C
        return np.sum(wb * q * term, axis=1)
    t = np.asarray(t)
    ign = t == -100
    tc = np.where(ign | (t < 0), 0, t)
    term_t = np.take_along_axis(term, tc[:, None], axis=1)[:, 0]
    s = (1 - eps) * w[tc] * term_t + eps / C * np.sum(wb * term, axis=1)
    return np.where(ign, 0.0, s)


def check_loss(got, x, t, kw, ulps=8):
    ref = R.cross_entropy(x, t, **kw)
    assert got.shape == ref.shape and got.dtype == np.asarray(x).dtype
    eps = eps_of(got.dtype)
    scale = _ce_scales(x, t, kw.get("weight"), kw.get("label_smoothing", 0.0))
    red = kw.get("reduction", "mean")
    if red == "none":
        scale = scale.reshape(ref.shape)
    else:
        scale = np.sum(scale)
        if red == "mean":
            if np.asarray(t).dtype.kind == "f":
                scale = scale / max(1, np.asarray(t).size // (np.asarray(x).shape[0 if np.asarray(x).ndim == 1 else 1]))
            else:
                w = kw.get("weight")
                tt = np.asarray(t).reshape(-1)
                keep = tt != -100
                denom = keep.sum() if w is None else np.sum(np.asarray(w, np.float64)[tt[keep]])
                scale = scale / denom if denom else 0.0
    assert np.array_equal(np.isnan(got), np.isnan(ref)), "NaN positions differ"
    fin = np.isfinite(ref)
    err = np.abs(np.asarray(got, np.float64) - ref)[fin]
    bound = (ulps * eps * (np.broadcast_to(scale, ref.shape)[fin]) + eps * np.abs(ref[fin]) + 1e-37)
    assert np.all(err <= bound), f"loss error {np.max(err):.3g} > bound {np.min(bound):.3g}"


def check_grad(got, go, x, t, kw, ulps=16):
    """|err| <= ulps eps * sum of the absolute terms of dx_c = g (a p_c - b w_c - [c == t] (1 - eps) w_t)
    (probabilities: g (p_c sum w q - w_c q_c)), each p_c weighted by its rounding 1 + |x_c - m| + C/2."""
    ref = R.cross_entropy_backward(go, x, t, **kw)
    assert got.shape == ref.shape and got.dtype == np.asarray(x).dtype
    x64 = np.asarray(x, np.float64)
    t = np.asarray(t)
    go = np.asarray(go, np.float64)
    red = kw.get("reduction", "mean")
    eps = kw.get("label_smoothing", 0.0)
    if x64.ndim == 1:
        x64, t = x64[None], t[None]
        if red == "none":
            go = go[None]
    C = x64.shape[1]
    w = np.ones(C) if kw.get("weight") is None else np.asarray(kw["weight"], np.float64)
    wb = w.reshape((1, C) + (1,) * (x64.ndim - 2))
    p = R.softmax(x64, 1)
    m = np.max(x64, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        rp = p * (1 + np.nan_to_num(np.abs(x64 - m), nan=0.0, posinf=0.0) + C / 2)
    if t.dtype.kind == "f":
        q = np.asarray(t, np.float64) * (1 - eps) + eps / C
        gs = go / (x64.size // C) if red == "mean" else go
        gs = np.abs(gs[:, None] if red == "none" else gs)
        scale = gs * (rp * np.sum(wb * q, axis=1, keepdims=True) + wb * q)
    else:
        ign = t == kw.get("ignore_index", -100)
        tc = np.where(ign, 0, t)
        wt = np.where(ign, 0.0, w[tc])
        gs = go / np.sum(wt) if red == "mean" else go
        gs = np.abs(gs[:, None] if red == "none" else gs)
        a = ((1 - eps) * wt + eps / C * np.sum(w))[:, None]
        onehot = np.zeros_like(x64)
        np.put_along_axis(onehot, tc[:, None], 1.0, axis=1)
        scale = np.where(ign[:, None], 0.0, gs * (a * rp + eps / C * wb + (1 - eps) * wt[:, None] * onehot))
    scale = scale.reshape(ref.shape)
    err = np.abs(np.asarray(got, np.float64) - ref)
    bound = ulps * eps_of(got.dtype) * scale + 1e-37
    fin = np.isfinite(ref)
    assert np.all(err[fin] <= bound[fin]), f"grad error {np.max(err):.3g} (bound there {bound.flat[np.argmax(err - bound)]:.3g})"


# ---- the references themselves -------------------------------------------------------------------------

def test_reference_hand_values():
    x = np.array([[0.0, 0.0, math.log(2.0)], [1.0, 1.0, 1.0]])  # p = [1/4, 1/4, 1/2], [1/3]*3
    t = np.array([2, 0])
    np.testing.assert_allclose(R.cross_entropy(x, t, reduction="none"), [math.log(2), math.log(3)])
    np.testing.assert_allclose(R.cross_entropy(x, t), (math.log(2) + math.log(3)) / 2)
    np.testing.assert_allclose(R.cross_entropy(x, t, reduction="sum"), math.log(2) + math.log(3))
    w = np.array([2.0, 1.0, 3.0])
    # weighted mean: (3 ln 2 + 2 ln 3) / (3 + 2)
    np.testing.assert_allclose(R.cross_entropy(x, t, weight=w), (3 * math.log(2) + 2 * math.log(3)) / 5)
    # ignore_index drops the position from the sum and from the weight total
    np.testing.assert_allclose(R.cross_entropy(x, np.array([2, -100]), weight=w), math.log(2))
    np.testing.assert_allclose(R.cross_entropy(x, np.array([2, 0]), ignore_index=0, reduction="none"),
                               [math.log(2), 0.0])
    assert np.isnan(R.cross_entropy(x, np.array([-100, -100])))
    # label smoothing eps: (1 - eps) (-log p_t) + eps / C sum_c (-log p_c)
    e = 0.3
    row0 = (1 - e) * math.log(2) + e / 3 * (math.log(4) + math.log(4) + math.log(2))
    np.testing.assert_allclose(R.cross_entropy(x[:1], t[:1], label_smoothing=e), row0)
    # ... and weighted: the smoothing term is weighted too, normalised by the target weight
    roww = (1 - e) * 3 * math.log(2) + e / 3 * (2 * math.log(4) + math.log(4) + 3 * math.log(2))
    np.testing.assert_allclose(R.cross_entropy(x[:1], t[:1], weight=w, label_smoothing=e), roww / 3)
    # probabilities: -sum q log p; mean over positions (not weights)
    q = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(R.cross_entropy(x, q, reduction="none"), [math.log(4), math.log(3)])
    np.testing.assert_allclose(R.cross_entropy(x, q, weight=w), (1.5 * math.log(4) + 3 * math.log(3)) / 2)
    # unbatched
    np.testing.assert_allclose(R.cross_entropy(x[0], np.array(2), reduction="none"), math.log(2))


@pytest.mark.parametrize("probs", [False, True])
@pytest.mark.parametrize("red,eps,weighted", list(itertools.product(REDUCTIONS, [0.0, 0.2], [False, True])))
def test_reference_backward_matches_finite_differences(rng, red, eps, weighted, probs):
    x, t = _make(rng, (3, 5, 2), np.float64, probs=probs)
    w = rng.random(5) + 0.5 if weighted else None
    kw = dict(weight=w, reduction=red, label_smoothing=eps)
    go = rng.standard_normal(R.cross_entropy(x, t, **kw).shape)
    num = numeric_vjp(lambda v: R.cross_entropy(v, t, **kw), x, go)
    np.testing.assert_allclose(R.cross_entropy_backward(go, x, t, **kw), num, rtol=1e-6, atol=1e-8)


# ---- every backend against the reference ---------------------------------------------------------------

SHAPES = [(5,), (17,), (6, 1), (6, 7), (6, 8), (5, 9), (4, 16), (4, 17), (3, 33), (2, 1025), (3, 4, 1), (3, 5, 17),
          (2, 7, 64), (2, 3, 65), (2, 9, 130), (2, 5, 3, 7)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("red", REDUCTIONS)
def test_cross_entropy_layouts(backend, rng, shape, red):
    x, t = _make(rng, shape)
    C = shape[0] if len(shape) == 1 else shape[1]
    w = (rng.random(C) + 0.5).astype(np.float32)
    for kw in (dict(reduction=red), dict(reduction=red, weight=w, label_smoothing=0.15)):
        check_loss(F.cross_entropy(x, t, **kw), x, t, kw)
        go = rng.standard_normal(R.cross_entropy(x, t, **kw).shape).astype(np.float32)
        check_grad(F.cross_entropy_backward(go, x, t, **kw), go, x, t, kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("red,eps,weighted,ignore_index", list(itertools.product(
    REDUCTIONS, [0.0, 0.1], [False, True], [-100, 2])))
def test_cross_entropy_options(backend, rng, red, eps, weighted, ignore_index, dtype):
    for shape in [(9, 5), (3, 5, 70)]:
        x, t = _make(rng, shape, dtype)
        if ignore_index != -100:
            t = np.where(t == -100, 0, t)  # now the positions of class 2 are the ignored ones
        w = (rng.random(5) + 0.5).astype(dtype) if weighted else None
        kw = dict(weight=w, ignore_index=ignore_index, reduction=red, label_smoothing=eps)
        got = F.cross_entropy(x, t, **kw)
        ref = R.cross_entropy(x, t, **kw)
        if ignore_index != -100:
            kwr = dict(kw)  # the error scales above assume ignore_index=-100: compare directly
            np.testing.assert_allclose(got, ref, rtol=64 * eps_of(dtype), atol=64 * eps_of(dtype))
            go = rng.standard_normal(ref.shape).astype(dtype)
            np.testing.assert_allclose(F.cross_entropy_backward(go, x, t, **kwr),
                                       R.cross_entropy_backward(go, x, t, **kwr), rtol=64 * eps_of(dtype),
                                       atol=64 * eps_of(dtype) * max(1.0, np.abs(go).max()))
            continue
        check_loss(got, x, t, kw)
        go = rng.standard_normal(ref.shape).astype(dtype)
        check_grad(F.cross_entropy_backward(go, x, t, **kw), go, x, t, kw)


@pytest.mark.parametrize("shape", [(5,), (6, 7), (4, 17, 3), (2, 5, 3, 4)], ids=str)
@pytest.mark.parametrize("red,eps,weighted", list(itertools.product(REDUCTIONS, [0.0, 0.25], [False, True])))
def test_cross_entropy_probability_targets(backend, rng, shape, red, eps, weighted):
    x, q = _make(rng, shape, probs=True)
    C = shape[0] if len(shape) == 1 else shape[1]
    w = (rng.random(C) + 0.5).astype(np.float32) if weighted else None
    kw = dict(weight=w, reduction=red, label_smoothing=eps)
    check_loss(F.cross_entropy(x, q, **kw), x, q, kw)
    go = rng.standard_normal(R.cross_entropy(x, q, **kw).shape).astype(np.float32)
    check_grad(F.cross_entropy_backward(go, x, q, **kw), go, x, q, kw)


@pytest.mark.parametrize("layout", ["rows", "strided"])
def test_cross_entropy_large_and_nonfinite_logits(backend, rng, layout):
    x = (1e4 + rng.standard_normal((6, 9)) * 3).astype(np.float32)
    x[1] = -1e4 + rng.standard_normal(9)
    x[2, ::2] = -np.inf                     # -inf logits of non-target classes: fine
    x[3, :] = -np.inf                       # all -inf: NaN, as torch
    x[4, 3] = np.nan                        # NaN propagates
    t = np.array([0, 1, 1, 2, 5, 7], np.int64)
    if layout == "strided":
        x = np.ascontiguousarray(x.T)[None]    # (1, C=9, 6 positions): the channel-strided layout
        t = t[None]
    for red in REDUCTIONS:
        kw = dict(reduction=red)
        got = F.cross_entropy(x, t, **kw)
        ref = R.cross_entropy(x, t, **kw)
        assert np.array_equal(np.isnan(got), np.isnan(ref))
        if red == "none":
            fin = np.isfinite(ref)
            np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-5, atol=1e-5)
        g = F.cross_entropy_backward(np.ones(ref.shape, np.float32), x, t, **kw)
        gr = R.cross_entropy_backward(np.ones_like(ref), x, t, **kw)
        assert np.array_equal(np.isnan(g), np.isnan(gr))
        fin = np.isfinite(gr)
        np.testing.assert_allclose(g[fin], gr[fin], rtol=1e-5, atol=1e-6)
    # target logit -inf: infinite loss
    y = np.array([[0.0, -np.inf]], np.float32)
    assert F.cross_entropy(y, np.array([1]), reduction="sum") == np.inf


def test_cross_entropy_all_ignored_and_empty(backend):
    x = np.zeros((3, 4), np.float32)
    t = np.full(3, -100, np.int64)
    assert np.isnan(F.cross_entropy(x, t))
    assert F.cross_entropy(x, t, reduction="sum") == 0.0
    np.testing.assert_array_equal(F.cross_entropy(x, t, reduction="none"), np.zeros(3, np.float32))
    np.testing.assert_array_equal(F.cross_entropy_backward(np.float32(1.0), x, t), np.zeros((3, 4), np.float32))
    e = np.zeros((0, 4), np.float32)
    assert np.isnan(F.cross_entropy(e, np.zeros(0, np.int64)))
    assert F.cross_entropy(e, np.zeros(0, np.int64), reduction="sum") == 0.0
    assert F.cross_entropy(e, np.zeros(0, np.int64), reduction="none").shape == (0,)
    assert F.cross_entropy_backward(np.float32(1.0), e, np.zeros(0, np.int64)).shape == (0, 4)
    assert F.cross_entropy(np.zeros((2, 3, 0), np.float32), np.zeros((2, 0), np.int64), reduction="none").shape == (2, 0)


def test_cross_entropy_noncontiguous(backend, rng):
    base = (rng.standard_normal((8, 12, 6)) * 2).astype(np.float32)
    x = base[::2, ::2, 1:]
    t = rng.integers(0, 6, (4, 5)).astype(np.int64)
    tt = np.repeat(t, 2, axis=1)[:, ::2]  # strided target
    for red in REDUCTIONS:
        kw = dict(reduction=red, label_smoothing=0.1)
        check_loss(F.cross_entropy(x, tt, **kw), x, tt, kw)


class _FakeDevice:
    __cuda_array_interface__ = {}


def test_cross_entropy_bad_inputs(backend):
    x = np.zeros((4, 3), np.float32)
    t = np.array([0, 1, 2, 1], np.int64)
    with pytest.raises(ValueError, match=r"got 3 at flat position 1"):
        F.cross_entropy(x, np.array([0, 3, 1, 1]))
    with pytest.raises(ValueError, match=r"got -1 at flat position 2"):
        F.cross_entropy(x, np.array([0, 1, -1, 1]))
    with pytest.raises(ValueError, match=r"got 7"):
        F.cross_entropy_backward(np.float32(1), x, np.array([0, 1, 7, 1]))
    with pytest.raises(ValueError, match=r"got 5 at flat position 3"):
        F.cross_entropy(np.zeros((2, 3, 2), np.float32), np.array([[0, 1], [2, 5]]))
    with pytest.raises(TypeError, match="expected int64 class indices for target, got int32"):
        F.cross_entropy(x, t.astype(np.int32))
    with pytest.raises(TypeError, match="expected int64 class indices or float probabilities"):
        F.cross_entropy(x, t.astype(bool))
    with pytest.raises(TypeError, match="expected float32 or float64 for input"):
        F.cross_entropy(x.astype(np.int64), t)
    with pytest.raises(TypeError, match="float16"):
        F.cross_entropy(x.astype(np.float16), t)
    with pytest.raises(ValueError, match=r"expected target of shape \(4,\) for input of shape \(4, 3\), got \(3,\)"):
        F.cross_entropy(x, t[:3])
    with pytest.raises(ValueError, match=r"expected target of shape \(\)"):
        F.cross_entropy(x[0], t[:1])
    with pytest.raises(ValueError, match="probability target of shape"):
        F.cross_entropy(x, np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="probability target of dtype float32"):
        F.cross_entropy(x, np.zeros((4, 3), np.float64))
    with pytest.raises(ValueError, match=r"expected weight of shape \(3,\), got \(4,\)"):
        F.cross_entropy(x, t, weight=np.ones(4, np.float32))
    with pytest.raises(TypeError, match="weight of dtype float32"):
        F.cross_entropy(x, t, weight=np.ones(3, np.float64))
    with pytest.raises(ValueError, match=r"expected reduction in \('none', 'mean', 'sum'\), got 'avg'"):
        F.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing in"):
        F.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="at least one class"):
        F.cross_entropy(np.zeros((2, 0), np.float32), np.full(2, -100, np.int64))
    with pytest.raises(ValueError, match="0-d"):
        F.cross_entropy(np.float32(1.0), np.array(0))
    with pytest.raises(ValueError, match="scalar grad_output"):
        F.cross_entropy_backward(np.ones(4, np.float32), x, t)
    with pytest.raises(ValueError, match=r"grad_output of shape \(4,\)"):
        F.cross_entropy_backward(np.ones(3, np.float32), x, t, reduction="none")
    with pytest.raises(TypeError, match="host"):
        F.cross_entropy(_FakeDevice(), t)
    with pytest.raises(TypeError, match="host"):
        F.cross_entropy_backward(np.float32(1), x, t, weight=_FakeDevice())


@pytest.mark.parametrize("shape", [(20000, 10), (40, 5, 1000)], ids=str)
def test_cross_entropy_threads_bitwise_identical(rng, threads, shape):
    x, t = _make(rng, shape)
    w = (rng.random(shape[1]) + 0.5).astype(np.float32)
    res = []
    for nt in (1, 2):
        fastml.set_num_threads(nt)
        r = []
        for red in REDUCTIONS:
            kw = dict(weight=w, reduction=red, label_smoothing=0.1)
            r.append(F.cross_entropy(x, t, **kw))
            go = np.ones(r[-1].shape, np.float32)
            r.append(F.cross_entropy_backward(go, x, t, **kw))
        res.append(r)
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(7,), (8, 5), (6, 33), (4, 6, 9), (3, 4, 5, 6), (2, 1025)], ids=str)
@pytest.mark.parametrize("probs", [False, True])
def test_cross_entropy_torch_parity(rng, shape, probs):
    torch = pytest.importorskip("torch")
    TF = torch.nn.functional
    x, t = _make(rng, shape, probs=probs)
    C = shape[0] if len(shape) == 1 else shape[1]
    w = (rng.random(C) + 0.5).astype(np.float32)
    for red, eps, weighted, ign in itertools.product(REDUCTIONS, [0.0, 0.1], [False, True], [-100, 1]):
        if probs and ign != -100:
            continue
        tt = t if probs or ign == -100 else np.where(t == -100, 0, t)
        kw = dict(weight=w if weighted else None, ignore_index=ign, reduction=red, label_smoothing=eps)
        xt = torch.from_numpy(x).requires_grad_(True)
        lt = TF.cross_entropy(xt, torch.from_numpy(tt), weight=torch.from_numpy(w) if weighted else None,
                              ignore_index=ign, reduction=red, label_smoothing=eps)
        go = rng.standard_normal(tuple(lt.shape)).astype(np.float32)
        lt.backward(torch.from_numpy(go))
        for be in ("numpy", "cpu") if B.HAS_CPU_EXT else ("numpy",):
            with fastml.use_backend(be):
                loss = F.cross_entropy(x, tt, **kw)
                grad = F.cross_entropy_backward(go, x, tt, **kw)
            what = f"{be} {red} eps={eps} weighted={weighted} ignore={ign}"
            assert loss.shape == tuple(lt.shape), what
            np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=2e-5, atol=2e-6, err_msg=what)
            np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=2e-4, atol=2e-6, err_msg=what)


# ---- out= -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5,), (6, 17), (3, 1, 70), (2, 9, 3, 5)], ids=str)
@pytest.mark.parametrize("probs", [False, True])
@pytest.mark.parametrize("red", REDUCTIONS)
def test_cross_entropy_out_matches_allocating(backend, rng, shape, probs, red, dtype):
    x, t = _make(rng, shape, dtype, probs=probs)
    C = shape[0] if len(shape) == 1 else shape[1]
    kw = dict(weight=(rng.random(C) + 0.5).astype(dtype), reduction=red, label_smoothing=0.1)
    want = F.cross_entropy(x, t, **kw)
    out = np.full(want.shape, 7.0, dtype)
    assert F.cross_entropy(x, t, **kw, out=out) is out
    np.testing.assert_array_equal(out, want)
    go = rng.standard_normal(want.shape).astype(dtype)
    gwant = F.cross_entropy_backward(go, x, t, **kw)
    gout = np.full(shape, 7.0, dtype)
    assert F.cross_entropy_backward(go, x, t, **kw, out=gout) is gout
    np.testing.assert_array_equal(gout, gwant)
    # the gradient may overwrite the logits in place
    xa = x.copy()
    assert F.cross_entropy_backward(go, xa, t, **kw, out=xa) is xa
    np.testing.assert_array_equal(xa, gwant)


def _raises_untouched(out, call, exc, match):
    before = out.copy()
    with pytest.raises(exc, match=match):
        call(out)
    np.testing.assert_array_equal(out, before)


@pytest.mark.parametrize("probs", [False, True])
def test_cross_entropy_bad_out(backend, rng, probs):
    x, t = _make(rng, (4, 3, 5), probs=probs)
    go = rng.standard_normal((4, 5)).astype(np.float32)
    fwd = lambda o, **k: F.cross_entropy(x, t, out=o, **k)
    bwd = lambda o, **k: F.cross_entropy_backward(go if k.get("reduction") == "none" else np.float32(2.0), x, t,
                                                  out=o, **k)
    for op, fn, good in (("cross_entropy", fwd, (4, 5)), ("cross_entropy_backward", bwd, (4, 3, 5))):
        none = dict(reduction="none")
        _raises_untouched(np.full((4, 4), 3.0, np.float32), lambda o: fn(o, **none), ValueError,
                          rf"{op}: expected out of shape \({', '.join(map(str, good))}\), got \(4, 4\)")
        _raises_untouched(np.full(good, 3.0, np.float64), lambda o: fn(o, **none), TypeError,
                          rf"{op}: expected float32 for out")
        wide = np.full(good[:-1] + (2 * good[-1],), 3.0, np.float32)
        _raises_untouched(wide, lambda o: fn(o[..., ::2], **none), ValueError, rf"{op}: expected a C-contiguous")
        ro = np.full(good, 3.0, np.float32)
        ro.flags.writeable = False
        _raises_untouched(ro, lambda o: fn(o, **none), ValueError, rf"{op}: expected a writeable array for out")
        with pytest.raises(TypeError, match="expected a numpy array for out"):
            fn(np.full(good, 3.0).tolist(), **none)
    # reduced forward: out is 0-d
    _raises_untouched(np.full((4, 5), 3.0, np.float32), lambda o: fwd(o), ValueError,
                      r"cross_entropy: expected out of shape \(\), got \(4, 5\)")
    _raises_untouched(np.full((1,), 3.0, np.float32), lambda o: fwd(o, reduction="sum"), ValueError,
                      r"cross_entropy: expected out of shape \(\), got \(1,\)")
    out0 = np.full((), 3.0, np.float32)
    assert fwd(out0, reduction="sum") is out0 and out0 == F.cross_entropy(x, t, reduction="sum")
    if not probs:  # a bad class index is found before anything is written
        tb = t.copy()
        tb[3, 4] = 3
        _raises_untouched(np.full((4, 5), 3.0, np.float32),
                          lambda o: F.cross_entropy(x, tb, reduction="none", out=o), ValueError, "got 3 at flat")
        _raises_untouched(np.full((4, 3, 5), 3.0, np.float32),
                          lambda o: F.cross_entropy_backward(np.float32(1), x, tb, out=o), ValueError, "got 3 at")


def test_cross_entropy_out_overlaps(backend, rng):
    # backward: a partial overlap with the input raises; out may not share memory with grad_output or weight
    buf = rng.standard_normal(2 * 60).astype(np.float32)
    x = buf[:60].reshape(4, 3, 5)
    t = rng.integers(0, 3, (4, 5)).astype(np.int64)
    _raises_untouched(buf, lambda b: F.cross_entropy_backward(np.float32(1), x, t, out=b[5:65].reshape(4, 3, 5)),
                      ValueError, r"cross_entropy_backward: out partially overlaps input")
    # C == 1: the (N, inner) grad_output has the gradient's size, yet exact aliasing is refused too
    x1 = rng.standard_normal((3, 1, 70)).astype(np.float32)
    t1 = np.zeros((3, 70), np.int64)
    g1 = rng.standard_normal((3, 70)).astype(np.float32)
    _raises_untouched(g1, lambda g: F.cross_entropy_backward(g, x1, t1, reduction="none", out=g.reshape(3, 1, 70)),
                      ValueError, "expected out not to share memory with grad_output")
    w = np.ones(4, np.float32)
    x2 = rng.standard_normal(4).astype(np.float32)
    _raises_untouched(w, lambda o: F.cross_entropy_backward(np.float32(1), x2, np.array(1), weight=o, out=o),
                      ValueError, "expected out not to share memory with weight")
    # forward: out shares no memory with any argument
    _raises_untouched(x1, lambda a: F.cross_entropy(a, t1, reduction="none", out=a.reshape(3, 70)),
                      ValueError, "expected out not to share memory with input")
    xs = rng.standard_normal((6, 4)).astype(np.float32)
    _raises_untouched(xs, lambda a: F.cross_entropy(a, t1[0, :6], reduction="none", out=a.reshape(-1)[2:8]),
                      ValueError, "expected out not to share memory with input")
