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
//   backward: max scatters grad_output to idx (plane-local); avg adds grad_output / divisor to every
//         valid tap of its window; adaptive likewise.
//
// Variants: pool_{scalar,avx2,avx512}.cpp instantiate pool_impl.h over VecF: output rows are vectorised
// along the output width (stride 1: plain loads; stride 2: an even/odd split of 2N input floats, with
// unrolled rows for 2x2 s2 and 3x3 s2 p1; larger strides: gathers); windows that touch the padding in
// W run a scalar window loop. Adaptive pooling whose output divides the input runs as regular pooling.
// Test: pytest tests/test_pool.py. Bench: python -m fastml.bench --ops pool.
#pragma once
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
// sum of x[0:n] (global average pooling)
using SumFn = float (*)(int64_t n, const float* x);

struct PoolKernels {
  MaxPlaneFn max_plane;
  AvgPlaneFn avg_plane;
  AvgBackwardPlaneFn avg_backward_plane;
  MaxBackwardPlaneFn max_backward_plane;
  SumFn sum;
};

FASTML_DECLARE_KERNEL_TABLES(PoolKernels, pool)

// The avg-backward row scratch: the output row between two zero margins of avg_backward_margin floats,
// wide enough for gathers that run a vector past either end. `static`: every translation unit (each
// compiled for its own ISA) keeps its own copy.
static inline int64_t avg_backward_margin(const PoolGeom& g) { return g.k[2] + 64; }
static inline int64_t avg_backward_row_floats(const PoolGeom& g) {
  return g.out[2] + g.in[2] + 2 * avg_backward_margin(g) + 64;
}

void max_pool_forward(const PoolGeom& g, const float* x, float* y, int64_t* idx);
void avg_pool_forward(const PoolGeom& g, const AvgMode& m, const float* x, float* y);
// idx null: the argmax is recomputed from x (torch's rule); else idx must hold in-range plane indices.
void max_pool_backward(const PoolGeom& g, const float* gy, const int64_t* idx, const float* x, float* gx);
void avg_pool_backward(const PoolGeom& g, const AvgMode& m, const float* gy, float* gx);
void adaptive_avg_pool_forward(const PoolGeom& g, const float* x, float* y);
void adaptive_max_pool_forward(const PoolGeom& g, const float* x, float* y, int64_t* idx);
void adaptive_avg_pool_backward(const PoolGeom& g, const float* gy, float* gx);

}  // namespace fastml
