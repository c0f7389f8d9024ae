// softmax / log_softmax along one axis, and their backward passes, float32.
//
//   softmax      y_d = exp(x_d - m) / s,            m = max_d x_d, s = sum_d exp(x_d - m)
//   log_softmax  y_d = (x_d - m) - log s
//   backward     softmax:     dx_d = y_d * (g_d - sum_k g_k y_k)
//                log_softmax: dx_d = g_d - exp(y_d) * sum_k g_k
// Non-finite values behave as in torch: a NaN in a row makes the row NaN, -inf entries give 0 / -inf,
// a row of all -inf (or one holding +inf) is NaN.
//
// Layout: the array is seen as (outer, D, inner) (core/view.h AxisView), element (o, d, i) at
// o*D*inner + d*inner + i, C-contiguous.
//   inner == 1  contiguous rows of D; row kernels vectorise along the row.
//   inner > 1   the reduced axis is strided; strip kernels vectorise across `inner` (a strip of w
//               adjacent columns is reduced over d together, same three passes, log s of all columns
//               by simd::log), so nothing is transposed.
// Variants (kernel table entries):
//   forward_rows          three passes: max | exp, sum, store exp (softmax) or x - m (log_softmax) |
//                         scale by 1/s, or subtract log s; the exp pass prefetches the next row.
//   forward_rows__online  two passes (Milakov & Gimelshein 2018, "Online normalizer calculation for
//                         softmax"): a running max rescales the partial sums block by block, so x is
//                         read twice instead of three times; softmax then evaluates exp twice.
// The entry picks __online for rows larger than half the L2 cache (the row no longer stays cached
// between passes). For rows that stay in L1/L2 the three-pass kernel is faster, for log_softmax too:
// its exp pass prefetches the next row and already writes the output lines, so DRAM traffic overlaps
// the exp work, while the online pass pays a horizontal max per block and evaluates exp twice.
// Measured (4096 x 1024 float32, Xeon AVX-512 VM, best of 200; copy of the same bytes: 1.15 ms at 1
// thread, torch copy_ 0.57 ms at 2 threads):
//                      1 thread: three-pass  online  torch   | 2 threads: three-pass  online  torch
//   softmax                      1.26 ms     1.87    2.41    |            0.66 ms     0.94    1.16
//   log_softmax                  1.26 ms     2.06    2.97    |            0.64 ms     1.00    1.27
// Every output element is computed by one thread from one row, so results do not depend on the thread
// count. In place is allowed (y == x, dx == g or dx == y).
// Test: pytest tests/test_softmax.py. Bench: python -m fastml.bench --ops softmax.
#pragma once
#include <cstdint>

#include "core/dispatch.h"
#include "core/view.h"

namespace fastml {

// rows x D contiguous: y[r*D + d] = f(x[r*D + .])
using SoftmaxRowsFn = void (*)(int64_t rows, int64_t D, const float* x, float* y);
using SoftmaxBackwardRowsFn = void (*)(int64_t rows, int64_t D, const float* g, const float* y, float* dx);
// a strip of w columns of a (D, inner) slab: element (d, j) at x[d*inner + j], j < w
using SoftmaxStripFn = void (*)(int64_t D, int64_t inner, int64_t w, const float* x, float* y);
using SoftmaxBackwardStripFn = void (*)(int64_t D, int64_t inner, int64_t w, const float* g, const float* y,
                                        float* dx);

// Each array is indexed [log]: 0 = softmax, 1 = log_softmax.
struct SoftmaxKernels {
  SoftmaxRowsFn forward_rows[2];
  SoftmaxRowsFn forward_rows__online[2];
  SoftmaxStripFn forward_strip[2];
  SoftmaxBackwardRowsFn backward_rows[2];
  SoftmaxBackwardStripFn backward_strip[2];
};

FASTML_DECLARE_KERNEL_TABLES(SoftmaxKernels, softmax)

enum class SoftmaxRowVariant : int { automatic = 0, three_pass = 1, online = 2 };

void softmax_forward(const AxisView& v, const float* x, float* y, bool log,
                     SoftmaxRowVariant variant = SoftmaxRowVariant::automatic);
void softmax_backward(const AxisView& v, const float* g, const float* y, float* dx, bool log);

}  // namespace fastml
