"""``MultiheadAttention``: the layer form of fastml.functional.multi_head_attention_forward/_backward,
parameter-compatible with ``torch.nn.MultiheadAttention`` (kdim = vdim = embed_dim, no dropout)."""
from __future__ import annotations

import math

import numpy as np

from .. import _backend as _B
from ..functional import multi_head_attention_backward, multi_head_attention_forward

__all__ = ["MultiheadAttention"]


class MultiheadAttention:
    """Parameters (torch names and initialisation): ``in_proj_weight`` (3E, E) Xavier-uniform,
    ``in_proj_bias`` (3E,) zeros, ``out_proj_weight`` (E, E) uniform(+-1/sqrt(E)), ``out_proj_bias`` (E,)
    zeros (biases only with bias=True).

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` -> (output, weights or None), as torch's module;
    ``backward(grad_output)`` -> (grad_query, grad_key, grad_value) of the last forward, and fills
    ``self.grads`` (a dict keyed like ``state_dict``). ``load_state_dict`` takes torch's state_dict with
    the tensors converted to NumPy arrays (keys in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias).
    """

    def __init__(self, embed_dim, num_heads, bias=True, batch_first=False, *, dtype=np.float32, seed=None):
        for arg, v in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if _B.require_int(v, "MultiheadAttention", arg) <= 0:
                raise ValueError(f"MultiheadAttention: expected {arg} > 0, got {v}")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: expected embed_dim ({embed_dim}) divisible by num_heads, "
                             f"got {num_heads}")
        self.embed_dim, self.num_heads, self.batch_first = int(embed_dim), int(num_heads), bool(batch_first)
        rng = np.random.default_rng(seed)
        E = self.embed_dim
        a = math.sqrt(6.0 / (E + 3 * E))
        self.in_proj_weight = rng.uniform(-a, a, (3 * E, E)).astype(dtype)
        self.out_proj_weight = rng.uniform(-1 / math.sqrt(E), 1 / math.sqrt(E), (E, E)).astype(dtype)
        self.in_proj_bias = np.zeros(3 * E, dtype) if bias else None
        self.out_proj_bias = np.zeros(E, dtype) if bias else None
        self.grads = {}
        self._saved = None

    _KEYS = (("in_proj_weight", "in_proj_weight"), ("in_proj_bias", "in_proj_bias"),
             ("out_proj.weight", "out_proj_weight"), ("out_proj.bias", "out_proj_bias"))

    def state_dict(self):
        return {k: getattr(self, a) for k, a in self._KEYS if getattr(self, a) is not None}

    def load_state_dict(self, state):
        """Load torch ``nn.MultiheadAttention`` keys; every key is validated before anything is assigned."""
        op = "MultiheadAttention.load_state_dict"
        known = {k for k, _ in self._KEYS}
        extra = sorted(k for k in state if k not in known)
        if extra:
            raise ValueError(f"{op}: unexpected key {extra[0]!r}")
        new = {}
        for k, a in self._KEYS:
            cur = getattr(self, a)
            if cur is None:
                if k in state:
                    raise ValueError(f"{op}: unexpected key {k!r} (bias=False)")
                continue
            if k not in state:
                raise ValueError(f"{op}: missing key {k!r}")
            val = np.asarray(state[k])
            if val.shape != cur.shape:
                raise ValueError(f"{op}: expected {k} of shape {cur.shape}, got {val.shape}")
            new[a] = val.astype(cur.dtype)
        for a, val in new.items():
            setattr(self, a, val)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        out, w, self._saved = multi_head_attention_forward(
            query, key, value, self.num_heads, self.in_proj_weight, self.in_proj_bias, self.out_proj_weight,
            self.out_proj_bias, key_padding_mask=key_padding_mask, attn_mask=attn_mask, need_weights=need_weights,
            is_causal=is_causal, batch_first=self.batch_first, average_attn_weights=average_attn_weights,
            return_saved=True)
        return out, w

    __call__ = forward

    def backward(self, grad_output):
        if self._saved is None:
            raise RuntimeError("MultiheadAttention.backward: call forward first")
        gq, gk, gv, gw, gb, gwo, gbo = multi_head_attention_backward(grad_output, self._saved)
        self.grads = {"in_proj_weight": gw, "out_proj.weight": gwo}
        if gb is not None:
            self.grads["in_proj_bias"] = gb
            self.grads["out_proj.bias"] = gbo
        return gq, gk, gv
