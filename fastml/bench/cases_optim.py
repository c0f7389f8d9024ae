"""Optimizer-step benchmark cases (registered into fastml.bench.cases.CASES).

Each implementation owns its parameter/state arrays (steps are in place), all starting from the same
values and reading the SAME gradient arrays. Bytes per element (reads + writes): Adam/AdamW 7 x 4
(p, g, m, v read; p, m, v written), SGD with momentum and RMSprop 5 x 4.

torch rows: ``torch.optim.<Opt>([p], fused=True)`` / ``foreach=True`` / ``foreach=False`` with
``p.grad`` set once (a view of the shared gradient array); the timed call is ``opt.step()``.
NumPy rows: vectorised in-place updates with one preallocated temporary.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def _sizes_multi(total: int, count: int) -> list:
    """`count` tensor sizes from about total/(5 count) to 9 total/(5 count), summing exactly to `total`."""
    lo = total // (5 * count)
    sizes = [lo + (8 * lo * i) // (count - 1) for i in range(count)]
    sizes[-1] += total - sum(sizes)
    return sizes


def _np_adam(p, g, m, v, tmp, step, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False):
    if wd and decoupled:
        p *= F32(1.0 - lr * wd)
    elif wd:
        g = g + F32(wd) * p
    m *= F32(b1)
    np.multiply(g, F32(1.0 - b1), out=tmp)
    m += tmp
    v *= F32(b2)
    np.multiply(g, g, out=tmp)
    tmp *= F32(1.0 - b2)
    v += tmp
    bc1 = 1.0 - b1 ** step
    bc2 = 1.0 - b2 ** step
    np.sqrt(v, out=tmp)
    tmp *= F32(1.0 / np.sqrt(bc2))
    tmp += F32(eps)
    np.divide(m, tmp, out=tmp)
    tmp *= F32(lr / bc1)
    p -= tmp


def _np_sgd(p, g, buf, tmp, lr, momentum):
    buf *= F32(momentum)
    buf += g
    np.multiply(buf, F32(lr), out=tmp)
    p -= tmp


def _np_rmsprop(p, g, sq, tmp, lr, alpha=0.99, eps=1e-8):
    sq *= F32(alpha)
    np.multiply(g, g, out=tmp)
    tmp *= F32(1.0 - alpha)
    sq += tmp
    np.sqrt(sq, out=tmp)
    tmp += F32(eps)
    np.divide(g, tmp, out=tmp)
    tmp *= F32(lr)
    p -= tmp


def register_optim_cases(register, Bar, Case, Prepared, torch_or_none, optim_module):
    lr = 1e-3

    def build_for(kind, sizes):
        def build():
            torch = torch_or_none()
            O = optim_module()
            rng = np.random.default_rng(7)
            p0 = [rng.standard_normal(s, dtype=F32) for s in sizes]
            grads = [rng.standard_normal(s, dtype=F32) * F32(0.01) for s in sizes]
            n_total = sum(sizes)
            nstate = 2 if kind in ("adam", "adamw") else 1

            def state():
                return [q.copy() for q in p0], [[np.zeros(s, F32) for s in sizes] for _ in range(nstate)]

            impls, notes = {}, []
            # fastml
            fp, fs = state()
            t = [0]
            if kind in ("adam", "adamw"):
                fn = O.adam_step if kind == "adam" else O.adamw_step
                kw = dict(lr=lr) if kind == "adam" else dict(lr=lr, weight_decay=1e-2)

                def fm():
                    t[0] += 1
                    fn(fp, grads, fs[0], fs[1], step=t[0], **kw)
            elif kind == "sgd":
                def fm():
                    O.sgd_step(fp, grads, fs[0], lr=lr, momentum=0.9)
            else:
                def fm():
                    O.rmsprop_step(fp, grads, fs[0], lr=lr, alpha=0.99)
            impls["fastml"] = fm
            # numpy
            npp, nps = state()
            tmps = [np.empty(s, F32) for s in sizes]
            tn = [0]

            def np_step():
                tn[0] += 1
                for i in range(len(sizes)):
                    if kind == "adam":
                        _np_adam(npp[i], grads[i], nps[0][i], nps[1][i], tmps[i], tn[0], lr)
                    elif kind == "adamw":
                        _np_adam(npp[i], grads[i], nps[0][i], nps[1][i], tmps[i], tn[0], lr, wd=1e-2, decoupled=True)
                    elif kind == "sgd":
                        _np_sgd(npp[i], grads[i], nps[0][i], tmps[i], lr, 0.9)
                    else:
                        _np_rmsprop(npp[i], grads[i], nps[0][i], tmps[i], lr)
            impls["numpy"] = np_step
            # torch
            ref_torch = "torch-fused"
            if torch is not None:
                cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
                       "rmsprop": torch.optim.RMSprop}[kind]
                kw = {"adam": dict(lr=lr), "adamw": dict(lr=lr, weight_decay=1e-2),
                      "sgd": dict(lr=lr, momentum=0.9), "rmsprop": dict(lr=lr, alpha=0.99)}[kind]
                for label, flags in (("torch-fused", dict(fused=True)), ("torch-foreach", dict(foreach=True)),
                                     ("torch-loop", dict(foreach=False))):
                    params = [torch.nn.Parameter(torch.from_numpy(q.copy())) for q in p0]
                    for q, g in zip(params, grads):
                        q.grad = torch.from_numpy(g)
                    try:
                        opt = cls(params, **kw, **flags)
                        opt.step()  # state allocation happens here, not in the timed calls
                    except (RuntimeError, TypeError, ValueError) as exc:
                        notes.append(f"{label}: n/a ({str(exc).splitlines()[0][:80]})")
                        continue
                    impls[label] = opt.step
                if "torch-fused" not in impls:
                    ref_torch = "torch-foreach"
                if len(sizes) > 1:
                    ref_torch = "torch-foreach"
            per_elem = 7 * 4 if kind in ("adam", "adamw") else 5 * 4
            return Prepared(impls, bytes=per_elem * n_total, notes=notes, ref_torch=ref_torch)
        return build

    fused_bars = (Bar("pct_triad", 80.0, ">= 80% of triad"), Bar("vs_torch", 1.0, "faster than torch fused"))
    fn_name = {"adam": "adam_step", "adamw": "adamw_step", "sgd": "sgd_step", "rmsprop": "rmsprop_step"}
    for kind in ("adam", "adamw", "sgd", "rmsprop"):
        need = (f"fastml.optim.functional:{fn_name[kind]}",)
        bars = fused_bars if kind != "rmsprop" else (fused_bars[0], Bar("vs_torch", 1.0, "faster than torch foreach"))
        register(Case(fn_name[kind], "optim", "10M", False, need, build_for(kind, [10_000_000]), bars))
        register(Case(fn_name[kind], "optim", "1M", True, need, build_for(kind, [1_000_000]), bars, full=False))
    multi = _sizes_multi(1_000_000, 200)
    register(Case("adam_step", "optim", "200 tensors,1M", True, ("fastml.optim.functional:adam_step",),
                  build_for("adam", multi), (Bar("vs_torch", 3.0, ">= 3x torch foreach"),)))
