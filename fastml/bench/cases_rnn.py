"""Recurrent benchmark cases (group ``rnn``): fastml.functional cells and sequences vs torch.nn modules
(oneDNN/MKL) with the same float32 weights, GFLOP/s and % of the measured FMA peak.

* ``lstm_cell`` / ``gru_cell`` ``[bB 256->512]``: one step per call (latency), batch 1 and 64, vs
  torch.nn.LSTMCell / GRUCell under torch.no_grad(). FLOPs 2 N G H (I + H). At batch 1 the step reads
  all weights once (6.3 MB LSTM, 4.7 MB GRU: more than the L2 of a 2-core VM), so it is bound by the
  L3/DRAM read bandwidth; ``[b1 128->256]`` (1.5 MB) shows the L2-resident regime.
* ``lstm`` / ``gru`` ``[T50 N32 256->512 1L|2Lbi]``: inference forward of the whole sequence (hx None,
  ``keep_reserve=False``: nothing kept for a backward), vs the torch module under no_grad. FLOPs
  2 T N G H (I_l + H) summed over layers and directions.
* ``lstm_fwd_bwd`` / ``gru_fwd_bwd``: forward keeping the reserve, then the backward (grad_input,
  grad_h0, all weight gradients); torch: module forward with an input that requires grad and
  ``.backward()`` of sum(output * g) (grads reset to None before each call). FLOPs 3x the forward.
* ``lstm`` / ``gru`` ``[T200 N1 256->512]``: batch-1 inference of a long sequence (the GEMV path).
* ``lstm[T63 N1 96->32 bi]``: the small bidirectional batch-1 shape of oneDNN#837.

Bars: batch-1 cell step >= 3x torch; sequence forward and forward+backward >= 1.0x torch.
"""
from __future__ import annotations

import numpy as np

from .cases import Prepared, _F, torch_or_none

F32 = np.float32
GATES = {"lstm": 4, "gru": 3}


def _weights(rng, mode, I, H, L, D):
    k = 1.0 / np.sqrt(H)
    ws = []
    for layer in range(L):
        for _ in range(D):
            i = I if layer == 0 else D * H
            G = GATES[mode] * H
            ws += [rng.uniform(-k, k, (G, i)).astype(F32), rng.uniform(-k, k, (G, H)).astype(F32),
                   rng.uniform(-k, k, G).astype(F32), rng.uniform(-k, k, G).astype(F32)]
    return ws


def _torch_module(torch, mode, I, H, L, D, ws, cell=False):
    if cell:
        m = (torch.nn.LSTMCell if mode == "lstm" else torch.nn.GRUCell)(I, H)
        params = [m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh]
    else:
        m = (torch.nn.LSTM if mode == "lstm" else torch.nn.GRU)(I, H, num_layers=L, bidirectional=D == 2)
        params = m._flat_weights
    with torch.no_grad():
        for p, w in zip(params, ws):
            p.copy_(torch.from_numpy(w))
    return m


def _seq_flops(mode, T, N, I, H, L, D):
    G = GATES[mode]
    total = 0
    for layer in range(L):
        i = I if layer == 0 else D * H
        total += D * 2 * T * N * G * H * (i + H)
    return total


def _build_cell(mode, N, I, H):
    def build():
        torch = torch_or_none()
        F = _F()
        rng = np.random.default_rng(20240610 + N)
        ws = _weights(rng, mode, I, H, 1, 1)
        x = rng.standard_normal((N, I), dtype=F32)
        h = rng.standard_normal((N, H), dtype=F32)
        c = rng.standard_normal((N, H), dtype=F32)
        if mode == "lstm":
            impls = {"fastml": lambda: F.lstm_cell(x, (h, c), *ws)}
        else:
            impls = {"fastml": lambda: F.gru_cell(x, h, *ws)}
        if torch is not None:
            m = _torch_module(torch, mode, I, H, 1, 1, ws, cell=True)
            xt, ht, ct = torch.from_numpy(x), torch.from_numpy(h), torch.from_numpy(c)

            def th():
                with torch.no_grad():
                    return m(xt, (ht, ct)) if mode == "lstm" else m(xt, ht)
            impls["torch"] = th
        notes = ["one step per call: latency (median) includes the Python call and binding"]
        return Prepared(impls, flops=2 * N * GATES[mode] * H * (I + H), notes=notes)
    return build


def _build_seq(mode, T, N, I, H, L, D, backward, packed=False):
    def build():
        torch = torch_or_none()
        F = _F()
        rng = np.random.default_rng(20240611 + T + N + L)
        ws = _weights(rng, mode, I, H, L, D)
        x = rng.standard_normal((T, N, I), dtype=F32)
        fwd = getattr(F, mode)
        bwd = getattr(F, mode + "_backward")
        g = rng.standard_normal((T, N, D * H), dtype=F32)
        kw = dict(num_layers=L, bidirectional=D == 2)
        if packed:  # W_hh packed once (what fastml.nn modules do in eval mode)
            kw["packed"] = F.pack_recurrent_weights(ws, num_layers=L, bidirectional=D == 2)
        if not backward:
            impls = {"fastml": lambda: fwd(x, None, ws, keep_reserve=False, **kw)}
        elif mode == "lstm":
            def fm():
                _, _, res = fwd(x, None, ws, **kw)
                return bwd(g, None, None, res)
            impls = {"fastml": fm}
        else:
            def fm():
                _, _, res = fwd(x, None, ws, **kw)
                return bwd(g, None, res)
            impls = {"fastml": fm}
        if torch is not None:
            m = _torch_module(torch, mode, I, H, L, D, ws)
            xt = torch.from_numpy(x)
            gt = torch.from_numpy(g)
            if not backward:
                def th():
                    with torch.no_grad():
                        return m(xt)
            else:
                xg = xt.clone().requires_grad_(True)

                def th():
                    xg.grad = None
                    for p in m.parameters():
                        p.grad = None
                    out, _ = m(xg)
                    (out * gt).sum().backward()
            impls["torch"] = th
        flops = _seq_flops(mode, T, N, I, H, L, D) * (3 if backward else 1)
        notes = ["forward + backward (grad_input, grad_h0, weight grads)" if backward else
                 "inference forward (keep_reserve=False), hx = None"]
        if packed:
            notes.append("W_hh pre-packed once (fastml.nn eval mode), not per call")
        return Prepared(impls, flops=flops, notes=notes)
    return build


def register_rnn_cases(register, Bar, Case):
    cell_bars = (Bar("vs_torch", 3.0, ">= 3x torch (batch-1 step)"),)
    seq_bars = (Bar("vs_torch", 1.0, ">= 1.0x torch"),)
    I, H = 256, 512
    for mode in ("lstm", "gru"):
        for N in (1, 64):
            register(Case(f"{mode}_cell", "rnn", f"b{N} {I}->{H}", True, (f"fastml.functional:{mode}_cell",),
                          _build_cell(mode, N, I, H), cell_bars if N == 1 else seq_bars))
        # weights small enough to stay in L2 (1.5 MB): the step is no longer bound by streaming W from L3
        register(Case(f"{mode}_cell", "rnn", "b1 128->256", True, (f"fastml.functional:{mode}_cell",),
                      _build_cell(mode, 1, 128, 256)))
    for mode in ("lstm", "gru"):
        for L, D, tag in ((1, 1, "1L"), (2, 2, "2Lbi")):
            for backward in (False, True):
                op = f"{mode}_fwd_bwd" if backward else mode
                register(Case(op, "rnn", f"T50 N32 {I}->{H} {tag}", L == 1, (f"fastml.functional:{mode}",),
                              _build_seq(mode, 50, 32, I, H, L, D, backward), seq_bars))
        register(Case(mode, "rnn", f"T50 N32 {I}->{H} 1L packed", True, (f"fastml.functional:{mode}",),
                      _build_seq(mode, 50, 32, I, H, 1, 1, False, packed=True), seq_bars))
        register(Case(mode, "rnn", f"T200 N1 {I}->{H}", True, (f"fastml.functional:{mode}",),
                      _build_seq(mode, 200, 1, I, H, 1, 1, False), seq_bars))
    register(Case("lstm", "rnn", "T63 N1 96->32 bi", True, ("fastml.functional:lstm",),
                  _build_seq("lstm", 63, 1, 96, 32, 1, 2, False), seq_bars))
