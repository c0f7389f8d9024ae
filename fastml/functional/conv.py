"""Convolutions (torch.nn.functional names, argument order and numerics), their transposes and explicit
backwards. Layout NCL / NCHW / NCDHW; unbatched input (C, *spatial) gives unbatched output.

* ``conv1d/2d/3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
  padding_mode='zeros', activation=None, algorithm='auto', out=None)``: ``padding`` is an int, a tuple,
  ``'valid'`` or ``'same'`` (stride 1 only; even kernels pad the extra element at the end, as torch);
  ``padding_mode`` pads the input as ``torch.nn.ConvNd`` does (zeros, reflect, replicate, circular);
  ``activation`` (relu, gelu, gelu_tanh, sigmoid, tanh) is applied in the GEMM epilogue.
* ``conv_transpose1d/2d/3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
  dilation=1, *, out=None)`` with torch's weight layout (C_in, C_out/groups, k...).
* ``conv{1,2,3}d_backward(grad_output, input, weight, stride, padding, dilation, groups, output_mask,
  *, padding_mode, algorithm='auto')`` and ``conv_transpose{1,2,3}d_backward(grad_output, input, weight,
  stride, padding, output_padding, groups, dilation, output_mask)`` -> ``(grad_input, grad_weight, grad_bias)``, None
  where ``output_mask`` is False. grad_bias is summed in float64.

Channels-last input (an N(D)HWC buffer viewed as NC(D)HW, e.g. ``x_nhwc.transpose(0, 3, 1, 2)``) is read
in place by '1x1' / 'im2col' (copied for the specialised kernels) and the output comes back in the same
memory format (an N(D)HWC buffer viewed as NC(D)HW).

Algorithms (compiled float32 backend; ``algorithm=`` forces one, 'auto' picks by this heuristic):

* ``'1x1'``    kernel 1, stride 1, padding 0: one GEMM per (image, group, pixel tile) straight on the
               input (NCHW: W x; channels-last: x W^T), no column buffer.
* ``'im2col'`` everything else: columns built per tile of output pixels into a bounded per-thread
               workspace, multiplied on the GEMM engine, bias + activation in its epilogue; images of
               fewer than 256 output pixels share tiles (full microkernel slivers for 7x7 outputs).
* ``'depthwise'``   groups == C_in (any channel multiplier K / C_in), conv1d (as a 1 x L image) and conv2d,
                   any kernel / stride / dilation: csrc/ops/conv_fast (fastml/functional/_conv_fast.py).
* ``'direct'``      groups 1, conv1d and conv2d, direct summation with 8 output channels in registers:
                   correct for any C_in, fast for C_in <= 4 (first layers).
* ``'winograd'``    Winograd F(2x2,3x3): 3x3, stride 1, dilation 1, groups 1 conv2d. Accuracy: <= 1.43x
                   the error of im2col + GEMM (measured, C 3..256), within the 2x rule.
* ``'winograd_f43'`` F(4x4,3x3), same geometry: 4x fewer multiplies, faster at large images, but its error
                   grows with C (~10x the im2col error at C 64, ~22x at C 256): only when forced.
                   ``'winograd'`` on a 3x3x3, stride 1, dilation 1, groups 1 conv3d runs F(2x2x2,3x3x3)
                   (64 products per 8 outputs instead of 216). Accuracy: max error 1.2-1.7x that of the
                   float32 im2col at C_in 128 and below, 0.8-1.1x at C_in 256-512 (measured, 4 seeds each;
                   above C_in 128 its channel sums run in chunks of 64, without which they measured 2.4x).
                   Winograd spreads a NaN / Inf of the input to every output of the tiles that read it (a
                   superset of the outputs whose receptive field holds it); its weight gradient likewise.
The specialised kernels take NCHW float32: channels-last input is copied to NCHW once, and the output is
written back in the requested memory format (the input's, or out='s). Zero padding they do not take
natively (asymmetric 'same' for even kernels; Winograd padding other than 0 / 1) is applied to a copy of
the input first; a non-'zeros' padding_mode is applied by this module before any algorithm runs, so they
see padding 0.

'auto' (compiled backend; rules in ``_select_algorithm``, thresholds in _conv_fast.py), in this order:

1. conv1d / conv2d with groups == C_in > 1 -> 'depthwise' (N8 C256 28x28 3x3, 2 threads: 0.56 ms vs
   6.6 ms im2col forward, 1.9 ms vs 27 ms backward; 1 thread: 1.0 vs 9.5 ms, 2.7 vs 14 ms).
2. conv1d / conv2d, groups 1, C_in <= 4, kernel larger than 1x1 -> 'direct' (forward: stem 3->64 7x7/s2
   N8 224x224 24 ms vs 31 ms im2col at 2 threads, 22 vs 24 ms at 1; LeNet 1->6 5x5 N64 0.10 vs 0.16 ms). A 1x1
   kernel with C_in <= 4 stays on '1x1' (0.04 vs 0.05 ms).
3. 3x3, stride 1, dilation 1, groups 1 conv2d with C_in >= 32, C_out >= 32 and H_out * W_out >= 196
   (14x14) -> 'winograd' (F(2x2,3x3)). Measured (N4, C_in = C_out, padding 1, im2col time / F(2x2,3x3)
   time, median of 5, loaded 2-core machine):

       threads  C     6x6   8x8   14x14 28x28 56x56
       1        16    1.51  1.26  1.17  1.16  1.12
       1        32    1.48  1.21  1.36  1.36  1.39
       1        64    1.36  1.16  1.39  1.50  1.20
       1        128   1.32  1.10  1.44  1.68  1.97
       1        256   1.29  1.16  1.45  1.60   -
       2        16    1.09  0.87  0.89  1.04  1.10
       2        32    0.96  0.81  0.95  1.29  1.26
       2        64    1.01  0.84  0.99  1.28  1.30
       2        128   0.96  0.76  1.08  1.44  1.35
       2        256   1.06  0.92  1.06  1.49   -

   F(2x2,3x3) wins everywhere at 1 thread; at 2 threads it loses below 14x14 (too few tiles to share)
   and at C 16, is even at 14x14 and wins from 28x28 (the bench shape N8 C256 14x14: 8.6 vs 12.5 ms at
   1 thread, 16.4-20.0 vs 16.5-17.1 ms at 2 threads, medians of 9 over 4 runs; the 2-thread numbers
   come from a machine whose second core was busy with other work). F(4x4,3x3) was 1.5-1.9x at 56x56
   (2 threads) but is not picked for its accuracy. The choice never depends on the thread count:
   Winograd and im2col round differently, and results must be bitwise identical for any thread count.
4. 3x3x3, stride 1, dilation 1, groups 1 conv3d with C_in >= 16, C_out >= 8 and D_out * H_out * W_out >= 512
   -> 'winograd' (F(2x2x2,3x3x3)). Measured (2 threads, padding 1, ms: Winograd / the im2col-shifted GEMM /
   torch 2.13): N2 C32->32 16x56x56 11.3 / 17.6 / 19.6-24; N4 C64 8x28x28 10.9 / 20.7 / 12.3; N1 C128 8x16x16
   3.9 / 8.1 / 9.5; N8 C16 8x32x32 2.4 / 5.3 / 3.2; N1 C256 8x14x14 16.7 / 30.2 / 13.5; N1 C512 4x14x14 54.6 /
   76.5 / 28.7 (torch's oneDNN is ahead at 256+ channels); N2 C8->64 16x56x56 9.8 / 9.7 (even, so C_in 8 stays
   on im2col); N2 C3->64 16x112x112 27.8 / 17.1 (first layers lose); N1 C32 2x6x6 0.15 / 0.10 (too few tiles).
5. kernel 1, stride 1, padding 0 -> '1x1'; else 'im2col'.

Backward (``algorithm=`` in 'auto', 'im2col' (the general GEMM kernels), 'depthwise', 'direct', 'winograd',
'winograd_f43'): 'auto' takes 'depthwise' for groups == C_in > 1; 'winograd' where the forward's 'auto'
would: grad_input of a stride-1 3x3 (3x3x3) convolution is the stride-1 3x3 (3x3x3) convolution of
grad_output with the flipped, channel-swapped kernel, run on the Winograd kernel (the forward's accuracy;
the kernel reads the weight flipped, no copy), and grad_weight by the transposed algorithm F(3x3, 2x2)
(F(3x3x3, 2x2x2)): dW = G^T [(A dy) .* (B^T x)] per tile, the products of 64 tiles summed in float32 and those
sums in float64 (error 0.5-1.2x that of the NumPy float32 gradient, measured; N8 C256 14x14: 4.8 ms vs 6.1 on
the general kernels); else the general kernels. The direct backward measured slower than the general one
(stem: 95 vs 57 ms at 2 threads, 80 vs 57 ms at 1; LeNet: 0.47 vs 0.36 ms) and its grad_input error up to
~2.5x that of the NumPy im2col computation, so 'auto' does not pick it. grad_bias is always summed in
float64 and rounded once (compiled: per-channel sums in C++).

Transposed convolutions run on the general kernels (the scatter of ``conv_backward_data``), except a stride-1,
dilation-1, groups-1 3x3 (3x3x3) one with padding p <= 2: that is the convolution by the flipped,
channel-swapped kernel with padding 2 - p, and it runs on Winograd (the kernel reads the weight flipped) where
'auto' would take Winograd for that convolution (N8 C64->64 28x28: 2.05 -> 1.21 ms; torch 1.48). Their
backward's grad_input is the convolution of grad_output by the weight, on the algorithm 'auto' picks for it.

Sizes: a stride may be any positive int64 (a stride past the input leaves one output position, as in
torch); padding, dilation, output_padding and every output size must be below 2^40, else ValueError.

float32 runs the compiled kernels (bitwise identical results for any thread count); float64 runs the
NumPy backend in float64; other dtypes raise TypeError.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from .. import _backend as _B
from .. import _conv_geometry as G
from .._backend import _C
from .._numpy import conv as _np_conv

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "conv1d_backward", "conv2d_backward", "conv3d_backward",
    "conv_transpose1d_backward", "conv_transpose2d_backward", "conv_transpose3d_backward",
]

ACTIVATIONS = (None, "relu", "gelu", "gelu_tanh", "sigmoid", "tanh")
ALGORITHMS = ("auto", "1x1", "im2col", "depthwise", "direct", "winograd", "winograd_f43")
_ALGO_ID = {"im2col": 0, "1x1": 1}

# ---- selection hook for the specialised kernels ---------------------------------------------------
# name -> object with ``applies(geom, channels_last) -> bool`` (the kernel can compute this geometry),
# ``auto(geom, channels_last) -> bool`` ('auto' picks it), ``forward(x5, w5, bias, geom, activation,
# channels_last, out5, out_channels_last) -> y5`` (5-D float32 arrays, geometry from
# fastml._conv_geometry.parse, zero padding in geom.pad_lo / pad_hi, a non-'zeros' padding_mode already
# applied to the input), ``auto_backward(geom) -> bool`` ('auto' routes the backward to it) and
# ``backward(go5, x5, w5, geom, mask) -> (gx5, gw5, gb)`` (a path may compute part of it on the general
# kernels). fastml/functional/_conv_fast.py provides them as CONV_FAST_PATHS; 'auto' tries
# _AUTO_FAST_ORDER first, in that order.
_FAST_PATHS: dict = {}
_FAST_NAMES = ("depthwise", "direct", "winograd", "winograd_f43")
_AUTO_FAST_ORDER: tuple = ("depthwise", "direct", "winograd")
try:
    from . import _conv_fast  # noqa: F401
    _FAST_PATHS.update(getattr(_conv_fast, "CONV_FAST_PATHS", {}))
except ImportError:
    pass
BACKWARD_ALGORITHMS = ("auto", "im2col", "depthwise", "direct", "winograd", "winograd_f43")


def _is_1x1(g):
    return all(k == 1 for k in g.kernel) and all(s == 1 for s in g.stride) and not any(g.pad_lo) \
        and not any(g.pad_hi)


@functools.lru_cache(maxsize=512)
def _select_algorithm(g, channels_last=False, backward=False):
    """What algorithm='auto' runs for geometry ``g`` on the compiled backend (forward, or backward); a pure
    function of the (immutable) geometry, cached."""
    for name in _AUTO_FAST_ORDER:
        path = _FAST_PATHS.get(name)
        if path is not None and (path.auto_backward(g) if backward else path.auto(g, channels_last)):
            return name
    if backward:
        return "im2col"
    return "1x1" if _is_1x1(g) else "im2col"


def _no_device(a, op):
    if _B.is_device_array(a):
        raise TypeError(f"{op}: CUDA arrays are not supported by this op yet; pass a host (NumPy) array")


def _arrays(op, names, arrays):
    res = []
    for n, a in zip(names, arrays):
        if a is None:
            res.append(None)
            continue
        _no_device(a, op)
        res.append(_B.as_float_array(a, op, n))
    dt = res[0].dtype
    for n, a in zip(names, res):
        if a is not None and a.dtype != dt:
            raise TypeError(f"{op}: expected {n} of dtype {dt} (the {names[0]}'s), got {a.dtype}")
    return res


def _channels_last(x, batched):
    """True when x is an N(D)HWC (or (D)HWC unbatched) contiguous buffer viewed as NC(D)HW."""
    if x.flags.c_contiguous:
        return False
    return np.moveaxis(x, 1 if batched else 0, -1).flags.c_contiguous


def _cl5(a, nd, batched):
    """Channels-last 5-D view (N, D, H, W, C) of an NC* array whose channels are innermost in memory."""
    m = np.moveaxis(a, 1 if batched else 0, -1)
    if not batched:
        m = m[None]
    return m.reshape((m.shape[0],) + (1,) * (3 - nd) + m.shape[1:])


def _result_shape(g, nd, channels):
    sp = g.out_size[3 - nd:]
    return ((g.N,) if g.batched else ()) + (channels,) + tuple(sp)


def _choose_algorithm(op, algorithm, g, cl, backend, backward=False):
    names = BACKWARD_ALGORITHMS if backward else ALGORITHMS
    if isinstance(algorithm, str) is False or algorithm not in names:
        raise ValueError(f"{op}: expected algorithm in {names}, got {algorithm!r}")
    if algorithm == "1x1" and not _is_1x1(g):
        raise ValueError(f"{op}: algorithm='1x1' needs kernel 1, stride 1 and padding 0, got kernel {g.kernel}, "
                         f"stride {g.stride}, padding {g.pad_lo}/{g.pad_hi}")
    if algorithm in _FAST_NAMES:
        path = _FAST_PATHS.get(algorithm)
        if path is None:
            raise ValueError(f"{op}: algorithm={algorithm!r} is not available in this build "
                             f"(fastml.functional._conv_fast missing); available: 'auto', '1x1', 'im2col'")
        if not path.applies(g, cl):
            raise ValueError(f"{op}: algorithm={algorithm!r} does not apply to this geometry (kernel {g.kernel}, "
                             f"stride {g.stride}, dilation {g.dilation}, groups {g.groups}, C_in {g.C}; "
                             f"see the conv module docstring)")
        return algorithm
    if algorithm == "auto":
        if backend != "cpu":
            return "im2col" if backward or not _is_1x1(g) else "1x1"
        return _select_algorithm(g, cl, backward)
    return algorithm


def _out_target(op, out, shape, dtype, nd, batched):
    """Validate out=; return (out5, out_cl) where out5 is its 5-D view in the layout the kernel writes."""
    if out is None:
        return None, None
    _B.check_out_array(out, shape, dtype, op)
    if not out.flags.writeable:
        raise ValueError(f"{op}: expected a writeable array for out, got a read-only one")
    if out.flags.c_contiguous:
        return G.to5d(out, nd, batched), False
    if _channels_last(out, batched):
        return _cl5(out, nd, batched), True
    raise ValueError(f"{op}: expected a C-contiguous (or channels-last) array for out, got a strided view")


def _convnd(nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, activation, algorithm, out):
    op = f"conv{nd}d"
    x, w, b = _arrays(op, ("input", "weight", "bias"), (input, weight, bias))
    if activation not in ACTIVATIONS:
        raise ValueError(f"{op}: expected activation in {ACTIVATIONS}, got {activation!r}")
    g = G.parse(op, nd, x.shape, w.shape, stride, padding, dilation, groups,
                bias_shape=None if b is None else b.shape, padding_mode=padding_mode)
    backend = _B.host_backend(x.dtype, op)
    cl = _channels_last(x, g.batched)
    algo = _choose_algorithm(op, algorithm, g, cl, backend)
    shape = _result_shape(g, nd, g.K)
    out5, out_cl = _out_target(op, out, shape, x.dtype, nd, g.batched)
    for a, n in ((x, "input"), (w, "weight"), (b, "bias")):
        if out is not None and a is not None and np.may_share_memory(out, a):
            raise ValueError(f"{op}: expected out not to share memory with {n}")
    if g.N == 0:
        return out if out is not None else np.empty(shape, dtype=x.dtype)
    if backend != "cpu":
        y = _np_conv.conv_forward(nd, x, w, b, g, padding_mode, activation, out)
        if cl and out is None:  # same memory format as the input
            ax = 1 if g.batched else 0
            y = np.moveaxis(np.ascontiguousarray(np.moveaxis(y, ax, -1)), -1, ax)
        return y
    x5 = _cl5(x, nd, g.batched) if cl else np.ascontiguousarray(G.to5d(x, nd, g.batched))
    if padding_mode != "zeros":
        # explicit np.pad-style padding (in the input's own memory format), then a padding-0 convolution
        width = tuple(zip(g.pad_lo, g.pad_hi))
        x5 = np.pad(x5, ((0, 0),) + width + ((0, 0),) if cl else ((0, 0), (0, 0)) + width,
                    mode=G.NP_PAD_MODE[padding_mode])
        g = _np_conv._no_pad(g)
    if out_cl is None:
        out_cl = cl
    w5 = np.ascontiguousarray(G.weight5d(w, nd))
    act = "none" if activation is None else activation
    if algo in _ALGO_ID:
        y5 = _C.conv_forward(x5, w5, b, g.out_size, g.stride, g.pad_lo, g.dilation, g.groups, cl, out_cl,
                             _ALGO_ID[algo], act, out5)
    else:
        y5 = _FAST_PATHS[algo].forward(x5, w5, b, g, activation, cl, out5, out_cl)
    if out is not None:
        return out
    if out_cl:
        y = y5.reshape((y5.shape[0],) + y5.shape[4 - nd:])
        y = np.moveaxis(y, -1, 1)
        return y if g.batched else y[0]
    return G.from5d(y5, nd, g.batched)


def _check_grad_output(op, go, shape):
    if tuple(go.shape) != tuple(shape):
        raise ValueError(f"{op}: expected grad_output of shape {tuple(shape)}, got {tuple(go.shape)}")


def _mask(op, output_mask):
    m = tuple(bool(v) for v in output_mask)
    if len(m) != 3:
        raise ValueError(f"{op}: expected output_mask of 3 booleans, got {tuple(output_mask)}")
    return m


def _empty_grads(x, w, channels, mask):
    """An empty batch: grad_input is empty, grad_weight and grad_bias are zeros (sums over nothing)."""
    return (np.empty(x.shape, x.dtype) if mask[0] else None, np.zeros(w.shape, x.dtype) if mask[1] else None,
            np.zeros(channels, x.dtype) if mask[2] else None)


def _c5(a, nd, batched):
    return np.ascontiguousarray(G.to5d(a, nd, batched))


def _bias_grad(go5):
    """grad_bias of a float32 (N, K, D, H, W) grad_output: the sum over all but axis 1, in float64."""
    return _C.channel_sums(np.ascontiguousarray(go5).reshape(go5.shape[0], go5.shape[1], -1))


def _convnd_backward(nd, grad_output, input, weight, stride, padding, dilation, groups, output_mask, padding_mode,
                     algorithm="auto"):
    op = f"conv{nd}d_backward"
    go, x, w = _arrays(op, ("grad_output", "input", "weight"), (grad_output, input, weight))
    g = G.parse(op, nd, x.shape, w.shape, stride, padding, dilation, groups, padding_mode=padding_mode)
    _check_grad_output(op, go, _result_shape(g, nd, g.K))
    mask = _mask(op, output_mask)
    algo = _choose_algorithm(op, algorithm, g, False, _B.host_backend(x.dtype, op), backward=True)
    if g.N == 0:
        return _empty_grads(x, w, g.K, mask)
    if _B.host_backend(x.dtype, op) != "cpu":
        return _np_conv.conv_backward(nd, go, x, w, g, mask, padding_mode)
    go5, x5, w5 = _c5(go, nd, g.batched), _c5(x, nd, g.batched), np.ascontiguousarray(G.weight5d(w, nd))
    gp = g
    if padding_mode != "zeros":
        x5 = G.pad_input(x5, g, padding_mode)
        gp = _np_conv._no_pad(g)
    gi = gw = gb = None
    if algo in _FAST_PATHS and (mask[0] or mask[1]):
        gx, gw5, _ = _FAST_PATHS[algo].backward(go5, x5, w5, gp, (mask[0], mask[1], False))
    elif mask[0] or mask[1]:
        gx = _C.conv_backward_data(go5, w5, None, gp.in_size, g.stride, gp.pad_lo, g.dilation, g.groups) \
            if mask[0] else None
        gw5 = _C.conv_backward_weight(go5, x5, g.kernel, g.stride, gp.pad_lo, g.dilation, g.groups) \
            if mask[1] else None
    if mask[0]:
        if padding_mode != "zeros":
            gx = np.ascontiguousarray(G.unpad_grad(gx, g, padding_mode, g.in_size))
        gi = G.from5d(gx, nd, g.batched)
    if mask[1]:
        gw = gw5.reshape(w.shape)
    if mask[2]:
        gb = _bias_grad(go5)
    return gi, gw, gb


def _conv_transposend(nd, input, weight, bias, stride, padding, output_padding, groups, dilation, out):
    op = f"conv_transpose{nd}d"
    x, w, b = _arrays(op, ("input", "weight", "bias"), (input, weight, bias))
    g = G.parse(op, nd, x.shape, w.shape, stride, padding, dilation, groups, transposed=True,
                output_padding=output_padding, bias_shape=None if b is None else b.shape)
    shape = _result_shape(g, nd, g.K)
    if out is not None:
        _B.check_out(out, shape, x.dtype, op)
        for a, n in ((x, "input"), (w, "weight"), (b, "bias")):
            if a is not None and np.may_share_memory(out, a):
                raise ValueError(f"{op}: expected out not to share memory with {n}")
    if g.N == 0:
        return out if out is not None else np.empty(shape, dtype=x.dtype)
    if _B.host_backend(x.dtype, op) != "cpu":
        return _np_conv.conv_transpose_forward(nd, x, w, b, g, out)
    out5 = None if out is None else G.to5d(out, nd, g.batched)
    x5, w5 = _c5(x, nd, g.batched), np.ascontiguousarray(G.weight5d(w, nd))
    geq = _transpose_as_conv(g)
    if geq is not None:  # stride 1: the convolution by the flipped kernel, on the Winograd kernel
        y5 = _FAST_PATHS["winograd"].transposed(x5, w5, b, geq, out5)
    else:
        y5 = _C.conv_backward_data(x5, w5, b, g.out_size, g.stride, g.pad_lo, g.dilation, g.groups, out5)
    return out if out is not None else G.from5d(y5, nd, g.batched)


def _transpose_as_conv(g):
    """For a stride-1, dilation-1, groups-1 transposed convolution with a 3x3 (3x3x3) kernel and padding p <= 2:
    the geometry of the equivalent convolution (padding 2 - p, the kernel flipped and channel-swapped) when
    'auto' would run that convolution on Winograd, else None."""
    path = _FAST_PATHS.get("winograd")
    if path is None or any(p > 2 for p in g.pad_lo):  # the equivalent padding 2 - p would be negative
        return None
    pad = tuple(0 if i < 3 - g.nd else 2 - p for i, p in enumerate(g.pad_lo))
    geq = dataclasses.replace(g, pad_lo=pad, pad_hi=pad)
    # the path's own checks (inside auto) refuse any other kernel, stride, dilation, groups or dimension
    return geq if path.auto(geq, False) else None


def _conv_transposend_backward(nd, grad_output, input, weight, stride, padding, output_padding, groups, dilation,
                               output_mask):
    op = f"conv_transpose{nd}d_backward"
    go, x, w = _arrays(op, ("grad_output", "input", "weight"), (grad_output, input, weight))
    g = G.parse(op, nd, x.shape, w.shape, stride, padding, dilation, groups, transposed=True,
                output_padding=output_padding)
    _check_grad_output(op, go, _result_shape(g, nd, g.K))
    mask = _mask(op, output_mask)
    if g.N == 0:
        return _empty_grads(x, w, g.K, mask)
    if _B.host_backend(x.dtype, op) != "cpu":
        return _np_conv.conv_transpose_backward(nd, go, x, w, g, mask)
    go5, x5, w5 = _c5(go, nd, g.batched), _c5(x, nd, g.batched), np.ascontiguousarray(G.weight5d(w, nd))
    gi = gw = gb = None
    if mask[0] and all(o < s for o, s in zip(g.output_padding, g.stride)):
        # the convolution of grad_output by w, whose output size is then the input's, on the algorithm 'auto'
        # picks for it
        sp = slice(3 - nd, 3)
        gi = _convnd(nd, go, w, None, g.stride[sp], g.pad_lo[sp], g.dilation[sp], g.groups, "zeros", None, "auto",
                     None)
    elif mask[0]:  # output_padding >= stride (allowed below the dilation): the same sums, cut to the input size
        one = all(k == 1 for k in g.kernel) and all(s == 1 for s in g.stride) and not any(g.pad_lo) \
            and g.in_size == g.out_size
        gi = G.from5d(_C.conv_forward(go5, w5, None, g.in_size, g.stride, g.pad_lo, g.dilation, g.groups,
                                      False, False, 1 if one else 0, "none"), nd, g.batched)
    if mask[1]:
        gw = _C.conv_backward_weight(x5, go5, g.kernel, g.stride, g.pad_lo, g.dilation, g.groups).reshape(w.shape)
    if mask[2]:
        gb = _bias_grad(go5)
    return gi, gw, gb


# ---- per-call plans: the kernel call a plain conv1d/2d/3d makes, cached by shapes and arguments -------
# For C-contiguous float32 NC(D)HW input with zero padding and no out=, the work is one kernel
# call; everything before it (argument checks, geometry, algorithm choice, 5-D views) depends only on the
# shapes and arguments. A plan is that call with its arguments bound, made once by the general path's own
# checks (so a bad argument raises the same error) and reused: a 1x3x8x8 conv2d costs ~5 us instead of ~12.
# Unbatched inputs take the general path.
_PLANS: dict = {}
_PLANS_MAX = 512


def _plan(nd, x, w, b, stride, padding, dilation, groups, algorithm, activation):
    """The cached call for these arguments, or None (no shortcut: the caller takes the general path)."""
    try:
        key = (nd, x.shape, w.shape, None if b is None else b.shape, G._key(stride), G._key(padding),
               G._key(dilation), G._key(groups), G._key(algorithm), G._key(activation))
    except TypeError:
        return None
    plan = _PLANS.get(key, False)
    if plan is not False:
        return plan
    plan = _make_plan(nd, x, w, b, stride, padding, dilation, groups, algorithm, activation)
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


def _make_plan(nd, x, w, b, stride, padding, dilation, groups, algorithm, activation):
    op = f"conv{nd}d"
    if activation not in ACTIVATIONS:
        return None  # the general path words the error
    act = "none" if activation is None else activation
    g = G.parse(op, nd, x.shape, w.shape, stride, padding, dilation, groups,
                bias_shape=None if b is None else b.shape)
    algo = _choose_algorithm(op, algorithm, g, False, "cpu")
    if not g.batched or g.N == 0:
        return None
    shape = (g.N, g.K) + g.out_size[3 - nd:]
    if algo in _ALGO_ID:  # the general kernels take 5-D views (N, C, D, H, W)
        x5s, w5s = (g.N, g.C) + g.in_size, w.shape[:2] + g.kernel
        args = (g.out_size, g.stride, g.pad_lo, g.dilation, g.groups, False, False, _ALGO_ID[algo], act, None)
        return lambda x, w, b: _C.conv_forward(x.reshape(x5s), w.reshape(w5s), b, *args).reshape(shape)
    path = _FAST_PATHS.get(algo)
    if g.nd == 3:  # conv3d's fast path (Winograd F(2x2x2,3x3x3)) takes the 5-D arrays as they are
        call3 = getattr(path, "call3", None)
        lo3 = g.pad_lo
        if call3 is None or lo3 != g.pad_hi or not path.native3(lo3):
            return None
        return lambda x, w, b: call3(x, np.ascontiguousarray(w), b, lo3, act, None)
    # conv1d/conv2d kernels: 4-D views (N, C, H, W)
    lo, hi = g.pad_lo[1:], g.pad_hi[1:]
    if path is None or lo != hi or not path.native(lo):
        return None
    call, x4s, w4s = path.call, (g.N, g.C) + g.in_size[1:], w.shape[:2] + g.kernel[1:]
    return lambda x, w, b: call(x.reshape(x4s), np.ascontiguousarray(w).reshape(w4s), b, g, lo, act,
                                None).reshape(shape)


def _make(nd):
    def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
             activation=None, algorithm="auto", out=None):
        if (out is None and padding_mode == "zeros" and _B.cpu_fast_path(input) and _B.cpu_fast_path(weight)
                and (bias is None or _B.cpu_fast_path(bias)) and input.flags.c_contiguous):
            plan = _plan(nd, input, weight, bias, stride, padding, dilation, groups, algorithm, activation)
            if plan is not None:
                return plan(input, weight, bias)
        return _convnd(nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, activation,
                       algorithm, out)

    def conv_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1,
                      output_mask=(True, True, True), *, padding_mode="zeros", algorithm="auto"):
        return _convnd_backward(nd, grad_output, input, weight, stride, padding, dilation, groups, output_mask,
                                padding_mode, algorithm)

    def conv_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                       out=None):
        return _conv_transposend(nd, input, weight, bias, stride, padding, output_padding, groups, dilation, out)

    def conv_transpose_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1,
                                dilation=1, output_mask=(True, True, True)):
        return _conv_transposend_backward(nd, grad_output, input, weight, stride, padding, output_padding, groups,
                                          dilation, output_mask)

    sp = {1: "L", 2: "H, W", 3: "D, H, W"}[nd]
    conv.__doc__ = (f"{nd}-D convolution (torch.nn.functional.conv{nd}d): input (N, C_in, {sp}) or unbatched, "
                    f"weight (C_out, C_in/groups, k...) -> (N, C_out, out...). See the module docstring.")
    conv_backward.__doc__ = f"Gradients of conv{nd}d: (grad_input, grad_weight, grad_bias), None where masked."
    conv_transpose.__doc__ = (f"{nd}-D transposed convolution (torch.nn.functional.conv_transpose{nd}d): weight "
                              f"(C_in, C_out/groups, k...).")
    conv_transpose_backward.__doc__ = f"Gradients of conv_transpose{nd}d: (grad_input, grad_weight, grad_bias)."
    return G.name_conv_functions(nd, conv, conv_backward, conv_transpose, conv_transpose_backward)


conv1d, conv1d_backward, conv_transpose1d, conv_transpose1d_backward = _make(1)
conv2d, conv2d_backward, conv_transpose2d, conv_transpose2d_backward = _make(2)
conv3d, conv3d_backward, conv_transpose3d, conv_transpose3d_backward = _make(3)
