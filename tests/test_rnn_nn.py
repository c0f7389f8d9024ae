"""fastml.nn.RNN / GRU / LSTM: torch-compatible parameter names, init and state dicts; forward and parameter
gradients against torch modules loaded with the same state dict; lengths; dropout modes."""
import numpy as np
import pytest

import fastml
from fastml import nn


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
