"""Backend selection: which implementation runs a call.

* ``cpu``   -- the compiled module ``fastml._C`` (float32, runtime ISA dispatch, OpenMP).
* ``numpy`` -- pure NumPy, always present; runs float64 input, and everything when ``_C`` is missing.
* ``cuda``  -- the optional module ``fastml._C_cuda``, for arrays exposing ``__cuda_array_interface__``
  (CuPy arrays, torch CUDA tensors); results come back as the caller's array type.

Selection is by input type and dtype. ``FASTML_BACKEND=cpu|numpy|cuda`` or ``use_backend(name)`` forces one.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import os
import sys
import warnings

import numpy as np

BACKENDS = ("cpu", "numpy", "cuda")

def _import_extension(name):
    """(module, None) on success; (None, reason) when it was not built or failed to load."""
    full = f"{__package__}.{name}"
    try:
        if importlib.util.find_spec(full) is None:
            return None, "not built"
        return importlib.import_module(full), None
    except ImportError as exc:
        return None, f"{type(exc).__name__}: {exc}"


_C, CPU_IMPORT_ERROR = _import_extension("_C")
if _C is None and os.environ.get("FASTML_PURE_PYTHON", "").lower() not in ("1", "true", "yes"):
    # keep working through NumPy, but say why, once
    warnings.warn(
        f"fastml: the compiled module fastml._C could not be imported ({CPU_IMPORT_ERROR}); "
        "every op runs on the NumPy backend. fastml.info() has the details.",
        RuntimeWarning,
        stacklevel=2,
    )

_C_cuda, CUDA_IMPORT_ERROR = _import_extension("_C_cuda")
if CUDA_IMPORT_ERROR == "not built":
    CUDA_IMPORT_ERROR = "not built (no CUDA compiler at build time, or FASTML_CUDA=OFF)"

HAS_CPU_EXT = _C is not None
HAS_CUDA_EXT = _C_cuda is not None

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)


def _env_backend():
    name = os.environ.get("FASTML_BACKEND", "").strip().lower()
    if not name:
        return None
    if name not in BACKENDS:
        warnings.warn(f"fastml: ignoring FASTML_BACKEND={name!r}; expected one of {BACKENDS}", RuntimeWarning, stacklevel=2)
        return None
    return name


_forced: contextvars.ContextVar = contextvars.ContextVar("fastml_backend", default=_env_backend())


def forced_backend():
    """The backend forced by ``use_backend``/``FASTML_BACKEND``, or None for automatic selection."""
    return _forced.get()


@contextlib.contextmanager
def use_backend(name: str):
    """Force a backend inside a ``with`` block (per thread / asyncio task)::

        with fastml.use_backend("numpy"):
            y = fastml.functional.softmax(x)
    """
    if name not in BACKENDS:
        raise ValueError(f"use_backend: expected one of {BACKENDS}, got {name!r}")
    if name == "cpu" and _C is None:
        raise RuntimeError(f"use_backend('cpu'): the compiled module is unavailable ({CPU_IMPORT_ERROR})")
    if name == "cuda" and _C_cuda is None:
        raise RuntimeError(f"use_backend('cuda'): the CUDA module is unavailable ({CUDA_IMPORT_ERROR})")
    token = _forced.set(name)
    try:
        yield
    finally:
        _forced.reset(token)


def cpu_fast_path(x) -> bool:
    """True when ``x`` is a float32 ndarray and the compiled CPU backend should run it (the hot check)."""
    return type(x) is np.ndarray and x.dtype == F32 and _C is not None and _forced.get() in (None, "cpu")


def is_device_array(x) -> bool:
    """True for GPU arrays (CuPy, torch CUDA tensors, anything with ``__cuda_array_interface__``)."""
    if type(x) is np.ndarray:
        return False
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        # torch builds its whole interface dict (and looks up its current stream) for hasattr: ask directly
        return x.is_cuda
    try:
        return hasattr(x, "__cuda_array_interface__")
    except RuntimeError:
        # torch refuses the interface (RuntimeError, not AttributeError) on CUDA tensors that require
        # grad; they are device arrays all the same (fastml/_cuda_ops.py reads them through .detach()).
        return True


def as_float_array(x, op: str, arg: str) -> np.ndarray:
    """``np.asarray(x)`` for a floating input; float16 and integer input raise (no silent casts)."""
    a = np.asarray(x)
    if a.dtype != F32 and a.dtype != F64:
        raise TypeError(f"{op}: expected float32 or float64 for {arg}, got {a.dtype}")
    return a


def host_backend(dtype, op: str) -> str:
    """'cpu' or 'numpy' for a host array of this float dtype, honouring a forced backend."""
    forced = _forced.get()
    if forced == "cuda":
        raise TypeError(f"{op}: the 'cuda' backend is forced but the input is a host (NumPy) array")
    if forced == "numpy" or _C is None:
        return "numpy"
    # float64 always runs on the NumPy backend, in float64: the compiled kernels are float32 and a
    # silent downcast is never acceptable (this holds under use_backend("cpu") too).
    return "cpu" if dtype == F32 else "numpy"


def require_int(v, op: str, arg: str) -> int:
    """v as an int: a Python or NumPy integer (not a bool, not a float that happens to be whole), as torch's
    layer constructors require; TypeError naming ``arg`` otherwise."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{op}: expected an int for {arg}, got {type(v).__name__} {v!r}")
    return int(v)


def check_out_array(out, shape, dtype, op: str) -> None:
    """The layout-independent rules for an ``out=`` array: a numpy array of the exact dtype and shape."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{op}: expected a numpy array for out, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{op}: expected {np.dtype(dtype)} for out, got {out.dtype}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{op}: expected out of shape {tuple(shape)}, got {tuple(out.shape)}")


def check_out(out, shape, dtype, op: str) -> np.ndarray:
    """Validate an ``out=`` array for the NumPy backend (same rules as the compiled one)."""
    check_out_array(out, shape, dtype, op)
    if not out.flags.c_contiguous:
        raise ValueError(f"{op}: expected a C-contiguous array for out, got a strided view")
    if not out.flags.writeable:
        raise ValueError(f"{op}: expected a writeable array for out, got a read-only one")
    return out


def _byte_range(a):
    start = a.__array_interface__["data"][0]
    return start, start + a.nbytes


def check_out_overlap(out, op: str, exact_ok=(), disjoint=()) -> None:
    """NumPy-path mirror of the compiled checks (csrc/bind: partially_overlaps): ``exact_ok`` are
    (name, array) pairs that out may alias exactly but not partially, ``disjoint`` ones it may not touch.
    Strided arrays are skipped, as the compiled path copies them before the kernel runs (see unalias)."""
    o0, o1 = _byte_range(out)
    if o0 == o1:
        return
    for pairs, exact in ((exact_ok, True), (disjoint, False)):
        for arg, a in pairs:
            if a is None or not isinstance(a, np.ndarray) or not a.flags.c_contiguous or a.nbytes == 0:
                continue
            a0, a1 = _byte_range(a)
            if not (a0 < o1 and o0 < a1):
                continue
            if (a0, a1) == (o0, o1):
                if exact:
                    continue
            elif exact:
                raise ValueError(f"{op}: out partially overlaps {arg} (only exact aliasing is allowed)")
            raise ValueError(f"{op}: expected out not to share memory with {arg}, got an array overlapping it")


def unalias(x: np.ndarray, out) -> np.ndarray:
    """``x``, or a copy of it where it is a strided view that may share memory with ``out``: what the
    compiled path does with strided inputs, so that a NumPy computation in several passes never reads
    what it has already written."""
    if out is not None and not x.flags.c_contiguous and np.may_share_memory(x, out):
        return x.copy()
    return x


def cuda_module():
    """fastml._cuda_ops (imported on first use), or RuntimeError when the CUDA module is unavailable."""
    global _cuda_ops
    if _C_cuda is None:
        raise RuntimeError(f"fastml: a CUDA array was passed but the CUDA module is unavailable ({CUDA_IMPORT_ERROR})")
    if _cuda_ops is None:
        from . import _cuda_ops as ops

        _cuda_ops = ops
    return _cuda_ops


_cuda_ops = None


# ---- ISA and threads ------------------------------------------------------------------------------

def available_isas() -> list:
    """ISAs this CPU can run, lowest first (empty without the compiled module)."""
    if _C is None:
        return []
    return [i for i in ("scalar", "avx2", "avx512") if _C.isa_supported(i)]


@contextlib.contextmanager
def use_isa(name: str):
    """Force a CPU ISA (``scalar``, ``avx2``, ``avx512``) inside a ``with`` block. Process-wide: meant
    for tests and benchmarks. ``FASTML_ISA`` does the same for a whole process."""
    if _C is None:
        raise RuntimeError(f"use_isa: the compiled module is unavailable ({CPU_IMPORT_ERROR})")
    old = _C.get_isa()
    _C.set_isa(name)
    try:
        yield
    finally:
        _C.set_isa(old)


def get_num_threads() -> int:
    """Threads the compiled kernels use (default: ``OMP_NUM_THREADS``, else the physical cores)."""
    return _C.get_num_threads() if _C is not None else 1


def set_num_threads(n: int) -> None:
    """Set the thread count of the compiled kernels (n >= 1). Small calls still run on one thread."""
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: expected a thread count >= 1, got {n}")
    if _C is not None:
        _C.set_num_threads(n)
