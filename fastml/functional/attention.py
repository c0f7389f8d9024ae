"""Attention: scaled dot-product attention (flash-attention style, forward and backward), multi-head
attention with torch ``nn.MultiheadAttention`` numerics, Bahdanau additive attention, sinusoidal
positional encodings.

``scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
scale=None, enable_gqa=False, *, seed=None, sliding_window=None, causal_alignment="top_left", out=None)``
follows
``torch.nn.functional.scaled_dot_product_attention``:

* shapes: query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev); the leading dims of
  query and key/value are equal, except dim -3 (heads) under ``enable_gqa=True``, where the query heads
  must be a multiple g of the key/value heads and kv head j serves query heads j*g .. j*g + g - 1.
* ``attn_mask``: bool (True = may attend) or float (added to the scores), broadcastable to (..., L, S).
* ``is_causal``: top-left aligned lower triangle, key j allowed for query i iff j <= i (torch's
  ``ones(L, S).tril(0)``), also when L != S. It may be combined with ``attn_mask`` here (torch refuses).
* ``causal_alignment="bottom_right"`` (fastml extension; cuDNN's and oneDNN's bottom-right diagonal,
  torch's ``causal_lower_right``): the triangle ends at the last key instead, key j allowed for query i iff
  j <= i + S - L. This is the mask of L new queries at the end of an S-key sequence (a KV cache holding
  S - L earlier keys): the last query sees every key. With L = 1 it allows every key; with L > S the first
  L - S rows see no key (output 0). ``"top_left"`` (the default) is torch's ``is_causal``.
* ``sliding_window=w`` (fastml extension): query i sees keys j with i + d - w < j <= i + d, d = 0 (top-left)
  or S - L (bottom-right: the last w keys for the last query, Mistral-style local attention over a KV
  cache). It implies the causal bound j <= i + d, whether or not ``is_causal`` is set.
* ``attn_mask`` may also be a torch ``CausalBias`` (``torch.nn.attention.bias.causal_upper_left(L, S)`` /
  ``causal_lower_right(L, S)``): it stands for ``is_causal=True`` with the top-left / bottom-right
  alignment, as in torch (which also refuses it together with ``is_causal=True``).
* ``scale`` defaults to 1 / sqrt(E).
* dropout: ``dropout_p`` in [0, 1). The keep mask is a counter-based hash of (seed, flattened batch*head
  index, query row, key column) (splitmix64 per row, murmur3 32-bit finaliser per key;
  ``fastml.reference.attention.dropout_keep_mask``), so the same seed gives the same mask on every
  backend, ISA and thread count, and the backward pass regenerates it. ``scaled_dot_product_attention``
  with ``seed=None`` draws a seed from NumPy's global RNG (``np.random.seed`` makes it reproducible); the
  ``_forward`` / ``_backward`` pair requires ``seed``.
* fully masked rows (no allowed key): output 0, logsumexp -inf, zero gradients. torch's math backend
  gives NaN for such rows (its fused CPU kernels give 0); fastml gives 0 on every backend.

float32 runs the compiled kernels (tiled online softmax, FlashAttention-2; memory O(L), never L x S;
results bitwise identical for any thread count). The forward reads strided inputs in place when each row
(the last dim) is contiguous, e.g. ``x.transpose(0, 2, 1, 3)`` of a (B, L, H, E) buffer or q/k/v sliced
from one packed projection, with the same bits as contiguous copies; the backward copies such inputs.
float64 runs the NumPy backend in float64 (blocked over query rows, also O(L) memory). ``logsumexp`` has
the dtype of the input.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _backend as _B
from .._backend import _C
from .._numpy import attention as _np_att
from ..reference.attention import dropout_threshold

__all__ = ["scaled_dot_product_attention", "scaled_dot_product_attention_forward",
           "scaled_dot_product_attention_backward", "multi_head_attention_forward", "multi_head_attention_backward",
           "additive_attention", "additive_attention_backward", "sinusoidal_positional_encoding"]

_SDPA = "scaled_dot_product_attention"


class _Prep:
    """Normalised problem: 4-d q/k/v (views where the leading dims allow), mask view (B, Hq, L, S) or None,
    options."""
    __slots__ = ("q", "k", "v", "mask", "causal", "window", "diag", "scale", "drop", "lead", "dtype", "B", "Hq",
                 "Hkv", "L", "S", "E", "Ev", "seed", "dropout_p", "inputs")


def _as_array(x, op, name):
    if _B.is_device_array(x):
        raise TypeError(f"{op}: CUDA arrays are not supported by this op yet; pass a host (NumPy) array")
    return _B.as_float_array(x, op, name)


def _prepare(op, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed, sliding_window,
             need_seed, causal_alignment="top_left"):
    q, k, v = (_as_array(a, op, n) for a, n in ((query, "query"), (key, "key"), (value, "value")))
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"{op}: expected query, key, value of one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim:
        raise ValueError(f"{op}: expected query (..., L, E), key (..., S, E), value (..., S, Ev) with the same "
                         f"number of dims (>= 2), got {q.shape}, {k.shape}, {v.shape}")
    L, E = q.shape[-2:]
    S = k.shape[-2]
    if k.shape[-1] != E:
        raise ValueError(f"{op}: expected key of shape (..., S, {E}) (query's E), got {k.shape}")
    if v.shape[:-1] != k.shape[:-1]:
        raise ValueError(f"{op}: expected value of shape {k.shape[:-1] + ('Ev',)} (key's leading dims and S), "
                         f"got {v.shape}")
    Hq = q.shape[-3] if q.ndim >= 3 else 1
    Hkv = k.shape[-3] if k.ndim >= 3 else 1
    if q.shape[:-3] != k.shape[:-3] or (Hq != Hkv and not enable_gqa):
        raise ValueError(f"{op}: expected key/value leading dims {q.shape[:-2]} (query's), got {k.shape[:-2]}"
                         + ("" if enable_gqa else " (pass enable_gqa=True for grouped-query attention)"))
    if Hq != Hkv and (Hkv == 0 or Hq % Hkv):
        raise ValueError(f"{op}: expected query heads ({Hq}) divisible by key/value heads, got {Hkv}")
    if not (0.0 <= float(dropout_p) < 1.0):
        raise ValueError(f"{op}: expected dropout_p in [0, 1), got {dropout_p}")
    if sliding_window is not None and (isinstance(sliding_window, bool) or int(sliding_window) != sliding_window
                                       or int(sliding_window) < 1):
        raise ValueError(f"{op}: expected sliding_window an integer >= 1 or None, got {sliding_window!r}")
    if _is_causal_bias(attn_mask):
        attn_mask, is_causal, causal_alignment = _from_causal_bias(op, attn_mask, is_causal, causal_alignment, L, S)
    if dropout_p > 0 and seed is None:
        if need_seed:
            raise ValueError(f"{op}: dropout_p > 0 needs an explicit seed= (the backward pass regenerates the mask)")
        seed = int(np.random.randint(0, 2**62, dtype=np.int64))
    lead = q.shape[:-2]
    P = _Prep()
    P.lead, P.dtype, P.L, P.S, P.E, P.Ev, P.Hq, P.Hkv = lead, q.dtype, L, S, E, v.shape[-1], Hq, Hkv
    P.B = math.prod(q.shape[:-3]) if q.ndim >= 3 else 1
    # 4-d views where the leading dims allow (the compiled forward reads strided rows in place, e.g. the
    # transpose of a (B, L, H, E) buffer; the backward copies what is not contiguous)
    P.q = q.reshape(P.B, Hq, L, E)
    P.k = k.reshape(P.B, Hkv, S, E)
    P.v = v.reshape(P.B, Hkv, S, P.Ev)
    P.inputs = [q, k, v]  # the caller's arrays, for the out= overlap check
    P.causal, P.window, P.diag = _band(op, is_causal, sliding_window, causal_alignment, L, S)
    P.scale = _scale(E, scale)
    P.dropout_p = float(dropout_p)
    P.seed = None if seed is None else int(seed) & 0xFFFFFFFFFFFFFFFF
    P.drop = (P.dropout_p, 1.0 / (1.0 - P.dropout_p), P.seed) if P.dropout_p > 0 else None
    P.mask = None
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        P.inputs.append(m)
        try:
            full = np.broadcast_shapes(m.shape, lead + (L, S))
        except ValueError:
            full = None
        if full != lead + (L, S):
            raise ValueError(f"{op}: expected attn_mask broadcastable to {lead + (L, S)}, got {m.shape}")
        if m.dtype == bool:
            m = _additive_mask(m, P.dtype)
        elif m.dtype.kind == "f":
            m = m.astype(P.dtype, copy=False)
        else:
            raise TypeError(f"{op}: expected a bool or float attn_mask, got {m.dtype}")
        if m.ndim == 0 or m.shape[-1] != S:  # broadcast along keys: the kernels want unit stride there
            m = np.ascontiguousarray(np.broadcast_to(m, m.shape[:-1] + (S,)))
        elif m.ndim and (S > 1 and m.strides[-1] != m.itemsize or any(st < 0 for st in m.strides)):
            m = np.ascontiguousarray(m)
        mb = np.broadcast_to(m, lead + (L, S))
        try:
            P.mask = np.reshape(mb, (P.B, Hq, L, S), copy=False)
        except (ValueError, TypeError):  # not viewable (TypeError: NumPy < 2.1 has no copy= on reshape)
            P.mask = np.ascontiguousarray(mb).reshape(P.B, Hq, L, S)
    return P


_ALIGNMENTS = ("top_left", "bottom_right")


def _band(op, is_causal, sliding_window, causal_alignment, L, S):
    """(causal, window, diag) for the kernels: key j allowed for query i iff j <= i + diag (causal) and
    j > i + diag - window (window > 0), in a normal form. A window reaching below key 0 for every row
    (w >= L + diag) is the causal bound alone, whatever int it is (the kernels take an int64); a causal
    bound that every row's last key meets (diag >= S - 1, e.g. bottom-right with L = 1) is no bound at all,
    so such calls run as unmasked ones (the GQA decode fold included)."""
    if causal_alignment not in _ALIGNMENTS:
        raise ValueError(f"{op}: expected causal_alignment 'top_left' or 'bottom_right', got {causal_alignment!r}")
    diag = S - L if causal_alignment == "bottom_right" else 0
    causal, window = bool(is_causal), 0
    if sliding_window is not None:
        causal = True
        if int(sliding_window) < L + diag:
            window = int(sliding_window)
    if causal and window == 0 and diag >= S - 1:
        causal = False
    return causal, window, (diag if causal else 0)


def _is_causal_bias(m):
    """A torch ``CausalBias`` (recognised without importing torch)."""
    return m is not None and type(m).__name__ == "CausalBias" and hasattr(m, "variant") and hasattr(m, "seq_len_kv")


def _causal_bias_alignment(op, bias, L, S):
    """The alignment of a torch CausalBias for an (L, S) problem (its tensor holds no mask: NumPy would read
    uninitialised memory from it)."""
    variant = getattr(bias.variant, "name", None)
    align = {"UPPER_LEFT": "top_left", "LOWER_RIGHT": "bottom_right"}.get(variant)
    if align is None:
        raise ValueError(f"{op}: expected a CausalBias of variant UPPER_LEFT or LOWER_RIGHT, got {bias.variant!r}")
    if (bias.seq_len_q, bias.seq_len_kv) != (L, S):
        raise ValueError(f"{op}: expected a CausalBias for (L, S) = ({L}, {S}), got "
                         f"({bias.seq_len_q}, {bias.seq_len_kv})")
    return align


def _from_causal_bias(op, bias, is_causal, causal_alignment, L, S):
    """(attn_mask, is_causal, causal_alignment) standing for a torch CausalBias."""
    align = _causal_bias_alignment(op, bias, L, S)
    if is_causal:
        raise ValueError(f"{op}: a CausalBias attn_mask is the causal mask already; pass is_causal=False with it")
    if causal_alignment != "top_left" and causal_alignment != align:
        raise ValueError(f"{op}: the CausalBias attn_mask is {align} aligned, got causal_alignment="
                         f"{causal_alignment!r}")
    return None, True, align


def _additive_mask(m, dtype):
    """A bool mask as the float mask it stands for: 0 where True (may attend), -inf where False. float32
    by its bit patterns (0x00000000 / 0xFF800000 = (b - 1) & 0xFF800000), ~6x faster than np.where."""
    if dtype != np.float32:
        return np.where(m, dtype.type(0), dtype.type(-np.inf))
    u = m.view(np.uint8).astype(np.uint32)
    u -= 1
    u &= 0xFF800000
    return u.view(np.float32)


def _drop_args(P):
    if P.drop is None:
        return 0, 1.0, 0
    return dropout_threshold(P.dropout_p), P.drop[1], P.seed


# The compiled forward's path for calls that keep only the output (AttentionPath::automatic_output):
# short query blocks then skip packing K and V; calls that return the logsumexp keep the path whose
# scores a backward recomputes in the same order.
_PATH_OUTPUT_ONLY = 3


def _forward(op, P, out, path=0):
    shape = P.lead + (P.L, P.Ev)
    if out is not None:
        _B.check_out(out, shape, P.dtype, op)
        for a, n in zip(P.inputs, ("query", "key", "value", "attn_mask")):
            if np.shares_memory(out, a):
                raise ValueError(f"{op}: expected out not to share memory with {n}, got overlapping arrays")
    o4 = None if out is None else out.reshape(P.B, P.Hq, P.L, P.Ev)
    if _B.host_backend(P.dtype, op) == "cpu":
        thr, dscale, seed = _drop_args(P)
        o, lse = _C.attention_forward(P.q, P.k, P.v, P.mask, P.causal, P.window, P.scale, thr, dscale, seed, o4,
                                      path, P.diag)
    else:
        o, lse = _np_att.attention_forward(P.q, P.k, P.v, P.mask, P.causal, P.window, P.scale, P.drop, o4, P.diag)
    return (out if out is not None else o.reshape(shape)), lse.reshape(P.lead + (P.L,))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, *, seed=None, sliding_window=None, causal_alignment="top_left",
                                 out=None):
    """softmax(Q K^T * scale + mask) V, torch semantics (see the module docstring).

    Shapes: query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev).
    """
    sc = _plain_scale(query, key, value, attn_mask, dropout_p, scale, sliding_window, out)
    if sc is not None:
        causal, _, diag = _band(_SDPA, is_causal, None, causal_alignment, query.shape[2], key.shape[2])
        return _C.attention_forward(query, key, value, None, causal, 0, sc, 0, 1.0, 0, None, _PATH_OUTPUT_ONLY,
                                    diag)[0]
    P = _prepare(_SDPA, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed,
                 sliding_window, need_seed=False, causal_alignment=causal_alignment)
    return _forward(_SDPA, P, out, _PATH_OUTPUT_ONLY)[0]


def _plain_scale(query, key, value, attn_mask, dropout_p, scale, sliding_window, out):
    """The scale of a plain call (float32 4-D arrays with one head count, no mask, dropout, window or out=),
    whose checks are these few; None for any other call (which takes _prepare). ~6 us less per call."""
    if (out is None and attn_mask is None and not dropout_p and sliding_window is None and _B.cpu_fast_path(query)
            and _B.cpu_fast_path(key) and _B.cpu_fast_path(value) and query.ndim == 4 and key.ndim == 4
            and value.ndim == 4 and key.shape[:2] == query.shape[:2] and value.shape[:3] == key.shape[:3]
            and key.shape[3] == query.shape[3] and (scale is None or isinstance(scale, float))):
        return _scale(query.shape[3], scale)
    return None


def _scale(E, scale):
    """The scores' scale: ``scale``, or torch's default 1/sqrt(E) (1 for E = 0)."""
    return (1.0 / math.sqrt(E) if E else 1.0) if scale is None else float(scale)


def scaled_dot_product_attention_forward(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                         scale=None, enable_gqa=False, *, seed=None, sliding_window=None,
                                         causal_alignment="top_left", out=None, _path=0):
    """(output (..., L, Ev), logsumexp (..., L)): the forward pass plus what the backward needs.
    logsumexp_i = log sum_j exp(s_ij) over the allowed keys (-inf for a fully masked row).
    ``_path`` (tests and benchmarks only): 0 picks automatically (the decode path, row kernels on K
    and V in place split over the keys, for L <= 16 when S >= 1024), 1 forces the general tiled path,
    2 the decode path, 3 picks as ``scaled_dot_product_attention`` does (which keeps no logsumexp for
    a backward: the decode path also for L <= 8)."""
    sc = _plain_scale(query, key, value, attn_mask, dropout_p, scale, sliding_window, out)
    if sc is not None:
        causal, _, diag = _band(_SDPA + "_forward", is_causal, None, causal_alignment, query.shape[2], key.shape[2])
        return _C.attention_forward(query, key, value, None, causal, 0, sc, 0, 1.0, 0, None, _path, diag)
    P = _prepare(_SDPA + "_forward", query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed,
                 sliding_window, need_seed=True, causal_alignment=causal_alignment)
    return _forward(_SDPA + "_forward", P, out, _path)


def scaled_dot_product_attention_backward(grad_output, query, key, value, output, logsumexp, attn_mask=None,
                                          dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False, seed=None,
                                          sliding_window=None, *, causal_alignment="top_left"):
    """(grad_query, grad_key, grad_value) of scaled_dot_product_attention, from the forward's output and
    logsumexp (FlashAttention-2 backward: P recomputed blockwise, D = rowsum(dO o O)). Under GQA grad_key /
    grad_value have the key/value head count (summed over each group)."""
    op = _SDPA + "_backward"
    P = _prepare(op, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed, sliding_window,
                 need_seed=True, causal_alignment=causal_alignment)
    g, o, lse = (_as_array(a, op, n) for a, n in ((grad_output, "grad_output"), (output, "output"),
                                                    (logsumexp, "logsumexp")))
    want = P.lead + (P.L, P.Ev)
    for a, n, w in ((g, "grad_output", want), (o, "output", want), (lse, "logsumexp", P.lead + (P.L,))):
        if a.shape != w:
            raise ValueError(f"{op}: expected {n} of shape {w}, got {a.shape}")
        if a.dtype != P.dtype:
            raise TypeError(f"{op}: expected {n} of dtype {P.dtype} (the query's), got {a.dtype}")
    g4 = np.ascontiguousarray(g, dtype=P.dtype).reshape(P.B, P.Hq, P.L, P.Ev)
    o4 = np.ascontiguousarray(o, dtype=P.dtype).reshape(P.B, P.Hq, P.L, P.Ev)
    l4 = np.ascontiguousarray(lse, dtype=P.dtype).reshape(P.B, P.Hq, P.L)
    if _B.host_backend(P.dtype, op) == "cpu":
        thr, dscale, seed = _drop_args(P)
        dq, dk, dv = _C.attention_backward(g4, P.q, P.k, P.v, o4, l4, P.mask, P.causal, P.window, P.scale, thr,
                                           dscale, seed, P.diag)
    else:
        dq, dk, dv = _np_att.attention_backward(g4, P.q, P.k, P.v, o4, l4, P.mask, P.causal, P.window, P.scale,
                                                P.drop, P.diag)
    return (dq.reshape(np.shape(query)), dk.reshape(np.shape(key)), dv.reshape(np.shape(value)))


from ._attention_layers import (additive_attention, additive_attention_backward,  # noqa: E402
                                multi_head_attention_backward, multi_head_attention_forward,
                                sinusoidal_positional_encoding)
