"""Optimizer steps (fastml.optim.functional): the float64 references on hand-computed cases, every
backend x ISA against them (sizes around the vector widths, multi-tensor lists), 100-step trajectories
against torch.optim (foreach=False) for every option combination, the bad-input catalogue (nothing
written), NaN propagation, thread-count invariance."""
import math

import numpy as np
import pytest

import fastml
import fastml.optim.functional as OF
import fastml.reference.optim as RO
from fastml import _backend as B
from _optim_cases import CONFIGS, EPS32, STATE_NAMES, assert_step_close, call, cid, make_state, scales

SIZES = [1, 7, 8, 9, 15, 16, 17, 31, 33, 1025, 100003]  # 100003 > the threading grain
KINDS = ["sgd", "rmsprop", "adam", "adamw"]
CASES = [(k, c) for k in KINDS for c in CONFIGS[k]]
CASE_IDS = [f"{k}-{cid(c)}" for k, c in CASES]


def _copy(ps, gs, st):
    return [p.copy() for p in ps], [g.copy() for g in gs], {k: [a.copy() for a in v] for k, v in st.items()}


# ---- the references themselves -------------------------------------------------------------------

def test_reference_adam_first_step_hand_values():
    # t = 1 from zero state: m = (1-b1) g, v = (1-b2) g^2, so the step is lr * g / (|g| + eps / sqrt(1-b2)... )
    # exactly: p - lr * g / (|g| + eps) since m_hat = g and v_hat = g^2.
    g = np.array([0.5, -2.0, 0.0])
    p, m, v, _ = RO.adam_step(np.ones(3), g, np.zeros(3), np.zeros(3), step=1, lr=0.1, eps=1e-8)
    np.testing.assert_allclose(p[0], 1 - 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-15)
    np.testing.assert_allclose(m[0], 0.1 * g, rtol=1e-15)
    np.testing.assert_allclose(v[0], 0.001 * g * g, rtol=1e-12)
    # AdamW shrinks first: p (1 - lr wd), then the same update
    p, *_ = RO.adamw_step(np.ones(3), g, np.zeros(3), np.zeros(3), step=1, lr=0.1, weight_decay=0.5, eps=0.0)
    np.testing.assert_allclose(p[0], [0.95 - 0.1, 0.95 + 0.1, math.nan], rtol=1e-15)


def test_reference_sgd_and_rmsprop_hand_values():
    p, b = RO.sgd_step(np.array([1.0]), np.array([2.0]), np.array([5.0]), lr=0.1, momentum=0.9, dampening=0.5,
                       first_step=True)
    assert p[0][0] == pytest.approx(1 - 0.2) and b[0][0] == 2.0  # first step: b = g, no dampening
    p, b = RO.sgd_step(np.array([1.0]), np.array([2.0]), np.array([5.0]), lr=0.1, momentum=0.9, dampening=0.5)
    assert b[0][0] == pytest.approx(0.9 * 5 + 0.5 * 2) and p[0][0] == pytest.approx(1 - 0.1 * 5.5)
    p, b = RO.sgd_step(np.array([1.0]), np.array([2.0]), np.array([5.0]), lr=0.1, momentum=0.9, nesterov=True,
                       weight_decay=1.0)  # g = 3, b = 4.5 + 3, d = 3 + 0.9 * 7.5
    assert p[0][0] == pytest.approx(1 - 0.1 * (3 + 0.9 * 7.5))
    p, s, _, _ = RO.rmsprop_step(np.array([1.0]), np.array([2.0]), np.array([0.0]), lr=0.1, alpha=0.75, eps=0.0)
    assert s[0][0] == pytest.approx(1.0) and p[0][0] == pytest.approx(1 - 0.1 * 2 / 1.0)
    p, s, _, ga = RO.rmsprop_step(np.array([1.0]), np.array([2.0]), np.array([0.0]), lr=0.1, alpha=0.75, eps=0.0,
                                  centered=True, grad_avgs=np.array([0.0]))
    assert ga[0][0] == pytest.approx(0.5) and p[0][0] == pytest.approx(1 - 0.1 * 2 / math.sqrt(1 - 0.25))


def test_reference_does_not_modify_inputs(rng):
    ps, gs, st = make_state(rng, "adam", [(5,)], dtype=np.float64)
    ps0, gs0, st0 = _copy(ps, gs, st)
    call("adam", ps, gs, st, dict(lr=0.1, amsgrad=True), module=RO)
    for a, b in zip(ps + gs + sum(st.values(), []), ps0 + gs0 + sum(st0.values(), [])):
        assert np.array_equal(a, b)


def test_variants_registered():
    if not B.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    for op in ("sgd", "rmsprop", "adam"):
        assert "scalar" in B._C.variants(op)
        if B._C.build_info()["x86"]:
            assert B._C.variants(op) == ["scalar", "avx2", "avx512"]


# ---- every backend against the references ---------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind,cfg", CASES, ids=CASE_IDS)
def test_step_sizes(backend, rng, kind, cfg, n):
    ps, gs, st = make_state(rng, kind, [(n,)])
    ref, sc = scales(kind, ps, gs, st, cfg)
    call(kind, ps, gs, st, cfg)
    assert_step_close(kind, {"params": ps, **st}, ref, sc, what=f"{backend} {kind}")


@pytest.mark.parametrize("kind", KINDS)
def test_first_step_from_zero_state(backend, rng, kind):
    cfg = CONFIGS[kind][-2]  # all options on
    ps, gs, st = make_state(rng, kind, [(257,)], warm=False)
    ref, sc = scales(kind, ps, gs, st, cfg, step=1, first_step=True)
    call(kind, ps, gs, st, cfg, step=1, first_step=True)
    assert_step_close(kind, {"params": ps, **st}, ref, sc, what=kind)


@pytest.mark.parametrize("kind,cfg", CASES, ids=CASE_IDS)
def test_step_float64(backend, rng, kind, cfg):
    # float64 always runs the NumPy backend in float64 (never downcast)
    ps, gs, st = make_state(rng, kind, [(3, 5), (40,)], dtype=np.float64)
    ref, sc = scales(kind, ps, gs, st, cfg)
    call(kind, ps, gs, st, cfg)
    assert all(p.dtype == np.float64 for p in ps)
    assert_step_close(kind, {"params": ps, **st}, ref, sc, eps=float(np.finfo(np.float64).eps), what=kind)


@pytest.mark.parametrize("kind,cfg", [CASES[i] for i in range(0, len(CASES), 3)],
                         ids=[CASE_IDS[i] for i in range(0, len(CASES), 3)])
def test_multi_tensor_mixed_sizes(backend, rng, kind, cfg):
    shapes = [(1,), (7,), (0,), (3, 3), (16,), (2, 17), (1025,), (5, 7, 3), (40000,), (33,)]
    ps, gs, st = make_state(rng, kind, shapes)
    singles = _copy(ps, gs, st)
    ref, sc = scales(kind, ps, gs, st, cfg)
    call(kind, ps, gs, st, cfg)
    assert_step_close(kind, {"params": ps, **st}, ref, sc, what=f"{kind} list")
    # a list call is exactly the per-tensor calls
    sp, sg, sst = singles
    for i in range(len(shapes)):
        one = {k: v[i] for k, v in sst.items()}
        call(kind, sp[i], sg[i], one, cfg)
        assert np.array_equal(sp[i], ps[i])
        for k in STATE_NAMES[kind]:
            assert np.array_equal(one[k], st[k][i], equal_nan=True)


def test_empty_list_is_a_no_op(backend):
    OF.adam_step([], [], [], [], step=1)
    OF.sgd_step([], [], lr=0.1)


def test_noncontiguous_grad_and_nd_shapes(backend, rng):
    ps, gs, st = make_state(rng, "adam", [(6, 10)])
    big = rng.standard_normal((6, 20)).astype(np.float32)
    gs = [big[:, ::2]]
    a = _copy(ps, [np.ascontiguousarray(gs[0])], st)
    call("adam", ps, gs, st, dict(lr=0.1))
    call("adam", *a, dict(lr=0.1))
    assert np.array_equal(ps[0], a[0][0])


def test_threads_bitwise_identical(rng, threads):
    if not B.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    for kind, cfg in [("adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)), ("sgd", CONFIGS["sgd"][-3]),
                      ("rmsprop", CONFIGS["rmsprop"][-2])]:
        ps, gs, st = make_state(rng, kind, [(100003,), (7,), (65537,), (33,)])
        a, b = _copy(ps, gs, st), _copy(ps, gs, st)
        fastml.set_num_threads(1)
        call(kind, *a, cfg)
        fastml.set_num_threads(2)
        call(kind, *b, cfg)
        for x, y in zip(a[0] + sum(a[2].values(), []), b[0] + sum(b[2].values(), [])):
            assert np.array_equal(x, y), kind


def test_isas_bitwise_identical(rng):
    """Every ISA computes the same float32 operations in the same order (explicit FMAs)."""
    isas = B.available_isas()
    if len(isas) < 2:
        pytest.skip("needs two ISAs")
    for kind in KINDS:
        cfg = CONFIGS[kind][-2]
        ps, gs, st = make_state(rng, kind, [(1031,)])
        results = []
        for isa in isas:
            c = _copy(ps, gs, st)
            with fastml.use_isa(isa):
                call(kind, *c, cfg)
            results.append(c)
        for r in results[1:]:
            assert all(np.array_equal(x, y) for x, y in zip(results[0][0], r[0])), kind


# ---- NaN / Inf ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_nonfinite_gradients_propagate_as_torch(backend, rng, kind):
    torch = pytest.importorskip("torch")
    cfg = CONFIGS[kind][-2]
    ps, gs, st = make_state(rng, kind, [(40,)], warm=False)
    gs[0][[1, 5, 17]] = [np.nan, np.inf, -np.inf]
    tp = torch.from_numpy(ps[0].copy()).requires_grad_()
    opt = _torch_opt(torch, kind, [tp], cfg)
    for t in range(2):
        tp.grad = torch.from_numpy(gs[0].copy())
        opt.step()
        call(kind, ps, gs, st, cfg, step=t + 1, first_step=t == 0)
    want = tp.detach().numpy()
    assert np.array_equal(np.isnan(want), np.isnan(ps[0]))
    assert np.array_equal(np.isinf(want), np.isinf(ps[0]))
    fin = np.isfinite(want)
    np.testing.assert_allclose(ps[0][fin], want[fin], rtol=1e-5, atol=1e-6)


# ---- 100-step trajectories against torch.optim ----------------------------------------------------

def _torch_opt(torch, kind, tparams, cfg):
    cls = {"sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam,
           "adamw": torch.optim.AdamW}[kind]
    cfg = dict(cfg)
    if kind == "adamw":
        cfg.setdefault("weight_decay", 1e-2)
    return cls(tparams, foreach=False, **cfg)


@pytest.mark.parametrize("kind,cfg", CASES, ids=CASE_IDS)
def test_trajectory_matches_torch(backend, kind, cfg):
    _trajectory(backend, kind, cfg, np.float32)


@pytest.mark.parametrize("kind,cfg", CASES, ids=CASE_IDS)
def test_trajectory_matches_torch_float64(kind, cfg):
    _trajectory("numpy", kind, cfg, np.float64)  # float64 always runs the NumPy backend, in float64


def _trajectory(backend, kind, cfg, dtype):
    torch = pytest.importorskip("torch")
    eps = float(np.finfo(dtype).eps)
    rng = np.random.default_rng(7)
    shapes = [(7,), (33, 4), (1000,)]
    steps = 100
    ps, _, st = make_state(rng, kind, shapes, dtype=dtype, warm=False)
    tps = [torch.from_numpy(p.copy()).requires_grad_() for p in ps]
    opt = _torch_opt(torch, kind, tps, cfg)
    tv = [np.abs(p).astype(np.float64) for p in ps]  # |p0| + total variation of the torch trajectory
    for t in range(steps):
        # a gradient that depends on the parameters (a quadratic bowl, upside down when maximizing, so the
        # dynamics contract) plus noise, like training
        sign = -1.0 if cfg.get("maximize") else 1.0
        gs = [(sign * 0.5 * p + rng.standard_normal(p.shape)).astype(dtype) for p in ps]
        prev = [tp.detach().numpy().copy() for tp in tps]
        for tp, g in zip(tps, gs):
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
        for i, tp in enumerate(tps):
            tv[i] += np.abs(tp.detach().numpy() - prev[i])
        call(kind, ps, gs, st, cfg, step=t + 1, first_step=t == 0)
    exact = kind == "sgd" and backend != "numpy"  # no sqrt: the compiled SGD is bitwise torch's
    for i, tp in enumerate(tps):
        want = tp.detach().numpy()
        if exact:
            assert np.array_equal(ps[i], want), f"{kind} param {i} differs from torch"
        else:
            # torch's CPU sqrt (MKL VML) is not correctly rounded: a few ulp per step along the path. The
            # NumPy backend also rounds each of torch's fused multiply-adds twice: a looser factor.
            err = np.abs(ps[i].astype(np.float64) - want)
            bound = (16 if backend == "numpy" else 4) * eps * tv[i] + 1e-300
            assert np.all(err <= bound), (f"{kind} param {i}: max error {err.max():.3g}, "
                                          f"{int((err > bound).sum())} elements out of tolerance")


# ---- bad input: clear errors, nothing written -----------------------------------------------------

def _valid(rng, kind, n=3):
    return make_state(rng, kind, [(5,), (4, 2), (9,)][:n])


def _snapshot(ps, gs, st):
    return [a.copy() for a in ps + gs + [x for v in st.values() for x in v]]


def _unchanged(snap, ps, gs, st):
    return all(np.array_equal(a, b) for a, b in zip(snap, ps + gs + [x for v in st.values() for x in v]))


ADAM_BAD = [
    ("lr", dict(lr=-1e-3), ValueError, "lr >= 0"),
    ("eps", dict(eps=-1.0), ValueError, "eps >= 0"),
    ("beta1", dict(betas=(1.0, 0.999)), ValueError, r"0 <= betas\[0\] < 1"),
    ("beta2", dict(betas=(0.9, -0.1)), ValueError, r"0 <= betas\[1\] < 1"),
    ("betas-shape", dict(betas=(0.9,)), TypeError, "pair"),
    ("wd", dict(weight_decay=-0.1), ValueError, "weight_decay >= 0"),
    ("step0", dict(step=0), ValueError, "step >= 1"),
    ("step-float", dict(step=1.5), TypeError, "int for step"),
    ("lr-nan", dict(lr=float("nan")), ValueError, "nan"),
    ("lr-str", dict(lr="0.1"), TypeError, "real number"),
    ("amsgrad-missing", dict(amsgrad=True, max_exp_avg_sqs=None), ValueError, "requires max_exp_avg_sqs"),
]


@pytest.mark.parametrize("name,kw,exc,msg", ADAM_BAD, ids=[b[0] for b in ADAM_BAD])
def test_bad_hyperparameters_adam(backend, rng, name, kw, exc, msg):
    kw = dict(kw)
    ps, gs, st = _valid(rng, "adam")
    snap = _snapshot(ps, gs, st)
    args = dict(step=kw.pop("step", 2), max_exp_avg_sqs=st["max_exp_avg_sqs"])
    args.update(kw)
    with pytest.raises(exc, match=msg):
        OF.adam_step(ps, gs, st["exp_avgs"], st["exp_avg_sqs"], **args)
    assert _unchanged(snap, ps, gs, st)


OTHER_BAD = [
    ("sgd-lr", "sgd", dict(lr=-0.1), ValueError, "lr >= 0"),
    ("sgd-momentum", "sgd", dict(lr=0.1, momentum=-0.5), ValueError, "momentum >= 0"),
    ("sgd-nesterov-no-momentum", "sgd", dict(lr=0.1, nesterov=True), ValueError, "nesterov requires"),
    ("sgd-nesterov-dampening", "sgd", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     "nesterov requires"),
    ("sgd-no-buffers", "sgd", dict(lr=0.1, momentum=0.9, momentum_buffers=None), ValueError,
     "requires momentum_buffers"),
    ("sgd-flag", "sgd", dict(lr=0.1, nesterov=1), TypeError, "bool for nesterov"),
    ("rms-alpha", "rmsprop", dict(alpha=1.0), ValueError, "0 <= alpha < 1"),
    ("rms-eps", "rmsprop", dict(eps=-1e-8), ValueError, "eps >= 0"),
    ("rms-centered", "rmsprop", dict(centered=True, grad_avgs=None), ValueError, "requires grad_avgs"),
    ("rms-momentum", "rmsprop", dict(momentum=0.5, momentum_buffers=None), ValueError, "requires momentum_buffers"),
    ("rms-lr", "rmsprop", dict(lr=-1.0), ValueError, "lr >= 0"),
]


@pytest.mark.parametrize("name,kind,kw,exc,msg", OTHER_BAD, ids=[b[0] for b in OTHER_BAD])
def test_bad_hyperparameters_sgd_rmsprop(backend, rng, name, kind, kw, exc, msg):
    kw = dict(kw)
    ps, gs, st = _valid(rng, kind)
    snap = _snapshot(ps, gs, st)
    with pytest.raises(exc, match=msg):
        if kind == "sgd":
            kw.setdefault("momentum_buffers", st["momentum_buffers"])
            OF.sgd_step(ps, gs, **kw)
        else:
            kw.setdefault("momentum_buffers", st["momentum_buffers"])
            kw.setdefault("grad_avgs", st["grad_avgs"])
            OF.rmsprop_step(ps, gs, st["square_avgs"], **kw)
    assert _unchanged(snap, ps, gs, st)


def _ro(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _strided(a):
    big = np.zeros((a.size * 2,), a.dtype)
    v = big[::2].reshape(a.shape)
    v[...] = a
    return v


# (id, mutate(ps, gs, st) -> None, exception, message). The bad array is always the LAST tensor, so the
# check that the first tensors are untouched shows that everything is validated before any write.
ARRAY_BAD = [
    ("grads-short", lambda ps, gs, st: gs.pop(), ValueError, "expected 3 arrays in grads"),
    ("state-short", lambda ps, gs, st: st["exp_avgs"].pop(), ValueError, "expected 3 arrays in exp_avgs"),
    ("state-f64", lambda ps, gs, st: st["exp_avg_sqs"].__setitem__(2, st["exp_avg_sqs"][2].astype(np.float64)),
     TypeError, "float32"),
    ("param-f64", lambda ps, gs, st: ps.__setitem__(2, ps[2].astype(np.float64)), TypeError, "float32"),
    ("grad-f64", lambda ps, gs, st: gs.__setitem__(2, gs[2].astype(np.float64)), TypeError, "float32"),
    ("grad-int", lambda ps, gs, st: gs.__setitem__(2, gs[2].astype(np.int64)), TypeError, "float32"),
    ("grad-f16", lambda ps, gs, st: gs.__setitem__(2, gs[2].astype(np.float16)), TypeError, "float32"),
    ("state-readonly", lambda ps, gs, st: st["exp_avgs"].__setitem__(2, _ro(st["exp_avgs"][2])), ValueError,
     "writeable"),
    ("param-readonly", lambda ps, gs, st: ps.__setitem__(2, _ro(ps[2])), ValueError, "writeable"),
    ("state-strided", lambda ps, gs, st: st["exp_avg_sqs"].__setitem__(2, _strided(st["exp_avg_sqs"][2])),
     ValueError, "C-contiguous"),
    ("param-strided", lambda ps, gs, st: ps.__setitem__(2, _strided(ps[2])), ValueError, "C-contiguous"),
    ("state-shape", lambda ps, gs, st: st["exp_avgs"].__setitem__(2, np.zeros(10, np.float32)), ValueError,
     r"shape \(9,\)"),
    ("grad-shape", lambda ps, gs, st: gs.__setitem__(2, np.zeros((3, 3), np.float32)), ValueError, r"shape \(9,\)"),
    ("state-list", lambda ps, gs, st: st["max_exp_avg_sqs"].__setitem__(2, [0.0] * 9), TypeError, "numpy array"),
    ("param-list", lambda ps, gs, st: ps.__setitem__(2, [0.0] * 9), TypeError, "numpy array"),
]


@pytest.mark.parametrize("name,mutate,exc,msg", ARRAY_BAD, ids=[b[0] for b in ARRAY_BAD])
def test_bad_arrays_nothing_written(backend, rng, name, mutate, exc, msg):
    ps, gs, st = _valid(rng, "adam")
    mutate(ps, gs, st)
    snap = _snapshot(ps, gs, st)
    with pytest.raises(exc, match=msg):
        OF.adam_step(ps, gs, st["exp_avgs"], st["exp_avg_sqs"], step=2, amsgrad=True,
                     max_exp_avg_sqs=st["max_exp_avg_sqs"])
    assert _unchanged(snap, ps, gs, st)


def test_mixed_param_dtypes_rejected(backend, rng):
    ps, gs, st = _valid(rng, "sgd")
    ps[0] = ps[0].astype(np.float64)
    gs[0] = gs[0].astype(np.float64)
    st["momentum_buffers"][0] = st["momentum_buffers"][0].astype(np.float64)
    snap = _snapshot(ps, gs, st)
    with pytest.raises(TypeError, match="float64"):
        OF.sgd_step(ps, gs, st["momentum_buffers"], lr=0.1, momentum=0.9)
    assert _unchanged(snap, ps, gs, st)


# ---- device arrays are forwarded to the CUDA module with the public names and arguments ------------

class _FakeDeviceArray:
    __cuda_array_interface__ = {}


def test_device_arrays_forwarded(monkeypatch):
    calls = []

    class FakeModule:
        def __getattr__(self, name):
            return lambda *a, **k: calls.append((name, a, k))

    monkeypatch.setattr(B, "cuda_module", lambda: FakeModule())
    p, g, m = _FakeDeviceArray(), _FakeDeviceArray(), _FakeDeviceArray()
    OF.adam_step(p, g, m, m, step=3, lr=0.1)
    OF.adamw_step([p], [g], [m], [m], step=1)
    OF.sgd_step(p, g, m, lr=0.1, momentum=0.9, first_step=True)
    OF.rmsprop_step(p, g, m, centered=True, grad_avgs=m)
    names = [c[0] for c in calls]
    assert names == ["adam_step", "adamw_step", "sgd_step", "rmsprop_step"]
    _, args, kw = calls[0]
    assert args == ([p], [g], [m], [m]) and kw == dict(step=3, lr=0.1, betas=(0.9, 0.999), eps=1e-8,
                                                       weight_decay=0.0, amsgrad=False, max_exp_avg_sqs=None,
                                                       maximize=False)
    assert calls[1][2]["weight_decay"] == 1e-2
    assert calls[2][1] == ([p], [g], [m]) and calls[2][2] == dict(lr=0.1, momentum=0.9, dampening=0.0,
                                                                   weight_decay=0.0, nesterov=False,
                                                                   maximize=False, first_step=True)
    assert calls[3][2]["grad_avgs"] == [m] and calls[3][2]["momentum_buffers"] is None


@pytest.mark.parametrize("case", ["state_is_state", "state_is_param", "param_twice", "grad_is_state",
                                  "grad_overlaps_param", "state_overlaps_other_param"])
def test_shared_memory_between_updated_arrays_is_rejected(backend, case):
    # Arrays updated in place must be disjoint (else one update overwrites another's input, or two threads
    # race on one element); nothing may be written before the error.
    buf = np.arange(1, 33, dtype=np.float32)
    p, p2 = buf[:8], buf[8:16]
    g, g2 = np.ones(8, np.float32), np.ones(8, np.float32)
    m, v = np.zeros(8, np.float32), np.zeros(8, np.float32)
    m2, v2 = np.zeros(8, np.float32), np.zeros(8, np.float32)
    args = {
        "state_is_state": ([p], [g], [m], [m]),
        "state_is_param": ([p], [g], [p], [v]),
        "param_twice": ([p, p], [g, g2], [m, m2], [v, v2]),
        "grad_is_state": ([p], [m], [m], [v]),
        "grad_overlaps_param": ([p, p2], [buf[4:12], g2], [m, m2], [v, v2]),
        "state_overlaps_other_param": ([p, p2], [g, g2], [m, buf[12:20]], [v, v2]),
    }[case]
    before = [a.copy() for lst in args for a in lst]
    with pytest.raises(ValueError, match="not to share memory"):
        OF.adam_step(*args, step=1, lr=0.1)
    after = [a for lst in args for a in lst]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_grad_may_alias_its_own_param(backend):
    p = np.full(8, 2.0, np.float32)
    OF.sgd_step([p], [p], lr=0.25)  # p -= 0.25 * p, elementwise
    np.testing.assert_array_equal(p, np.full(8, 1.5, np.float32))
