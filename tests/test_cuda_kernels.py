"""The CUDA kernels on a real GPU (torch CUDA tensors and/or CuPy) against float64 references:
activations (fastml.reference), softmax/log_softmax and the optimizer steps (float64 NumPy written out
below, as torch's formulas). Skipped, with the reason, when the CUDA module was not built or no
GPU/driver is present. The parts that need no GPU are in tests/test_cuda.py.
"""
import math

import numpy as np
import pytest

import fastml.functional as F
import fastml.reference as R
from fastml import _cuda_ops as CO
from _cuda_util import gpu, lib  # noqa: F401  (lib is a fixture)
from _tolerance import EPS32, assert_close, assert_error_within, condition_number


ACT = {  # name -> (forward, reference fwd, backward, reference bwd, saved, kwargs, fwd ulps, bwd ulps)
    "relu": (F.relu, R.relu, F.relu_backward, R.relu_backward, "input", {}, 0, 0),
    "leaky_relu": (F.leaky_relu, R.leaky_relu, F.leaky_relu_backward, R.leaky_relu_backward, "input",
                   {"negative_slope": 0.2}, 1, 1),
    "sigmoid": (F.sigmoid, R.sigmoid, F.sigmoid_backward, R.sigmoid_backward, "output", {}, 4, 4),
    "tanh": (F.tanh, R.tanh, F.tanh_backward, R.tanh_backward, "output", {}, 4, 4),
    # normcdff is documented to 5 ulp; the product with x and the density add a few more
    "gelu": (F.gelu, R.gelu, F.gelu_backward, R.gelu_backward, "input", {}, 12, 24),
    "gelu_tanh": (F.gelu, R.gelu, F.gelu_backward, R.gelu_backward, "input", {"approximate": "tanh"}, 8, 16),
}
GPU_SIZES = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 1025, (1 << 21) + 3]


def _act_inputs(rng, n):
    x = rng.standard_normal(n) * 4
    x[: n // 7] = np.linspace(-30, 30, n // 7)
    return x.astype(np.float32)


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "misaligned"])
@pytest.mark.parametrize("n", GPU_SIZES)
@pytest.mark.parametrize("name", list(ACT))
def test_cuda_activation_forward_backward(lib, rng, name, n, offset):
    fwd, rfwd, bwd, rbwd, saved, kw, ulps, bulps = ACT[name]
    x = _act_inputs(rng, n + offset)
    g = rng.standard_normal(n + offset).astype(np.float32)
    xd, gd = lib.dev(x)[offset:], lib.dev(g)[offset:]  # offset 1: 4-byte misaligned -> scalar path
    x, g = x[offset:], g[offset:]
    y = fwd(xd, **kw)
    assert lib.is_mine(y) and tuple(y.shape) == (n,)
    yh = lib.host(y)
    assert_close(yh, rfwd(x, **kw), ulps=ulps, cond=condition_number(lambda v: rfwd(v, **kw), x), what=f"{name} n={n}")
    s = x if saved == "input" else yh
    sd = xd if saved == "input" else y
    gx = lib.host(bwd(gd, sd, **kw))
    atol = 4 * EPS32 * np.abs(g).max(initial=0.0) if saved == "output" else None
    if name.startswith("gelu"):
        atol = 1e-30
    cond = condition_number(lambda v: rbwd(np.ones_like(v), v if saved == "input" else rfwd(v, **kw), **kw), x)
    assert_close(gx, rbwd(g, s, **kw), ulps=bulps, atol=atol, cond=cond, what=f"{name}_backward n={n}")


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "misaligned"])
@pytest.mark.parametrize("name", ["relu", "sigmoid"])
def test_cuda_activation_grid_stride(lib, rng, name, offset):
    # more elements than the capped grid covers in one pass (8192 blocks x 256 threads, 4 floats each): with
    # 4.5 passes the 16-byte path runs its 4-deep unrolled loop once, then its one-at-a-time loop, then the tail
    fwd, rfwd, bwd, rbwd, saved, kw, ulps, bulps = ACT[name]
    stride = 8192 * 256
    n = 4 * (4 * stride + stride // 2 + 1) + 3
    x = rng.standard_normal(n + offset).astype(np.float32)
    g = rng.standard_normal(n + offset).astype(np.float32)
    xd = lib.dev(x)[offset:]
    y = fwd(xd, **kw)
    yh = lib.host(y)
    assert_close(yh, rfwd(x[offset:], **kw), ulps=ulps, what=f"{name} n={n}")
    s, sd = (x[offset:], xd) if saved == "input" else (yh, y)
    gx = lib.host(bwd(lib.dev(g)[offset:], sd, **kw))
    atol = 4 * EPS32 * np.abs(g).max() if saved == "output" else None
    assert_close(gx, rbwd(g[offset:], s, **kw), ulps=bulps, atol=atol, what=f"{name}_backward n={n}")


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("name", list(ACT))
def test_cuda_activation_nonfinite_inplace_noncontiguous(lib, rng, name):
    fwd, rfwd, bwd, rbwd, saved, kw, ulps, _ = ACT[name]
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 88.8, -88.8, 1e30, -1e30] * 3, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = rfwd(x, **kw)
    assert_close(lib.host(fwd(lib.dev(x), **kw)), ref, ulps=ulps + 1, what=name)
    xd = lib.dev(x)
    assert fwd(xd, out=xd, **kw) is xd  # exact aliasing
    assert_close(lib.host(xd), ref, ulps=ulps + 1, what=f"{name} in place")
    base = rng.standard_normal((6, 10, 9)).astype(np.float32)
    view = lib.dev(base)[:, ::2, 1:]  # copied once with the caller's library
    y = fwd(view, **kw)
    assert tuple(y.shape) == (6, 5, 8)
    assert_close(lib.host(y), rfwd(base[:, ::2, 1:], **kw), ulps=ulps, what=f"{name} strided")
    with pytest.raises(ValueError, match="expected a C-contiguous array for out"):
        fwd(lib.dev(base[:, :5, :8]), out=lib.dev(base)[:, ::2, 1:], **kw)


# ---- softmax (float64 references written out: max-subtracted, NaN/inf semantics of torch) --------

def _ref_softmax(x, dim, log):
    x = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m = np.max(x, axis=dim, keepdims=True)
        z = x - m
        s = np.sum(np.exp(z), axis=dim, keepdims=True)
        return z - np.log(s) if log else np.exp(z) / s


def _ref_softmax_backward(g, y, dim, log):
    g, y = g.astype(np.float64), y.astype(np.float64)
    if log:
        return g - np.exp(y) * np.sum(g, axis=dim, keepdims=True)
    return y * (g - np.sum(g * y, axis=dim, keepdims=True))


def _check_within(got, ref, bound, what):
    got = got.astype(np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(ref)), f"{what}: NaN positions differ"
    fin = ~np.isnan(ref)
    err = np.abs(got[fin] - ref[fin])
    b = np.broadcast_to(bound, ref.shape)[fin]
    assert np.all(err <= b), f"{what}: max error {err.max():.3g}, worst error/bound {np.max(err / b):.3g}"


SOFTMAX_CASES = [((1, 1), 1), ((3, 1), 1), ((5, 7), 1), ((4, 32), 1), ((3, 33), -1), ((2, 1024), 1),
                 ((2, 1025), 1), ((3, 5000), 1), ((2, 3, 4, 5), 1), ((2, 3, 4, 5), 0), ((2, 3000, 3), 1),
                 ((4, 97), 0), ((7,), 0), ((), 0), ((0, 5), 1), ((4, 0), 1), ((1, 33, 1), 1),
                 ((300000, 3), 1),  # more rows than the warp kernel's capped grid: its grid-stride loop
                 ((3, 100), 1), ((2, 300), 1), ((2, 700), -1),  # the register-resident warp kernel's widths
                 ((3, 4096), 1),  # block per row, 16-byte path
                 ((3, 50000), 1), ((2, 30001), -1),  # few long rows: split over blocks (16-byte / scalar)
                 ((3, 200, 70), 1), ((2, 40, 1000), 1), ((5, 3, 33), 1)]  # column tiles: partial, full, short axis


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,dim", SOFTMAX_CASES)
def test_cuda_softmax_forward_backward(lib, rng, shape, dim, log):
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    y = CO.softmax_forward(lib.dev(x), dim, log, None)
    assert lib.is_mine(y) and tuple(y.shape) == shape
    if x.size == 0:
        assert tuple(CO.softmax_backward(lib.dev(x), y, dim, log, None).shape) == shape
        return
    yh = lib.host(y)
    n = shape[dim] if shape else 1
    # rounding of x - max (|z| eps / 2 absolute, amplified by exp), expf/logf (2 ulp), the sum (~sqrt(n) eps)
    c = (8 + 4 * math.sqrt(n)) * EPS32
    ref = _ref_softmax(x, dim if shape else None, log)
    z = np.abs(x.astype(np.float64) - np.max(x, axis=dim if shape else None, keepdims=True))
    if log:
        _check_within(yh, ref, c * (1 + z + np.abs(ref)), f"log_softmax{shape} dim={dim}")
    else:
        _check_within(yh, ref, (c + EPS32 * z) * np.abs(ref) + 1e-30, f"softmax{shape} dim={dim}")
        if x.size:
            np.testing.assert_allclose(np.sum(yh.astype(np.float64), axis=dim if shape else None), 1.0, rtol=2 * c)
    g = rng.standard_normal(shape).astype(np.float32)
    gx = lib.host(CO.softmax_backward(lib.dev(g), y, dim, log, None))
    ax = dim if shape else None
    rb = _ref_softmax_backward(g, yh, ax, log)
    y64, g64 = yh.astype(np.float64), g.astype(np.float64)
    if log:
        bound = c * (np.abs(g64) + np.exp(y64) * np.sum(np.abs(g64), axis=ax, keepdims=True))
    else:
        bound = c * np.abs(y64) * (np.abs(g64) + np.sum(np.abs(g64 * y64), axis=ax, keepdims=True))
    _check_within(gx, rb, bound + 1e-30, f"{'log_' if log else ''}softmax_backward{shape} dim={dim}")


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("n,inner", [(5, 1), (33, 1), (2000, 1), (20000, 1), (6, 3)],
                         ids=["warp", "warp33", "block", "split", "strided"])
def test_cuda_softmax_nonfinite_rows(lib, n, inner, log):
    x = np.zeros((6, n, inner), np.float32)
    x[0] = -np.inf                                 # all -inf -> NaN row
    x[1, 2] = np.nan                               # NaN anywhere -> NaN row
    x[2, 1] = np.inf                               # +inf -> NaN row (inf - inf in torch's formula)
    x[3, ::2] = -np.inf                            # some -inf -> 0 (softmax) / -inf (log_softmax) there
    x[4] = np.linspace(-80, 80, n)[:, None]        # wide range, no overflow
    x[5, -1] = 1e30                                # one dominant finite value
    got = lib.host(CO.softmax_forward(lib.dev(x), 1, log, None))
    ref = _ref_softmax(x, 1, log)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(got[:3]).all()
    assert np.array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-5, atol=1e-6 if not log else 1e-4)


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("n", [1028, 4096, 20000])
def test_cuda_softmax_misaligned_rows(lib, rng, n):
    # a view that starts one float into its buffer: rows whose length is a multiple of 4 but that are not
    # 16-byte aligned take the scalar path of the block kernel; the result must not depend on it
    x = (rng.standard_normal(3 * n + 1) * 4).astype(np.float32)
    xd = lib.dev(x)[1:].reshape(3, n)
    got = lib.host(CO.softmax_forward(xd, 1, False, None))
    ref = _ref_softmax(x[1:].reshape(3, n), 1, False)
    _check_within(got, ref, (8 + 4 * math.sqrt(n)) * EPS32 * 30 * np.abs(ref) + 1e-30, f"misaligned softmax n={n}")
    aligned = lib.host(CO.softmax_forward(lib.dev(x[1:].reshape(3, n)), 1, False, None))
    np.testing.assert_allclose(got, aligned, rtol=4 * EPS32 * math.sqrt(n), atol=0)


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_cuda_softmax_split_rows_with_empty_chunks(lib, rng, log):
    # long rows split over blocks: a chunk of only -inf contributes nothing to its row (its own sum would be
    # e^{-inf - -inf} = NaN), a row of only -inf is NaN, a NaN or +inf in one chunk makes the whole row NaN
    n = 60000
    x = (rng.standard_normal((5, n)) * 3).astype(np.float32)
    x[0, : n // 2] = -np.inf
    x[1, n // 3:] = -np.inf
    x[2] = -np.inf
    x[3, n - 5] = np.nan
    x[4, 7] = np.inf
    got = lib.host(CO.softmax_forward(lib.dev(x), 1, log, None))
    ref = _ref_softmax(x, 1, log)
    assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.isnan(got[2:]).all()
    assert np.array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-4, atol=1e-9 if not log else 1e-4)
    if not log:
        np.testing.assert_allclose(got[:2].astype(np.float64).sum(axis=1), 1.0, rtol=1e-4)


@gpu
@pytest.mark.cuda
def test_cuda_softmax_out_inplace_and_torch_parity(lib, rng):
    x = (rng.standard_normal((8, 300)) * 3).astype(np.float32)
    xd = lib.dev(x)
    ref = lib.host(CO.softmax_forward(xd, -1, False, None))
    assert CO.softmax_forward(xd, -1, False, xd) is xd  # exact aliasing
    np.testing.assert_array_equal(lib.host(xd), ref)
    if lib.name == "torch":
        import torch

        t = torch.from_numpy(x).cuda()
        for log, fn in ((False, torch.softmax), (True, torch.log_softmax)):
            np.testing.assert_allclose(lib.host(CO.softmax_forward(t, 1, log, None)), fn(t, 1).cpu().numpy(),
                                       rtol=2e-6, atol=2e-6)


# ---- optimizers (float64 references of torch's single-tensor formulas) -----------------------------

# 36 tensors (two launches of at most 24); the largest needs more than the 2048 blocks a tensor is given,
# so its blocks run the grid-stride loop
OPT_SHAPES = [(1,), (33,), (0,), (1000, 7), ((1 << 19) + 1001,), ((1 << 21) + 4099,)] + [(n,) for n in range(1, 31)]


def _ref_sgd(p, g, b, t, lr, momentum, dampening, weight_decay, nesterov, maximize):
    g = -g if maximize else g
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        b = g.copy() if t == 1 else momentum * b + (1 - dampening) * g
        g = g + momentum * b if nesterov else b
    return p - lr * g, b


def _ref_rmsprop(p, g, v, b, a, lr, alpha, eps, weight_decay, momentum, centered, maximize):
    g = -g if maximize else g
    if weight_decay:
        g = g + weight_decay * p
    v = alpha * v + (1 - alpha) * g * g
    if centered:
        a = a + (1 - alpha) * (g - a)
        avg = np.sqrt(v - a * a) + eps
    else:
        avg = np.sqrt(v) + eps
    if momentum > 0:
        b = momentum * b + g / avg
        return p - lr * b, v, b, a
    return p - lr * g / avg, v, b, a


def _ref_adam(p, g, m, v, vmax, t, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled):
    b1, b2 = betas
    g = -g if maximize else g
    if weight_decay:
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    m = m + (1 - b1) * (g - m)
    v = b2 * v + (1 - b2) * g * g
    vh = v
    if amsgrad:
        vmax = np.maximum(vmax, v)
        vh = vmax
    denom = np.sqrt(vh) / math.sqrt(1 - b2**t) + eps
    return p - lr / (1 - b1**t) * m / denom, m, v, vmax


def _opt_run(lib, rng, kind, opts, steps=4):
    """Runs `steps` updates on the GPU (float32), in float64 and in float32 NumPy; returns the three."""
    P = [rng.standard_normal(s).astype(np.float32) for s in OPT_SHAPES]
    Gs = [[rng.standard_normal(s).astype(np.float32) for s in OPT_SHAPES] for _ in range(steps)]
    nstate = {"sgd": 1, "rmsprop": 3, "adam": 3}[kind]
    dev_p = [lib.dev(p) for p in P]
    dev_s = [[lib.dev(np.zeros_like(p)) for p in P] for _ in range(nstate)]
    ref = {dt: ([p.astype(dt) for p in P], [[np.zeros(p.shape, dt) for p in P] for _ in range(nstate)])
           for dt in (np.float64, np.float32)}
    for t in range(1, steps + 1):
        dev_g = [lib.dev(g) for g in Gs[t - 1]]
        if kind == "sgd":
            CO.sgd_step(dev_p, dev_g, dev_s[0], first_step=(t == 1), **opts)
        elif kind == "rmsprop":
            CO.rmsprop_step(dev_p, dev_g, dev_s[0], momentum_buffers=dev_s[1], grad_avgs=dev_s[2], **opts)
        else:
            CO.adam_step(dev_p, dev_g, dev_s[0], dev_s[1], step=t, max_exp_avg_sqs=dev_s[2], **opts)
        for dt, (rp, rs) in ref.items():
            for i in range(len(P)):
                g = Gs[t - 1][i].astype(dt)
                with np.errstate(all="ignore"):
                    if kind == "sgd":
                        rp[i], rs[0][i] = _ref_sgd(rp[i], g, rs[0][i], t, **opts)
                    elif kind == "rmsprop":
                        rp[i], rs[0][i], rs[1][i], rs[2][i] = _ref_rmsprop(rp[i], g, rs[0][i], rs[1][i], rs[2][i], **opts)
                    else:
                        rp[i], rs[0][i], rs[1][i], rs[2][i] = _ref_adam(rp[i], g, rs[0][i], rs[1][i], rs[2][i], t,
                                                                        **opts)
                assert rp[i].dtype == dt  # NumPy keeps float32 with Python-float scalars (NEP 50)
    got = [lib.host(p) for p in dev_p]
    return got, ref[np.float64][0], ref[np.float32][0]


SGD_OPTS = [dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
            dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=True, maximize=False),
            dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.0, nesterov=False, maximize=True)]
RMSPROP_OPTS = [dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False),
                dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.1, momentum=0.5, centered=True, maximize=False),
                dict(lr=0.02, alpha=0.95, eps=1e-8, weight_decay=0.0, momentum=0.9, centered=False, maximize=True)]
ADAM_OPTS = [dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                  decoupled=False),
             dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True, maximize=False,
                  decoupled=False),
             dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05, amsgrad=True, maximize=True,
                  decoupled=True)]


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("kind,opts", [("sgd", o) for o in SGD_OPTS] + [("rmsprop", o) for o in RMSPROP_OPTS]
                         + [("adam", o) for o in ADAM_OPTS])
def test_cuda_optimizer_trajectories(lib, rng, kind, opts):
    got, ref64, ref32 = _opt_run(lib, rng, kind, opts)
    for i, (g, r, b) in enumerate(zip(got, ref64, ref32)):
        assert g.shape == r.shape
        assert_error_within(g, r, b, factor=2.0, floor=2 * EPS32 * max(float(np.max(np.abs(r), initial=0)), 1e-30),
                            what=f"{kind} tensor {i} shape {r.shape}")


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["sgd", "rmsprop", "adam", "adamw"])
def test_cuda_optimizer_torch_parity(lib, rng, kind):
    if lib.name != "torch":
        pytest.skip("parity against torch.optim needs torch tensors")
    import torch

    P = [rng.standard_normal(s).astype(np.float32) for s in [(3,), (40, 9), (1025,)]]
    ours = [lib.dev(p) for p in P]
    theirs = [torch.nn.Parameter(lib.dev(p)) for p in P]
    if kind == "sgd":
        opt = torch.optim.SGD(theirs, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, foreach=False)
        state = [[torch.zeros_like(p) for p in ours]]
    elif kind == "rmsprop":
        opt = torch.optim.RMSprop(theirs, lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.1,
                                  foreach=False)
        state = [[torch.zeros_like(p) for p in ours] for _ in range(3)]
    else:
        cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        opt = cls(theirs, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True, foreach=False)
        state = [[torch.zeros_like(p) for p in ours] for _ in range(3)]
    for t in range(1, 6):
        grads = [lib.dev(rng.standard_normal(p.shape).astype(np.float32)) for p in P]
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        opt.step()
        if kind == "sgd":
            CO.sgd_step(ours, grads, state[0], lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=True,
                        maximize=False, first_step=(t == 1))
        elif kind == "rmsprop":
            CO.rmsprop_step(ours, grads, state[0], lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.1, momentum=0.5,
                            momentum_buffers=state[1], centered=True, grad_avgs=state[2], maximize=False)
        else:
            CO.adam_step(ours, grads, state[0], state[1], step=t, lr=1e-2, betas=(0.8, 0.99), eps=1e-8,
                         weight_decay=0.1, amsgrad=True, max_exp_avg_sqs=state[2],
                         maximize=False, decoupled=(kind == "adamw"))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(lib.host(a), b.detach().cpu().numpy(), rtol=1e-5, atol=1e-6)


@gpu
@pytest.mark.cuda
def test_cuda_runs_on_the_callers_stream(lib, rng):
    x = rng.standard_normal(1 << 20).astype(np.float32)
    if lib.name == "torch":
        import torch

        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            xd = lib.dev(x)
            y = F.sigmoid(xd)
            z = CO.softmax_forward(y, 0, True, None)
        s.synchronize()
    else:
        import cupy

        with cupy.cuda.Stream(non_blocking=True) as s:
            xd = lib.dev(x)
            y = F.sigmoid(xd)
            z = CO.softmax_forward(y, 0, True, None)
        s.synchronize()
    assert_close(lib.host(y), R.sigmoid(x), ulps=4)
    assert np.isfinite(lib.host(z)).all()


class _Interface:
    """A producer of __cuda_array_interface__ that is neither torch nor CuPy: fastml cannot ask it for its
    device, so the compiled side asks the driver about the pointer (device -1)."""

    def __init__(self, ptr, shape):
        self.__cuda_array_interface__ = {"version": 3, "shape": shape, "typestr": "<f4", "data": (ptr, False),
                                         "strides": None, "stream": 1}


def _synchronize(lib):
    (lib.m.cuda.synchronize if lib.name == "torch" else lib.m.cuda.runtime.deviceSynchronize)()


@gpu
@pytest.mark.cuda
def test_cuda_other_producers_and_host_pointers(lib, rng):
    x = rng.standard_normal(4099).astype(np.float32)
    xd, yd = lib.dev(x), lib.dev(np.zeros_like(x))
    y = F.relu(_Interface(CO.parse(xd, "t", "x").ptr, x.shape), out=_Interface(CO.parse(yd, "t", "y").ptr, x.shape))
    assert isinstance(y, _Interface)
    assert_close(lib.host(yd), R.relu(x), ulps=0)
    # plain host memory: computed where the GPU can read pageable memory (HMM/ATS), refused elsewhere;
    # never a launch that faults
    hx, hy = x.copy(), np.zeros_like(x)
    try:
        F.sigmoid(_Interface(hx.ctypes.data, x.shape), out=_Interface(hy.ctypes.data, x.shape))
    except ValueError as exc:
        assert "host memory that this GPU cannot access" in str(exc)
        assert not hy.any()
    else:
        _synchronize(lib)
        assert_close(hy, R.sigmoid(x), ulps=4)
