"""Specialised convolution kernels that the general ``conv1d/2d/3d`` route to (NCHW / NCDHW, zero padding).

The caller has already resolved torch's arguments: ``stride``, ``padding`` and ``dilation`` are
``(int, int)`` (an int is accepted for both), padding is numeric zero padding (``'same'``/``'valid'``
and padding modes are resolved upstream). float32 runs the compiled kernels (csrc/ops/conv_fast);
float64 runs the NumPy backend in float64; other dtypes raise TypeError. Every function validates
all shapes before writing anything (``out=`` included) and returns the output array(s).

* ``depthwise_conv2d``  groups == C, weight (C*m, 1, kh, kw): output channel k reads input channel k // m.
* ``direct_conv2d``     groups == 1 for tiny C_in (1..4: first layers), any K / kernel / stride / dilation.
* ``winograd_conv2d``   3x3, stride 1, dilation 1, groups 1, padding 0 or 1, F(4x4,3x3) or F(2x2,3x3).
* conv3d's 'winograd'  3x3x3, stride 1, dilation 1, groups 1: F(2x2x2,3x3x3) (``_C.winograd_conv3d_forward``,
                        padding 0 or 1 per dimension natively, other zero padding applied to a copy first).

``CONV_FAST_PATHS`` (end of this file) plugs these kernels into ``fastml.functional.conv1d/conv2d/conv3d``
as ``algorithm='depthwise' | 'direct' | 'winograd' (F(2x2,3x3); conv3d F(2x2x2,3x3x3)) | 'winograd_f43'``
and holds the thresholds 'auto' uses (the rules and the measurements behind them are in the conv module
docstring).

Maths (``x`` (N, C, H, W), ``w`` (K, C/groups, kh, kw), ``b`` (K,))::

    H_out = (H + 2 ph - dh (kh - 1) - 1) // sh + 1        (same for W)
    y[n,k,i,j] = act(b[k] + sum_{c,p,q} w[k,c,p,q] x[n, c_k + c, i sh - ph + p dh, j sw - pw + q dw])

Backward: ``grad_input`` is the transposed convolution of ``grad_output`` through ``w``;
``grad_weight[k,c,p,q] = sum_{n,i,j} gy[n,k,i,j] x[n, ., i sh - ph + p dh, j sw - pw + q dw]``;
``grad_bias[k] = sum_{n,i,j} gy[n,k,i,j]``. Weight and bias gradients are summed per sample and then
over the batch in sample order: bitwise identical for any thread count. ``activation`` is applied in
the forward only (the backward takes the gradient w.r.t. the pre-activation output).
"""
from __future__ import annotations

import numpy as np

from .. import _backend as _B
from .._backend import _C
from .._numpy import conv_fast as _np_conv

__all__ = ["depthwise_conv2d", "depthwise_conv2d_backward", "winograd_conv2d", "direct_conv2d",
           "direct_conv2d_backward"]

ACTIVATIONS = (None, "relu", "gelu", "gelu_tanh", "sigmoid", "tanh")
_TILES = {"f43": 4, "f23": 2}


def _pair(v, op, name):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v), int(v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise ValueError(f"{op}: expected {name} as (int, int), got {v!r}") from None
    for e in (a, b):
        if not isinstance(e, (int, np.integer)) or isinstance(e, bool):
            raise ValueError(f"{op}: expected {name} as (int, int), got {v!r}")
    return int(a), int(b)


def _act_name(activation, op):
    if activation not in ACTIVATIONS:
        raise ValueError(f"{op}: expected activation None, 'relu', 'gelu', 'gelu_tanh', 'sigmoid' or 'tanh', "
                         f"got {activation!r}")
    return "none" if activation is None else activation


def _arrays(op, **named):
    """np.asarray of each non-None argument, all float32 or all float64 (no silent casts)."""
    out = {}
    dtype = None
    for name, v in named.items():
        if v is None:
            out[name] = None
            continue
        if _B.is_device_array(v):
            raise TypeError(f"{op}: CUDA arrays are not supported by this op; pass a host (NumPy) array")
        a = _B.as_float_array(v, op, name)
        if dtype is None:
            dtype = a.dtype
        elif a.dtype != dtype:
            raise TypeError(f"{op}: expected {name} of dtype {dtype} (like the input), got {a.dtype}")
        out[name] = a
    return out, dtype


def _check(op, kind, x, w, b, stride, padding, dilation):
    """Shape checks of the NumPy path (the compiled path does the same in its binding); returns (H_out, W_out)."""
    if x.ndim != 4:
        raise ValueError(f"{op}: expected input of shape (N, C, H, W), got {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"{op}: expected weight of shape (K, C/groups, kH, kW), got {w.shape}")
    n, c, h, wd = x.shape
    k, cw, kh, kw = w.shape
    if min(c, h, wd) < 1:
        raise ValueError(f"{op}: expected input with C, H, W >= 1, got {x.shape}")
    if min(k, kh, kw) < 1:
        raise ValueError(f"{op}: expected weight with K, kH, kW >= 1, got {w.shape}")
    if kind == "depthwise":
        if cw != 1 or k % c:
            raise ValueError(f"{op}: expected weight of shape (C*m, 1, kH, kW) with C={c} (groups == C), got {w.shape}")
    elif cw != c:
        raise ValueError(f"{op}: expected weight of shape (K, C, kH, kW) with C={c}, got {w.shape}")
    if kind == "winograd" and (kh, kw) != (3, 3):
        raise ValueError(f"{op}: expected a 3x3 kernel, got {w.shape}")
    if min(stride) < 1:
        raise ValueError(f"{op}: expected stride >= 1, got {stride}")
    if min(padding) < 0:
        raise ValueError(f"{op}: expected padding >= 0, got {padding}")
    if min(dilation) < 1:
        raise ValueError(f"{op}: expected dilation >= 1, got {dilation}")
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if h + 2 * padding[0] < eh or wd + 2 * padding[1] < ew:
        raise ValueError(f"{op}: expected padded input ({h + 2 * padding[0]}, {wd + 2 * padding[1]}) at least as "
                         f"large as the dilated kernel ({eh}, {ew}), got input {x.shape}")
    if b is not None and b.shape != (k,):
        raise ValueError(f"{op}: expected bias of shape ({k},), got {b.shape}")
    return (h + 2 * padding[0] - eh) // stride[0] + 1, (wd + 2 * padding[1] - ew) // stride[1] + 1


def _forward(op, kind, input, weight, bias, stride, padding, dilation, activation, out, tile=4):
    act = _act_name(activation, op)
    if (_B.cpu_fast_path(input) and _B.cpu_fast_path(weight) and (bias is None or _B.cpu_fast_path(bias))):
        if kind == "depthwise":
            return _C.depthwise_conv2d_forward(input, weight, bias, stride, padding, dilation, act, out)
        if kind == "direct":
            return _C.direct_conv2d_forward(input, weight, bias, stride, padding, dilation, act, out)
        return _C.winograd_conv2d_forward(input, weight, bias, padding[0], act, out, tile)
    arr, dtype = _arrays(op, input=input, weight=weight, bias=bias)
    x, w, b = arr["input"], arr["weight"], arr["bias"]
    if _B.host_backend(dtype, op) == "cpu":  # float32 that was not a plain ndarray (lists, subclasses)
        return _forward(op, kind, np.asarray(x), np.asarray(w), None if b is None else np.asarray(b), stride,
                        padding, dilation, activation, out, tile)
    ho, wo = _check(op, kind, x, w, b, stride, padding, dilation)
    shape = (x.shape[0], w.shape[0], ho, wo)
    if out is not None:
        _B.check_out(out, shape, dtype, op)
        if any(a is not None and np.may_share_memory(out, a) for a in (x, w, b)):
            raise ValueError(f"{op}: expected out not to share memory with input, weight or bias")
    groups = x.shape[1] if kind == "depthwise" else 1
    return _np_conv.conv2d(x, w, b, stride, padding, dilation, groups, activation, out)


def _backward(op, kind, grad_output, input, weight, stride, padding, dilation, output_mask):
    try:
        mask = tuple(bool(m) for m in output_mask)
    except TypeError:
        mask = ()
    if len(mask) != 3:
        raise ValueError(f"{op}: expected output_mask of 3 booleans, got {output_mask!r}")
    if _B.cpu_fast_path(grad_output) and _B.cpu_fast_path(input) and _B.cpu_fast_path(weight):
        fn = _C.depthwise_conv2d_backward if kind == "depthwise" else _C.direct_conv2d_backward
        return fn(grad_output, input, weight, stride, padding, dilation, mask)
    arr, dtype = _arrays(op, grad_output=grad_output, input=input, weight=weight)
    g, x, w = arr["grad_output"], arr["input"], arr["weight"]
    if _B.host_backend(dtype, op) == "cpu":
        return _backward(op, kind, np.asarray(g), np.asarray(x), np.asarray(w), stride, padding, dilation, mask)
    ho, wo = _check(op, kind, x, w, None, stride, padding, dilation)
    want = (x.shape[0], w.shape[0], ho, wo)
    if g.shape != want:
        raise ValueError(f"{op}: expected grad_output of shape {want}, got {g.shape}")
    groups = x.shape[1] if kind == "depthwise" else 1
    return _np_conv.conv2d_backward(g, x, w, stride, padding, dilation, groups, mask)


def depthwise_conv2d(x, w, bias, stride, padding, dilation, *, activation=None, out=None):
    """Depthwise conv2d (``groups == C``): ``torch.nn.functional.conv2d(x, w, bias, stride, padding,
    dilation, groups=C)`` followed by the fused ``activation``.

    Shapes: x (N, C, H, W), w (C*m, 1, kh, kw) with channel multiplier m >= 1 (output channel k reads
    input channel k // m), bias (C*m,) or None -> (N, C*m, H_out, W_out). Any kernel size, stride,
    dilation and padding. Each output plane is computed from a zero-padded copy of its input plane with
    the output width vectorised, then the activation runs on it while it is in cache (memory bound).
    """
    op = "depthwise_conv2d"
    return _forward(op, "depthwise", x, w, bias, _pair(stride, op, "stride"), _pair(padding, op, "padding"),
                    _pair(dilation, op, "dilation"), activation, out)


def depthwise_conv2d_backward(grad_output, x, w, stride, padding, dilation, output_mask=(True, True, True)):
    """``(grad_input, grad_weight, grad_bias)`` of ``depthwise_conv2d`` (without activation); ``None``
    where ``output_mask`` is False. Shapes: grad_output (N, C*m, H_out, W_out), x (N, C, H, W),
    w (C*m, 1, kh, kw) -> (N, C, H, W), (C*m, 1, kh, kw), (C*m,)."""
    op = "depthwise_conv2d_backward"
    return _backward(op, "depthwise", grad_output, x, w, _pair(stride, op, "stride"), _pair(padding, op, "padding"),
                     _pair(dilation, op, "dilation"), output_mask)


def direct_conv2d(x, w, bias, stride, padding, dilation, *, activation=None, out=None):
    """Dense conv2d (``groups == 1``) by direct summation, for tiny C_in (1..4: RGB / grayscale first
    layers, where im2col + GEMM has too short a reduction): ``torch.nn.functional.conv2d(x, w, bias,
    stride, padding, dilation)`` then ``activation``.

    Shapes: x (N, C, H, W), w (K, C, kh, kw), bias (K,) or None -> (N, K, H_out, W_out). Any K, kernel
    size, stride, dilation, padding (larger C is correct but slower than the GEMM path). Each input vector
    of output columns feeds 8 output channels held in registers; sums run in (c, p, q) order.
    """
    op = "direct_conv2d"
    return _forward(op, "direct", x, w, bias, _pair(stride, op, "stride"), _pair(padding, op, "padding"),
                    _pair(dilation, op, "dilation"), activation, out)


def direct_conv2d_backward(grad_output, x, w, stride, padding, dilation, output_mask=(True, True, True)):
    """``(grad_input, grad_weight, grad_bias)`` of ``direct_conv2d`` (without activation); ``None`` where
    ``output_mask`` is False. Shapes: grad_output (N, K, H_out, W_out), x (N, C, H, W), w (K, C, kh, kw)."""
    op = "direct_conv2d_backward"
    return _backward(op, "direct", grad_output, x, w, _pair(stride, op, "stride"), _pair(padding, op, "padding"),
                     _pair(dilation, op, "dilation"), output_mask)


def winograd_conv2d(x, w, bias, *, activation=None, out=None, tile="f43", padding=1):
    """3x3 conv2d (stride 1, dilation 1, groups 1, zero padding 0 or 1) by Winograd's minimal filtering
    (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016).

    ``tile='f43'``: F(4x4,3x3), each 4x4 output tile from a 6x6 input tile with 36 multiplies per
    channel pair instead of 144 (4x fewer); ``'f23'``: F(2x2,3x3), 16 instead of 36 (2.25x fewer).
    ``Y = A^T [(G g G^T) .* (B^T d B)] A``; the 36 (16) element-wise products summed over C are GEMMs on
    the SGEMM engine; bias and ``activation`` are applied in the output transform.

    Shapes: x (N, C, H, W), w (K, C, 3, 3), bias (K,) or None -> (N, K, H + 2p - 2, W + 2p - 2).

    Accuracy (float32): the transforms scale values by up to 10 per axis (B^T), 1/24..1 (G) and 8 (A^T),
    so rounding errors of the sums in the transformed domain are amplified relative to a direct or
    im2col + GEMM sum. Measured max |error| against the float64 reference, as a multiple of the max
    |error| of a float32 im2col + GEMM computation of the same convolution (random normal data, C in
    3..256, 3 seeds; tests/test_conv_fast.py): F(2x2,3x3) <= 1.43x (about as accurate as im2col);
    F(4x4,3x3) 5-10x at C <= 64, ~12-17x at C = 128, ~18-24x at C = 256 (the amplification grows with C
    because the transformed-domain sums of C products carry the larger magnitudes). The tests assert
    2x and 30x. Use ``tile='f23'`` where that accuracy matters (e.g. training with float32 gradients
    checked against a reference); torch's own Winograd paths have the same property.
    NaN/Inf in an input tile reach every output of the tiles that read it (a superset of the outputs
    whose receptive field holds it).
    """
    op = "winograd_conv2d"
    if tile not in _TILES:
        raise ValueError(f"{op}: expected tile 'f43' or 'f23', got {tile!r}")
    if isinstance(padding, (tuple, list)):
        p = _pair(padding, op, "padding")
        if p[0] != p[1]:
            raise ValueError(f"{op}: expected the same padding (0 or 1) on both axes, got {tuple(padding)}")
        padding = p[0]
    if not isinstance(padding, (int, np.integer)) or padding not in (0, 1):
        raise ValueError(f"{op}: expected padding 0 or 1, got {padding!r}")
    p = int(padding)
    return _forward(op, "winograd", x, w, bias, (1, 1), (p, p), (1, 1), activation, out, _TILES[tile])


# ---- adapters for the general conv1d/conv2d (fastml.functional.conv: ``_FAST_PATHS``) ------------------
# Contract (see the hook comment in conv.py): ``applies(geom, channels_last)`` -> the kernel can run this
# geometry; ``auto(geom, channels_last)`` -> 'auto' picks it; ``forward(x5, w5, bias, geom, activation,
# channels_last, out5, out_channels_last)`` -> y5 in the layout of ``out_channels_last``;
# ``auto_backward(geom)`` -> 'auto' routes conv*_backward to its ``backward``;
# ``backward(go5, x5, w5, geom, mask)`` -> (gx5, gw5, gb) (Winograd: grad_weight on the general kernels).
# Arrays are the 5-D float32 views of conv.py: NCDHW (channels-last: NDHWC), weight (K, C/g, kd, kh, kw);
# conv2d is D == 1, conv1d is D == H == 1 (a 1 x L image). Zero padding is in geom.pad_lo / pad_hi; a
# non-'zeros' padding_mode has been applied to the input already (geom padding 0). Channels-last input is
# copied to NCHW for these kernels and the result written back in the requested memory format.

# 'auto' thresholds for Winograd F(2x2,3x3) against im2col + GEMM (see the conv.py docstring for the numbers)
WINOGRAD_MIN_CHANNELS = 32     # C_in and C_out
WINOGRAD_MIN_PIXELS = 196      # output H_out * W_out (14x14)
DIRECT_MAX_CHANNELS = 4        # C_in of a groups-1 convolution with a kernel larger than 1x1
# 'auto' thresholds for F(2x2x2,3x3x3) against conv3d's im2col / shifted GEMM (conv.py docstring)
WINOGRAD3D_MIN_IN_CHANNELS = 16
WINOGRAD3D_MIN_OUT_CHANNELS = 8
WINOGRAD3D_MIN_VOXELS = 512    # output D_out * H_out * W_out


def _hw(t):
    return t[1:]  # a ConvGeom's 3-D tuples hold ints (parse converts them)


def _nchw(x5, channels_last):
    """The (N, C, H, W) float32 C-contiguous input of a conv1d/conv2d 5-D view."""
    if channels_last:
        return np.ascontiguousarray(x5[:, 0].transpose(0, 3, 1, 2))
    return np.ascontiguousarray(x5[:, :, 0])


def _padded(x4, g, native):
    """(x4, (ph, pw)): the padding passed to the kernel when ``native(pad)`` accepts the symmetric padding,
    else x4 explicitly zero padded (asymmetric 'same' padding, or a padding the kernel does not take)."""
    lo, hi = _hw(g.pad_lo), _hw(g.pad_hi)
    if lo == hi and native(lo):
        return x4, lo
    return np.pad(x4, ((0, 0), (0, 0), (lo[0], hi[0]), (lo[1], hi[1]))), (0, 0)


def _store(y5, out5, out_cl):
    """The NCDHW result y5 in the requested memory format: as it is, or channels-last (NDHWC), into out5 when
    given."""
    if out_cl:
        if out5 is None:
            return np.ascontiguousarray(y5.transpose(0, 2, 3, 4, 1))
        out5[...] = y5.transpose(0, 2, 3, 4, 1)
        return out5
    return y5


class _Path:
    """The interface of a specialised kernel path (the contract above CONV_FAST_PATHS): each path class
    defines ``applies`` and ``call`` (the base ones raise NotImplementedError) and may override the rest."""
    name = ""

    def applies(self, g, channels_last):
        raise NotImplementedError

    def auto(self, g, channels_last):
        return False

    def auto_backward(self, g):
        return False

    def native(self, pad):
        return True

    def call(self, x4, w4, bias, g, pad, act, out4):
        raise NotImplementedError

    def forward(self, x5, w5, bias, g, activation, channels_last, out5, out_channels_last=None):
        out_cl = channels_last if out_channels_last is None else out_channels_last
        x4, pad = _padded(_nchw(x5, channels_last), g, self.native)
        out4 = out5[:, :, 0] if (out5 is not None and not out_cl) else None
        y4 = self.call(x4, np.ascontiguousarray(w5[:, :, 0]), bias, g, pad,
                       "none" if activation is None else activation, out4)
        return out5 if out4 is not None else _store(y4[:, :, None], out5, out_cl)

    def backward(self, go5, x5, w5, g, mask):
        x4 = np.ascontiguousarray(x5[:, :, 0])
        lo, hi = _hw(g.pad_lo), _hw(g.pad_hi)
        x4p, pad = _padded(x4, g, self.native)
        gx, gw, gb = self.backward_call(np.ascontiguousarray(go5[:, :, 0]), x4p, np.ascontiguousarray(w5[:, :, 0]),
                                        _hw(g.stride), pad, _hw(g.dilation), mask)
        if gx is not None:
            if x4p is not x4:
                gx = gx[:, :, lo[0]:lo[0] + x4.shape[2], lo[1]:lo[1] + x4.shape[3]]
            gx = np.ascontiguousarray(gx)[:, :, None]
        if gw is not None:
            gw = gw.reshape(w5.shape)
        return gx, gw, gb


class _Depthwise(_Path):
    """groups == C_in (channel multiplier K / C_in >= 1), conv1d and conv2d."""
    name = "depthwise"

    def applies(self, g, channels_last):
        return g.nd <= 2 and g.groups == g.C

    def auto(self, g, channels_last):
        # C_in == 1 with groups 1 is also a dense convolution: the direct kernel takes it
        return self.applies(g, channels_last) and g.C > 1

    def auto_backward(self, g):
        return self.auto(g, False)

    def call(self, x4, w4, bias, g, pad, act, out4):
        return _C.depthwise_conv2d_forward(x4, w4, bias, _hw(g.stride), pad, _hw(g.dilation), act, out4)

    def backward_call(self, *args):
        return _C.depthwise_conv2d_backward(*args)


class _Direct(_Path):
    """groups == 1 by direct summation (any C_in is correct; 'auto' takes it for C_in <= 4)."""
    name = "direct"

    def applies(self, g, channels_last):
        return g.nd <= 2 and g.groups == 1

    def auto(self, g, channels_last):
        # a 1x1 kernel goes to the 1x1 GEMM path (faster there); the backward stays on the general
        # kernels, which measured faster than the direct backward (auto_backward False)
        return self.applies(g, channels_last) and g.C <= DIRECT_MAX_CHANNELS and g.kernel[1] * g.kernel[2] > 1

    def call(self, x4, w4, bias, g, pad, act, out4):
        return _C.direct_conv2d_forward(x4, w4, bias, _hw(g.stride), pad, _hw(g.dilation), act, out4)

    def backward_call(self, *args):
        return _C.direct_conv2d_backward(*args)


class _Winograd(_Path):
    """3x3, stride 1, dilation 1, groups 1 conv2d; any zero padding (0 and 1 natively, else pre-padded).
    F(2x2,3x3) also runs 3x3x3 conv3d as F(2x2x2,3x3x3) (``call3``: padding 0 or 1 per dimension natively).
    Backward: grad_input of a stride-1 3x3 convolution is the full correlation of grad_output with the
    flipped, channel-swapped kernel (padding 2 - p), itself a 3x3 stride-1 convolution, so it runs on the
    same Winograd kernel (same accuracy as the forward); grad_weight by the transposed algorithm
    F(3x3, 2x2) (F(3x3x3, 2x2x2)), see ``_grad_weight``."""

    def __init__(self, name, tile, auto):
        self.name, self.tile, self._auto = name, tile, auto

    def applies(self, g, channels_last):
        if g.nd == 3:  # F(2x2x2,3x3x3) only
            return (self.tile == 2 and g.groups == 1 and tuple(g.kernel) == (3, 3, 3)
                    and tuple(g.stride) == (1, 1, 1) and tuple(g.dilation) == (1, 1, 1))
        return (g.nd == 2 and g.groups == 1 and tuple(g.kernel[1:]) == (3, 3) and tuple(g.stride[1:]) == (1, 1)
                and tuple(g.dilation[1:]) == (1, 1))

    def auto(self, g, channels_last):
        if not (self._auto and self.applies(g, channels_last)):
            return False
        if g.nd == 3:
            return (g.C >= WINOGRAD3D_MIN_IN_CHANNELS and g.K >= WINOGRAD3D_MIN_OUT_CHANNELS
                    and g.out_size[0] * g.out_size[1] * g.out_size[2] >= WINOGRAD3D_MIN_VOXELS)
        return (g.C >= WINOGRAD_MIN_CHANNELS and g.K >= WINOGRAD_MIN_CHANNELS
                and g.out_size[1] * g.out_size[2] >= WINOGRAD_MIN_PIXELS)

    def auto_backward(self, g):
        return self.auto(g, False)

    def native(self, pad):
        return pad[0] == pad[1] and pad[0] in (0, 1)

    @staticmethod
    def native3(pad):
        return all(p in (0, 1) for p in pad)

    def call(self, x4, w4, bias, g, pad, act, out4, swapped=False):
        return _C.winograd_conv2d_forward(x4, w4, bias, pad[0], act, out4, self.tile, swapped)

    @staticmethod
    def call3(x5, w5, bias, pad, act, out5, swapped=False):
        return _C.winograd_conv3d_forward(x5, w5, bias, tuple(pad), act, out5, swapped)

    def _conv3(self, x5, w5, bias, lo, hi, act, out5=None, swapped=False):
        """F(2x2x2,3x3x3) of NCDHW x5 with zero padding lo / hi (pre-padded where not native); swapped: w5
        is (C, K, 3, 3, 3), used flipped (the kernels read it so: no flipped copy)."""
        if tuple(lo) == tuple(hi) and self.native3(lo):
            return self.call3(x5, w5, bias, lo, act, out5, swapped)
        x5 = np.pad(x5, ((0, 0), (0, 0)) + tuple(zip(lo, hi)))
        return self.call3(x5, w5, bias, (0, 0, 0), act, out5, swapped)

    def forward(self, x5, w5, bias, g, activation, channels_last, out5, out_channels_last=None):
        if g.nd != 3:
            return super().forward(x5, w5, bias, g, activation, channels_last, out5, out_channels_last)
        out_cl = channels_last if out_channels_last is None else out_channels_last
        x = np.ascontiguousarray(x5.transpose(0, 4, 1, 2, 3)) if channels_last else x5
        y5 = self._conv3(x, np.ascontiguousarray(w5), bias, g.pad_lo, g.pad_hi,
                         "none" if activation is None else activation, None if out_cl else out5)
        return _store(y5, out5, out_cl)

    def transposed(self, x5, w5, bias, geq, out5):
        """conv_transpose{2,3}d with stride 1 as the convolution of geometry ``geq`` (padding 2 - p) by the
        flipped, channel-swapped weight w5 (C_in, C_out, 3, 3[, 3]), read so by the kernel (swapped=True):
        NCDHW x5, C-contiguous out5 or None."""
        if geq.nd == 3:
            return self._conv3(x5, w5, bias, geq.pad_lo, geq.pad_hi, "none", out5, swapped=True)
        x4, pad = _padded(x5[:, :, 0], geq, self.native)
        y4 = self.call(np.ascontiguousarray(x4), w5[:, :, 0], bias, geq, pad, "none",
                       None if out5 is None else out5[:, :, 0], swapped=True)
        return out5 if out5 is not None else y4[:, :, None]

    def _backward3(self, go5, x5, w5, g, mask):
        gx = gw = None
        if mask[0]:
            if max(lo + hi for lo, hi in zip(g.pad_lo, g.pad_hi)) <= 2:
                gx = self._conv3(go5, w5, None, [2 - p for p in g.pad_lo], [2 - p for p in g.pad_hi], "none",
                                 swapped=True)
            else:   # padding beyond the kernel: the full correlation would need a crop; general kernel
                gx = _C.conv_backward_data(go5, w5, None, g.in_size, g.stride, g.pad_lo, g.dilation, g.groups)
        if mask[1]:
            gw = self._grad_weight(go5, x5, g)
        return gx, gw, None

    @staticmethod
    def _grad_weight(go5, x5, g):
        """grad_weight (K, C, kd, kh, kw) by F(3x3, 2x2) / F(3x3x3, 2x2x2) (csrc: winograd_conv_backward_weight):
        2.25x / 3.4x fewer products than the general kernels; the products of 64 tiles summed in float32,
        those sums in float64 (error 0.5-1.2x that of the NumPy float32 weight gradient, measured)."""
        lo, hi = (g.pad_lo, g.pad_hi) if g.nd == 3 else (_hw(g.pad_lo), _hw(g.pad_hi))
        go, x = (go5, x5) if g.nd == 3 else (go5[:, :, 0], x5[:, :, 0])
        if not (tuple(lo) == tuple(hi) and _Winograd.native3(lo)):
            x, lo = np.pad(x, ((0, 0), (0, 0)) + tuple(zip(lo, hi))), (0,) * len(lo)
        gw = _C.winograd_conv_backward_weight(np.ascontiguousarray(go), np.ascontiguousarray(x), list(lo))
        return gw if g.nd == 3 else gw[:, :, None]

    def backward(self, go5, x5, w5, g, mask):
        if g.nd == 3:
            return self._backward3(go5, x5, w5, g, mask)
        gx = gw = None
        if mask[0]:
            lo, hi = _hw(g.pad_lo), _hw(g.pad_hi)
            if max(lo + hi) <= 2:
                go4 = np.ascontiguousarray(go5[:, :, 0])
                w4 = np.ascontiguousarray(w5[:, :, 0])   # (K, C, 3, 3): the kernel reads it swapped and flipped
                plo, phi = (2 - lo[0], 2 - lo[1]), (2 - hi[0], 2 - hi[1])
                if plo == phi and self.native(plo):
                    gx4 = self.call(go4, w4, None, g, plo, "none", None, swapped=True)
                else:
                    go4 = np.pad(go4, ((0, 0), (0, 0), (plo[0], phi[0]), (plo[1], phi[1])))
                    gx4 = self.call(go4, w4, None, g, (0, 0), "none", None, swapped=True)
                gx = gx4[:, :, None]
            else:   # padding beyond the kernel: the full correlation would need a crop; general kernel
                gx = _C.conv_backward_data(go5, w5, None, g.in_size, g.stride, g.pad_lo, g.dilation, g.groups)
        if mask[1]:
            gw = self._grad_weight(go5, x5, g)
        return gx, gw, None


CONV_FAST_PATHS = {
    "depthwise": _Depthwise(),
    "direct": _Direct(),
    "winograd": _Winograd("winograd", _TILES["f23"], True),
    "winograd_f43": _Winograd("winograd_f43", _TILES["f43"], False),
}
