// Specialised 2-D convolution kernels (NCHW, float32, zero padding), the paths the general conv2d
// routes to when they win:
//
//   depthwise   groups == C, weight (C*m, 1, kh, kw) (channel multiplier m), output channel k reads input
//               channel k / m:  y[n,k,i,j] = b[k] + sum_{p,q} w[k,0,p,q] x[n,k/m, i*sh-ph+p*dh, j*sw-pw+q*dw]
//   direct      groups == 1 with C_in in 1..4 (first layers): y[n,k] = b[k] + sum_c corr(x[n,c], w[k,c])
//   winograd    3x3, stride 1, dilation 1, groups 1, padding 0 or 1: F(4x4,3x3) or F(2x2,3x3) (Lavin & Gray,
//               "Fast Algorithms for Convolutional Neural Networks", CVPR 2016), the 36 (16) element-wise
//               products done as GEMMs on the packed SGEMM engine; and its 3-D nesting F(2x2x2,3x3x3)
//               (64 products per 8 outputs) for 3x3x3 conv3d.
// Backward (depthwise and direct): grad_input is the transposed convolution (a scatter of grad_output
// through the taps), grad_weight[k, tap] = sum_n sum_pixels gy * shifted x, grad_bias[k] = sum gy.
// Reductions over the batch are done per sample and summed in sample order, so every result is
// bitwise identical for any thread count.
//
// The kernels see each input plane through a "phase-split padded" copy: padded row r (r = ih + ph) is
// stored as sw phases, phase p holding padded columns p, p + sw, p + 2 sw, ... in a row of `wq` floats.
// Output column j of tap q then reads phase (q*dw) % sw at offset j + (q*dw) / sw: a contiguous vector
// load for every stride and dilation. Rows are padded to whole vectors (slack of >= 16 floats of zeros).
//
// Variants: conv_fast_{scalar,avx2,avx512}.cpp, one generic body (conv_fast_impl.h) over VecF.
// Test: pytest tests/test_conv_fast.py. Bench: python -m fastml.bench --ops conv_fast
#pragma once
#include <cstdint>

#include "core/dispatch.h"
#include "gemm/gemm.h"

namespace fastml {

// Geometry of one convolution (sizes of the input plane, the kernel, the output, and the padded copy).
struct ConvGeom {
  int64_t H, W;        // input plane
  int64_t kh, kw;      // kernel
  int64_t sh, sw, ph, pw, dh, dw;
  int64_t Ho, Wo;      // output plane
  int64_t wq;          // floats per phase row of the padded copy
  int64_t row_floats() const { return sw * wq; }  // one padded row (all phases)
};

// The order in which dw_forward sums an output's taps for geometry g: q (column) outer, p (row) inner in
// its 5- and 7-row kernels, else p outer, q inner. dw_lanes follows it, so both give the same bits.
inline bool dw_taps_qp(const ConvGeom& g) { return g.dh == 1 && (g.sh == 1 || g.sh == 2) && (g.kh == 5 || g.kh == 7); }

ConvGeom make_conv_geom(int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                        int64_t pw, int64_t dh, int64_t dw);

// Winograd F(m x m, 3x3) tile size m (2 or 4); alpha = m + 2 transformed points per side.
struct WinoGeom {
  int64_t m, alpha;
  int64_t th, tw;      // tiles per image (rows, columns)
  int64_t wq;          // floats per phase row of the padded rows (m phases)
};

// ---- kernel table (one per ISA) ----
// Padded phase-split copy of plane rows [r0, r0 + rows) (padded coordinates) into buf (rows * row_floats).
using ConvPadRowsFn = void (*)(const ConvGeom& g, const float* x, int64_t r0, int64_t rows, float* buf);
// pad_interior (a ConvPadRowsFn): the same rows where buf already holds such a copy of another plane with the
// same geometry and rows: only the cells that hold input are rewritten (the padding zeros stay).
// Depthwise forward of one output plane from its padded input plane: y = bias + sum taps (no activation).
using ConvDwForwardFn = void (*)(const ConvGeom& g, const float* buf, const float* w, float bias, float* y);
// Depthwise forward of `lanes` channels at once, one per vector lane: xb holds their padded planes interleaved
// ((H + 2 ph) x (W + 2 pw) pixels of `lanes` floats), wt their taps (tap t of lane l at wt[t * lanes + l]),
// bias `lanes` floats (or null: 0); ob receives Ho x Wo pixels of `lanes` floats. qp: each output sums its
// taps q (column) outer, p (row) inner, else p outer, q inner (the order dw_forward uses for that geometry).
using ConvDwLanesFn = void (*)(const ConvGeom& g, const float* xb, const float* wt, const float* bias, bool qp,
                               float* ob);
// Weight (and bias) gradient of `lanes` channels at once: xb as for ConvDwLanesFn, gyb their grad_output planes
// interleaved (Ho x Wo pixels of `lanes` floats); gw[t * lanes + l] = sum over output pixels of the tap-t
// input times grad_output, gb[l] (if not null) = sum of grad_output; each summed along the output rows, then
// over the rows.
using ConvDwLanesWgradFn = void (*)(const ConvGeom& g, const float* xb, const float* gyb, float* gw, float* gb);
// gbuf (padded, phase-split) += transposed conv of nk <= 8 grad_output planes gy + kb*gstride through
// taps w + kb*wstride (kh*kw each).
using ConvScatterFn = void (*)(const ConvGeom& g, const float* gy, int64_t gstride, const float* w, int64_t wstride,
                               int64_t nk, float* gbuf);
// gx plane = the unpadded interior of gbuf.
using ConvUnpadFn = void (*)(const ConvGeom& g, const float* gbuf, float* gx);
// out[kb*ostride + tap] = sum_pixels gy_kb * shifted x for every tap (fixed order), x padded in buf, for
// nk <= 4 grad_output planes gy_kb = gy + kb*gstride sharing that input plane.
using ConvCorrTapsFn = void (*)(const ConvGeom& g, const float* buf, const float* gy, int64_t gstride, int64_t nk,
                                float* out, int64_t ostride);
// sum of n floats (fixed order).
using ConvSumFn = float (*)(int64_t n, const float* x);
// Direct conv, output rows [oh0, oh1) of all K channels of one sample. buf holds the C padded row blocks
// (each rows_per_c * row_floats floats) starting at padded row oh0*sh; wt is the weight transposed to
// (C, kh, kw, Kp) with Kp = round_up(K, 8) zero-filled; bias (Kp) zero-filled.
using ConvDirectRowsFn = void (*)(const ConvGeom& g, int64_t C, int64_t K, const float* buf, int64_t rows_per_c,
                                  const float* wt, const float* bias, int64_t oh0, int64_t oh1, float* y,
                                  int64_t y_plane);
// Winograd input transform of one channel's tile row: buf = alpha padded rows (m phases of wg.wq floats);
// v[e * stride_e + j] = (B^T d_j B)[e] for the tiles j < wg.tw of that row.
using WinoInputFn = void (*)(const WinoGeom& wg, const float* buf, float* v, int64_t stride_e);
// Winograd output transform of one tile row of one output channel: mk[e * lde + j] (tiles j < wg.tw) ->
// output rows a < rows at y + a * Wo, columns j*m + b < Wo, bias added (no activation).
using WinoOutputFn = void (*)(const WinoGeom& wg, const float* mk, int64_t lde, float bias, float* y, int64_t Wo,
                              int64_t rows);
// Winograd filter transform of n 3x3 filters stored transposed (wt[(r*3 + s)*ld + kc], kc < n):
// U[e*ld + kc] = (G g G^T)[e], e < (m+2)^2.
using WinoFilterFn = void (*)(int64_t m, int64_t n, int64_t ld, const float* wt, float* U);
// F(2x2x2,3x3x3) input transform of one channel's tile row: buf = 4 padded planes (plane_floats apart) of
// 4 padded rows (2 phases of wg.wq floats); v[e * stride_e + j] = (B^T ⊗ B^T ⊗ B^T d_j)[e], e < 64.
using Wino3InputFn = void (*)(const WinoGeom& wg, const float* buf, int64_t plane_floats, float* v, int64_t stride_e);
// F(2x2x2,3x3x3) output transform of one tile row of one output channel: mk[e * lde + j] -> output planes
// dz < planes (y + dz * plane), rows a < rows (y + a * Wo), columns j*2 + b < Wo, bias added.
using Wino3OutputFn = void (*)(const WinoGeom& wg, const float* mk, int64_t lde, float bias, float* y, int64_t Wo,
                               int64_t plane, int64_t rows, int64_t planes);
// F(2x2x2,3x3x3) filter transform of n 3x3x3 filters stored transposed (wt[t*ld + kc], t < 27):
// U[e*ld + kc] = (G ⊗ G ⊗ G g_kc)[e], e < 64.
using Wino3FilterFn = void (*)(int64_t n, int64_t ld, const float* wt, float* U);
// Weight gradient, grad_output side: buf = 2 rows (per plane; planes = 1 for 2-D, 2 for 3-D, plane_floats
// apart) of grad_output split into 2 phases of wg.wq floats; d[e * stride_e + j] = (A ⊗ A [⊗ A] dy_j)[e].
using WinoDyFn = void (*)(const WinoGeom& wg, const float* buf, int64_t plane_floats, int planes, float* d,
                          int64_t stride_e);
// Weight gradient, output side: wt[t * ld + kc] = (G^T ⊗ G^T [⊗ G^T] m_kc)[t] for kc < n, from the summed
// transformed products m[e * ld + kc]; nd = 2 (16 -> 9) or 3 (64 -> 27).
using WinoWgradFn = void (*)(int nd, int64_t n, int64_t ld, const float* m, float* wt);

struct ConvFastKernels {
  ConvPadRowsFn pad_rows;
  ConvPadRowsFn pad_interior;
  ConvDwForwardFn dw_forward;
  ConvDwLanesFn dw_lanes;
  ConvDwLanesWgradFn dw_lanes_wgrad;
  int lanes;  // floats per vector of this ISA (dw_lanes' channels per call)
  ConvScatterFn scatter;
  ConvUnpadFn unpad;
  ConvCorrTapsFn corr_taps;
  ConvSumFn sum;
  ConvDirectRowsFn direct_rows;
  WinoInputFn wino_input;
  WinoOutputFn wino_output;
  WinoFilterFn wino_filter;
  Wino3InputFn wino3_input;
  Wino3OutputFn wino3_output;
  Wino3FilterFn wino3_filter;
  WinoDyFn wino_dy;
  WinoWgradFn wino_wgrad;
};

FASTML_DECLARE_KERNEL_TABLES(ConvFastKernels, conv_fast)

// ---- entries (validated shapes; x, w, y C-contiguous) ----
struct Conv2dArgs {
  int64_t N, C, H, W, K, kh, kw;
  int64_t sh, sw, ph, pw, dh, dw;
};

void depthwise_conv2d_forward(const Conv2dArgs& a, const float* x, const float* w, const float* bias, GemmAct act,
                              float* y);
// gx (N,C,H,W), gw (K,1,kh,kw), gb (K): each may be null (not computed).
void depthwise_conv2d_backward(const Conv2dArgs& a, const float* gy, const float* x, const float* w, float* gx,
                               float* gw, float* gb);
void direct_conv2d_forward(const Conv2dArgs& a, const float* x, const float* w, const float* bias, GemmAct act,
                           float* y);
void direct_conv2d_backward(const Conv2dArgs& a, const float* gy, const float* x, const float* w, float* gx,
                            float* gw, float* gb);
// m = 4 (F(4x4,3x3)) or 2 (F(2x2,3x3)); a.kh == a.kw == 3, stride 1, dilation 1, ph == pw in {0, 1}.
// swapped: w has shape (C, K, 3, 3) and the convolution runs with w[c, k] flipped (w^T rotated by 180
// degrees): the grad_input of the convolution by w, without a flipped copy of it.
void winograd_conv2d_forward(const Conv2dArgs& a, int64_t m, const float* x, const float* w, const float* bias,
                             GemmAct act, float* y, bool swapped = false);

// 3-D: x (N, C, D, H, W), w (K, C, 3, 3, 3), y (N, K, Do, Ho, Wo); stride 1, dilation 1, groups 1,
// zero padding pd, ph, pw each 0 or 1. F(2x2x2,3x3x3): 64 products per 2x2x2 outputs instead of 216.
struct Conv3dArgs {
  int64_t N, C, D, H, W, K;
  int64_t pd, ph, pw;
};
void winograd_conv3d_forward(const Conv3dArgs& a, const float* x, const float* w, const float* bias, GemmAct act,
                             float* y, bool swapped = false);  // swapped: as the 2-D entry, w (C, K, 3, 3, 3)
// grad_weight (K, C, 3, 3[, 3]) of a 3x3 (3x3x3), stride 1, groups 1 convolution with padding 0 / 1 per
// dimension, by F(3x3, 2x2) (F(3x3x3, 2x2x2)): gy (N, K, out...), x (N, C, in...). 2-D: a.D == 1, a.pd == 0
// and nd == 2. Sums over the tiles in a fixed order (bitwise identical for any thread count).
void winograd_conv_backward_weight(int nd, const Conv3dArgs& a, const float* gy, const float* x, float* gw);

}  // namespace fastml
