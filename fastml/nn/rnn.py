"""Recurrent layers with torch-compatible constructors, parameter names and state dicts, and explicit
forward / backward (no autograd): ``fastml.nn.RNN``, ``GRU``, ``LSTM``.

    lstm = fastml.nn.LSTM(256, 512, num_layers=2, bidirectional=True, seed=0)
    lstm.load_state_dict({k: v.numpy() for k, v in torch_lstm.state_dict().items()})   # optional
    out, (h_n, c_n) = lstm(x)                       # x (T, N, 256) float32 (or (N, T, .) with batch_first)
    grad_x, (grad_h0, grad_c0) = lstm.backward(grad_out)      # parameter grads in lstm.grads[name]

Parameters are NumPy arrays in ``parameters()`` / ``named_parameters()`` (and attributes such as
``weight_ih_l0``, ``weight_hh_l0_reverse``), initialised as torch does: U(-1/sqrt(H), 1/sqrt(H)) from
``seed`` / ``rng``. ``forward`` keeps the reserve of its last call for ``backward`` (cuDNN style), unless
called with ``keep_reserve=False`` (inference: nothing kept, no per-step state stored, faster); ``grads``
maps parameter names to the gradients of the last ``backward`` (overwritten, not accumulated, unless
``accumulate=True``). ``train()`` / ``eval()`` switch dropout between layers (seeded, counter-based: see
fastml.functional.rnn).

Packed weights (repeated inference). In training mode the compiled kernels read the parameter arrays at
every call, so in-place updates (an optimizer step on ``parameters()``) take effect immediately, and the
recurrent weights are repacked for the GEMM engine once per layer call. ``eval()`` (or ``pack()``) packs
every layer's W_hh (and W_hr) ONCE (float32 modules with the compiled backend; a no-op otherwise) and
reuses the packs in every forward that would otherwise pack them (T > 1 or a projection, batch > 4; the
batch <= 4 and one-step paths read the weights without packing); while packs are live (``packed`` is True):
  * the packed arrays (``weight_hh_*``, ``weight_hr_*``) are read-only (``setflags(write=False)``), so an
    in-place edit raises ValueError instead of silently running on stale packs; call ``unpack()`` (or
    ``train()``) to edit them, then ``pack()`` / ``eval()`` again;
  * ``load_state_dict`` copies the new values and repacks;
  * if the active ISA changed since packing (``fastml.use_isa``), the next forward repacks for the new one;
  * outputs are bitwise identical to the unpacked forward (the packs are what the forward would build).
``train()`` and ``unpack()`` drop the packs and make the arrays writeable again.
"""
from __future__ import annotations

import numpy as np

import sys

from .. import _backend as _B
from ..functional import rnn as _rnn_fn  # noqa: F401  (ensures the submodule is imported)

_F = sys.modules[__package__.rsplit('.', 1)[0] + '.functional.rnn']  # the module (the package attribute is the function)

__all__ = ["RNNBase", "RNN", "LSTM", "GRU"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


class RNNBase:
    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, *, dtype=np.float32, seed=None, rng=None):
        for arg, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers),
                       ("proj_size", proj_size)):
            _B.require_int(v, type(self).__name__, arg)
        if int(hidden_size) <= 0 or int(input_size) <= 0:
            raise ValueError(f"{type(self).__name__}: expected positive input_size and hidden_size, "
                             f"got {input_size} and {hidden_size}")
        if int(num_layers) < 1:
            raise ValueError(f"{type(self).__name__}: expected num_layers >= 1, got {num_layers}")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"{type(self).__name__}: expected dropout in [0, 1], got {dropout}")
        if proj_size < 0 or proj_size >= hidden_size and proj_size:
            raise ValueError(f"{type(self).__name__}: expected 0 <= proj_size < hidden_size, got {proj_size}")
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), int(proj_size)
        self.dtype = np.dtype(dtype)
        self.training = True
        self._rng = rng if rng is not None else np.random.default_rng(seed)
        self._reserve = None
        self._packs = None
        self._pack_isa = None
        self.grads = {}
        G, H = _GATES[mode], self.hidden_size
        P = self.proj_size or H
        D = 2 if self.bidirectional else 1
        k = 1.0 / np.sqrt(H)
        self._params = {}
        for layer in range(self.num_layers):
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                in_size = self.input_size if layer == 0 else D * P
                shapes = [("weight_ih", (G * H, in_size)), ("weight_hh", (G * H, P))]
                if self.bias:
                    shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
                if self.proj_size:
                    shapes.append(("weight_hr", (P, H)))
                for name, shp in shapes:
                    self._params[name + sfx] = self._rng.uniform(-k, k, shp).astype(self.dtype)

    # ------------------------------------------------------------------------------------ parameters
    def __getattr__(self, name):
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def named_parameters(self):
        return list(self._params.items())

    def parameters(self):
        return list(self._params.values())

    @property
    def _flat_weights(self):
        return list(self._params.values())  # insertion order is torch's _flat_weights order

    def state_dict(self):
        return {k: v.copy() for k, v in self._params.items()}

    def load_state_dict(self, state_dict, strict=True):
        """Copies arrays (e.g. ``{k: v.numpy() for k, v in torch_module.state_dict().items()}``) into the
        parameters, in place, cast to this module's dtype. strict: the key sets must match exactly."""
        name = type(self).__name__
        missing = [k for k in self._params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self._params]
        if strict and (missing or unexpected):
            raise ValueError(f"{name}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for k, v in state_dict.items():
            if k not in self._params:
                continue
            a = np.asarray(v)
            if a.shape != self._params[k].shape:
                raise ValueError(f"{name}.load_state_dict: expected {k} of shape {self._params[k].shape}, "
                                 f"got {a.shape}")
        repack = self.packed
        if repack:
            self.unpack()
        for k, v in state_dict.items():
            if k in self._params:
                self._params[k][...] = np.asarray(v, dtype=self.dtype)
        if repack:
            self.pack()
        return self

    # ------------------------------------------------------------------------------------ packed weights
    def _packed_names(self):
        return [k for k in self._params if k.startswith(("weight_hh_", "weight_hr_"))]

    @property
    def packed(self):
        """True while packed recurrent weights are live (see the module docstring)."""
        return self._packs is not None

    def pack(self):
        """Packs W_hh (and W_hr) of every layer and direction once for the GEMM engine under the active
        ISA and makes those arrays read-only; forwards reuse the packs. A no-op for float64 modules or
        without the compiled backend. Returns self."""
        if self.dtype != np.float32 or _B._C is None:
            return self
        self._packs = None
        packs = _F.pack_recurrent_weights(self._flat_weights, num_layers=self.num_layers,
                                          bidirectional=self.bidirectional, has_biases=self.bias,
                                          proj_size=self.proj_size)
        for k in self._packed_names():
            self._params[k].setflags(write=False)
        self._packs, self._pack_isa = packs, _B._C.get_isa()
        return self

    def unpack(self):
        """Drops the packs and makes the parameter arrays writeable again. Returns self."""
        self._packs = self._pack_isa = None
        for k in self._packed_names():
            self._params[k].setflags(write=True)
        return self

    def __getstate__(self):  # copy / deepcopy / pickle: packs are process-local, rebuilt on restore
        state = self.__dict__.copy()
        state["_packs"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if state.get("_pack_isa") is not None:
            self.pack()

    def train(self, mode=True):
        """Training mode (dropout on, no packs) or, with mode False, eval mode (dropout off, weights packed)."""
        self.training = bool(mode)
        if self.training:
            self.unpack()
        else:
            self.pack()
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        self.grads = {}

    # ------------------------------------------------------------------------------------ forward/backward
    def _kwargs(self, lengths):
        kw = dict(num_layers=self.num_layers, bidirectional=self.bidirectional, batch_first=self.batch_first,
                  has_biases=self.bias, dropout=self.dropout, training=self.training, lengths=lengths)
        if self.training and self.dropout > 0 and self.num_layers > 1:
            kw["seed"] = int(self._rng.integers(0, 2**63))
        return kw

    def forward(self, input, hx=None, lengths=None, *, keep_reserve=True):
        """``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``) as torch's module; ``lengths`` (N,) gives
        packed-sequence semantics without packing. Keeps the reserve for ``backward``; ``keep_reserve=False``
        (inference, torch's ``no_grad``) keeps nothing, stores no per-step state and runs faster, and a
        ``backward`` after it raises."""
        kw = self._kwargs(lengths)
        kw["keep_reserve"] = keep_reserve
        if self._packs is not None and _B.host_backend(self.dtype, type(self).__name__) == "cpu":
            if self._pack_isa != _B._C.get_isa():
                self.pack()  # packs are ISA-specific: repack for the ISA now active
            kw["packed"] = self._packs
        if self.mode == "LSTM":
            out, h, res = _F.lstm(input, hx, self._flat_weights, proj_size=self.proj_size, **kw)
        elif self.mode == "GRU":
            out, h, res = _F.gru(input, hx, self._flat_weights, **kw)
        else:
            nl = "relu" if self.mode == "RNN_RELU" else "tanh"
            out, h, res = _F.rnn(input, hx, self._flat_weights, nonlinearity=nl, **kw)
        self._reserve = res
        return out, h

    __call__ = forward

    def backward(self, grad_output, grad_h_n=None, grad_c_n=None, *, accumulate=False):
        """Gradients of the last forward: returns ``(grad_input, grad_hx)`` (LSTM: grad_hx = (grad_h0,
        grad_c0)); the parameter gradients go to ``self.grads[name]`` (summed into it with accumulate)."""
        if self._reserve is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward first (with keep_reserve=True)")
        if self.mode == "LSTM":
            gx, ghx, gw = _F.lstm_backward(grad_output, grad_h_n, grad_c_n, self._reserve)
        elif self.mode == "GRU":
            gx, ghx, gw = _F.gru_backward(grad_output, grad_h_n, self._reserve)
        else:
            gx, ghx, gw = _F.rnn_backward(grad_output, grad_h_n, self._reserve)
        for name, g in zip(self._params, gw):
            if accumulate and name in self.grads:
                self.grads[name] = self.grads[name] + g
            else:
                self.grads[name] = g
        return gx, ghx

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


class RNN(RNNBase):
    """Elman RNN (torch.nn.RNN): ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, *, dtype=float32, seed=None, rng=None)``."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype=np.float32, seed=None, rng=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, 0, dtype=dtype, seed=seed, rng=rng)


class LSTM(RNNBase):
    """LSTM (torch.nn.LSTM), incl. ``proj_size``: ``LSTM(input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, proj_size=0, *, dtype=float32, seed=None, rng=None)``."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, *, dtype=np.float32, seed=None, rng=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, dtype=dtype, seed=seed, rng=rng)


class GRU(RNNBase):
    """GRU (torch.nn.GRU): ``GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, *, dtype=float32, seed=None, rng=None)``."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, dtype=np.float32, seed=None, rng=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0,
                         dtype=dtype, seed=seed, rng=rng)
