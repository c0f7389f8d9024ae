"""binary_cross_entropy_with_logits and mse_loss with their gradients: references on hand-computed values
and finite differences, every backend against them (sizes, ranks, weight / pos_weight broadcasting, every
reduction, extreme logits), torch parity (forward and autograd), threads, bad inputs."""
import itertools
import math

import numpy as np
import pytest

import fastml
import fastml.functional as F
import fastml.reference as R
from _tolerance import eps_of, numeric_vjp

REDUCTIONS = ("none", "mean", "sum")
SIZES = [1, 7, 8, 9, 15, 16, 17, 31, 33, 1025]


def test_reference_hand_values():
    # t = 1: -log sigmoid(x); t = 0: -log(1 - sigmoid(x)) = x - log sigmoid(x)
    x = np.array([0.0, 2.0, -3.0])
    t = np.array([1.0, 0.0, 1.0])
    want = [math.log(2.0), 2.0 + math.log1p(math.exp(-2.0)), 3.0 + math.log1p(math.exp(-3.0))]
    np.testing.assert_allclose(R.binary_cross_entropy_with_logits(x, t, reduction="none"), want, rtol=1e-15)
    np.testing.assert_allclose(R.binary_cross_entropy_with_logits(x, t), np.mean(want), rtol=1e-15)
    # pos_weight scales the positive term: t = 1 -> -pw log sigmoid(x)
    np.testing.assert_allclose(R.binary_cross_entropy_with_logits(x, t, reduction="sum", pos_weight=np.array(3.0)),
                               3 * want[0] + want[1] + 3 * want[2], rtol=1e-15)
    np.testing.assert_allclose(R.binary_cross_entropy_with_logits(x, t, weight=np.array([1.0, 2.0, 0.0]),
                                                                  reduction="sum"), want[0] + 2 * want[1])
    # extreme logits stay finite and exact: x = 1000, t = 0 -> 1000
    assert R.binary_cross_entropy_with_logits(np.array([1000.0]), np.array([0.0]), reduction="sum") == 1000.0
    assert R.binary_cross_entropy_with_logits(np.array([-1000.0]), np.array([0.0]), reduction="sum") == 0.0
    np.testing.assert_allclose(R.mse_loss([1.0, 3.0], [0.0, 1.0], reduction="none"), [1.0, 4.0])
    np.testing.assert_allclose(R.mse_loss([1.0, 3.0], [0.0, 1.0]), 2.5)
    np.testing.assert_allclose(R.mse_loss_backward(1.0, [1.0, 3.0], [0.0, 1.0]), [1.0, 2.0])
    assert np.isnan(R.mse_loss(np.zeros(0), np.zeros(0)))


def _bce_case(rng, shape, dtype, weighted, pos):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    t = rng.random(shape).astype(dtype)
    t.flat[::3] = 1.0
    t.flat[1::3] = 0.0
    w = (rng.random(shape[-1:]) + 0.5).astype(dtype) if weighted else None      # broadcast along the last dim
    pw = (rng.random(shape[-1:]) * 3).astype(dtype) if pos else None
    return x, t, w, pw


@pytest.mark.parametrize("red,weighted,pos", list(itertools.product(REDUCTIONS, [False, True], [False, True])))
def test_reference_backward_matches_finite_differences(rng, red, weighted, pos):
    x, t, w, pw = _bce_case(rng, (3, 4), np.float64, weighted, pos)
    kw = dict(weight=w, reduction=red, pos_weight=pw)
    go = rng.standard_normal(np.shape(R.binary_cross_entropy_with_logits(x, t, **kw)))
    num = numeric_vjp(lambda v: R.binary_cross_entropy_with_logits(v, t, **kw), x, go)
    np.testing.assert_allclose(R.binary_cross_entropy_with_logits_backward(go, x, t, **kw), num, rtol=1e-6, atol=1e-8)
    y = rng.standard_normal((3, 4))
    gm = rng.standard_normal(np.shape(R.mse_loss(x, y, reduction=red)))
    num = numeric_vjp(lambda v: R.mse_loss(v, y, reduction=red), x, gm)
    np.testing.assert_allclose(R.mse_loss_backward(gm, x, y, reduction=red), num, rtol=1e-6, atol=1e-8)


def _close(got, ref, dtype, scale, ulps=16):
    assert got.shape == np.shape(ref) and got.dtype == dtype
    err = np.abs(np.asarray(got, np.float64) - ref)
    assert np.all(err <= ulps * eps_of(dtype) * scale + 1e-37), f"error {err.max():.3g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("red,weighted,pos", list(itertools.product(REDUCTIONS, [False, True], [False, True])))
def test_bce_with_logits(backend, rng, n, red, weighted, pos, dtype):
    x, t, w, pw = _bce_case(rng, (3, n), dtype, weighted, pos)
    kw = dict(weight=w, reduction=red, pos_weight=pw)
    ref = R.binary_cross_entropy_with_logits(x, t, **kw)
    # terms |(1 - t) x| and |lw log_sigmoid(x)| each rounded, times the weight
    x64 = x.astype(np.float64)
    lw = 1.0 if pw is None else 1.0 + np.abs(pw.astype(np.float64) - 1.0) * t
    scale = (np.abs(x64) + lw * (np.abs(x64) + 1.0)) * (1.0 if w is None else np.abs(w))
    if red != "none":
        scale = np.sum(scale) / (x.size if red == "mean" else 1)
    _close(F.binary_cross_entropy_with_logits(x, t, **kw), ref, dtype, scale)
    go = rng.standard_normal(np.shape(ref)).astype(dtype)
    gref = R.binary_cross_entropy_with_logits_backward(go, x, t, **kw)
    gs = np.abs(go.astype(np.float64)) / (x.size if red == "mean" else 1)
    pt = (1.0 if pw is None else np.abs(pw)) * t
    gscale = gs * (pt + 1.0 + pt) * (1.0 if w is None else np.abs(w))
    _close(F.binary_cross_entropy_with_logits_backward(go, x, t, **kw), gref, dtype, gscale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7,), (17,), (3, 33), (2, 3, 1025)], ids=str)
@pytest.mark.parametrize("red", REDUCTIONS)
def test_mse_loss(backend, rng, shape, red, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    t = rng.standard_normal(shape).astype(dtype)
    ref = R.mse_loss(x, t, reduction=red)
    d = np.abs(x.astype(np.float64) - t)
    scale = d * (d + np.abs(x) + np.abs(t))
    if red != "none":
        scale = np.sum(scale) / (x.size if red == "mean" else 1)
    _close(F.mse_loss(x, t, reduction=red), ref, dtype, scale)
    go = rng.standard_normal(np.shape(ref)).astype(dtype)
    gs = np.abs(go.astype(np.float64)) / (x.size if red == "mean" else 1)
    _close(F.mse_loss_backward(go, x, t, reduction=red), R.mse_loss_backward(go, x, t, reduction=red), dtype,
           gs * (d + np.abs(x) + np.abs(t)))


def test_losses_extremes_and_empty(backend):
    x = np.array([1e4, -1e4, 80.0, -80.0, 0.0, np.nan], np.float32)
    t = np.array([0.0, 1.0, 1.0, 0.0, 0.5, 1.0], np.float32)
    y = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_allclose(y[:5], R.binary_cross_entropy_with_logits(x[:5], t[:5], reduction="none"), rtol=1e-6)
    assert np.isnan(y[5]) and np.isfinite(y[:5]).all()
    g = F.binary_cross_entropy_with_logits_backward(np.ones(6, np.float32), x, t, reduction="none")
    np.testing.assert_allclose(g[:5], [1.0, -1.0, 0.0, 0.0, 0.0], atol=1e-6)
    e = np.zeros((0, 3), np.float32)
    assert np.isnan(F.binary_cross_entropy_with_logits(e, e)) and np.isnan(F.mse_loss(e, e))
    assert F.binary_cross_entropy_with_logits(e, e, reduction="sum") == 0 and F.mse_loss(e, e, reduction="sum") == 0
    assert F.mse_loss(e, e, reduction="none").shape == (0, 3)
    assert F.mse_loss(np.float32(3.0), np.float32(1.0)) == 4.0


class _FakeDevice:
    __cuda_array_interface__ = {}


def test_losses_bad_inputs(backend):
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"expected target of shape \(4, 3\)"):
        F.binary_cross_entropy_with_logits(x, np.zeros((4, 1), np.float32))
    with pytest.raises(ValueError, match=r"expected target of shape \(4, 3\) \(the input's; fastml does not broadcast\)"):
        F.mse_loss(x, np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="target of dtype float32"):
        F.mse_loss(x, np.zeros((4, 3)))
    with pytest.raises(TypeError, match="expected float32 or float64 for target"):
        F.binary_cross_entropy_with_logits(x, np.zeros((4, 3), np.int64))
    with pytest.raises(ValueError, match="pos_weight broadcastable"):
        F.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(4, np.float32))
    with pytest.raises(ValueError, match="weight broadcastable"):
        F.binary_cross_entropy_with_logits(x, x, weight=np.ones((2, 4, 3), np.float32))
    with pytest.raises(ValueError, match="expected reduction in"):
        F.mse_loss(x, x, reduction="elementwise_mean")
    with pytest.raises(ValueError, match="expected reduction in"):
        F.binary_cross_entropy_with_logits(x, x, reduction=None)
    with pytest.raises(ValueError, match="scalar grad_output"):
        F.mse_loss_backward(np.ones(2, np.float32), x, x)
    with pytest.raises(ValueError, match=r"grad_output of shape \(4, 3\)"):
        F.binary_cross_entropy_with_logits_backward(np.ones(3, np.float32), x, x, reduction="none")
    with pytest.raises(TypeError, match="host"):
        F.mse_loss(_FakeDevice(), x)
    with pytest.raises(TypeError, match="host"):
        F.binary_cross_entropy_with_logits(x, x, pos_weight=_FakeDevice())


def test_losses_threads_identical(rng, threads):
    x = rng.standard_normal((700, 300)).astype(np.float32)
    t = (rng.random((700, 300)) > 0.5).astype(np.float32)
    res = []
    for nt in (1, 2):
        fastml.set_num_threads(nt)
        res.append([F.binary_cross_entropy_with_logits(x, t), F.mse_loss(x, t, reduction="sum"),
                    F.binary_cross_entropy_with_logits_backward(np.float32(1), x, t)])
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(17,), (5, 33), (2, 3, 8)], ids=str)
def test_losses_torch_parity(rng, shape):
    torch = pytest.importorskip("torch")
    TF = torch.nn.functional
    for red, weighted, pos in itertools.product(REDUCTIONS, [False, True], [False, True]):
        x, t, w, pw = _bce_case(rng, shape, np.float32, weighted, pos)
        xt = torch.from_numpy(x).requires_grad_(True)
        lt = TF.binary_cross_entropy_with_logits(xt, torch.from_numpy(t), weight=None if w is None else torch.from_numpy(w),
                                                 reduction=red, pos_weight=None if pw is None else torch.from_numpy(pw))
        go = rng.standard_normal(tuple(lt.shape)).astype(np.float32)
        lt.backward(torch.from_numpy(go))
        kw = dict(weight=w, reduction=red, pos_weight=pw)
        np.testing.assert_allclose(F.binary_cross_entropy_with_logits(x, t, **kw), lt.detach().numpy(),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(F.binary_cross_entropy_with_logits_backward(go, x, t, **kw), xt.grad.numpy(),
                                   rtol=1e-5, atol=1e-7)
        y = rng.standard_normal(shape).astype(np.float32)
        xt = torch.from_numpy(x).requires_grad_(True)
        lt = TF.mse_loss(xt, torch.from_numpy(y), reduction=red)
        go = rng.standard_normal(tuple(lt.shape)).astype(np.float32)
        lt.backward(torch.from_numpy(go))
        np.testing.assert_allclose(F.mse_loss(x, y, reduction=red), lt.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(F.mse_loss_backward(go, x, y, reduction=red), xt.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("wshape,pwshape", [((), (1,)), ((4, 1, 1), None), ((1, 5), (5,)), (None, (3, 1, 5)),
                                            ((3, 4, 5), (1, 1, 5))], ids=str)
def test_bce_broadcast_shapes(backend, rng, wshape, pwshape):
    """Weights along the last dim run the compiled kernels, any other broadcast the NumPy path: same results."""
    x = (rng.standard_normal((3, 4, 5)) * 3).astype(np.float32)
    t = rng.random((3, 4, 5)).astype(np.float32)
    if wshape == (4, 1, 1):
        x, t = x.reshape(4, 3, 5), t.reshape(4, 3, 5)
    if pwshape == (3, 1, 5):
        x, t = x.reshape(3, 4, 5), t.reshape(3, 4, 5)
    w = None if wshape is None else (rng.random(wshape) + 0.5).astype(np.float32)
    pw = None if pwshape is None else (rng.random(pwshape) * 2).astype(np.float32)
    for red in REDUCTIONS:
        kw = dict(weight=w, reduction=red, pos_weight=pw)
        np.testing.assert_allclose(F.binary_cross_entropy_with_logits(x, t, **kw),
                                   R.binary_cross_entropy_with_logits(x, t, **kw), rtol=1e-5, atol=1e-6)
        go = np.ones(np.shape(R.binary_cross_entropy_with_logits(x, t, **kw)), np.float32)
        np.testing.assert_allclose(F.binary_cross_entropy_with_logits_backward(go, x, t, **kw),
                                   R.binary_cross_entropy_with_logits_backward(go, x, t, **kw), rtol=1e-5, atol=1e-7)


def test_bce_log_sigmoid_accuracy(backend):
    """The compiled log1p(exp(-|x|)) series and exp stay within a few ulp of float64 over a wide range."""
    x = np.linspace(-30, 30, 4001).astype(np.float32)
    for tv in (0.0, 1.0):
        t = np.full_like(x, tv)
        ref = R.binary_cross_entropy_with_logits(x, t, reduction="none")
        got = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        # |(1 - t) x| and |log_sigmoid(x)| are rounded separately; their difference may be small
        x64 = x.astype(np.float64)
        log_sigmoid = np.minimum(x64, 0.0) - np.log1p(np.exp(-np.abs(x64)))
        scale = np.abs(x64) * (1 - tv) + np.abs(log_sigmoid) + np.abs(ref)
        assert np.all(np.abs(got - ref) <= 8 * eps_of(np.float32) * scale + 1e-37)


def test_losses_noncontiguous(backend, rng):
    base = rng.standard_normal((6, 10, 8)).astype(np.float32)
    x, t = base[::2, 1::2, :5], base[1::2, ::2, 3:]
    w = (rng.random(10) + 0.5).astype(np.float32)[::2]
    for red in REDUCTIONS:
        np.testing.assert_allclose(F.mse_loss(x, t, reduction=red), R.mse_loss(x, t, reduction=red),
                                   rtol=1e-5, atol=1e-6)
        kw = dict(weight=w[:5], reduction=red, pos_weight=w[:5])
        np.testing.assert_allclose(F.binary_cross_entropy_with_logits(x, np.abs(t) / 3, **kw),
                                   R.binary_cross_entropy_with_logits(x, np.abs(t) / 3, **kw), rtol=1e-5, atol=1e-6)


# ---- out= -------------------------------------------------------------------------------------------

def _pointwise_calls(rng, shape, dtype, red):
    """(name, allocating call, call(out), out shape) for the four elementwise loss functions."""
    x, t, w, pw = _bce_case(rng, shape, dtype, True, True)
    go = rng.standard_normal(shape if red == "none" else ()).astype(dtype)
    kw = dict(weight=w, reduction=red, pos_weight=pw)
    loss_shape = shape if red == "none" else ()
    return [
        ("bce", lambda **o: F.binary_cross_entropy_with_logits(x, t, **kw, **o), loss_shape),
        ("bce_backward", lambda **o: F.binary_cross_entropy_with_logits_backward(go, x, t, **kw, **o), shape),
        ("mse", lambda **o: F.mse_loss(x, t, reduction=red, **o), loss_shape),
        ("mse_backward", lambda **o: F.mse_loss_backward(go, x, t, reduction=red, **o), shape),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (17,), (3, 33), (2, 3, 1025)], ids=str)
@pytest.mark.parametrize("red", REDUCTIONS)
def test_losses_out_matches_allocating(backend, rng, shape, red, dtype):
    for name, call, out_shape in _pointwise_calls(rng, shape, dtype, red):
        want = call()
        out = np.full(out_shape, 7.0, dtype)
        got = call(out=out)
        assert got is out, name
        assert want.shape == out_shape and want.dtype == dtype, name
        np.testing.assert_array_equal(out, want, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [9, 1025])
def test_losses_out_exact_aliasing(backend, rng, n, dtype):
    """out may be the input, the target or an elementwise grad_output itself: same values as a fresh array."""
    x, t, w, pw = _bce_case(rng, (3, n), dtype, True, True)
    go = rng.standard_normal((3, n)).astype(dtype)
    kw = dict(weight=w, pos_weight=pw)
    cases = [
        (lambda a, o: F.binary_cross_entropy_with_logits(a[0], a[1], reduction="none", **kw, **o), (0, 1)),
        (lambda a, o: F.binary_cross_entropy_with_logits_backward(a[2], a[0], a[1], reduction="none", **kw, **o),
         (0, 1, 2)),
        (lambda a, o: F.binary_cross_entropy_with_logits_backward(np.asarray(a[2][0, 0]), a[0], a[1], **kw, **o),
         (0, 1)),
        (lambda a, o: F.mse_loss(a[0], a[1], reduction="none", **o), (0, 1)),
        (lambda a, o: F.mse_loss_backward(a[2], a[0], a[1], reduction="none", **o), (0, 1, 2)),
        (lambda a, o: F.mse_loss_backward(np.asarray(a[2][0, 0]), a[0], a[1], reduction="sum", **o), (0, 1)),
    ]
    for i, (call, aliases) in enumerate(cases):
        want = call((x, t, go), {})
        for k in aliases:
            args = [x.copy(), t.copy(), go.copy()]
            got = call(args, dict(out=args[k]))
            assert got is args[k]
            np.testing.assert_array_equal(got, want, err_msg=f"case {i}, out = argument {k}")


def _raises_untouched(out, call, exc, match):
    before = out.copy()
    with pytest.raises(exc, match=match):
        call(out)
    np.testing.assert_array_equal(out, before)


def test_losses_bad_out(backend, rng):
    shape = (4, 9)
    x, t, w, pw = _bce_case(rng, shape, np.float32, True, True)
    go = rng.standard_normal(shape).astype(np.float32)
    fns = {
        "binary_cross_entropy_with_logits": lambda o, **k: F.binary_cross_entropy_with_logits(
            x, t, weight=w, pos_weight=pw, out=o, **k),
        "binary_cross_entropy_with_logits_backward": lambda o, **k: F.binary_cross_entropy_with_logits_backward(
            go if k.get("reduction") == "none" else np.float32(1.5), x, t, weight=w, pos_weight=pw, out=o, **k),
        "mse_loss": lambda o, **k: F.mse_loss(x, t, out=o, **k),
        "mse_loss_backward": lambda o, **k: F.mse_loss_backward(
            go if k.get("reduction") == "none" else np.float32(1.5), x, t, out=o, **k),
    }
    for op, fn in fns.items():
        backward = op.endswith("_backward")
        none = {"reduction": "none"}
        good = shape
        # wrong shape: for the forward 'mean' the result is 0-d, so a (1,) or an input-shaped out is wrong
        _raises_untouched(np.full((4, 8), 3.0, np.float32), lambda o: fn(o, **none), ValueError,
                          rf"{op}: expected out of shape \(4, 9\), got \(4, 8\)")
        if not backward:
            _raises_untouched(np.full(good, 3.0, np.float32), lambda o: fn(o), ValueError,
                              rf"{op}: expected out of shape \(\), got \(4, 9\)")
            _raises_untouched(np.full((1,), 3.0, np.float32), lambda o: fn(o, reduction="sum"), ValueError,
                              r"expected out of shape \(\), got \(1,\)")
        _raises_untouched(np.full(good, 3.0, np.float64), lambda o: fn(o, **none), TypeError,
                          rf"{op}: expected float32 for out")
        strided = np.full((4, 18), 3.0, np.float32)
        _raises_untouched(strided, lambda o: fn(o[:, ::2], **none), ValueError, rf"{op}: expected a C-contiguous")
        ro = np.full(good, 3.0, np.float32)
        ro.flags.writeable = False
        _raises_untouched(ro, lambda o: fn(o, **none), ValueError, rf"{op}: expected a writeable array for out")
        with pytest.raises(TypeError, match="expected a numpy array for out"):
            fn([[0.0] * 9] * 4, **none)
    # partial overlap with the input / target / grad_output, and any overlap with weight / pos_weight
    buf = rng.standard_normal(2 * x.size).astype(np.float32)
    xa = buf[:x.size].reshape(shape)
    xa[...] = x
    for call in (lambda o: F.mse_loss(xa, t, reduction="none", out=o),
                 lambda o: F.mse_loss_backward(go, xa, t, reduction="none", out=o),
                 lambda o: F.binary_cross_entropy_with_logits(t, xa, reduction="none", out=o),
                 lambda o: F.binary_cross_entropy_with_logits_backward(xa, x, t, reduction="none", out=o)):
        _raises_untouched(buf, lambda b: call(b[3:3 + x.size].reshape(shape)), ValueError,
                          r"out partially overlaps (input|target|grad_output) \(only exact aliasing")
    o = np.full(shape, 3.0, np.float32)
    for kw in (dict(weight=o[1]), dict(pos_weight=o[2]), dict(weight=o[0:1])):
        _raises_untouched(o, lambda b: F.binary_cross_entropy_with_logits(x, t, reduction="none", out=b, **kw),
                          ValueError, r"expected out not to share memory with (pos_)?weight")
        _raises_untouched(o, lambda b: F.binary_cross_entropy_with_logits_backward(go, x, t, reduction="none",
                                                                                    out=b, **kw),
                          ValueError, r"expected out not to share memory with (pos_)?weight")
    # bad arguments other than out are still reported first, and nothing is written
    _raises_untouched(o, lambda b: F.mse_loss(x, t[:3], reduction="none", out=b), ValueError, "target of shape")
