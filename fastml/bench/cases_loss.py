"""Loss benchmark cases (registered into fastml.bench.cases.CASES): cross_entropy with class indices,
mse_loss and binary_cross_entropy_with_logits, forward (mean reduction, a scalar) and backward (a
gradient the size of the input, written into a preallocated out= where fastml's API takes one).

Bytes per call: forward reads the input (and the target); backward also writes the gradient.
torch's cross_entropy backward is timed as the two ops its autograd runs on the log-probabilities its
forward saved (nll_loss_backward + _log_softmax_backward_data).
"""
from __future__ import annotations

import numpy as np

from .cases import F32, Prepared, _F, _np_sigmoid, _randn, _rng, torch_or_none


def _build_loss(op, n, c):
    def build():
        torch = torch_or_none()
        F = _F()
        nnF = torch.nn.functional if torch else None
        impls, notes = {}, []
        x = _randn((n, c), 3.0)
        if op.startswith("cross_entropy"):
            t = _rng().integers(0, c, size=n, dtype=np.int64)
            rows = np.arange(n)
            if op == "cross_entropy":
                impls["fastml"] = lambda: F.cross_entropy(x, t)

                def np_ce():
                    m = x.max(axis=1, keepdims=True)
                    lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
                    return np.mean(lse - x[rows, t])
                impls["numpy"] = np_ce
                if torch is not None:
                    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
                    impls["torch"] = lambda: nnF.cross_entropy(xt, tt)
                nbytes = x.nbytes + t.nbytes
            else:
                g = np.asarray(1.0, dtype=F32)
                impls["fastml"] = lambda: F.cross_entropy_backward(g, x, t)

                def np_ce_bwd():
                    e = np.exp(x - x.max(axis=1, keepdims=True))
                    e /= e.sum(axis=1, keepdims=True)
                    e[rows, t] -= F32(1)
                    e *= F32(g / n)
                    return e
                impls["numpy"] = np_ce_bwd
                if torch is not None:
                    A = torch.ops.aten
                    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
                    logp = torch.log_softmax(xt, 1)  # saved by torch's forward
                    gt, tw = torch.tensor(1.0), torch.tensor(float(n))

                    def th_bwd():
                        gl = A.nll_loss_backward(gt, logp, tt, None, 1, -100, tw)
                        return A._log_softmax_backward_data(gl, logp, 1, torch.float32)
                    impls["torch"] = th_bwd
                    notes.append("torch: nll_loss_backward + _log_softmax_backward_data on the log-probs its "
                                 "forward saved (what autograd runs); fastml recomputes softmax from the logits")
                nbytes = 2 * x.nbytes + t.nbytes
        elif op.startswith("mse_loss"):
            y = _randn((n, c))
            if op == "mse_loss":
                impls["fastml"] = lambda: F.mse_loss(x, y)
                impls["numpy"] = lambda: np.mean(np.square(x - y))
                if torch is not None:
                    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
                    impls["torch"] = lambda: nnF.mse_loss(xt, yt)
                nbytes = 2 * x.nbytes
            else:
                g = np.asarray(1.0, dtype=F32)
                o_fm, o_np = np.empty_like(x), np.empty_like(x)
                impls["fastml"] = lambda: F.mse_loss_backward(g, x, y, out=o_fm)
                impls["fastml(alloc)"] = lambda: F.mse_loss_backward(g, x, y)

                def np_mse_bwd(out=None):
                    r = np.subtract(x, y, out=out)
                    r *= F32(2.0 * g / x.size)
                    return r
                impls["numpy"] = lambda: np_mse_bwd(o_np)
                if torch is not None:
                    A = torch.ops.aten
                    xt, yt, gt, ot = torch.from_numpy(x), torch.from_numpy(y), torch.tensor(1.0), torch.empty(n, c)
                    impls["torch"] = lambda: A.mse_loss_backward.grad_input(gt, xt, yt, 1, grad_input=ot)
                    impls["torch(alloc)"] = lambda: A.mse_loss_backward(gt, xt, yt, 1)
                nbytes = 3 * x.nbytes
        else:  # binary_cross_entropy_with_logits
            y = _rng().random((n, c), dtype=F32)
            if op == "binary_cross_entropy_with_logits":
                impls["fastml"] = lambda: F.binary_cross_entropy_with_logits(x, y)
                # (1 - y) x + log(1 + exp(-x)) written stably: max(x, 0) - x y + log1p(exp(-|x|))
                impls["numpy"] = lambda: np.mean(np.maximum(x, F32(0)) - x * y + np.log1p(np.exp(-np.abs(x))))
                if torch is not None:
                    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
                    impls["torch"] = lambda: nnF.binary_cross_entropy_with_logits(xt, yt)
                nbytes = 2 * x.nbytes
            else:
                g = np.asarray(1.0, dtype=F32)
                o_fm, o_np = np.empty_like(x), np.empty_like(x)
                impls["fastml"] = lambda: F.binary_cross_entropy_with_logits_backward(g, x, y, out=o_fm)
                impls["fastml(alloc)"] = lambda: F.binary_cross_entropy_with_logits_backward(g, x, y)

                def np_bce_bwd(out):
                    r = _np_sigmoid(x, out)
                    r -= y
                    r *= F32(g / x.size)
                    return r
                impls["numpy"] = lambda: np_bce_bwd(o_np)
                if torch is not None:
                    xt, yt, ot = torch.from_numpy(x), torch.from_numpy(y), torch.empty(n, c)
                    scale = 1.0 / x.size

                    def th_bce_bwd():  # what torch's composite autograd formula runs: (sigmoid(x) - y) * g / N
                        torch.sigmoid(xt, out=ot)
                        ot.sub_(yt)
                        return ot.mul_(scale)
                    impls["torch"] = th_bce_bwd
                    notes.append("torch: sigmoid(x, out=) - y, * g/N (torch's composite backward formula)")
                nbytes = 3 * x.nbytes
        return Prepared(impls, bytes=nbytes, notes=notes)
    return build


def register_loss_cases(register, Case, bars):
    """Forward and backward of each loss at N=4096, C=1024 (full) and N=256 (quick)."""
    for base in ("cross_entropy", "mse_loss", "binary_cross_entropy_with_logits"):
        for op in (base, base + "_backward"):
            for (n, c), quick, full in (((4096, 1024), False, True), ((256, 1024), True, False)):
                register(Case(op, "loss", f"N={n},C={c}", quick, (f"fastml.functional:{op}",),
                              _build_loss(op, n, c), bars, full=full))
