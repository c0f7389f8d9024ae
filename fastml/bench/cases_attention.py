"""Attention benchmark cases (group ``attention``), float32, the same random inputs for every row.

* ``scaled_dot_product_attention[B4H8L{L}E64(c)]``: L = S in {512, 2048, 4096}, causal or not. fastml
  ``F.scaled_dot_product_attention(out=)`` vs torch ``F.scaled_dot_product_attention`` (its CPU flash
  kernel; allocating, torch has no out=). GFLOP/s counts 4 B H L S E (QK^T and PV), half of it for causal
  (only the computed triangle), and % of the measured FMA peak.
* ``scaled_dot_product_attention_backward[...]``: forward + backward. fastml ``_forward`` + ``_backward``;
  torch: forward and ``backward(grad)`` through autograd on leaf tensors with requires_grad (grads reset
  to None each call, so nothing accumulates). Flops: 4 + 10 B H L S E (forward; backward recomputes S
  and runs dP, dV, dK, dQ), halved for causal.
* ``scaled_dot_product_attention[decode B1H8L1S{S}]``: one query against S = 4096 / 32768 keys
  (flash-decoding split-K path); memory-bound, so it also reports GB/s over K and V.
* ``scaled_dot_product_attention[decode GQA B1Hq32Hkv8L1S4096E128]``: the same with 32 query heads on 8 kv
  heads (``enable_gqa=True`` on both sides), E = 128; no bar.
* ``scaled_dot_product_attention[KV-cache chunk B1H8L{L}S4096 bottom-right]``: L = 4 (speculative decoding)
  and 64 (chunked prefill) new queries at the end of a 4096-key cache, ``causal_alignment="bottom_right"``
  vs torch with ``attn_mask=causal_lower_right(L, S)``; flops count the allowed entries only. No bar.
* ``multi_head_attention_forward[B8L256d512h8]``: fastml functional MHA vs ``torch.nn.MultiheadAttention``
  (batch_first, need_weights=False, no_grad), same weights.
NumPy rows (the blocked NumPy backend) only at L = 512.

Bars: forward >= 1.5x torch and >= 50% of FMA peak; forward + backward >= 1.2x torch; decode >= 2x torch.
"""
from __future__ import annotations

import numpy as np

from .cases import Prepared, _F, torch_or_none

F32 = np.float32
B_, H_, E_ = 4, 8, 64


def _flops(L, S, causal, mult=4):
    f = mult * B_ * H_ * L * S * E_
    return f // 2 if causal else f


def _build_sdpa(L, causal, backward):
    def build():
        torch = torch_or_none()
        F = _F()
        rng = np.random.default_rng(777 + L)
        q, k, v = (rng.standard_normal((B_, H_, L, E_), dtype=F32) for _ in range(3))
        g = rng.standard_normal((B_, H_, L, E_), dtype=F32)
        impls, notes = {}, []
        if not backward:
            o = np.empty_like(q)
            impls["fastml"] = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, out=o)
            if L <= 512:
                def np_run():
                    with _numpy_backend():
                        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                impls["numpy"] = np_run
            if torch is not None:
                tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
                impls["torch"] = lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv,
                                                                                          is_causal=causal)
            flops = _flops(L, L, causal)
        else:
            def fm():
                out, lse = F.scaled_dot_product_attention_forward(q, k, v, is_causal=causal)
                return F.scaled_dot_product_attention_backward(g, q, k, v, out, lse, is_causal=causal)
            impls["fastml"] = fm
            if torch is not None:
                tq, tk, tv = (torch.from_numpy(a.copy()).requires_grad_() for a in (q, k, v))
                tg = torch.from_numpy(g)

                def th():
                    for t in (tq, tk, tv):
                        t.grad = None
                    out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
                    out.backward(tg)
                impls["torch"] = th
            notes.append("forward + backward; torch through autograd (grads reset each call)")
            flops = _flops(L, L, causal, 14)
        return Prepared(impls, flops=flops, notes=notes)
    return build


def _build_decode(S, Hq=H_, Hkv=H_, E=E_):
    def build():
        torch = torch_or_none()
        F = _F()
        rng = np.random.default_rng(778 + S + Hq + E)
        q = rng.standard_normal((1, Hq, 1, E), dtype=F32)
        k, v = (rng.standard_normal((1, Hkv, S, E), dtype=F32) for _ in range(2))
        o = np.empty_like(q)
        gqa = Hq != Hkv
        impls = {"fastml": lambda: F.scaled_dot_product_attention(q, k, v, out=o, enable_gqa=gqa)}
        if torch is not None:
            tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
            kw = {"enable_gqa": True} if gqa else {}
            impls["torch"] = lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, **kw)
        notes = ["decode: one query row per head; bytes = K + V read once"]
        if gqa:
            notes.append(f"GQA: {Hq // Hkv} query heads per kv head")
        return Prepared(impls, bytes=2 * 4 * Hkv * S * E, flops=4 * Hq * S * E, notes=notes)
    return build


def _build_cache_chunk(L, S):
    def build():
        torch = torch_or_none()
        F = _F()
        rng = np.random.default_rng(780 + L)
        q = rng.standard_normal((1, H_, L, E_), dtype=F32)
        k, v = (rng.standard_normal((1, H_, S, E_), dtype=F32) for _ in range(2))
        o = np.empty_like(q)
        impls = {"fastml": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, out=o,
                                                                  causal_alignment="bottom_right")}
        if torch is not None:
            from torch.nn.attention.bias import causal_lower_right
            tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
            cb = causal_lower_right(L, S)
            impls["torch"] = lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=cb)
        allowed = L * (S - L) + L * (L + 1) // 2  # query i sees keys j <= i + S - L
        return Prepared(impls, bytes=2 * 4 * H_ * S * E_, flops=4 * H_ * allowed * E_,
                        notes=["bottom-right causal (torch: CausalBias LOWER_RIGHT); bytes = K + V read once"])
    return build


def _build_mha():
    def build():
        torch = torch_or_none()
        F = _F()
        N, L, E, h = 8, 256, 512, 8
        rng = np.random.default_rng(779)
        x = rng.standard_normal((N, L, E), dtype=F32)
        w = (rng.standard_normal((3 * E, E)) / np.sqrt(E)).astype(F32)
        b = np.zeros(3 * E, F32)
        wo = (rng.standard_normal((E, E)) / np.sqrt(E)).astype(F32)
        bo = np.zeros(E, F32)
        impls = {"fastml": lambda: F.multi_head_attention_forward(x, x, x, h, w, b, wo, bo, batch_first=True)}
        if torch is not None:
            m = torch.nn.MultiheadAttention(E, h, batch_first=True)
            m.load_state_dict({"in_proj_weight": torch.from_numpy(w), "in_proj_bias": torch.from_numpy(b),
                               "out_proj.weight": torch.from_numpy(wo), "out_proj.bias": torch.from_numpy(bo)})
            m.eval()
            xt = torch.from_numpy(x)

            def th():
                with torch.no_grad():
                    return m(xt, xt, xt, need_weights=False)
            impls["torch"] = th
        flops = 2 * N * L * E * 3 * E + 4 * N * L * L * E + 2 * N * L * E * E
        return Prepared(impls, flops=flops, notes=["projections + attention + output projection"])
    return build


class _numpy_backend:
    def __enter__(self):
        import fastml
        self._cm = fastml.use_backend("numpy")
        self._cm.__enter__()

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def register_attention_cases(register, Bar, Case):
    fwd_bars = (Bar("pct_fma", 50.0, ">= 50% of FMA peak"), Bar("vs_torch", 1.5, ">= 1.5x torch"))
    bwd_bars = (Bar("vs_torch", 1.2, ">= 1.2x torch (forward + backward)"),)
    op = "scaled_dot_product_attention"
    needs = (f"fastml.functional:{op}",)
    for L in (512, 2048, 4096):
        for causal in (False, True):
            shape = f"B4H8L{L}E64" + ("c" if causal else "")
            register(Case(op, "attention", shape, L == 512, needs, _build_sdpa(L, causal, False), fwd_bars))
            register(Case(op + "_backward", "attention", shape, L == 512, needs, _build_sdpa(L, causal, True),
                          bwd_bars))
    for S in (4096, 32768):
        register(Case(op, "attention", f"decode B1H8L1S{S}", S == 4096, needs, _build_decode(S),
                      (Bar("vs_torch", 2.0, ">= 2x torch"),)))
    # GQA decode (no bar in the issue; a Llama-style layer: 32 query heads on 8 kv heads, E 128)
    register(Case(op, "attention", "decode GQA B1Hq32Hkv8L1S4096E128", False, needs,
                  _build_decode(4096, 32, 8, 128)))
    for L in (4, 64):  # new queries against a KV cache (no bar in the issue)
        register(Case(op, "attention", f"KV-cache chunk B1H8L{L}S4096 bottom-right", False, needs,
                      _build_cache_chunk(L, 4096)))
    register(Case("multi_head_attention_forward", "attention", "B8L256d512h8", True,
                  ("fastml.functional:multi_head_attention_forward",), _build_mha()))
