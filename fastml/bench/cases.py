"""The one registry of benchmark cases, shared by ``python -m fastml.bench`` and ``benchmarks/``.

A :class:`Case` names an op, a shape and a group; ``case.build()`` allocates the input arrays ONCE and
returns a :class:`Prepared`: zero-argument callables for fastml, NumPy and torch (when importable) that
all read the SAME arrays (torch through ``torch.from_numpy``, zero copy), the bytes each call moves
(reads + writes of the arrays it touches, the STREAM convention) and the flops where they matter.

Implementation names: ``fastml`` / ``numpy`` / ``torch`` write into preallocated outputs (``out=``) so
the kernel is timed; ``<impl>(alloc)`` lets the call allocate its result, which adds the page-fault and
allocator cost. Where torch has no ``out=`` form the ``torch`` row says so in the notes. Optimizer
cases have one state per implementation (steps are in place) starting from the same values.

Ops that are not yet in ``fastml.functional`` / ``fastml.optim.functional`` are registered anyway; the
case is skipped at run time with a note (``Case.missing()``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

F32 = np.float32
MiB = 1 << 20


@dataclass
class Prepared:
    impls: dict                      # name -> zero-argument callable
    bytes: int | None = None         # bytes moved per call (reads + writes), None if not meaningful
    flops: int | None = None
    notes: list = field(default_factory=list)
    ref_numpy: str = "numpy"         # the row the "vs numpy" ratio divides
    ref_torch: str = "torch"         # the row the "vs torch" ratio divides


@dataclass(frozen=True)
class Bar:
    kind: str       # "pct_triad" / "pct_fma" (fastml >= target %), "vs_torch" / "vs_numpy" (ratio >= target), "max_us"
    target: float
    label: str


@dataclass(frozen=True)
class Case:
    op: str                  # "relu", "relu_backward", "adam_step", ...
    group: str               # activation | overhead | softmax | loss | optim | gemm | pool
    shape: str               # "4096x1024", "10M", "200x5k", "16"
    quick: bool              # part of the --quick set
    needs: tuple             # ("fastml.functional:softmax", ...) that must exist
    build: Callable[[], Prepared] = field(compare=False, repr=False)
    bars: tuple = ()
    full: bool = True        # part of the full (default) set

    @property
    def name(self) -> str:
        return f"{self.op}[{self.shape}]"

    def missing(self) -> str | None:
        """None when every function the case needs exists, else a note naming the first missing one."""
        for need in self.needs:
            mod, _, attr = need.partition(":")
            try:
                m = importlib.import_module(mod)
            except ImportError as exc:
                return f"{mod} not importable ({exc})"
            if not hasattr(m, attr):
                return f"{mod}.{attr} not available in this build"
        return None


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _rng():
    return np.random.default_rng(20240601)


def _randn(shape, scale=1.0):
    return (_rng().standard_normal(shape, dtype=F32) * F32(scale)).astype(F32)


def _F():
    return importlib.import_module("fastml.functional")


def _optim():
    return importlib.import_module("fastml.optim.functional")


CASES: list = []


def register(case: Case) -> Case:
    CASES.append(case)
    return case


ELEMENTWISE_BARS = (Bar("pct_triad", 70.0, ">= 70% of triad"), Bar("vs_torch", 1.0, "faster than torch"))


# ---------------------------------------------------------------- activations (forward and backward)

def _erf():
    try:
        from scipy.special import erf
        return erf
    except ImportError:
        return None


def _np_gelu(x, out, approximate):
    if approximate == "tanh":
        t = np.multiply(x, x, out=out)
        t *= F32(0.044715)
        t += F32(1.0)
        t *= x
        t *= F32(0.7978845608028654)
        np.tanh(t, out=t)
        t += F32(1.0)
        t *= x
        t *= F32(0.5)
        return t
    erf = _erf()
    t = np.multiply(x, F32(0.7071067811865476), out=out)
    erf(t, out=t)
    t += F32(1.0)
    t *= x
    t *= F32(0.5)
    return t


def _np_gelu_backward(g, x, out, approximate, tmp):
    # exact: g * (Phi(x) + x phi(x)); tanh: derivative of 0.5 x (1 + tanh u)
    if approximate == "tanh":
        u = np.multiply(x, x, out=tmp)
        u *= F32(0.044715)
        u += F32(1.0)
        u *= x
        u *= F32(0.7978845608028654)
        th = np.tanh(u, out=u)
        d = np.multiply(th, th, out=out)
        np.subtract(F32(1.0), d, out=d)                        # 1 - th^2
        d *= x
        d *= F32(0.7978845608028654)
        d *= (np.multiply(x, x, out=np.empty_like(x)) * F32(3 * 0.044715) + F32(1.0))
        d += th
        d += F32(1.0)
        d *= F32(0.5)
        d *= g
        return d
    erf = _erf()
    phi = np.multiply(x, x, out=tmp)
    phi *= F32(-0.5)
    np.exp(phi, out=phi)
    phi *= F32(0.3989422804014327)
    phi *= x                                                   # x phi(x)
    cdf = np.multiply(x, F32(0.7071067811865476), out=out)
    erf(cdf, out=cdf)
    cdf += F32(1.0)
    cdf *= F32(0.5)
    cdf += phi
    cdf *= g
    return cdf


def _np_sigmoid(x, out):
    with np.errstate(over="ignore"):
        t = np.negative(x, out=out)
        np.exp(t, out=t)
        t += F32(1.0)
        return np.reciprocal(t, out=t)


# op -> (fastml fn name, numpy fwd(x, out), torch fwd(x, out) or None, torch alloc(x), torch note)
def _act_specs(torch):
    nnF = torch.nn.functional if torch else None
    A = torch.ops.aten if torch else None
    T = torch
    return {
        "relu": dict(
            fm=lambda F, x, o: F.relu(x, out=o),
            np=lambda x, o: np.maximum(x, F32(0), out=o),
            th=(lambda x, o: T.clamp_min(x, 0.0, out=o)) if T else None,
            th_alloc=(lambda x: T.relu(x)) if T else None,
            torch_note="torch row: torch.clamp_min(x, 0, out=) (torch.relu has no out=); torch(alloc): torch.relu"),
        "leaky_relu": dict(
            fm=lambda F, x, o: F.leaky_relu(x, 0.01, out=o),
            np=lambda x, o: np.maximum(x, np.multiply(x, F32(0.01), out=o), out=o),
            th=(lambda x, o: T._C._nn.leaky_relu(x, 0.01, out=o)) if T else None,
            th_alloc=(lambda x: nnF.leaky_relu(x, 0.01)) if T else None),
        "sigmoid": dict(
            fm=lambda F, x, o: F.sigmoid(x, out=o),
            np=_np_sigmoid,
            th=(lambda x, o: T.sigmoid(x, out=o)) if T else None,
            th_alloc=(lambda x: T.sigmoid(x)) if T else None),
        "tanh": dict(
            fm=lambda F, x, o: F.tanh(x, out=o),
            np=lambda x, o: np.tanh(x, out=o),
            th=(lambda x, o: T.tanh(x, out=o)) if T else None,
            th_alloc=(lambda x: T.tanh(x)) if T else None),
        "gelu": dict(
            fm=lambda F, x, o: F.gelu(x, out=o),
            np=(lambda x, o: _np_gelu(x, o, "none")) if _erf() else None,
            th=(lambda x, o: T._C._nn.gelu(x, approximate="none", out=o)) if T else None,
            th_alloc=(lambda x: nnF.gelu(x)) if T else None,
            note=None if _erf() else "numpy: n/a (erf needs scipy)"),
        "gelu_tanh": dict(
            fm=lambda F, x, o: F.gelu(x, approximate="tanh", out=o),
            np=lambda x, o: _np_gelu(x, o, "tanh"),
            th=(lambda x, o: T._C._nn.gelu(x, approximate="tanh", out=o)) if T else None,
            th_alloc=(lambda x: nnF.gelu(x, approximate="tanh")) if T else None),
        # backward: (g, saved, out); saved = input x, or the output y for sigmoid / tanh
        "relu_backward": dict(
            fm=lambda F, g, s, o: F.relu_backward(g, s, out=o),
            np=lambda g, s, o: np.multiply(g, s > 0, out=o),
            th=(lambda g, s, o: A.threshold_backward.grad_input(g, s, 0.0, grad_input=o)) if T else None,
            th_alloc=(lambda g, s: A.threshold_backward(g, s, 0.0)) if T else None),
        "leaky_relu_backward": dict(
            fm=lambda F, g, s, o: F.leaky_relu_backward(g, s, 0.01, out=o),
            np=lambda g, s, o: np.multiply(g, np.where(s > 0, F32(1), F32(0.01)), out=o),
            th=(lambda g, s, o: A.leaky_relu_backward.grad_input(g, s, 0.01, False, grad_input=o)) if T else None,
            th_alloc=(lambda g, s: A.leaky_relu_backward(g, s, 0.01, False)) if T else None),
        "sigmoid_backward": dict(
            fm=lambda F, g, s, o: F.sigmoid_backward(g, s, out=o),
            np=lambda g, s, o: np.multiply(np.multiply(g, s, out=o), np.subtract(F32(1), s), out=o),
            th=(lambda g, s, o: A.sigmoid_backward.grad_input(g, s, grad_input=o)) if T else None,
            th_alloc=(lambda g, s: A.sigmoid_backward(g, s)) if T else None, saved="output"),
        "tanh_backward": dict(
            fm=lambda F, g, s, o: F.tanh_backward(g, s, out=o),
            np=lambda g, s, o: np.multiply(g, np.subtract(F32(1), np.multiply(s, s, out=o), out=o), out=o),
            th=(lambda g, s, o: A.tanh_backward.grad_input(g, s, grad_input=o)) if T else None,
            th_alloc=(lambda g, s: A.tanh_backward(g, s)) if T else None, saved="output"),
        "gelu_backward": dict(
            fm=lambda F, g, s, o: F.gelu_backward(g, s, out=o),
            np=(lambda g, s, o: _np_gelu_backward(g, s, o, "none", np.empty_like(s))) if _erf() else None,
            th=(lambda g, s, o: A.gelu_backward.grad_input(g, s, approximate="none", grad_input=o)) if T else None,
            th_alloc=(lambda g, s: A.gelu_backward(g, s, approximate="none")) if T else None,
            note=None if _erf() else "numpy: n/a (erf needs scipy)"),
        "gelu_tanh_backward": dict(
            fm=lambda F, g, s, o: F.gelu_backward(g, s, approximate="tanh", out=o),
            np=lambda g, s, o: _np_gelu_backward(g, s, o, "tanh", np.empty_like(s)),
            th=(lambda g, s, o: A.gelu_backward.grad_input(g, s, approximate="tanh", grad_input=o)) if T else None,
            th_alloc=(lambda g, s: A.gelu_backward(g, s, approximate="tanh")) if T else None),
    }


_FASTML_NAME = {"gelu_tanh": "gelu", "gelu_tanh_backward": "gelu_backward"}


def _build_activation(op, shape):
    def build():
        torch = torch_or_none()
        spec = _act_specs(torch)[op]
        F = _F()
        backward = op.endswith("_backward")
        x = _randn(shape, 2.0)
        notes = [spec["note"]] if spec.get("note") else []
        if torch is not None and spec.get("torch_note"):
            notes.append(spec["torch_note"])
        impls = {}
        if not backward:
            o_fm, o_np = np.empty_like(x), np.empty_like(x)
            impls["fastml"] = lambda: spec["fm"](F, x, o_fm)
            impls["fastml(alloc)"] = lambda: spec["fm"](F, x, None)
            if spec["np"]:
                impls["numpy"] = lambda: spec["np"](x, o_np)
                impls["numpy(alloc)"] = lambda: spec["np"](x, None)
            if torch is not None:
                xt, ot = torch.from_numpy(x), torch.empty(shape)
                impls["torch"] = lambda: spec["th"](xt, ot)
                impls["torch(alloc)"] = lambda: spec["th_alloc"](xt)
            nbytes = 2 * x.nbytes
        else:
            g = _randn(shape)
            base = op[: -len("_backward")]
            if spec.get("saved") == "output":
                s = np.tanh(x) if base == "tanh" else _np_sigmoid(x, None)
            else:
                s = x
            o_fm, o_np = np.empty_like(x), np.empty_like(x)
            impls["fastml"] = lambda: spec["fm"](F, g, s, o_fm)
            impls["fastml(alloc)"] = lambda: spec["fm"](F, g, s, None)
            if spec["np"]:
                impls["numpy"] = lambda: spec["np"](g, s, o_np)
            if torch is not None:
                gt, st, ot = torch.from_numpy(g), torch.from_numpy(s), torch.empty(shape)
                impls["torch"] = lambda: spec["th"](gt, st, ot)
                impls["torch(alloc)"] = lambda: spec["th_alloc"](gt, st)
            nbytes = 3 * x.nbytes
        return Prepared(impls, bytes=nbytes, notes=notes)
    return build


ACTIVATION_SHAPES = (((4096, 1024), False, True), ((512, 1024), True, False))
for _op in ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh"):
    for _name in (_op, _op + "_backward"):
        for _shape, _quick, _full in ACTIVATION_SHAPES:
            register(Case(_name, "activation", "x".join(map(str, _shape)), _quick,
                          (f"fastml.functional:{_FASTML_NAME.get(_name, _name)}",),
                          _build_activation(_name, _shape), ELEMENTWISE_BARS, full=_full))


# ---------------------------------------------------------------- per-call overhead

def _build_overhead():
    torch = torch_or_none()
    F = _F()
    x = _randn((16,))
    o = np.empty_like(x)
    impls = {"fastml": lambda: F.relu(x, out=o), "fastml(alloc)": lambda: F.relu(x),
             "numpy": lambda: np.maximum(x, F32(0), out=o), "numpy(alloc)": lambda: np.maximum(x, F32(0))}
    if torch is not None:
        xt, ot = torch.from_numpy(x), torch.empty(16)
        impls["torch"] = lambda: torch.clamp_min(xt, 0.0, out=ot)
        impls["torch(alloc)"] = lambda: torch.relu(xt)
    return Prepared(impls, bytes=None, notes=["per-call time of a 16-element op: Python + binding + dispatch"])


register(Case("relu", "overhead", "16", True, ("fastml.functional:relu",), _build_overhead,
              (Bar("max_us", 2.0, "<= 2 us per call"),)))


def _build_small(op):
    """Small calls of the structured ops, where Python-side argument handling is most of the time: fastml vs
    the torch call a user would make (both allocating their result)."""
    def build():
        import fastml
        torch = torch_or_none()
        F = _F()
        if op == "conv2d":
            x, w, b = _randn((1, 3, 8, 8)), _randn((4, 3, 3, 3)), _randn((4,))
            impls = {"fastml": lambda: F.conv2d(x, w, b, padding=1)}
            if torch is not None:
                xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))
                impls["torch"] = lambda: torch.nn.functional.conv2d(xt, wt, bt, padding=1)
        elif op == "matmul":
            a, b = _randn((3, 4, 5)), _randn((3, 5, 6))
            impls = {"fastml": lambda: fastml.matmul(a, b), "numpy": lambda: np.matmul(a, b)}
            if torch is not None:
                at, bt = torch.from_numpy(a), torch.from_numpy(b)
                impls["torch"] = lambda: torch.matmul(at, bt)
        elif op == "linear_backward":
            g, x, w = _randn((4, 8)), _randn((4, 16)), _randn((8, 16))
            impls = {"fastml": lambda: F.linear_backward(g, x, w)}
            if torch is not None:
                gt, xt, wt = (torch.from_numpy(a) for a in (g, x, w))
                impls["torch"] = lambda: (gt @ wt, gt.t() @ xt, gt.sum(0))
        else:  # scaled_dot_product_attention
            q = _randn((1, 2, 8, 16))
            impls = {"fastml": lambda: F.scaled_dot_product_attention(q, q, q)}
            if torch is not None:
                qt = torch.from_numpy(q)
                impls["torch"] = lambda: torch.nn.functional.scaled_dot_product_attention(qt, qt, qt)
        return Prepared(impls, bytes=None, notes=["per-call time of a small call (argument checks, binding, "
                                                  "allocation and a few hundred FLOPs)"])
    return build


for _op, _shape, _need in (("conv2d", "1x3x8x8", "fastml.functional:conv2d"), ("matmul", "3x4x5@3x5x6", "fastml:matmul"),
                           ("linear_backward", "4x16->8", "fastml.functional:linear_backward"),
                           ("scaled_dot_product_attention", "1x2x8x16", "fastml.functional:scaled_dot_product_attention")):
    register(Case(_op, "overhead", _shape, True, (_need,), _build_small(_op)))


# ---------------------------------------------------------------- softmax / log_softmax

def _build_softmax(op, shape, dim, masked=False):
    def build():
        torch = torch_or_none()
        F = _F()
        x = _randn(shape, 3.0)
        if masked:  # the last half of each row is -inf (padding or a causal mask): exp of -inf must stay cheap
            x[..., shape[-1] // 2:] = -np.inf
        log = op.startswith("log_")
        fwd = F.log_softmax if log else F.softmax
        impls, notes = {}, []
        if not op.endswith("_backward"):
            o_fm, o_np = np.empty_like(x), np.empty_like(x)
            impls["fastml"] = lambda: fwd(x, dim, out=o_fm)
            impls["fastml(alloc)"] = lambda: fwd(x, dim)

            def np_impl(out=None):
                m = x.max(axis=dim, keepdims=True)
                y = np.subtract(x, m, out=out)
                if log:
                    e = np.exp(y)
                    y -= np.log(e.sum(axis=dim, keepdims=True))
                else:
                    np.exp(y, out=y)
                    y /= y.sum(axis=dim, keepdims=True)
                return y
            impls["numpy"] = lambda: np_impl(o_np)
            impls["numpy(alloc)"] = lambda: np_impl()
            if torch is not None:
                xt, ot = torch.from_numpy(x), torch.empty(shape)
                tf = torch.log_softmax if log else torch.softmax
                impls["torch"] = lambda: tf(xt, dim, out=ot)
                impls["torch(alloc)"] = lambda: tf(xt, dim)
            nbytes = 2 * x.nbytes
        else:
            bwd = F.log_softmax_backward if log else F.softmax_backward
            y = np.asarray(x - x.max(axis=dim, keepdims=True), dtype=F32)
            if log:
                y -= np.log(np.exp(y).sum(axis=dim, keepdims=True))
            else:
                y = np.exp(y)
                y /= y.sum(axis=dim, keepdims=True)
            y = y.astype(F32)
            g = _randn(shape)
            o_fm, o_np = np.empty_like(x), np.empty_like(x)
            impls["fastml"] = lambda: bwd(g, y, dim, out=o_fm)
            impls["fastml(alloc)"] = lambda: bwd(g, y, dim)

            def np_impl(out=None):
                if log:   # g - exp(y) * sum(g)
                    r = np.exp(y, out=out)
                    r *= g.sum(axis=dim, keepdims=True)
                    return np.subtract(g, r, out=r)
                r = np.multiply(g, y, out=out)   # y * (g - sum(g*y))
                s = r.sum(axis=dim, keepdims=True)
                np.subtract(g, s, out=r)
                r *= y
                return r
            impls["numpy"] = lambda: np_impl(o_np)
            if torch is not None:
                A = torch.ops.aten
                gt, yt, ot = torch.from_numpy(g), torch.from_numpy(y), torch.empty(shape)
                if log:
                    impls["torch"] = lambda: A._log_softmax_backward_data.out(gt, yt, dim, torch.float32, out=ot)
                    impls["torch(alloc)"] = lambda: A._log_softmax_backward_data(gt, yt, dim, torch.float32)
                else:
                    impls["torch"] = lambda: A._softmax_backward_data.out(gt, yt, dim, torch.float32, grad_input=ot)
                    impls["torch(alloc)"] = lambda: A._softmax_backward_data(gt, yt, dim, torch.float32)
            nbytes = 3 * x.nbytes
        return Prepared(impls, bytes=nbytes, notes=notes)
    return build


for _op in ("softmax", "log_softmax", "softmax_backward", "log_softmax_backward"):
    for _shape, _dim, _quick, _full in (((4096, 1024), -1, False, True), ((1024, 4096), 0, False, True),
                                        ((256, 1024), -1, True, False)):
        register(Case(_op, "softmax", "x".join(map(str, _shape)) + f",dim={_dim}", _quick,
                      (f"fastml.functional:{_op}",), _build_softmax(_op, _shape, _dim), ELEMENTWISE_BARS,
                      full=_full))
for _op in ("softmax", "log_softmax"):
    for _shape, _quick, _full in (((4096, 1024), False, True), ((256, 1024), True, False)):
        register(Case(_op, "softmax", "x".join(map(str, _shape)) + ",dim=-1,half -inf", _quick,
                      (f"fastml.functional:{_op}",), _build_softmax(_op, _shape, -1, masked=True),
                      ELEMENTWISE_BARS, full=_full))


from .cases_loss import register_loss_cases  # noqa: E402
from .cases_optim import register_optim_cases  # noqa: E402
from .cases_gemm import register_gemm_cases  # noqa: E402
from .cases_conv_fast import register_conv_fast_cases  # noqa: E402
from .cases_conv import register_conv_cases  # noqa: E402
from .cases_rnn import register_rnn_cases  # noqa: E402
from .cases_pool import register_pool_cases  # noqa: E402

register_loss_cases(register, Case, ELEMENTWISE_BARS)
register_optim_cases(register, Bar, Case, Prepared, torch_or_none, _optim)
register_gemm_cases(register, Bar, Case)
register_conv_fast_cases(register, Bar, Case)
register_conv_cases(register, Bar, Case)
register_rnn_cases(register, Bar, Case)
register_pool_cases(register, Bar, Case)

from .cases_attention import register_attention_cases  # noqa: E402

register_attention_cases(register, Bar, Case)


# ---------------------------------------------------------------- selection

GROUPS = ("activation", "overhead", "softmax", "loss", "optim", "gemm", "conv_fast", "conv", "pool", "rnn", "attention")


def select_cases(ops=None, quick=False) -> list:
    """Cases in registry order. `ops` tokens match a group, an op, or an op's forward name
    (``relu`` selects relu, relu_backward and the relu overhead case); None selects all."""
    out = []
    for c in CASES:
        if not (c.quick if quick else c.full):
            continue
        if ops:
            base = c.op[: -len("_backward")] if c.op.endswith("_backward") else c.op
            if not any(tok in (c.group, c.op, base, c.name) for tok in ops):
                continue
        out.append(c)
    return out
