"""Python side of the CUDA backend: arrays that expose ``__cuda_array_interface__`` (CuPy arrays, torch
CUDA tensors) run on the GPU zero-copy, on the caller's stream, and results come back as the caller's
array type.

The public functions (``fastml.functional``, ``fastml.optim.functional``) call these when their input is
a device array. Here every argument is read from its ``__cuda_array_interface__`` (version 2 or 3: data
pointer, shape, strides, typestr, read-only flag, stream) and validated exactly like the CPU path
("op: expected ..., got ..." ``ValueError``/``TypeError``) before anything is allocated or launched.
Then raw device pointers (ints), sizes and the stream handle go to ``fastml._C_cuda``, which releases
the GIL around the (asynchronous) launch.

Rules, as on the CPU:

* float32 only (typestr ``'<f4'``); anything else is a ``TypeError`` (no silent casts).
* Inputs that are not C-contiguous are copied once with the caller's library (``.contiguous()`` for torch,
  ``cupy.ascontiguousarray`` for CuPy). Arrays that are written (``out=``, parameters, optimizer state)
  must be C-contiguous and writeable: an update must never land in a temporary copy.
* ``out`` may alias an input exactly; partial overlaps are rejected.
* Stream: the interface's ``stream`` field (v3: 1 = legacy default stream, 2 = per-thread default
  stream, other ints = a ``cudaStream_t``; 0 is invalid). Without a stream field, torch tensors run on
  torch's current stream of their device, everything else on the legacy default stream.
* Outputs are allocated with the caller's library (``torch.empty_like`` / ``cupy.empty_like``).
"""
from __future__ import annotations

import bisect
import math
import operator
import sys

from . import _backend as _B

# The compiled module; a module attribute so that tests can substitute a recorder for it.
_K = _B._C_cuda

_ACT_NAMES = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu")
_ACT_SAVED = ("input", "input", "output", "output", "input", "input")  # csrc/ops/activation/activation.h

_LEGACY_DEFAULT_STREAM = 1


class DeviceArray:
    """A parsed ``__cuda_array_interface__``: the object, its pointer, shape, strides and stream."""

    __slots__ = ("obj", "ptr", "shape", "strides", "readonly", "_stream", "_device", "library", "size")

    def __init__(self, obj, ptr, shape, strides, readonly, stream, library):
        self.obj = obj
        self.ptr = ptr
        self.shape = shape
        self.strides = strides
        self.readonly = readonly
        self._stream = stream  # None: torch's current stream, looked up when first needed
        self._device = None  # looked up when first needed
        self.library = library
        self.size = math.prod(shape)

    @property
    def device(self):
        """The index of the GPU that owns the data as the array's library reports it (torch, CuPy), or -1
        for other producers of the interface (the compiled side then asks the driver)."""
        if self._device is None:
            if self.library == "torch":
                self._device = self.obj.get_device()
            elif self.library == "cupy":
                self._device = self.obj.device.id
            else:
                self._device = -1
        return self._device

    @property
    def stream(self):
        if self._stream is None:
            self._stream = _torch_current_stream(self.obj) or _LEGACY_DEFAULT_STREAM
        return self._stream

    @property
    def nbytes(self):
        return self.size * 4

    @property
    def c_contiguous(self):
        if self.strides is None or self.size <= 1:
            return True
        expected = 4
        for n, s in zip(reversed(self.shape), reversed(self.strides)):
            if n != 1 and s != expected:
                return False
            expected *= n
        return True


def _type_name(obj):
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ not in (None, "builtins") else t.__qualname__


def _library(obj):
    """'torch', 'cupy' or None (another producer of __cuda_array_interface__)."""
    root = (type(obj).__module__ or "").split(".", 1)[0]
    return root if root in ("torch", "cupy") else None


def _dtype_name(typestr):
    try:
        import numpy as np

        return str(np.dtype(typestr))
    except TypeError:
        return repr(typestr)


def _interface(obj, op, arg):
    lib = _library(obj)
    try:
        if lib == "torch" and obj.requires_grad:
            obj = obj.detach()  # same storage; torch refuses the interface on tensors that require grad
        iface = obj.__cuda_array_interface__
    except AttributeError:
        raise TypeError(f"{op}: expected a CUDA array (with __cuda_array_interface__) for {arg}, "
                        f"got {_type_name(obj)}") from None
    if not isinstance(iface, dict):
        raise TypeError(f"{op}: expected a dict from {arg}.__cuda_array_interface__, got {type(iface).__name__}")
    return iface, lib


def _stream_of(iface, op, arg):
    if "stream" not in iface:
        return None  # decided by the caller (torch: its current stream; others: legacy default)
    s = iface["stream"]
    if s is None:
        return _LEGACY_DEFAULT_STREAM
    s = int(s)
    if s == 0:
        raise ValueError(f"{op}: expected a stream handle other than 0 in {arg}.__cuda_array_interface__ "
                         "(0 is disallowed by the protocol), got 0")
    return s


def _parse_torch(obj, op, arg):
    """torch tensors, read directly (faster than building their __cuda_array_interface__ dict)."""
    import torch

    if not obj.is_cuda:
        raise TypeError(f"{op}: expected a CUDA array (with __cuda_array_interface__) for {arg}, "
                        f"got a torch tensor on {obj.device}")
    if obj.dtype != torch.float32:
        raise TypeError(f"{op}: expected float32 for {arg}, got {str(obj.dtype).replace('torch.', '')}")
    if obj.layout != torch.strided:
        raise TypeError(f"{op}: expected a dense (strided) tensor for {arg}, got layout {obj.layout}")
    shape = tuple(obj.shape)
    ptr = obj.data_ptr() if obj.numel() > 0 else 0
    strides = None if obj.is_contiguous() else tuple(4 * st for st in obj.stride())
    return DeviceArray(obj, ptr, shape, strides, False, None, "torch")


def _torch_types():
    """(torch.Tensor, torch.float32, torch.strided) once torch is imported, else None (never imports it)."""
    global _TORCH_TYPES
    if _TORCH_TYPES is None:
        torch = sys.modules.get("torch")
        if torch is not None:
            _TORCH_TYPES = (torch.Tensor, torch.float32, torch.strided)
    return _TORCH_TYPES


_TORCH_TYPES = None


def _torch_direct(obj):
    """A contiguous float32 CUDA torch tensor (the usual input, parameter or state) read with a few attribute
    lookups, or None for anything else (which parse() then reads and words the error for)."""
    tt = _torch_types()
    if (tt is None or not isinstance(obj, tt[0]) or not obj.is_cuda or obj.dtype is not tt[1]
            or obj.layout is not tt[2] or not obj.is_contiguous()):
        return None
    a = DeviceArray(obj, 0, tuple(obj.shape), None, False, None, "torch")
    if a.size:
        a.ptr = obj.data_ptr()
    return a


def parse(obj, op, arg):
    """Read and check ``obj.__cuda_array_interface__`` (float32, no mask) into a :class:`DeviceArray`."""
    a = _torch_direct(obj)
    if a is not None:
        return a
    if _library(obj) == "torch" and hasattr(type(obj), "is_cuda"):
        return _parse_torch(obj, op, arg)
    iface, lib = _interface(obj, op, arg)
    version = iface.get("version", 0)
    if not isinstance(version, int) or version < 2:
        raise TypeError(f"{op}: expected __cuda_array_interface__ version >= 2 for {arg}, got {version!r}")
    typestr = iface.get("typestr")
    if typestr != "<f4":
        raise TypeError(f"{op}: expected float32 for {arg}, got {_dtype_name(typestr)}")
    if iface.get("mask") is not None:
        raise TypeError(f"{op}: expected an array without a mask for {arg}, got a masked array")
    try:
        shape = tuple(operator.index(n) for n in iface["shape"])
        ptr, readonly = iface["data"]
        ptr = operator.index(ptr)
    except (KeyError, TypeError, ValueError):
        raise TypeError(f"{op}: expected a valid __cuda_array_interface__ (shape, data) for {arg}, "
                        f"got {iface!r}") from None
    strides = iface.get("strides")
    if strides is not None:
        strides = tuple(operator.index(s) for s in strides)
        if len(strides) != len(shape):
            raise TypeError(f"{op}: expected {len(shape)} strides for {arg}, got {strides}")
    if any(n < 0 for n in shape):
        raise TypeError(f"{op}: expected a non-negative shape for {arg}, got {shape}")
    stream = _stream_of(iface, op, arg)
    if stream is None and lib != "torch":
        stream = _LEGACY_DEFAULT_STREAM
    a = DeviceArray(obj, ptr, shape, strides, bool(readonly), stream, lib)
    if a.size > 0 and ptr == 0:
        raise ValueError(f"{op}: expected a non-null data pointer for {arg} of shape {shape}, got 0")
    return a


def input_array(obj, op, arg):
    """A read-only input: parsed, and copied once with the caller's library when not C-contiguous."""
    a = parse(obj, op, arg)
    if a.c_contiguous:
        return a
    if a.library == "torch":
        return parse(obj.detach().contiguous(), op, arg)
    if a.library == "cupy":
        import cupy

        return parse(cupy.ascontiguousarray(obj), op, arg)
    raise ValueError(f"{op}: expected a C-contiguous array for {arg} (fastml cannot copy a "
                     f"{_type_name(obj)}), got strides {a.strides} for shape {a.shape}")


def inplace_array(obj, op, arg):
    """An array that is written (out=, parameters, optimizer state): C-contiguous and writeable."""
    a = parse(obj, op, arg)
    if not a.c_contiguous:
        raise ValueError(f"{op}: expected a C-contiguous array for {arg} (updated in place, so it cannot be "
                         f"copied), got a strided view of shape {a.shape}")
    if a.readonly:
        raise ValueError(f"{op}: expected a writeable array for {arg}, got a read-only one")
    return a


def _torch_current_stream(t):
    """torch's current stream on t's device as a raw handle (0: the legacy default stream)."""
    global _TORCH_RAW_STREAM
    if _TORCH_RAW_STREAM is None:
        import torch

        # a few us cheaper than the Stream object; False where this torch lacks it
        _TORCH_RAW_STREAM = getattr(torch._C, "_cuda_getCurrentRawStream", None) or False
    if _TORCH_RAW_STREAM:
        return int(_TORCH_RAW_STREAM(t.get_device()))
    import torch

    return int(torch.cuda.current_stream(t.device).cuda_stream)


_TORCH_RAW_STREAM = None


def _shape_str(shape):
    return str(tuple(shape))


def _label(name):
    """An argument's name: a string, or (list name, index) formatted only when a message needs it."""
    return name if isinstance(name, str) else f"{name[0]}[{name[1]}]"


def check_same_device(op, arrays):
    """Arrays whose library reports a device must all be on the same one. ``arrays``: (name, array) pairs,
    names as _label takes them."""
    first = None
    for name, a in arrays:
        d = a.device
        if d < 0:
            continue
        if first is None:
            first = (name, d)
        elif d != first[1]:
            raise ValueError(f"{op}: expected {_label(name)} on the device of {_label(first[0])} "
                             f"(cuda:{first[1]}), got cuda:{d}")


def partially_overlaps(a, b):
    if a.nbytes == 0 or b.nbytes == 0:
        return False
    if a.ptr == b.ptr and a.nbytes == b.nbytes:
        return False
    return a.ptr < b.ptr + b.nbytes and b.ptr < a.ptr + a.nbytes


def overlaps(a, b):
    return a.nbytes > 0 and b.nbytes > 0 and a.ptr < b.ptr + b.nbytes and b.ptr < a.ptr + a.nbytes


def empty_like(a, op):
    """A new C-contiguous float32 array of a's shape, from a's library."""
    if a.library == "torch":
        import torch

        # a is C-contiguous, so torch's default (preserve the layout) gives a contiguous tensor, ~1 us
        # cheaper than naming the format; factories never require grad, so the tensor is read directly
        obj = torch.empty_like(a.obj)
        d = _torch_direct(obj)
        if d is None:  # (not expected; kept as the safe path)
            d = parse(torch.empty_like(a.obj, memory_format=torch.contiguous_format), op, "out")
        return d
    if a.library == "cupy":
        import cupy

        return parse(cupy.empty_like(a.obj, order="C"), op, "out")
    raise TypeError(f"{op}: cannot allocate an output like a {_type_name(a.obj)} (only torch and CuPy arrays "
                    "are known); pass out=")


def output_array(out, like, op):
    """``out`` checked against ``like``'s shape, or a new array of the caller's type."""
    if out is None:
        return empty_like(like, op)
    o = inplace_array(out, op, "out")
    if o.shape != like.shape:
        raise ValueError(f"{op}: expected out of shape {_shape_str(like.shape)}, got {_shape_str(o.shape)}")
    return o


# ---- activations ------------------------------------------------------------------------------------

def _act_kind(kind):
    k = operator.index(kind)
    if not 0 <= k < len(_ACT_NAMES):
        raise ValueError(f"activation: unknown kind {k}")
    return k


def activation_forward(kind, input, out=None, param=0.0):
    """``y = f(x)`` for the activation ``kind`` (csrc/ops/activation/activation.h ActKind order)."""
    k = _act_kind(kind)
    op = _ACT_NAMES[k]
    x = input_array(input, op, "input")
    y = output_array(out, x, op)
    check_same_device(op, [("input", x), ("out", y)])
    if partially_overlaps(x, y):
        raise ValueError(f"{op}: out partially overlaps input (only exact aliasing is allowed)")
    _K.activation_forward(k, x.ptr, y.ptr, x.size, float(param), x.device, x.stream)
    return y.obj


def activation_backward(kind, grad_output, saved, out=None, param=0.0):
    """``grad_input = grad_output * f'(saved)``; ``saved`` is the input or the output (see ActKind)."""
    k = _act_kind(kind)
    op = _ACT_NAMES[k]
    saved_name = _ACT_SAVED[k]
    g = input_array(grad_output, op, "grad_output")
    s = input_array(saved, op, saved_name)
    if g.shape != s.shape:
        raise ValueError(f"{op}_backward: expected grad_output of shape {_shape_str(s.shape)}, "
                         f"got {_shape_str(g.shape)}")
    gx = output_array(out, g, op)
    check_same_device(op, [("grad_output", g), (saved_name, s), ("out", gx)])
    if partially_overlaps(g, gx) or partially_overlaps(s, gx):
        raise ValueError(f"{op}_backward: out partially overlaps an input (only exact aliasing is allowed)")
    _K.activation_backward(k, g.ptr, s.ptr, gx.ptr, g.size, float(param), g.device, g.stream)
    return gx.obj


# ---- softmax ----------------------------------------------------------------------------------------

def _split_dim(shape, dim, op):
    """(outer, dim, inner) sizes of ``shape`` around axis ``dim`` (a 0-d array is one row of one)."""
    try:
        d = operator.index(dim)
    except TypeError:
        raise TypeError(f"{op}: expected an int for dim, got {type(dim).__name__}") from None
    nd = len(shape)
    lo, hi = (-1, 0) if nd == 0 else (-nd, nd - 1)
    if not lo <= d <= hi:
        raise ValueError(f"{op}: expected dim in [{lo}, {hi}] for an input of shape {_shape_str(shape)}, got {d}")
    if nd == 0:
        return 1, 1, 1
    d %= nd
    return math.prod(shape[:d]), shape[d], math.prod(shape[d + 1:])


def softmax_forward(input, dim, log, out=None):
    """softmax (``log=False``) or log_softmax (``log=True``) of ``input`` along ``dim``."""
    op = "log_softmax" if log else "softmax"
    x = input_array(input, op, "input")
    outer, n, inner = _split_dim(x.shape, dim, op)
    y = output_array(out, x, op)
    check_same_device(op, [("input", x), ("out", y)])
    if partially_overlaps(x, y):
        raise ValueError(f"{op}: out partially overlaps input (only exact aliasing is allowed)")
    _K.softmax_forward(x.ptr, y.ptr, outer, n, inner, bool(log), x.device, x.stream)
    return y.obj


def softmax_backward(grad_output, output, dim, log, out=None):
    """Gradient of softmax / log_softmax along ``dim`` from the forward ``output``."""
    op = "log_softmax_backward" if log else "softmax_backward"
    g = input_array(grad_output, op, "grad_output")
    y = input_array(output, op, "output")
    if g.shape != y.shape:
        raise ValueError(f"{op}: expected grad_output of shape {_shape_str(y.shape)}, got {_shape_str(g.shape)}")
    outer, n, inner = _split_dim(g.shape, dim, op)
    gx = output_array(out, g, op)
    check_same_device(op, [("grad_output", g), ("output", y), ("out", gx)])
    if partially_overlaps(g, gx) or partially_overlaps(y, gx):
        raise ValueError(f"{op}: out partially overlaps an input (only exact aliasing is allowed)")
    _K.softmax_backward(g.ptr, y.ptr, gx.ptr, outer, n, inner, bool(log), g.device, g.stream)
    return gx.obj


# ---- optimizers ---------------------------------------------------------------------------------------

def _as_list(seq, op, arg):
    if isinstance(seq, (list, tuple)):
        return list(seq)
    raise TypeError(f"{op}: expected a list of CUDA arrays for {arg}, got {_type_name(seq)}")


def _parse_list(lst, op, name, inplace):
    """Parse one list of a multi-tensor call; the argument name is formatted only for what is not a
    contiguous float32 CUDA torch tensor."""
    out = []
    for i, obj in enumerate(lst):
        a = _torch_direct(obj)
        if a is None:
            a = (inplace_array if inplace else input_array)(obj, op, f"{name}[{i}]")
        out.append(a)
    return out


class _Launch:
    """What a multi-tensor kernel call needs: the pointer lists by list name ([] for a state list not
    given), the params' element counts, and the call's device and stream."""

    __slots__ = ("ptrs", "sizes", "device", "_stream", "_first")

    def __init__(self, ptrs, sizes, device, stream, first=None):
        self.ptrs, self.sizes, self.device, self._stream, self._first = ptrs, sizes, device, stream, first

    @property
    def stream(self):
        if self._stream is None:  # torch's current stream of the first tensor's device, read on demand
            self._stream = _torch_current_stream(self._first) or _LEGACY_DEFAULT_STREAM
        return self._stream


def _tensor_lists(op, params, grads, states):
    """Parse params (in place), grads (inputs) and the named state lists (in place, or None) into a
    :class:`_Launch`, after checking lengths, shapes, devices and that nothing written overlaps anything
    else. Lists of contiguous float32 CUDA torch tensors (a model's parameters and state, on every step)
    are checked in one pass that names nothing; anything else, and any failed check, goes through the
    general parse, which words the error."""
    ps = _as_list(params, op, "params")
    gs = _as_list(grads, op, "grads")
    fast = _torch_lists(ps, gs, states)
    if fast is not None:
        return fast
    if len(gs) != len(ps):
        raise ValueError(f"{op}: expected {len(ps)} grads (one per param), got {len(gs)}")
    P = _parse_list(ps, op, "params", True)
    G = _parse_list(gs, op, "grads", False)
    S = {}
    for name, lst in states.items():
        if lst is None:
            S[name] = None
            continue
        lst = _as_list(lst, op, name)
        if len(lst) != len(ps):
            raise ValueError(f"{op}: expected {len(ps)} {name} (one per param), got {len(lst)}")
        S[name] = _parse_list(lst, op, name, True)
    lists = [("grads", G)] + [(name, lst) for name, lst in S.items() if lst is not None]
    for name, lst in lists:
        for i, (p, a) in enumerate(zip(P, lst)):
            if a.shape != p.shape:
                raise ValueError(f"{op}: expected {name}[{i}] of shape {_shape_str(p.shape)}, "
                                 f"got {_shape_str(a.shape)}")
    lists.insert(0, ("params", P))
    check_same_device(op, (((name, i), a) for name, lst in lists for i, a in enumerate(lst)))
    _check_no_overlap(op, [lst for lst in lists if lst[0] != "grads"], [("grads", G)])
    first = P[0] if P else (G[0] if G else None)
    ptrs = {"params": _ptrs(P), "grads": _ptrs(G), **{name: _ptrs(lst) for name, lst in S.items()}}
    if first is None:
        return _Launch(ptrs, [], -1, _LEGACY_DEFAULT_STREAM)
    return _Launch(ptrs, [p.size for p in P], first.device, first.stream)


def _torch_lists(ps, gs, states):
    """The :class:`_Launch` of lists that are all contiguous float32 CUDA torch tensors on one device, with
    matching shapes and no written memory shared; None for anything else (the caller's general path).
    _torch_direct's checks are inlined here: a DeviceArray per tensor is the cost this path avoids."""
    tt = _torch_types()
    if tt is None or not ps or len(gs) != len(ps):
        return None
    T, f32, strided = tt
    p0 = ps[0]
    if not isinstance(p0, T) or not p0.is_cuda:
        return None
    dev = p0.get_device()
    shapes = [p.shape for p in ps]
    seqs = [("params", ps), ("grads", gs)]
    for name, lst in states.items():
        if lst is not None:
            if not isinstance(lst, (list, tuple)) or len(lst) != len(ps):
                return None
            seqs.append((name, lst))
    ptrs, spans, grad_spans, sizes = {}, [], None, None
    for name, lst in seqs:
        pl, sp = [], []
        for obj, shape in zip(lst, shapes):
            # (get_device() is -1 off the GPU, and dev >= 0: p0 is a CUDA tensor)
            if not (isinstance(obj, T) and obj.get_device() == dev and obj.dtype is f32 and obj.layout is strided
                    and obj.is_contiguous() and obj.shape == shape):
                return None
            n = obj.numel()
            ptr = obj.data_ptr() if n else 0
            pl.append(ptr)
            sp.append((ptr, n))
        ptrs[name] = pl
        if name == "params":
            sizes = [n for _, n in sp]
        if name == "grads":
            grad_spans = sp
        else:
            spans += sp
    # written arrays disjoint from each other, grads disjoint from them (grads may share memory)
    if _overlap([(ptr, ptr + 4 * n, None) for ptr, n in spans],
                ((ptr, ptr + 4 * n, None) for ptr, n in grad_spans)) is not None:
        return None
    for name, lst in states.items():
        if lst is None:
            ptrs[name] = []
    return _Launch(ptrs, sizes, dev, None, p0)


def _overlap(written, read):
    """The first shared memory among (start, end, tag) byte spans: ("written", tag, tag) for two written
    spans, ("read", read tag, written tag) for a read span and a written one, or None. Empty spans share
    nothing; reads may share memory with each other."""
    w = sorted((e for e in written if e[1] > e[0]), key=lambda e: e[:2])  # stable: ties keep the given order
    for (_, e0, t0), (s1, _, t1) in zip(w, w[1:]):
        if s1 < e0:
            return "written", t0, t1
    starts = [e[0] for e in w]
    for s, e, t in read:
        if e > s:
            # written spans are disjoint and sorted: only the last one starting before e can overlap
            k = bisect.bisect_right(starts, e - 1) - 1
            if k >= 0 and s < w[k][1]:
                return "read", t, w[k][2]
    return None


def _check_no_overlap(op, written, read):
    """Every written array is disjoint from every other array of the call (reads may share memory).
    ``written`` and ``read`` are lists of (list name, arrays)."""
    def spans(lists):
        return [(a.ptr, a.ptr + a.nbytes, (name, i)) for name, lst in lists for i, a in enumerate(lst)]

    hit = _overlap(spans(written), spans(read))
    if hit is None:
        return
    kind, x, y = hit
    if kind == "written":
        raise ValueError(f"{op}: expected {_label(x)} and {_label(y)} to be separate arrays, got overlapping memory")
    raise ValueError(f"{op}: expected {_label(x)} not to overlap {_label(y)} (which is updated), got overlapping "
                     "memory")


def _check_hyper(op, **kw):
    for name, (value, lo, hi) in kw.items():
        v = float(value)
        if not (lo <= v <= hi):  # also rejects NaN
            rng = f">= {lo}" if hi == math.inf else f"in [{lo}, {hi}]"
            raise ValueError(f"{op}: expected {name} {rng}, got {value}")


def _ptrs(arrays):
    return [] if arrays is None else [a.ptr for a in arrays]


def sgd_step(params, grads, momentum_buffers, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, maximize=False, first_step=False):
    """One SGD step (torch.optim.SGD), in place on params and momentum_buffers."""
    op = "sgd_step"
    _check_hyper(op, lr=(lr, 0.0, math.inf), momentum=(momentum, 0.0, math.inf),
                 weight_decay=(weight_decay, 0.0, math.inf))
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"{op}: expected momentum > 0 and dampening == 0 with nesterov=True, "
                         f"got momentum={momentum}, dampening={dampening}")
    if momentum != 0 and momentum_buffers is None:
        raise ValueError(f"{op}: expected momentum_buffers with momentum={momentum}, got None")
    L = _tensor_lists(op, params, grads, {"momentum_buffers": momentum_buffers if momentum != 0 else None})
    _K.sgd_step(L.ptrs["params"], L.ptrs["grads"], L.ptrs["momentum_buffers"], L.sizes, float(lr), float(momentum),
                float(dampening), float(weight_decay), bool(nesterov), bool(maximize), bool(first_step), L.device,
                L.stream)


def rmsprop_step(params, grads, square_avgs, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 momentum_buffers=None, centered=False, grad_avgs=None, maximize=False):
    """One RMSprop step (torch.optim.RMSprop), in place on params and the state lists."""
    op = "rmsprop_step"
    _check_hyper(op, lr=(lr, 0.0, math.inf), alpha=(alpha, 0.0, math.inf), eps=(eps, 0.0, math.inf),
                 weight_decay=(weight_decay, 0.0, math.inf), momentum=(momentum, 0.0, math.inf))
    if momentum > 0 and momentum_buffers is None:
        raise ValueError(f"{op}: expected momentum_buffers with momentum={momentum}, got None")
    if centered and grad_avgs is None:
        raise ValueError(f"{op}: expected grad_avgs with centered=True, got None")
    if square_avgs is None:
        raise ValueError(f"{op}: expected a list of square_avgs, got None")
    L = _tensor_lists(op, params, grads, {
        "square_avgs": square_avgs,
        "momentum_buffers": momentum_buffers if momentum > 0 else None,
        "grad_avgs": grad_avgs if centered else None})
    _K.rmsprop_step(L.ptrs["params"], L.ptrs["grads"], L.ptrs["square_avgs"], L.ptrs["momentum_buffers"],
                    L.ptrs["grad_avgs"], L.sizes, float(lr), float(alpha), float(eps), float(weight_decay),
                    float(momentum), bool(centered), bool(maximize), L.device, L.stream)


def adam_step(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
              weight_decay=0.0, amsgrad=False, max_exp_avg_sqs=None, maximize=False, decoupled=False):
    """One Adam (``decoupled=False``) or AdamW (``decoupled=True``) step, in place; ``step`` counts this
    update (1 on the first call), as torch's ``state['step']`` after its increment."""
    op = "adamw_step" if decoupled else "adam_step"
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"{op}: expected betas as a pair (beta1, beta2), got {betas!r}") from None
    _check_hyper(op, lr=(lr, 0.0, math.inf), eps=(eps, 0.0, math.inf), beta1=(beta1, 0.0, 1.0),
                 beta2=(beta2, 0.0, 1.0), weight_decay=(weight_decay, 0.0, math.inf))
    if float(beta1) >= 1.0 or float(beta2) >= 1.0:
        raise ValueError(f"{op}: expected betas in [0, 1), got {tuple(betas)}")
    try:
        t = operator.index(step)
    except TypeError:
        raise TypeError(f"{op}: expected an int for step, got {type(step).__name__}") from None
    if t < 1:
        raise ValueError(f"{op}: expected step >= 1 (the count of this update), got {t}")
    if amsgrad and max_exp_avg_sqs is None:
        raise ValueError(f"{op}: expected max_exp_avg_sqs with amsgrad=True, got None")
    if exp_avgs is None or exp_avg_sqs is None:
        raise ValueError(f"{op}: expected lists of exp_avgs and exp_avg_sqs, got None")
    L = _tensor_lists(op, params, grads, {
        "exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs,
        "max_exp_avg_sqs": max_exp_avg_sqs if amsgrad else None})
    _K.adam_step(L.ptrs["params"], L.ptrs["grads"], L.ptrs["exp_avgs"], L.ptrs["exp_avg_sqs"],
                 L.ptrs["max_exp_avg_sqs"], L.sizes, t, float(lr), float(beta1), float(beta2), float(eps),
                 float(weight_decay), bool(amsgrad), bool(maximize), bool(decoupled), L.device, L.stream)


def adamw_step(params, grads, exp_avgs, exp_avg_sqs, **kw):
    """One AdamW step (decoupled weight decay): ``adam_step(..., decoupled=True)``."""
    return adam_step(params, grads, exp_avgs, exp_avg_sqs, decoupled=True, **kw)
