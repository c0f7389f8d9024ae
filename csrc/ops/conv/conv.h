// N-d convolution (conv1d / conv2d / conv3d and their transposes and backwards) on the SGEMM engine.
//
// One core for every rank: sizes are 3 spatial dims (D, H, W); conv1d is (1, 1, L), conv2d (1, H, W).
//   y[n, k, o] = bias[k] + sum_{c in group(k), a} w[k, c, a] * x[n, c, o * stride - pad + a * dilation]
// with x read as zero outside [0, in). Only the front padding `pad` is needed: the output size is
// explicit (torch's 'same' pads one more element at the end for even kernels; positions past the
// end read zeros), so the same contract serves conv, conv_transpose (= backward-data) and backwards.
//
// Layouts (float32, C-contiguous):
//   x  (N, C, D, H, W), or channels-last (N, D, H, W, C) when in_cl
//   y  (N, K, oD, oH, oW), or channels-last (N, oD, oH, oW, K) when out_cl (forward only)
//   w  (K, C/G, kD, kH, kW)
// Algorithms (ConvAlgo):
//   one_by_one  kernel 1, stride 1, pad 0: y_g = W_g (Kg x Cg) x_g (Cg x P), the input read in place
//   im2col      per tile of output pixels, the columns (Cg*kvol x tile) are built into a per-thread
//               workspace (bounded: about L2/8, at least 128 pixels; never the whole unfolded tensor)
//               and multiplied by the weights; bias and activation in the GEMM epilogue (images of fewer
//               than 256 output pixels share a tile, through an output tile buffer). Stride 1 where
//               conv_detail::shifted_applies (few output channels per group, or on AVX-512 >= 18 kernel
//               offsets and C/G >= 16) skips the column buffer: the microkernels read the zero-padded
//               input at a shift per kernel offset (conv_shifted.h).
// Backward data: 1x1 -> one GEMM W_g^T dy; stride 1 with C/G >= 16 -> a forward convolution of dy with
// the flipped kernels (in/out channels swapped, front padding dil*(k-1) - pad); otherwise col2im of
// W_g^T dy per tile (scatter-add). Backward weight: sum over fixed blocks of (image, tile) units of
// dy cols^T (block partials added in block order: bitwise identical for any thread count).
//
// Entry: conv.cpp + conv_shifted.h (plain C++; the GEMM kernel table supplies the ISA).
// Binding: csrc/bind/bind_conv.cpp.
// Test: pytest tests/test_conv.py. Bench: python -m fastml.bench --ops conv2d
#pragma once
#include <cstdint>

#include "gemm/gemm.h"

namespace fastml {

struct ConvShape {
  int64_t N = 1, C = 1, K = 1, G = 1;  // batch, input channels, output channels, groups
  int64_t in[3] = {1, 1, 1};           // input spatial dims (D, H, W)
  int64_t out[3] = {1, 1, 1};          // output spatial dims
  int64_t k[3] = {1, 1, 1};            // kernel
  int64_t stride[3] = {1, 1, 1};
  int64_t pad[3] = {0, 0, 0};          // front padding
  int64_t dil[3] = {1, 1, 1};
  bool in_cl = false;                  // x is (N, D, H, W, C)
  bool out_cl = false;                 // y is (N, oD, oH, oW, K)

  int64_t in_pixels() const { return in[0] * in[1] * in[2]; }
  int64_t out_pixels() const { return out[0] * out[1] * out[2]; }
  int64_t kvol() const { return k[0] * k[1] * k[2]; }
  bool is_1x1() const {
    for (int d = 0; d < 3; ++d)
      if (k[d] != 1 || stride[d] != 1 || pad[d] != 0 || in[d] != out[d]) return false;
    return true;
  }
};

enum class ConvAlgo : int { im2col = 0, one_by_one = 1 };

// y = act(conv(x, w) + bias). bias may be nullptr.
void conv_forward(const ConvShape& s, ConvAlgo algo, const float* x, const float* w, const float* bias,
                  GemmAct act, float* y);

// gx = d(sum dy * y)/dx (N, C, in...) (+ bias[c] per channel when bias != nullptr: conv_transpose's bias).
// dy is (N, K, out...); NCDHW layouts only. gx is overwritten.
void conv_backward_data(const ConvShape& s, const float* dy, const float* w, const float* bias, float* gx);

// gw = d(sum dy * y)/dw (K, C/G, k...). dy (N, K, out...), x (N, C, in...); NCDHW layouts only.
void conv_backward_weight(const ConvShape& s, const float* dy, const float* x, float* gw);

}  // namespace fastml
