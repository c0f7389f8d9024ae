"""Recurrent cells and sequences (fastml.functional.rnn): every backend and ISA against the float64
reference (fastml.reference.rnn), backward passes against finite differences of the reference and
against torch autograd, packed-sequence semantics via ``lengths``, dropout reproducibility, thread-count
invariance, and bad inputs."""
import numpy as np
import pytest

import fastml
import fastml.functional as F
import fastml.reference as R
from _tolerance import EPS32, numeric_vjp
from _tolerance import assert_error_within as _assert_error_within

G = {"lstm": 4, "gru": 3, "rnn": 1}


def assert_error_within(got, ref, base, factor=2.0, what=""):
    """tests/_tolerance rule (<= factor x the float32 NumPy error) with a floor of a few float32 ulps of the
    largest value: the compiled sigmoid/tanh are a few ulps from NumPy's, which matters on tiny problems
    where the NumPy baseline happens to be almost exact."""
    floor = 4 * EPS32 * max(1.0, float(np.max(np.abs(ref), initial=0.0)))
    _assert_error_within(got, ref, base, factor=factor, floor=floor, what=what)


def make_weights(rng, mode, I, H, L=1, D=1, bias=True, proj=0, scale=None):
    """torch's _flat_weights order, U(-1/sqrt(H), 1/sqrt(H)) as torch initialises them (float64)."""
    k = scale if scale is not None else 1.0 / np.sqrt(H)
    P = proj or H
    ws = []
    for layer in range(L):
        for _ in range(D):
            i = I if layer == 0 else D * P
            ws += [rng.uniform(-k, k, (G[mode] * H, i)), rng.uniform(-k, k, (G[mode] * H, P))]
            if bias:
                ws += [rng.uniform(-k, k, G[mode] * H), rng.uniform(-k, k, G[mode] * H)]
            if proj:
                ws.append(rng.uniform(-k, k, (P, H)))
    return ws


def f32(a):
    if a is None:
        return None
    if isinstance(a, (list, tuple)):
        return type(a)(f32(x) for x in a)
    return np.asarray(a, dtype=np.float32)


def seq_kwargs(cfg):
    kw = dict(num_layers=cfg.get("L", 1), bidirectional=cfg.get("D", 1) == 2, batch_first=cfg.get("bf", False),
              has_biases=cfg.get("bias", True), lengths=cfg.get("lengths"))
    if cfg.get("proj"):
        kw["proj_size"] = cfg["proj"]
    if cfg.get("relu"):
        kw["nonlinearity"] = "relu"
    return kw


def run_forward(mode, x, hx, ws, kw):
    return getattr(F, mode)(x, hx, ws, **kw)


def run_backward(mode, g, ghn, gcn, res):
    if mode == "lstm":
        gx, (gh, gc), gw = F.lstm_backward(g, ghn, gcn, res)
        return [gx, gh, gc] + list(gw)
    gx, gh, gw = getattr(F, mode + "_backward")(g, ghn, res)
    return [gx, gh] + list(gw)


def make_problem(rng, mode, cfg):
    T, N, I, H = cfg["T"], cfg["N"], cfg["I"], cfg["H"]
    L, D, P = cfg.get("L", 1), cfg.get("D", 1), cfg.get("proj") or H
    ws = make_weights(rng, mode, I, H, L, D, cfg.get("bias", True), cfg.get("proj", 0))
    x = rng.standard_normal((N, T, I) if cfg.get("bf") else (T, N, I))
    h0 = rng.standard_normal((L * D, N, P)) * 0.5
    hx = (h0, rng.standard_normal((L * D, N, H)) * 0.5) if mode == "lstm" else h0
    return x, hx, ws


# (mode, config): T, N, I, H, L layers, D directions, bf batch_first, proj, lengths, relu, bias
SEQ_CASES = [
    ("lstm", dict(T=1, N=1, I=5, H=7)),
    ("lstm", dict(T=37, N=33, I=9, H=17, lengths="mixed")),
    ("lstm", dict(T=6, N=3, I=4, H=16, L=2, D=2, lengths="mixed")),
    ("lstm", dict(T=5, N=9, I=4, H=100, L=3, bf=True)),
    ("lstm", dict(T=7, N=5, I=3, H=17, D=2, proj=5, lengths="mixed")),
    ("lstm", dict(T=4, N=2, I=3, H=7, proj=3, bias=False)),
    ("lstm", dict(T=5, N=9, I=4, H=370, lengths="mixed")),  # 4 H^2 >= 2^19: hidden-unit split per step
    # ... with a batch that fills the microkernel's columns and I <= H: the transposed, fused-projection steps
    ("lstm", dict(T=5, N=32, I=24, H=370, D=2, lengths="mixed")),
    ("lstm", dict(T=4, N=32, I=16, H=370, L=2)),  # layer 2: I = H = 370
    ("lstm", dict(T=3, N=32, I=400, H=370)),  # I > H: the hidden-unit split (W_ih read per step costs more)
    ("gru", dict(T=37, N=1, I=6, H=100)),
    ("gru", dict(T=6, N=33, I=5, H=17, L=2, D=2, lengths="mixed", bf=True)),
    ("gru", dict(T=5, N=4, I=3, H=1, bias=False)),
    ("rnn", dict(T=9, N=33, I=5, H=16, relu=True, lengths="mixed")),
    ("rnn", dict(T=6, N=2, I=4, H=7, L=2, D=2, bias=False)),
]


def _ids():
    return [f"{m}-" + "-".join(f"{k}{v}" for k, v in c.items()) for m, c in SEQ_CASES]


def _lengths(rng, cfg):
    if cfg.get("lengths") != "mixed":
        return None
    T, N = cfg["T"], cfg["N"]
    lens = rng.integers(1, T + 1, N)
    lens[0] = T
    lens[-1] = 1  # a length-1 sequence; unsorted overall
    return lens


@pytest.mark.parametrize("mode,cfg", SEQ_CASES, ids=_ids())
def test_sequence_forward(backend, rng, mode, cfg):
    cfg = dict(cfg, lengths=_lengths(rng, cfg))
    x, hx, ws = make_problem(rng, mode, cfg)
    kw = seq_kwargs(cfg)
    ref_out, ref_h = getattr(R, mode)(x, hx, ws, **kw)
    out, h, _ = run_forward(mode, f32(x), f32(hx), f32(ws), kw)
    with fastml.use_backend("numpy"):
        base_out, base_h, _ = run_forward(mode, f32(x), f32(hx), f32(ws), kw)
    assert out.dtype == np.float32 and out.shape == ref_out.shape
    assert_error_within(out, ref_out, base_out, what="output")
    if mode == "lstm":
        assert_error_within(h[0], ref_h[0], base_h[0], what="h_n")
        assert_error_within(h[1], ref_h[1], base_h[1], what="c_n")
    else:
        assert_error_within(h, ref_h, base_h, what="h_n")
    if cfg["lengths"] is not None:  # packed semantics: outputs past each end are exactly zero
        o = out.transpose(1, 0, 2) if cfg.get("bf") else out
        for n, ln in enumerate(cfg["lengths"]):
            assert not o[ln:, n].any()


@pytest.mark.parametrize("mode,cfg", SEQ_CASES, ids=_ids())
def test_sequence_forward_without_reserve(backend, rng, mode, cfg):
    """keep_reserve=False (inference): reserve None, the same output and final states bit for bit, also
    with pre-packed weights and on a second call (the two-step state buffers come from the array cache)."""
    cfg = dict(cfg, lengths=_lengths(rng, cfg))
    x, hx, ws = make_problem(rng, mode, cfg)
    kw = seq_kwargs(cfg)
    x, hx, ws = f32(x), f32(hx), f32(ws)
    out, h, res = run_forward(mode, x, hx, ws, kw)
    assert res is not None
    variants = [dict(kw, keep_reserve=False)]
    if backend != "numpy":
        packed = F.pack_recurrent_weights(ws, num_layers=kw["num_layers"], bidirectional=kw["bidirectional"],
                                          has_biases=kw["has_biases"], proj_size=kw.get("proj_size", 0))
        variants.append(dict(kw, keep_reserve=False, packed=packed))
    for v in variants:
        for _ in range(2):
            out2, h2, res2 = run_forward(mode, x, hx, ws, v)
            assert res2 is None
            np.testing.assert_array_equal(out2, out)
            for a, b in zip(h2 if mode == "lstm" else [h2], h if mode == "lstm" else [h]):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode,cfg", SEQ_CASES, ids=_ids())
def test_sequence_backward(backend, rng, mode, cfg):
    """float32 gradients vs the float64 NumPy backward (itself checked against finite differences of the
    reference below), error <= 2x that of the NumPy backend in float32."""
    cfg = dict(cfg, lengths=_lengths(rng, cfg))
    x, hx, ws = make_problem(rng, mode, cfg)
    kw = seq_kwargs(cfg)
    out64, h64, res64 = run_forward(mode, x, hx, ws, kw)
    g = rng.standard_normal(out64.shape)
    ghn = rng.standard_normal((h64[0] if mode == "lstm" else h64).shape)
    gcn = rng.standard_normal(h64[1].shape) if mode == "lstm" else None
    ref = run_backward(mode, g, ghn, gcn, res64)
    _, _, res = run_forward(mode, f32(x), f32(hx), f32(ws), kw)
    got = run_backward(mode, f32(g), f32(ghn), f32(gcn), res)
    with fastml.use_backend("numpy"):
        _, _, res_b = run_forward(mode, f32(x), f32(hx), f32(ws), kw)
        base = run_backward(mode, f32(g), f32(ghn), f32(gcn), res_b)
    assert len(got) == len(ref)
    for k, (a, r, b) in enumerate(zip(got, ref, base)):
        assert a.dtype == np.float32
        assert_error_within(a, r, b, factor=3.0, what=f"gradient {k}")


# ------------------------------------------------------------------------- backward vs finite differences

FD_CASES = [
    ("lstm", dict(T=3, N=2, I=2, H=3, L=2, D=2, lengths=np.array([1, 3]))),
    ("lstm", dict(T=3, N=2, I=2, H=3, D=2, proj=2, lengths=np.array([3, 2]))),
    ("gru", dict(T=3, N=2, I=2, H=3, L=2, D=2, lengths=np.array([2, 3]))),
    ("rnn", dict(T=3, N=2, I=2, H=3, D=2, relu=True, lengths=np.array([3, 1]))),
]


@pytest.mark.parametrize("mode,cfg", FD_CASES, ids=[m + str(i) for i, (m, _) in enumerate(FD_CASES)])
def test_backward_matches_finite_differences(rng, mode, cfg):
    """The float64 backward (NumPy backend) vs central differences of the float64 reference, for the
    input, the initial states and every weight."""
    x, hx, ws = make_problem(rng, mode, cfg)
    kw = seq_kwargs(cfg)
    out, h, res = run_forward(mode, x, hx, ws, kw)
    g = rng.standard_normal(out.shape)
    gh = rng.standard_normal((h[0] if mode == "lstm" else h).shape)
    gc = rng.standard_normal(h[1].shape) if mode == "lstm" else None
    got = run_backward(mode, g, gh, gc, res)

    def loss_of(x_, hx_, ws_):
        o, hh = getattr(R, mode)(x_, hx_, ws_, **kw)
        s = np.sum(g * o)
        if mode == "lstm":
            return s + np.sum(gh * hh[0]) + np.sum(gc * hh[1])
        return s + np.sum(gh * hh)

    one = np.ones(())
    num_x = numeric_vjp(lambda v: loss_of(v, hx, ws), x, one)
    np.testing.assert_allclose(got[0], num_x, rtol=1e-6, atol=1e-7)
    if mode == "lstm":
        np.testing.assert_allclose(got[1], numeric_vjp(lambda v: loss_of(x, (v, hx[1]), ws), hx[0], one),
                                   rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got[2], numeric_vjp(lambda v: loss_of(x, (hx[0], v), ws), hx[1], one),
                                   rtol=1e-6, atol=1e-7)
        wg = got[3:]
    else:
        np.testing.assert_allclose(got[1], numeric_vjp(lambda v: loss_of(x, v, ws), hx, one), rtol=1e-6, atol=1e-7)
        wg = got[2:]
    for k in range(len(ws)):
        def f(v, k=k):
            w2 = list(ws)
            w2[k] = v
            return loss_of(x, hx, w2)
        np.testing.assert_allclose(wg[k], numeric_vjp(f, ws[k], one), rtol=1e-6, atol=1e-7, err_msg=f"weights[{k}]")


# ------------------------------------------------------------------------------------------------- cells

CELL_SHAPES = [(1, 5, 1), (1, 256, 100), (33, 7, 7), (33, 9, 16), (4, 3, 17), (1, 17, 16)]


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("N,I,H", CELL_SHAPES)
def test_cell_forward_backward(backend, rng, mode, N, I, H):
    base_mode = mode.split("_")[0]
    kw = {"nonlinearity": mode.split("_")[1]} if base_mode == "rnn" else {}
    w = make_weights(rng, base_mode, I, H)
    x = rng.standard_normal((N, I))
    h = rng.standard_normal((N, H))
    c = rng.standard_normal((N, H))
    hx = (h, c) if base_mode == "lstm" else h
    fwd = getattr(F, base_mode + "_cell")
    bwd = getattr(F, base_mode + "_cell_backward")
    ref = getattr(R, base_mode + "_cell")(x, hx, *w, **kw)
    got = fwd(f32(x), f32(hx), *f32(w), **kw, return_saved=True)
    with fastml.use_backend("numpy"):
        base = fwd(f32(x), f32(hx), *f32(w), **kw, return_saved=True)
    refs = ref if base_mode == "lstm" else (ref,)
    plain = fwd(f32(x), f32(hx), *f32(w), **kw)  # the inference path (no saved state) gives the same bits
    for a, b in zip(plain if base_mode == "lstm" else (plain,), got[:-1]):
        np.testing.assert_array_equal(a, b)
    for a, r, b in zip(got[:-1], refs, base[:-1]):
        assert a.dtype == np.float32 and a.shape == (N, H)
        assert_error_within(a, r, b, what=f"{mode} cell forward")
    # backward: float32 vs the float64 NumPy backward
    gh = rng.standard_normal((N, H))
    gc = rng.standard_normal((N, H))
    r64 = fwd(x, hx, *w, **kw, return_saved=True)
    if base_mode == "lstm":
        args64, args32 = (gh, gc, r64[-1]), (f32(gh), f32(gc), got[-1])
        args_b = (f32(gh), f32(gc), base[-1])
    else:
        args64, args32, args_b = (gh, r64[-1]), (f32(gh), got[-1]), (f32(gh), base[-1])
    ref_g = bwd(*args64)
    with fastml.use_backend("numpy"):
        base_g = bwd(*args_b)
    got_g = bwd(*args32)

    def flat(t):
        out = []
        for v in t:
            out += list(v) if isinstance(v, tuple) else [v]
        return out

    for k, (a, r, b) in enumerate(zip(flat(got_g), flat(ref_g), flat(base_g))):
        assert_error_within(a, r, b, factor=3.0, what=f"{mode} cell gradient {k}")


def test_cell_unbatched_and_default_state(rng):
    w = make_weights(rng, "lstm", 4, 6)
    x = rng.standard_normal(4)
    h, c = F.lstm_cell(f32(x), None, *f32(w))
    assert h.shape == (6,) and c.shape == (6,)
    rh, rc = R.lstm_cell(x, None, *w)
    np.testing.assert_allclose(h, rh, rtol=1e-5, atol=1e-6)
    h, c, saved = F.lstm_cell(f32(x), None, *f32(w), return_saved=True)
    gx, (gh, gc), *gw = F.lstm_cell_backward(np.ones(6, np.float32), None, saved)
    assert gx.shape == (4,) and gh.shape == (6,) and gc.shape == (6,)
    wg = make_weights(rng, "gru", 4, 6, bias=False)
    h = F.gru_cell(f32(x), None, *f32(wg))
    np.testing.assert_allclose(h, R.gru_cell(x, None, *wg), rtol=1e-5, atol=1e-6)
    h, saved = F.gru_cell(f32(x), None, *f32(wg), return_saved=True)
    gx, gh, gw_ih, gw_hh, gb_ih, gb_hh = F.gru_cell_backward(None, saved)
    assert gb_ih is None and gb_hh is None and not gx.any()


# ------------------------------------------------------------------------------------------------- torch

def _torch_module(torch, mode, cfg, ws):
    kw = dict(num_layers=cfg.get("L", 1), bidirectional=cfg.get("D", 1) == 2, batch_first=cfg.get("bf", False),
              bias=cfg.get("bias", True))
    if mode == "lstm":
        m = torch.nn.LSTM(cfg["I"], cfg["H"], proj_size=cfg.get("proj", 0), **kw)
    elif mode == "gru":
        m = torch.nn.GRU(cfg["I"], cfg["H"], **kw)
    else:
        m = torch.nn.RNN(cfg["I"], cfg["H"], nonlinearity="relu" if cfg.get("relu") else "tanh", **kw)
    m = m.double()
    with torch.no_grad():
        for p, w in zip(m._flat_weights, ws):
            p.copy_(torch.from_numpy(w))
    return m


@pytest.mark.parametrize("mode,cfg", [c for c in SEQ_CASES if c[1]["T"] * c[1]["N"] < 400], ids=lambda c: "")
def test_sequences_match_torch(rng, mode, cfg):
    """The default backend (float32, compiled when built) against torch in float64 with the same weights,
    forward and autograd gradients (lengths via pack_padded_sequence(enforce_sorted=False))."""
    torch = pytest.importorskip("torch")
    cfg = dict(cfg, lengths=_lengths(rng, cfg))
    x, hx, ws = make_problem(rng, mode, cfg)
    kw = seq_kwargs(cfg)
    m = _torch_module(torch, mode, cfg, ws)
    xt = torch.tensor(x, requires_grad=True)
    ht = [torch.tensor(a, requires_grad=True) for a in (hx if mode == "lstm" else (hx,))]
    bf = cfg.get("bf", False)
    T = cfg["T"]
    if cfg["lengths"] is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(cfg["lengths"]), batch_first=bf,
                                                      enforce_sorted=False)
    else:
        inp = xt
    tout, th = m(inp, tuple(ht) if mode == "lstm" else ht[0])
    if cfg["lengths"] is not None:
        tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tout, batch_first=bf, total_length=T)
    out, h, res = run_forward(mode, f32(x), f32(hx), f32(ws), kw)
    tol = dict(rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(out, tout.detach().numpy(), **tol)
    ths = th if mode == "lstm" else (th,)
    hs = h if mode == "lstm" else (h,)
    for a, b in zip(hs, ths):
        np.testing.assert_allclose(a, b.detach().numpy(), **tol)
    g = rng.standard_normal(out.shape)
    ghs = [rng.standard_normal(a.shape) for a in hs]
    loss = (tout * torch.tensor(g)).sum() + sum((b * torch.tensor(gg)).sum() for b, gg in zip(ths, ghs))
    loss.backward()
    got = run_backward(mode, f32(g), f32(ghs[0]), f32(ghs[1]) if mode == "lstm" else None, res)
    want = [xt.grad] + [a.grad for a in ht] + [p.grad for p in m._flat_weights]
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-3, atol=1e-4, err_msg=f"gradient {k}")


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("N", [1, 33])
def test_cells_match_torch(rng, mode, N):
    torch = pytest.importorskip("torch")
    I, H = 9, 17
    cls = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[mode]
    m = cls(I, H)
    w = [p.detach().numpy() for p in (m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh)]
    x = rng.standard_normal((N, I)).astype(np.float32)
    h = rng.standard_normal((N, H)).astype(np.float32)
    c = rng.standard_normal((N, H)).astype(np.float32)
    xt, htt, ct = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    if mode == "lstm":
        th, tc = m(xt, (htt, ct))
        gh, gc, saved = F.lstm_cell(x, (h, c), *w, return_saved=True)
        np.testing.assert_allclose(gh, th.detach().numpy(), rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(gc, tc.detach().numpy(), rtol=1e-5, atol=2e-6)
        g1, g2 = rng.standard_normal((2, N, H)).astype(np.float32)
        ((th * torch.tensor(g1)).sum() + (tc * torch.tensor(g2)).sum()).backward()
        gx, (dh, dc), dwi, dwh, dbi, dbh = F.lstm_cell_backward(g1, g2, saved)
        np.testing.assert_allclose(dc, ct.grad.numpy(), rtol=1e-4, atol=1e-5)
    else:
        th = m(xt, htt)
        gh, saved = getattr(F, mode + "_cell")(x, h, *w, return_saved=True)
        np.testing.assert_allclose(gh, th.detach().numpy(), rtol=1e-5, atol=2e-6)
        g1 = rng.standard_normal((N, H)).astype(np.float32)
        (th * torch.tensor(g1)).sum().backward()
        gx, dh, dwi, dwh, dbi, dbh = getattr(F, mode + "_cell_backward")(g1, saved)
    for a, p in [(gx, xt), (dh, htt), (dwi, m.weight_ih), (dwh, m.weight_hh), (dbi, m.bias_ih), (dbh, m.bias_hh)]:
        np.testing.assert_allclose(a, p.grad.numpy(), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------- dropout, threads

def test_dropout_reproducible_and_backward_consistent(rng):
    cfg = dict(T=4, N=3, I=3, H=5, L=3, D=2)
    x, hx, ws = make_problem(rng, "lstm", cfg)
    kw = dict(seq_kwargs(cfg), dropout=0.4, training=True, seed=1234)
    o1, _, r1 = F.lstm(f32(x), f32(hx), f32(ws), **kw)
    o2, _, _ = F.lstm(f32(x), f32(hx), f32(ws), **kw)
    np.testing.assert_array_equal(o1, o2)
    o3, _, _ = F.lstm(f32(x), f32(hx), f32(ws), **dict(kw, seed=99))
    assert not np.array_equal(o1, o3)
    ref, _ = R.lstm(x, hx, ws, **kw)  # same counter-based mask in the reference
    np.testing.assert_allclose(o1, ref, rtol=1e-4, atol=1e-5)
    with fastml.use_backend("numpy"):
        ob, _, _ = F.lstm(f32(x), f32(hx), f32(ws), **kw)
    np.testing.assert_allclose(o1, ob, rtol=1e-5, atol=1e-6)
    # the backward reuses the exact mask: float64 backward vs finite differences of the reference
    out, _, res = F.lstm(x, hx, ws, **kw)
    g = rng.standard_normal(out.shape)
    gx = F.lstm_backward(g, None, None, res)[0]
    num = numeric_vjp(lambda v: np.sum(g * R.lstm(v, hx, ws, **kw)[0]), x, np.ones(()))
    np.testing.assert_allclose(gx, num, rtol=1e-6, atol=1e-7)
    # eval mode (training=False) ignores dropout
    oe, _, _ = F.lstm(x, hx, ws, **dict(kw, training=False))
    np.testing.assert_allclose(oe, R.lstm(x, hx, ws, **seq_kwargs(cfg))[0], rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not fastml._backend.HAS_CPU_EXT, reason="compiled module missing")
@pytest.mark.parametrize("mode,cfg", [("lstm", dict(T=9, N=1, I=8, H=100)),
                                      ("lstm", dict(T=9, N=1, I=8, H=130, D=2)),
                                      ("gru", dict(T=1, N=6, I=8, H=20, D=2, L=2)),
                                      ("lstm", dict(T=1, N=9, I=8, H=150)),  # one step: uneven unit blocks
                                      ("rnn", dict(T=1, N=12, I=8, H=33, D=2)),
                                      ("lstm", dict(T=9, N=33, I=8, H=40, D=2, lengths="mixed", proj=7)),
                                      ("gru", dict(T=9, N=3, I=8, H=130, lengths="mixed")),
                                      ("gru", dict(T=9, N=40, I=8, H=33)),
                                      ("rnn", dict(T=9, N=17, I=8, H=65, L=2)),
                                      # hidden-unit split with a per-step barrier (uneven blocks 192 + 178)
                                      ("lstm", dict(T=6, N=19, I=8, H=370, L=2, lengths="mixed")),
                                      # transposed steps: the same blocks and order
                                      ("lstm", dict(T=6, N=32, I=8, H=370, lengths="mixed")),
                                      ("lstm", dict(T=4, N=64, I=8, H=370, D=2))],
                         ids=lambda c: "")
def test_threads_bitwise_identical(rng, threads, mode, cfg):
    cfg = dict(cfg, lengths=_lengths(rng, cfg))
    x, hx, ws = (f32(a) for a in make_problem(rng, mode, cfg))
    kw = seq_kwargs(cfg)
    results = []
    for nt in (1, 2):
        fastml.set_num_threads(nt)
        out, h, res = run_forward(mode, x, hx, ws, kw)
        g = np.ones_like(out)
        results.append([out] + list(h if mode == "lstm" else (h,)) + run_backward(mode, g, None, None, res))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_small_batch_steps_alternate_gate_order_without_changing_bits(rng, threads, mode):
    # batch <= the GEMV limit: every other pass over the weights (one per batch row and step) visits the
    # gates and rows in reverse order (csrc/ops/rnn/rnn.cpp forward_gemv); every call must give the same
    # bits, on 1 and 2 threads. The calls of one round make an odd number of passes, so the next round
    # computes each batch row and step in the other order; H 70 leaves row blocks with a tail.
    G = {"lstm": 4, "gru": 3, "rnn": 1}[mode]
    I, H = 40, 70
    x = rng.standard_normal((2, I)).astype(np.float32)
    h = rng.standard_normal((2, H)).astype(np.float32)
    w_ih = (rng.standard_normal((G * H, I)) * 0.2).astype(np.float32)
    w_hh = (rng.standard_normal((G * H, H)) * 0.2).astype(np.float32)
    b_ih, b_hh = (rng.standard_normal(G * H).astype(np.float32) for _ in range(2))

    def cell(n):
        a, b = x[:n], h[:n]
        if mode == "lstm":
            return list(F.lstm_cell(a, (b, b), w_ih, w_hh, b_ih, b_hh))
        return [getattr(F, mode + "_cell")(a, b, w_ih, w_hh, b_ih, b_hh)]

    seq = getattr(F, mode)
    xs = rng.standard_normal((5, 2, I)).astype(np.float32)
    first = None
    for nt in (1, 2, 2, 1, 1, 2):
        fastml.set_num_threads(nt)
        got = cell(1) + cell(2)
        got.append(seq(xs, None, [w_ih, w_hh, b_ih, b_hh])[0])
        got.append(seq(xs[:4, :1], None, [w_ih, w_hh, b_ih, b_hh])[0])  # 1 + 2 + 10 + 4 passes: odd
        got = [np.asarray(a) for a in got]
        if first is None:
            first = got
        for a, b in zip(first, got):
            np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------------------------------------- bad input

def test_bad_inputs_raise(rng):
    x, hx, ws = (f32(a) for a in make_problem(rng, "lstm", dict(T=4, N=3, I=5, H=6, L=2)))
    kw = dict(num_layers=2)
    with pytest.raises(ValueError, match="weights list of 8"):
        F.lstm(x, hx, ws[:-1], **kw)
    bad = list(ws)
    bad[5] = np.zeros((24, 7), np.float32)
    with pytest.raises(ValueError, match=r"weights\[5\] \(w_hh_l1\)"):
        F.lstm(x, hx, bad, **kw)
    with pytest.raises(ValueError, match="h0"):
        F.lstm(x, (hx[0][:1], hx[1]), ws, **kw)
    with pytest.raises(ValueError, match="c0"):
        F.lstm(x, (hx[0], hx[1][:, :2]), ws, **kw)
    with pytest.raises(ValueError, match="lengths"):
        F.lstm(x, hx, ws, lengths=[5, 1, 1], **kw)
    with pytest.raises(ValueError, match="lengths"):
        F.lstm(x, hx, ws, lengths=[0, 1, 1], **kw)
    with pytest.raises(ValueError, match="lengths"):
        F.lstm(x, hx, ws, lengths=[1, 1], **kw)
    with pytest.raises(ValueError, match="input"):
        F.lstm(x[0, 0], hx, ws, **kw)
    with pytest.raises(TypeError, match="weights"):
        F.lstm(x, hx, [w.astype(np.float64) for w in ws], **kw)
    _, _, res = F.lstm(x, hx, ws, **kw)
    with pytest.raises(ValueError, match="grad_output"):
        F.lstm_backward(np.zeros((4, 3, 5), np.float32), None, None, res)
    with pytest.raises(ValueError, match="grad_h_n"):
        F.lstm_backward(None, np.zeros((2, 3, 5), np.float32), None, res)
    w = make_weights(rng, "gru", 5, 6)
    with pytest.raises(ValueError, match="w_hh"):
        F.gru_cell(x[0], None, f32(w[0]), f32(w[1][:, :5]))
    with pytest.raises(ValueError, match="hx"):
        F.gru_cell(x[0], np.zeros((3, 5), np.float32), *f32(w))
    with pytest.raises(ValueError, match="b_ih"):
        F.gru_cell(x[0], None, f32(w[0]), f32(w[1]), f32(w[2][:4]), f32(w[3]))
    x2 = np.zeros((3, 5), np.float32)  # batched cells take the compiled inference path: same checks
    with pytest.raises(ValueError, match="gru_cell: expected hx of shape"):
        F.gru_cell(x2, np.zeros((3, 5), np.float32), *f32(w))
    with pytest.raises(ValueError, match="lstm_cell: expected w_hh of shape"):
        wl = f32(make_weights(rng, "lstm", 5, 6))
        F.lstm_cell(x2, (np.zeros((3, 6), np.float32),) * 2, wl[0], wl[1][:, :5], wl[2], wl[3])
    with pytest.raises(ValueError, match="lstm_cell: expected c of shape"):
        F.lstm_cell(x2, (np.zeros((3, 6), np.float32), np.zeros((3, 7), np.float32)), *wl)
    with pytest.raises(TypeError, match="lstm_cell: expected float32 for w_ih"):
        F.lstm_cell(x2, (np.zeros((3, 6), np.float32),) * 2, wl[0].astype(np.float64), *wl[1:])
    with pytest.raises(ValueError, match="nonlinearity"):
        F.rnn_cell(x[0], None, *f32(make_weights(rng, "rnn", 5, 6)), nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="saved"):
        F.gru_cell_backward(None, res)


def test_empty_nan_and_strided_inputs(backend, rng):
    ws = f32(make_weights(rng, "lstm", 3, 4))
    for T, N in ((3, 0), (0, 2)):
        o, (h, c), res = F.lstm(np.zeros((T, N, 3), np.float32), None, ws)
        assert o.shape == (T, N, 4) and h.shape == (1, N, 4)
        gx, (gh, gc), gw = F.lstm_backward(np.ones_like(o), None, None, res)
        assert gx.shape == (T, N, 3) and all(not g.any() for g in gw)
    x = rng.standard_normal((3, 2, 3)).astype(np.float32)
    x[1, 0, 0] = np.nan  # NaN propagates along its own sequence only
    o, _, _ = F.lstm(x, None, ws)
    assert not np.isnan(o[0]).any() and np.isnan(o[1:, 0]).all() and not np.isnan(o[:, 1]).any()
    x[1, 0, 0] = 0
    big = rng.standard_normal((2, 3, 6, 3)).astype(np.float32)  # strided views are copied at the boundary
    a = F.lstm(x, None, ws)[0]
    b = F.lstm(x, None, [np.asfortranarray(w) for w in ws])[0]
    np.testing.assert_array_equal(a, b)
    xs = big[:, :, ::3][0]
    np.testing.assert_array_equal(F.lstm(xs, None, ws)[0], F.lstm(np.ascontiguousarray(xs), None, ws)[0])


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_unbatched_sequence_matches_torch(rng, mode):
    torch = pytest.importorskip("torch")
    cfg = dict(T=5, N=1, I=3, H=6, L=2, D=2)
    x, hx, ws = make_problem(rng, mode, cfg)
    x1 = x[:, 0]
    hx1 = tuple(a[:, 0] for a in hx) if mode == "lstm" else hx[:, 0]
    m = _torch_module(torch, mode, cfg, ws)
    tout, th = m(torch.tensor(x1), tuple(torch.tensor(a) for a in hx1) if mode == "lstm" else torch.tensor(hx1))
    out, h, res = run_forward(mode, f32(x1), f32(hx1), f32(ws), seq_kwargs(cfg))
    assert out.shape == (5, 12)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=2e-4, atol=2e-5)
    hs, ths = (h, th) if mode == "lstm" else ((h,), (th,))
    for a, b in zip(hs, ths):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=2e-4, atol=2e-5)
    grads = run_backward(mode, np.ones_like(out), None, None, res)
    assert grads[0].shape == (5, 3) and grads[1].shape == (4, 6)


def test_concurrent_python_threads(rng):
    """The GIL is released and the scratch buffers are per calling thread: concurrent calls from several
    Python threads give the serial results."""
    from concurrent.futures import ThreadPoolExecutor
    problems = []
    for mode, cfg in [("lstm", dict(T=6, N=9, I=5, H=33, D=2)), ("gru", dict(T=6, N=2, I=5, H=70)),
                      ("lstm", dict(T=5, N=7, I=4, H=20, proj=6))] * 2:
        x, hx, ws = (f32(a) for a in make_problem(rng, mode, cfg))
        problems.append((mode, x, hx, ws, seq_kwargs(cfg)))

    def work(p):
        mode, x, hx, ws, kw = p
        out, h, res = run_forward(mode, x, hx, ws, kw)
        return [out] + run_backward(mode, np.ones_like(out), None, None, res)

    serial = [work(p) for p in problems]
    with ThreadPoolExecutor(4) as ex:
        threaded = list(ex.map(work, problems))
    for a, b in zip(serial, threaded):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
