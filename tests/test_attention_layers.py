"""multi_head_attention_forward/_backward and nn.MultiheadAttention vs torch.nn.MultiheadAttention and the
float64 reference; additive (Bahdanau) attention vs the reference and finite differences; sinusoidal
positional encodings vs the formula."""
import warnings

import numpy as np
import pytest

import fastml.functional as F
from fastml.nn import MultiheadAttention
from fastml.reference import attention as R
from _tolerance import numeric_vjp

pytestmark = pytest.mark.filterwarnings("error")


def _mha_params(rng, E, bias=True, dtype=np.float32):
    w = (rng.standard_normal((3 * E, E)) / np.sqrt(E)).astype(dtype)
    wo = (rng.standard_normal((E, E)) / np.sqrt(E)).astype(dtype)
    b = rng.standard_normal(3 * E).astype(dtype) * 0.1 if bias else None
    bo = rng.standard_normal(E).astype(dtype) * 0.1 if bias else None
    return w, b, wo, bo


MHA_CASES = [
    dict(batch_first=False),
    dict(batch_first=True, kpm=True),
    dict(batch_first=False, attn="bool", kpm=True),
    dict(batch_first=True, attn="float3d", avg=False),
    dict(batch_first=False, causal=True, bias=False),
    dict(batch_first=True, self_attention=True, kpm=True),   # query is key is value: fused q/k/v projection
    dict(batch_first=False, self_attention=True),            # the same on (L, N, E) inputs, projected in place
]


@pytest.mark.parametrize("case", MHA_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_mha_vs_torch(backend, rng, case):
    torch = pytest.importorskip("torch")
    N, L, S, E, h = 3, 7, 9, 16, 4
    bf = case["batch_first"]
    bias = case.get("bias", True)
    shape_q, shape_kv = ((N, L, E), (N, S, E)) if bf else ((L, N, E), (S, N, E))
    q = rng.standard_normal(shape_q).astype(np.float32)
    k = rng.standard_normal(shape_kv).astype(np.float32)
    v = rng.standard_normal(shape_kv).astype(np.float32)
    if case.get("self_attention"):
        S = L
        k = v = q
    if case.get("causal"):
        k, v = k[:L] if not bf else k[:, :L], v[:L] if not bf else v[:, :L]
        S = L
    kpm = attn = None
    if case.get("kpm"):
        kpm = np.zeros((N, S), bool)
        kpm[0, -3:] = True
    if case.get("attn") == "bool":
        attn = rng.random((L, S)) > 0.8
        attn[:, 0] = False
    elif case.get("attn") == "float3d":
        attn = rng.standard_normal((N * h, L, S)).astype(np.float32)
    avg = case.get("avg", True)
    causal = case.get("causal", False)
    w, b, wo, bo = _mha_params(rng, E, bias)

    m = torch.nn.MultiheadAttention(E, h, bias=bias, batch_first=bf, dtype=torch.float64)
    sd = {"in_proj_weight": w, "out_proj.weight": wo}
    if bias:
        sd.update({"in_proj_bias": b, "out_proj.bias": bo})
    m.load_state_dict({kk: torch.from_numpy(vv.astype(np.float64)) for kk, vv in sd.items()})
    tq, tk, tv = (torch.from_numpy(a.astype(np.float64)).requires_grad_() for a in (q, k, v))
    if case.get("self_attention"):
        tk = tv = tq
    tattn = None if attn is None else torch.from_numpy(attn if attn.dtype == bool else attn.astype(np.float64))
    if causal:
        tattn = torch.nn.Transformer.generate_square_subsequent_mask(L, dtype=torch.float64)
    tkpm = None if kpm is None else torch.from_numpy(kpm)
    to, tw = m(tq, tk, tv, key_padding_mask=tkpm, need_weights=True, attn_mask=tattn,
               average_attn_weights=avg, is_causal=causal)

    layer = MultiheadAttention(E, h, bias=bias, batch_first=bf)
    layer.load_state_dict(sd)
    out, wts = layer(q, k, v, key_padding_mask=kpm, attn_mask=attn, need_weights=True, average_attn_weights=avg,
                     is_causal=causal)
    np.testing.assert_allclose(out, to.detach().numpy(), rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(wts, tw.detach().numpy(), rtol=1e-4, atol=2e-6)
    ro, rw = R.multi_head_attention_forward(q, k, v, h, w, b, wo, bo, kpm, attn, True, causal, bf, avg)
    np.testing.assert_allclose(out, ro, rtol=1e-4, atol=2e-5)

    g = rng.standard_normal(out.shape).astype(np.float32)
    to.backward(torch.from_numpy(g.astype(np.float64)))
    gq, gk, gv = layer.backward(g)
    if case.get("self_attention"):
        np.testing.assert_allclose(gq + gk + gv, tq.grad.numpy(), rtol=1e-4, atol=5e-5)
    else:
        for a, t in ((gq, tq), (gk, tk), (gv, tv)):
            np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-4, atol=5e-5)
    for name, p in m.named_parameters():
        np.testing.assert_allclose(layer.grads[name], p.grad.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)


def test_mha_functional_backward_finite_differences(rng):
    N, L, S, E, h = 2, 3, 4, 4, 2
    q = rng.standard_normal((L, N, E))
    k = rng.standard_normal((S, N, E))
    v = rng.standard_normal((S, N, E))
    w, b, wo, bo = _mha_params(rng, E, dtype=np.float64)
    kpm = np.zeros((N, S), bool)
    kpm[1, 0] = True
    g = rng.standard_normal((L, N, E))
    f = lambda **kw: F.multi_head_attention_forward(**{**dict(query=q, key=k, value=v, num_heads=h,  # noqa: E731
                                                               in_proj_weight=w, in_proj_bias=b, out_proj_weight=wo,
                                                               out_proj_bias=bo, key_padding_mask=kpm), **kw})[0]
    _, _, saved = F.multi_head_attention_forward(q, k, v, h, w, b, wo, bo, kpm, return_saved=True)
    gq, gk, gv, gw, gb, gwo, gbo = F.multi_head_attention_backward(g, saved)
    for got, name, x in ((gq, "query", q), (gk, "key", k), (gv, "value", v), (gw, "in_proj_weight", w),
                         (gb, "in_proj_bias", b), (gwo, "out_proj_weight", wo), (gbo, "out_proj_bias", bo)):
        num = numeric_vjp(lambda xx: f(**{name: xx}), x, g)
        np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-8, err_msg=name)


def test_mha_layer_bad_sizes():
    # zero sizes were a ZeroDivisionError, floats slipped through
    with pytest.raises(ValueError, match="num_heads > 0"):
        MultiheadAttention(16, 0)
    with pytest.raises(ValueError, match="embed_dim > 0"):
        MultiheadAttention(0, 1)
    with pytest.raises(TypeError, match="int for embed_dim"):
        MultiheadAttention(16.0, 2)


def test_mha_bad_inputs(rng):
    q = rng.standard_normal((5, 2, 8)).astype(np.float32)
    w, b, wo, bo = _mha_params(rng, 8)
    with pytest.raises(ValueError, match="divisible"):
        F.multi_head_attention_forward(q, q, q, 3, w, b, wo, bo)
    with pytest.raises(ValueError, match="key_padding_mask"):
        F.multi_head_attention_forward(q, q, q, 2, w, b, wo, bo, key_padding_mask=np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="in_proj_weight"):
        F.multi_head_attention_forward(q, q, q, 2, w[:8], b, wo, bo)
    with pytest.raises(ValueError, match="divisible"):
        MultiheadAttention(8, 3)
    with pytest.raises(ValueError, match="missing"):
        MultiheadAttention(8, 2).load_state_dict({"in_proj_weight": w})
    layer = MultiheadAttention(8, 2)
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    good = {"in_proj_weight": w, "in_proj_bias": b, "out_proj.weight": wo, "out_proj.bias": bo}
    for bad, msg in (({**good, "out_proj.weight": wo[:4]}, "out_proj.weight of shape"),
                     ({**good, "out_proj.bias": bo[:3]}, "out_proj.bias of shape"),
                     ({k: v for k, v in good.items() if k != "out_proj.bias"}, "missing"),
                     ({**good, "extra": bo}, "unexpected")):
        with pytest.raises(ValueError, match=msg):
            layer.load_state_dict(bad)
        for k, v in layer.state_dict().items():  # nothing assigned on error
            assert np.array_equal(v, before[k]), k


def test_mha_torch_causal_bias(backend, rng):
    """A torch CausalBias as attn_mask: the same output and weights as the bool mask it stands for (torch
    MHA's convention: True = not allowed), top-left and bottom-right, L < S and L > S."""
    pytest.importorskip("torch")
    bias_mod = pytest.importorskip("torch.nn.attention.bias")
    E, h = 8, 2
    w, b, wo, bo = _mha_params(rng, E)
    for L, S in ((4, 9), (9, 4)):
        q = rng.standard_normal((L, 2, E)).astype(np.float32)
        kv = rng.standard_normal((S, 2, E)).astype(np.float32)
        for make, diag in ((bias_mod.causal_upper_left, 0), (bias_mod.causal_lower_right, S - L)):
            with warnings.catch_warnings():  # torch warns of NaN rows for lower-right with L > S
                warnings.simplefilter("ignore")
                cb = make(L, S)
            got = F.multi_head_attention_forward(q, kv, kv, h, w, b, wo, bo, attn_mask=cb, need_weights=True)
            want = F.multi_head_attention_forward(q, kv, kv, h, w, b, wo, bo, attn_mask=~np.tri(L, S, diag, dtype=bool),
                                                  need_weights=True)
            for x, y in zip(got, want):
                np.testing.assert_array_equal(x, y)
        with pytest.raises(ValueError, match=r"CausalBias for \(L, S\)"):
            F.multi_head_attention_forward(q, kv, kv, h, w, b, wo, bo, attn_mask=bias_mod.causal_upper_left(L, L))


def _additive_inputs(rng, N=3, S=6, Dq=5, Dk=4, Dv=3, A=7, dtype=np.float64):
    return (rng.standard_normal((N, Dq)).astype(dtype), rng.standard_normal((N, S, Dk)).astype(dtype),
            rng.standard_normal((N, S, Dv)).astype(dtype), rng.standard_normal((A, Dq)).astype(dtype) * 0.5,
            rng.standard_normal((A, Dk)).astype(dtype) * 0.5, rng.standard_normal(A).astype(dtype))


def test_additive_attention_forward(backend, rng):
    args = _additive_inputs(rng, dtype=np.float32)
    mask = rng.random((3, 6)) > 0.3
    mask[:, 0] = True
    mask[2] = False
    ctx, w = F.additive_attention(*args, mask=mask)
    rctx, rw = R.additive_attention(*args, mask=mask)
    assert ctx.dtype == np.float32 and ctx.shape == (3, 3) and w.shape == (3, 6)
    np.testing.assert_allclose(ctx, rctx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w, rw, rtol=1e-5, atol=1e-7)
    assert np.all(ctx[2] == 0) and np.all(w[2] == 0) and np.all(w[~mask] == 0)
    # by hand for one row
    q, K, V, wq, wk, v = (a.astype(np.float64) for a in args)
    s = np.array([v @ np.tanh(wq @ q[0] + wk @ K[0, j]) for j in range(6)])
    s[~mask[0]] = -np.inf
    p = np.exp(s - s.max())
    p /= p.sum()
    np.testing.assert_allclose(ctx[0], p @ V[0], rtol=1e-5, atol=1e-6)


def test_additive_attention_backward_finite_differences(rng):
    args = _additive_inputs(rng)
    mask = rng.random((3, 6)) > 0.3
    mask[:, 1] = True
    g = rng.standard_normal((3, 3))
    gw = rng.standard_normal((3, 6))
    grads = F.additive_attention_backward(g, *args, mask=mask, grad_weights=gw)
    for i, got in enumerate(grads):
        def f(x, i=i):
            a = list(args)
            a[i] = x
            c, w = R.additive_attention(*a, mask=mask)
            return np.concatenate([c.ravel(), w.ravel()])
        num = numeric_vjp(f, args[i], np.concatenate([g.ravel(), gw.ravel()]))
        np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-8, err_msg=f"argument {i}")
    for bad in (gw[0], gw[:, :5], gw[:, :, None]):  # (S,) would broadcast silently
        with pytest.raises(ValueError, match="grad_weights of shape"):
            F.additive_attention_backward(g, *args, mask=mask, grad_weights=bad)


@pytest.mark.parametrize("d_model", [1, 6, 7, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sinusoidal_positional_encoding(d_model, dtype):
    pe = F.sinusoidal_positional_encoding(50, d_model, dtype=dtype)
    assert pe.shape == (50, d_model) and pe.dtype == dtype
    for pos in (0, 1, 17, 49):
        for c in range(d_model):
            ang = pos / 10000.0 ** (2 * (c // 2) / d_model)
            want = np.sin(ang) if c % 2 == 0 else np.cos(ang)
            assert abs(float(pe[pos, c]) - want) <= (1e-14 if dtype == np.float64 else 6e-8)
    np.testing.assert_allclose(pe, R.sinusoidal_positional_encoding(50, d_model), rtol=1e-13, atol=1e-7)
    assert F.sinusoidal_positional_encoding(3, 4, base=100.0)[1, 2] == np.float32(np.sin(1 / 100.0 ** 0.5))
