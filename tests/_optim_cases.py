"""Shared helpers of tests/test_optim.py and tests/test_optimizers.py: state construction, one call of a
functional step from a spec, error scales for comparing float32 results with the float64 reference."""
import itertools

import numpy as np

import fastml.optim.functional as OF
import fastml.reference.optim as RO

EPS32 = float(np.finfo(np.float32).eps)

# Every option combination torch accepts (weight_decay / momentum / dampening / nesterov / centered /
# amsgrad / maximize on or off), with non-default rates.
SGD_CONFIGS = [dict(lr=0.05, weight_decay=wd, momentum=mo, dampening=da, nesterov=ne, maximize=mx)
               for wd, mo, da, ne, mx in itertools.product((0.0, 0.1), (0.0, 0.9), (0.0, 0.25), (False, True),
                                                            (False, True))
               if not ne or (mo > 0 and da == 0)]
RMSPROP_CONFIGS = [dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=wd, momentum=mo, centered=ce, maximize=mx)
                   for wd, mo, ce, mx in itertools.product((0.0, 0.1), (0.0, 0.8), (False, True), (False, True))]
# lerp weight 1 - alpha >= 0.5 branch. With alpha = 0.3 the centered variance s - gbar^2 averages ~3
# samples and gets arbitrarily close to 0: eps = 1e-3 bounds the condition number of g / (sqrt(.) + eps),
# else any rounding difference (e.g. the NumPy backend's unfused multiply-adds) is amplified without bound.
RMSPROP_CONFIGS.append(dict(lr=0.01, alpha=0.3, eps=1e-3, centered=True))
ADAM_CONFIGS = [dict(lr=0.01, weight_decay=wd, amsgrad=am, maximize=mx)
                for wd, am, mx in itertools.product((0.0, 0.1), (False, True), (False, True))]
ADAM_CONFIGS.append(dict(lr=0.01, betas=(0.3, 0.9), eps=1e-6))  # lerp weight 1 - beta1 >= 0.5 branch

CONFIGS = {"sgd": SGD_CONFIGS, "rmsprop": RMSPROP_CONFIGS, "adam": ADAM_CONFIGS, "adamw": ADAM_CONFIGS}

STATE_NAMES = {
    "sgd": ("momentum_buffers",),
    "rmsprop": ("square_avgs", "momentum_buffers", "grad_avgs"),
    "adam": ("exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"),
    "adamw": ("exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"),
}


def cid(cfg):
    return "-".join(f"{k}={v}" for k, v in cfg.items() if k != "lr") or "default"


def make_state(rng, kind, shapes, dtype=np.float32, warm=True):
    """Random params/grads and (warm, i.e. mid-training, or zero) state lists for `shapes`."""
    ps = [rng.standard_normal(s).astype(dtype) for s in shapes]
    gs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    st = {}
    for name in STATE_NAMES[kind]:
        if not warm:
            st[name] = [np.zeros(s, dtype) for s in shapes]
        elif name in ("square_avgs", "exp_avg_sqs", "max_exp_avg_sqs"):
            st[name] = [(rng.random(s) * 0.5 + 0.1).astype(dtype) for s in shapes]
        else:
            st[name] = [(rng.standard_normal(s) * 0.3).astype(dtype) for s in shapes]
    if kind == "rmsprop" and warm:  # a reachable state: square_avg >= grad_avg^2
        st["square_avgs"] = [(s + ga.astype(np.float64) ** 2).astype(dtype)
                             for s, ga in zip(st["square_avgs"], st["grad_avgs"])]
    if kind in ("adam", "adamw") and warm:  # max_exp_avg_sq >= exp_avg_sq after any step
        st["max_exp_avg_sqs"] = [np.maximum(a, b).astype(dtype) for a, b in
                                 zip(st["max_exp_avg_sqs"], st["exp_avg_sqs"])]
    return ps, gs, st


def call(kind, ps, gs, st, cfg, step=3, first_step=False, module=OF):
    """One step through `module` (the public functional API or the reference). Returns what it returns."""
    if kind == "sgd":
        return module.sgd_step(ps, gs, st["momentum_buffers"], first_step=first_step, **cfg)
    if kind == "rmsprop":
        return module.rmsprop_step(ps, gs, st["square_avgs"], momentum_buffers=st["momentum_buffers"],
                                   grad_avgs=st["grad_avgs"], **cfg)
    fn = module.adam_step if kind == "adam" else module.adamw_step
    return fn(ps, gs, st["exp_avgs"], st["exp_avg_sqs"], step=step, max_exp_avg_sqs=st["max_exp_avg_sqs"], **cfg)


def reference(kind, ps, gs, st, cfg, step=3, first_step=False):
    """The float64 reference's results as {name: list} (params under 'params')."""
    out = call(kind, ps, gs, st, cfg, step, first_step, module=RO)
    names = {"sgd": ("params", "momentum_buffers"),
             "rmsprop": ("params", "square_avgs", "momentum_buffers", "grad_avgs"),
             "adam": ("params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs")}[kind if kind != "adamw" else "adam"]
    return {n: v for n, v in zip(names, out) if v is not None}


def scales(kind, ps, gs, st, cfg, step=3, first_step=False):
    """Per-element magnitudes that bound the float32 rounding error of each output (sum of |terms| of the
    update, with the condition number of the centered RMSprop denominator), from the float64 inputs."""
    a = lambda x: np.abs(np.asarray(x, np.float64))  # noqa: E731
    ref = reference(kind, ps, gs, st, cfg, step, first_step)
    wd = cfg.get("weight_decay", 0.0 if kind != "adamw" else 1e-2)
    lr = cfg["lr"]
    out = {}
    sc_p = []
    for i in range(len(ps)):
        p, g = a(ps[i]), a(gs[i])
        gd = g + (wd * p if kind != "adamw" else 0.0)
        if kind == "sgd":
            mo, da = cfg.get("momentum", 0.0), cfg.get("dampening", 0.0)
            d = gd
            if mo:
                b = gd if first_step else mo * a(st["momentum_buffers"][i]) + abs(1 - da) * gd
                out.setdefault("momentum_buffers", []).append(b)
                d = gd + mo * b if cfg.get("nesterov") else b
            sc_p.append(p + lr * d)
        elif kind == "rmsprop":
            al, mo = cfg.get("alpha", 0.99), cfg.get("momentum", 0.0)
            s = ref["square_avgs"][i]
            out.setdefault("square_avgs", []).append(s)
            den = np.sqrt(np.maximum(s, 0)) + cfg.get("eps", 1e-8)
            cond = 1.0
            if cfg.get("centered"):
                gb = al * a(st["grad_avgs"][i]) + (1 - al) * gd
                out.setdefault("grad_avgs", []).append(gb)
                diff = np.maximum(s - ref["grad_avgs"][i] ** 2, 1e-300)
                den = np.sqrt(diff) + cfg.get("eps", 1e-8)
                cond = 1.0 + (s + gb ** 2) / diff
            upd = gd / den * cond
            if mo > 0:
                b = mo * a(st["momentum_buffers"][i]) + upd
                out.setdefault("momentum_buffers", []).append(b)
                upd = b
            sc_p.append(p + lr * upd)
        else:
            b1, b2 = cfg.get("betas", (0.9, 0.999))
            m = b1 * a(st["exp_avgs"][i]) + (1 - b1) * gd
            out.setdefault("exp_avgs", []).append(m)
            out.setdefault("exp_avg_sqs", []).append(ref["exp_avg_sqs"][i] + (1 - b2) * gd * gd)
            vh = ref["exp_avg_sqs"][i]
            if cfg.get("amsgrad"):
                vh = ref["max_exp_avg_sqs"][i]
                out.setdefault("max_exp_avg_sqs", []).append(vh)
            den = np.sqrt(vh / (1 - b2 ** step)) + cfg.get("eps", 1e-8)
            sc_p.append(p + lr / (1 - b1 ** step) * m / den)
    out["params"] = sc_p
    return ref, out


def assert_step_close(kind, got, ref, sc, ulps=8, eps=EPS32, what=""):
    """|got - ref| <= ulps * eps * scale elementwise for every output list; NaN where the reference is NaN."""
    for name, refs in ref.items():
        for i, r in enumerate(refs):
            g = np.asarray(got[name][i], np.float64)
            s = sc[name][i]
            nan = np.isnan(r)
            assert np.array_equal(np.isnan(g), nan), f"{what} {name}[{i}]: NaN positions differ"
            err = np.abs(g - r)[~nan]
            bound = ulps * eps * s[~nan] + 1e-37
            bad = err > bound
            if bad.any():
                j = int(np.argmax(err - bound))
                raise AssertionError(f"{what} {name}[{i}]: {int(bad.sum())} of {err.size} out of tolerance; worst "
                                     f"got {g[~nan][j]!r}, ref {r[~nan][j]!r}, bound {bound[j]:.3g}")
