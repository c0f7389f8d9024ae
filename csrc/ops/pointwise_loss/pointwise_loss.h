// Elementwise losses with a sum reduction, and their gradients, float32.
//
//   mse                  l = (x - t)^2                                       dx = 2 (x - t) g
//   bce_with_logits      l = w ((1 - t) x - lw log_sigmoid(x)),  lw = 1 + (pw - 1) t
//                        log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|))      (torch's stable form)
//                        dx = w g ((pw t + 1 - t) sigmoid(x) - pw t)
// w (weight) and pw (pos_weight) are optional per-element arrays aligned with x (the entry passes
// w + column for a (C,) vector broadcast along the last dim); null means all ones.
// The entry cuts [0, n) into fixed blocks of kBlock elements, each summed in double, combined in block
// order: the 'sum'/'mean' result does not depend on the thread count. 'none' writes l elementwise.
// Variants: pointwise_loss_{scalar,avx2,avx512}.cpp, one generic body (pointwise_loss_impl.h).
// Test: pytest tests/test_losses.py. Bench: python -m fastml.bench --ops losses.
#pragma once
#include <cstdint>

#include "core/dispatch.h"

namespace fastml {

enum class PointwiseLoss : int { mse = 0, bce_with_logits = 1 };
inline constexpr int kNumPointwiseLosses = 2;

// Writes l[0:n] to `out` when it is not null; returns sum l[0:n] (float accumulators, n <= one block).
using PointwiseLossForwardFn = float (*)(int64_t n, const float* x, const float* t, const float* w, const float* pw,
                                         float* out);
// dx[0:n] = dl/dx * g[i * gstride] * scale (gstride 0: one scalar upstream gradient).
using PointwiseLossBackwardFn = void (*)(int64_t n, const float* x, const float* t, const float* w, const float* pw,
                                         const float* g, int64_t gstride, float scale, float* dx);

struct PointwiseLossKernels {
  PointwiseLossForwardFn forward[kNumPointwiseLosses];
  PointwiseLossBackwardFn backward[kNumPointwiseLosses];
};

FASTML_DECLARE_KERNEL_TABLES(PointwiseLossKernels, pointwise_loss)

// x, t: n elements; w, pw: null or C values broadcast along the last dim (element i uses [i % C]).
// Returns the double sum of the losses; writes them to out when it is not null.
double pointwise_loss_forward(PointwiseLoss kind, int64_t n, int64_t C, const float* x, const float* t,
                              const float* w, const float* pw, float* out);
void pointwise_loss_backward(PointwiseLoss kind, int64_t n, int64_t C, const float* x, const float* t,
                             const float* w, const float* pw, const float* g, int64_t gstride, float scale,
                             float* dx);

}  // namespace fastml
