// Max / average / adaptive pooling over (planes, D, H, W) float32 arrays, planes = N*C, C-contiguous
// (NCDHW; 1-d and 2-d pooling are 3-d pooling with leading size-1 dims). torch.nn.functional semantics:
//
//   max:  y[o] = max over taps t of x[o*s - p + t*d] (taps inside the input only); the scan starts at
//         -inf with the index of the window's first non-negative tap and takes a tap when
//         v > y || isnan(v): ties -> first maximum in (d, h, w) order, the last NaN of a window wins,
//         a window with no valid tap gives -inf. idx = flat (d*H + h)*W + w within the plane (int64).
//   avg:  y[o] = (sum of the valid taps, in (d, h, w) order) / divisor, divisor = divisor_override, or
//         count_include_pad ? prod(min(start + k, L + p) - start) : number of valid taps.
//   adaptive: window i of a dim spans [floor(i L / out), ceil((i + 1) L / out)).
//   backward: max scatters grad_output to idx (plane-local; as torch, into a zeroed plane in increasing
//         output order, so a position named by several outputs sums them in that order); avg adds
//         grad_output / divisor to every valid tap of its window; adaptive likewise.
//
// Variants: pool_{scalar,avx2,avx512}.cpp instantiate pool_impl.h over VecF: output rows are vectorised
// along the output width (stride 1: plain loads; stride 2: an even/odd split of 2N input floats, with
// unrolled rows for 2x2 s2 and 3x3 s2 p1; larger strides: gathers); windows that touch the padding in
// W run a scalar window loop. Adaptive pooling whose output divides the input runs as regular pooling.
// Max backward: the indices become one-byte tap codes (checked before any write), then each grad_input
// row gathers from the windows whose code names its elements (bitwise the scatter's sums); indices that
// leave their own window, dilation and strides > 2 in W take the scalar scatter.
// Test: pytest tests/test_pool.py. Bench: python -m fastml.bench --ops pool.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/dispatch.h"

namespace fastml {

struct PoolGeom {
  int64_t planes;
  int64_t in[3];   // D, H, W
  int64_t out[3];  // oD, oH, oW
  int64_t k[3], s[3], p[3], d[3];
};

struct AvgMode {
  bool count_include_pad;
  int64_t divisor;  // divisor_override, 0 = none
};

// One plane each: x (in[0]*in[1]*in[2]) -> y (out[0]*out[1]*out[2]); idx may be null.
using MaxPlaneFn = void (*)(const PoolGeom& g, const float* x, float* y, int64_t* idx);
using AvgPlaneFn = void (*)(const PoolGeom& g, const AvgMode& m, const float* x, float* y);
// gx = the avg windows' share of gy; scratch `row` of avg_backward_row_floats(g) floats.
using AvgBackwardPlaneFn = void (*)(const PoolGeom& g, const AvgMode& m, const float* gy, float* gx, float* row);
// gx = gy scattered to idx (out-of-range indices dropped).
using MaxBackwardPlaneFn = void (*)(const PoolGeom& g, const float* gy, const int64_t* idx, float* gx);
// Max backward in two passes (every index is checked before anything is written). Encode: codes[o] = the tap
// (a*kH + b)*kW + c of window o that idx[o] names, when that tap lies inside the input, else kCodeForeign
// (in the plane) or kCodeOutside, in rows of max_backward_code_row(g) bytes with margins; codes null: the range
// check only. Returns kMaxBwdForeign | kMaxBwdOutside.
using MaxBackwardEncodeFn = int (*)(const PoolGeom& g, const int64_t* idx, uint8_t* codes);
// Gather (max_backward_gather_ok(g), no kCodeForeign in the plane): gx = every element's sum of the gradients
// of the windows whose code names it, in increasing output order (bitwise the scatter's result);
// scratch of max_backward_scratch_floats(g) floats.
using MaxBackwardGatherFn = void (*)(const PoolGeom& g, const float* gy, const uint8_t* codes, float* gx,
                                     float* scratch);
// Global average pooling of `planes` consecutive planes of n elements: y[i] = sum(x[i n : (i + 1) n]) / n, each
// sum one vector accumulator over the plane in order, then the halving tree over its lanes (the same for every
// plane whatever the planes around it).
using MeanPlanesFn = void (*)(int64_t planes, int64_t n, const float* x, float* y);

struct PoolKernels {
  MaxPlaneFn max_plane;
  AvgPlaneFn avg_plane;
  AvgBackwardPlaneFn avg_backward_plane;
  MaxBackwardPlaneFn max_backward_plane;
  MaxBackwardEncodeFn max_backward_encode;
  MaxBackwardGatherFn max_backward_gather;
  MeanPlanesFn mean_planes;
};

FASTML_DECLARE_KERNEL_TABLES(PoolKernels, pool)

// The avg-backward row scratch: the output row between two zero margins of avg_backward_margin floats,
// wide enough for gathers that run a vector (16 lanes at most) past either end, and for kernels of up to
// kAvgBackwardAllTaps taps, every tap; longer kernels skip the taps that miss the row, so a 2^31-tap
// kernel needs no 16 GiB row. `static`: every translation unit (each compiled for its own ISA) keeps its
// own copy.
constexpr int64_t kAvgBackwardAllTaps = 64;
static inline int64_t avg_backward_margin(const PoolGeom& g) {
  return (g.k[2] <= kAvgBackwardAllTaps ? g.k[2] : 0) + 64;
}
static inline int64_t avg_backward_row_floats(const PoolGeom& g) {
  return g.out[2] + g.in[2] + 2 * avg_backward_margin(g) + 64;
}

constexpr int kCodeForeign = 255, kCodeOutside = 254, kCodeMargin = 253;  // tap codes are <= 252
constexpr int kMaxBwdForeign = 1, kMaxBwdOutside = 2;

// Geometries whose max backward gathers: no dilation, stride 1 or 2 in W, at most 253 taps and 64 tap rows
// (kD * kH), plane < 2^30.
static inline bool max_backward_gather_ok(const PoolGeom& g) {
  return g.d[0] == 1 && g.d[1] == 1 && g.d[2] == 1 && (g.s[2] == 1 || g.s[2] == 2) &&
         g.k[0] * g.k[1] * g.k[2] <= 253 && g.k[0] * g.k[1] <= 64 && g.in[0] * g.in[1] * g.in[2] < (int64_t{1} << 30);
}
// The 2-D 2x2 s2 and 3x3 s2 p1 windows whose max backward gather runs the pair kernels
// (max_backward_gather_pairs): their K (2 or 3), else 0.
static inline int max_backward_pairs_k(const PoolGeom& g) {
  if (g.in[0] != 1 || g.k[0] != 1 || g.p[0] != 0 || g.s[1] != 2 || g.s[2] != 2) return 0;
  if (g.k[1] == 2 && g.k[2] == 2 && g.p[1] == 0 && g.p[2] == 0) return 2;
  if (g.k[1] == 3 && g.k[2] == 3 && g.p[1] == 1 && g.p[2] == 1) return 3;
  return 0;
}
// The codes of a plane are stored in rows of max_backward_code_row(g) bytes: kW bytes of left margin, the output
// row, and a right margin covering the input columns rounded up to whole vectors (of up to 16 lanes) plus the
// largest forward offset, rounded up to a multiple of 16; margins hold kCodeMargin (never a tap), so that the
// gather loads whole vectors without bounds.
static inline int64_t max_backward_margin_left(const PoolGeom& g) { return g.k[2]; }
static inline int64_t max_backward_code_row(const PoolGeom& g) {
  const int64_t cols = g.s[2] == 1 ? g.in[2] : (g.in[2] + 1) / 2;
  return (g.k[2] + std::max<int64_t>((g.out[2] + 15) / 16 * 16, (cols + 15) / 16 * 16 + g.p[2] + 1) + 15) / 16 * 16;
}
static inline int64_t max_backward_codes_bytes(const PoolGeom& g) {
  return g.out[0] * g.out[1] * max_backward_code_row(g);
}
// gather scratch: gy rows whose margins would fall outside the plane's gy are copied into rows of the same layout
static inline int64_t max_backward_scratch_floats(const PoolGeom& g) { return max_backward_codes_bytes(g); }

void max_pool_forward(const PoolGeom& g, const float* x, float* y, int64_t* idx);
void avg_pool_forward(const PoolGeom& g, const AvgMode& m, const float* x, float* y);
// idx null: the argmax is recomputed from x (torch's rule). Else every index must lie in [0, plane), or (regular
// max pooling, not `adaptive`) belong to a window with no tap inside the input, whose gradient is dropped;
// returns false when one does not, having written nothing unless gx_fresh (gx a new array the caller drops
// on failure: then planes are encoded and written in one pass, and the planes holding a bad index are left
// unwritten).
bool max_pool_backward(const PoolGeom& g, const float* gy, const int64_t* idx, const float* x, float* gx,
                       bool adaptive, bool gx_fresh = false);
void avg_pool_backward(const PoolGeom& g, const AvgMode& m, const float* gy, float* gx);
void adaptive_avg_pool_forward(const PoolGeom& g, const float* x, float* y);
void adaptive_max_pool_forward(const PoolGeom& g, const float* x, float* y, int64_t* idx);
void adaptive_avg_pool_backward(const PoolGeom& g, const float* gy, float* gx);

}  // namespace fastml
