"""fastml.nn.RNN / GRU / LSTM: torch-compatible parameter names, init and state dicts; forward and parameter
gradients against torch modules loaded with the same state dict; lengths; dropout modes."""
import numpy as np
import pytest

import fastml
from fastml import _backend as B
from fastml import nn

_NEEDS_CPU = pytest.mark.skipif(not B.HAS_CPU_EXT, reason="compiled module missing: packs are its own")


def test_parameter_names_and_init():
    m = nn.LSTM(5, 8, num_layers=2, bidirectional=True, proj_size=3, seed=0)
    names = [n for n, _ in m.named_parameters()]
    assert names[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0"]
    assert names[5] == "weight_ih_l0_reverse" and names[-1] == "weight_hr_l1_reverse"
    assert m.weight_ih_l1.shape == (32, 6) and m.weight_hh_l0.shape == (32, 3) and m.weight_hr_l0.shape == (3, 8)
    k = 1 / np.sqrt(8)
    allw = np.concatenate([p.ravel() for p in m.parameters()])
    assert allw.dtype == np.float32 and np.all(np.abs(allw) <= k) and allw.std() > k / 3
    a = nn.GRU(4, 6, seed=3).state_dict()
    b = nn.GRU(4, 6, seed=3).state_dict()
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert "bias_ih_l0" not in nn.RNN(4, 6, bias=False).state_dict()
    assert repr(nn.RNN(4, 6, nonlinearity="relu", batch_first=True)) == "RNN(4, 6, batch_first=True)"


@pytest.mark.parametrize("kind,kw", [
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(proj_size=4, batch_first=True)),
    ("GRU", dict(num_layers=2, bias=False)),
    ("RNN", dict(nonlinearity="relu", bidirectional=True)),
], ids=["lstm-2l-bi", "lstm-proj-bf", "gru-2l-nobias", "rnn-relu-bi"])
@pytest.mark.parametrize("use_lengths", [False, True])
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_matches_torch_module(rng, kind, kw, use_lengths):
    torch = pytest.importorskip("torch")
    I, H, T, N = 6, 9, 7, 5
    tm = getattr(torch.nn, kind)(I, H, **kw)
    fm = getattr(nn, kind)(I, H, **kw)
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    bf = kw.get("batch_first", False)
    x = rng.standard_normal((N, T, I) if bf else (T, N, I)).astype(np.float32)
    lengths = np.array([7, 1, 4, 7, 2]) if use_lengths else None
    xt = torch.tensor(x, requires_grad=True)
    inp = (torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=bf, enforce_sorted=False)
           if use_lengths else xt)
    tout, th = tm(inp)
    if use_lengths:
        tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tout, batch_first=bf, total_length=T)
    out, h = fm(x, lengths=lengths)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-4, atol=2e-5)
    ths = th if kind == "LSTM" else (th,)
    hs = h if kind == "LSTM" else (h,)
    for a, b in zip(hs, ths):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-4, atol=2e-5)
    g = rng.standard_normal(out.shape).astype(np.float32)
    gh = rng.standard_normal(hs[0].shape).astype(np.float32)
    ((tout * torch.tensor(g)).sum() + (ths[0] * torch.tensor(gh)).sum()).backward()
    gx, _ = fm.backward(g, gh)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-3, atol=1e-4)
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(fm.grads[name], p.grad.numpy(), rtol=1e-3, atol=1e-4, err_msg=name)


def test_float64_module_and_accumulate(rng):
    m = nn.GRU(3, 4, dtype=np.float64, seed=1)
    x = rng.standard_normal((5, 2, 3))
    out, h = m(x)
    assert out.dtype == np.float64
    m.backward(np.ones_like(out))
    g1 = m.grads["weight_hh_l0"].copy()
    m(x)
    m.backward(np.ones_like(out), accumulate=True)
    np.testing.assert_allclose(m.grads["weight_hh_l0"], 2 * g1, rtol=1e-12)


def test_dropout_train_eval(rng):
    m = nn.LSTM(4, 5, num_layers=3, dropout=0.5, seed=7)
    x = rng.standard_normal((6, 2, 4)).astype(np.float32)
    m.eval()
    a, _ = m(x)
    b, _ = m(x)
    np.testing.assert_array_equal(a, b)
    m.train()
    c, _ = m(x)
    d, _ = m(x)
    assert not np.array_equal(c, d)  # a fresh seed per training call
    gx, _ = m.backward(np.ones_like(d))
    assert np.isfinite(gx).all()


def test_state_dict_errors_and_in_place_updates(rng):
    m = nn.LSTM(3, 4, seed=0)
    sd = m.state_dict()
    with pytest.raises(ValueError, match="missing keys"):
        m.load_state_dict({k: v for k, v in sd.items() if k != "bias_hh_l0"})
    with pytest.raises(ValueError, match="weight_hh_l0"):
        m.load_state_dict(dict(sd, weight_hh_l0=np.zeros((16, 5))))
    x = rng.standard_normal((2, 1, 3)).astype(np.float32)
    y0, _ = m(x)
    m.weight_ih_l0[...] = 0  # parameters are read at every call: in-place updates take effect
    m.bias_ih_l0[...] = 0
    y1, _ = m(x)
    ref = fastml.reference.lstm(x, None, m.parameters())[0]
    np.testing.assert_allclose(y1, ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(y0, y1)
    with pytest.raises(RuntimeError, match="forward first"):
        nn.GRU(2, 2).backward(np.zeros((1, 1, 2), np.float32))
    # inference without a reserve: same outputs, and a backward after it has nothing to work from
    y2, (h2, c2) = m(x, keep_reserve=False)
    y3, (h3, c3) = m(x)
    for a, b in ((y2, y3), (h2, h3), (c2, c3)):
        np.testing.assert_array_equal(a, b)
    m(x, keep_reserve=False)
    with pytest.raises(RuntimeError, match="forward first"):
        m.backward(np.zeros_like(y3))


# ------------------------------------------------------------------------------- packed weights (eval mode)

_PACK_CASES = [("LSTM", dict(num_layers=2, bidirectional=True)), ("LSTM", dict(proj_size=3)),
               ("GRU", dict(num_layers=2)), ("RNN", dict(nonlinearity="relu", bidirectional=True))]


def _run(m, x):
    out, h = m(x)
    return [out] + (list(h) if isinstance(h, tuple) else [h])


@pytest.mark.parametrize("kind,kw", _PACK_CASES, ids=["lstm-2l-bi", "lstm-proj", "gru-2l", "rnn-relu-bi"])
@pytest.mark.parametrize("T,N", [(6, 3), (6, 9), (1, 9), (3, 70)])  # GEMV (packs unused), row blocks, one step
def test_eval_packed_forward_is_bitwise_unpacked(rng, kind, kw, T, N):
    m = getattr(nn, kind)(5, 8, seed=1, **kw)
    x = rng.standard_normal((T, N, 5)).astype(np.float32)
    ref = _run(m.eval().unpack(), x)
    assert not m.packed
    m.pack()
    assert m.packed and m.weight_hh_l0.flags.writeable is False
    for _ in range(3):  # repeated inference reuses the same packs
        for a, b in zip(_run(m, x), ref):
            assert np.array_equal(a, b)
    m.train()
    assert not m.packed and m.weight_hh_l0.flags.writeable
    for a, b in zip(_run(m, x), ref):  # dropout 0: training mode computes the same
        assert np.array_equal(a, b)


def test_eval_packs_and_inplace_edit_raises():
    m = nn.LSTM(4, 6, proj_size=2, seed=0).eval()
    assert m.packed
    with pytest.raises(ValueError, match="read-only"):
        m.weight_hh_l0[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        m.weight_hr_l0 *= 2
    m.weight_ih_l0[0, 0] = 0.5  # not packed: stays writeable, read at every call
    m.train()
    m.weight_hh_l0[0, 0] = 1.0
    assert m.weight_hh_l0[0, 0] == 1.0
    assert nn.LSTM(4, 6, dtype=np.float64, seed=0).eval().packed is False  # float64: NumPy backend, no packs


def test_load_state_dict_repacks(rng):
    x = rng.standard_normal((5, 7, 4)).astype(np.float32)
    m = nn.GRU(4, 6, num_layers=2, seed=0).eval()
    before = m(x)[0]
    other = nn.GRU(4, 6, num_layers=2, seed=5)
    m.load_state_dict(other.state_dict())
    assert m.packed and not m.weight_hh_l1.flags.writeable
    after = m(x)[0]
    assert not np.array_equal(after, before)
    assert np.array_equal(after, other(x)[0])


@_NEEDS_CPU
def test_isa_switch_repacks(rng):
    with fastml.use_backend("cpu"):  # packs are the compiled backend's (whatever FASTML_BACKEND says)
        _isa_switch_repacks(rng)


def _isa_switch_repacks(rng):
    isas = fastml.available_isas()
    x = rng.standard_normal((5, 8, 4)).astype(np.float32)
    m = nn.LSTM(4, 6, bidirectional=True, seed=2).eval()
    for isa in isas:
        with fastml.use_isa(isa):
            got = _run(m, x)
            assert m._pack_isa == isa
            ref = _run(nn.LSTM(4, 6, bidirectional=True, seed=2), x)
            for a, b in zip(got, ref):
                assert np.array_equal(a, b)
    if len(isas) < 2:
        pytest.skip("one ISA only: stale-pack error not reachable")
    F = fastml.functional
    with fastml.use_isa(isas[0]):
        packs = F.pack_recurrent_weights(m._flat_weights, bidirectional=True)
    with fastml.use_isa(isas[-1]):
        with pytest.raises(ValueError, match="pack the weights again"):
            F.lstm(x, None, m._flat_weights, bidirectional=True, packed=packs)


@_NEEDS_CPU
def test_packed_argument_errors(rng):
    F = fastml.functional
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    w = nn.LSTM(3, 5, seed=0)._flat_weights
    with fastml.use_backend("cpu"):
        packs = F.pack_recurrent_weights(w)
    with fastml.use_backend("numpy"), pytest.raises(ValueError, match="packed weights need float32 input on the "
                                                                       "compiled CPU backend, got float32 \\(numpy\\)"):
        F.lstm(x, None, w, packed=packs)
    with fastml.use_backend("cpu"):  # whatever FASTML_BACKEND says
        _packed_argument_errors(F, x, w, packs)


def _packed_argument_errors(F, x, w, packs):
    out = F.lstm(x, None, w, packed=packs)[0]
    assert np.array_equal(out, F.lstm(x, None, w)[0])
    with pytest.raises(ValueError, match="expected packed of 1"):
        F.lstm(x, None, w, packed=packs * 2)
    wrong = F.pack_recurrent_weights(nn.LSTM(3, 7, seed=0)._flat_weights)
    with pytest.raises(ValueError, match="packed_hh"):
        F.lstm(x, None, w, packed=wrong)
    with pytest.raises(TypeError, match="PackedB"):
        F.lstm(x, None, w, packed=[(np.zeros((5, 20), np.float32), None)])
    with pytest.raises(ValueError, match="float32"):
        F.lstm(x.astype(np.float64), None, [a.astype(np.float64) for a in w], packed=packs)
    with pytest.raises(ValueError, match="weights list"):
        F.pack_recurrent_weights(w[:3])


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("T", [1, 2])
def test_eval_packed_bitwise_large_k(rng, backend, kind, T):
    # K = H = 300 spans several GEMM k-blocks: the packed paths must still give the unpacked bits
    m = getattr(nn, kind)(260, 300, seed=4)
    x = rng.standard_normal((T, 9, 260)).astype(np.float32)
    ref = _run(m, x)
    m.eval()
    for a, b in zip(_run(m, x), ref):
        assert np.array_equal(a, b)


def test_packed_module_copies_and_pickles(rng):
    import copy
    import pickle
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    m = nn.LSTM(3, 5, num_layers=2, seed=0).eval()
    ref = m(x)[0]
    for c in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert c.packed and not c.weight_hh_l1.flags.writeable
        assert np.array_equal(c(x)[0], ref)
        c.train()
        c.weight_hh_l1[0, 0] = 3.0  # the copy's arrays are its own
    assert m.weight_hh_l1[0, 0] != 3.0 and m.packed


@pytest.mark.parametrize("cls", ["RNN", "GRU", "LSTM"])
def test_layer_sizes_must_be_ints(cls):
    # torch refuses non-int sizes; 3.5 was truncated to 3 here
    for kw in (dict(input_size=3.5, hidden_size=4), dict(input_size=3, hidden_size=4.0),
               dict(input_size=3, hidden_size=4, num_layers=True)):
        with pytest.raises(TypeError, match="expected an int"):
            getattr(nn, cls)(**kw)
    assert getattr(nn, cls)(np.int64(3), 4).input_size == 3
