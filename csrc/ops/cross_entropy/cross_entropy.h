// Cross-entropy with class-index targets, fused log-softmax + NLL (+ label smoothing), float32.
//
// torch's definition (aten/src/ATen/native/LossNLL.cpp, cross_entropy_loss_label_smoothing): per position
// with target t != ignore_index, logits x_c, class weights w_c (all 1 without weights), eps = label smoothing,
//   m = max_c x_c,  s = sum_c exp(x_c - m),  log p_c = (x_c - m) - log s
//   loss = (1 - eps) * w_t * (-log p_t) + eps / C * sum_c w_c (-log p_c)
//        = (1 - eps) * w_t * (log s - (x_t - m)) + eps / C * (W log s - sum_c w_c (x_c - m)),  W = sum_c w_c
// (shifted values keep both terms well conditioned for large logits). Ignored positions give 0.
// Reductions: 'sum' adds the losses, 'mean' divides that sum by sum_{non-ignored} w_t (NaN when 0).
// Backward, per non-ignored position with upstream gradient g (g / denominator for 'mean'):
//   dx_c = g * ((a p_c - eps / C * w_c) - [c == t] (1 - eps) w_t),  a = (1 - eps) w_t + eps / C * W
// and dx = 0 at ignored positions.
//
// Layouts: input (N, C, inner) C-contiguous (inner = d1*d2*..., 1 for (N, C)); target (N, inner) int64.
//   inner == 1  row kernels: one position = one contiguous row of C, vectorised along the row.
//   inner > 1   strip kernels: w <= 64 adjacent positions of one batch item reduced over the strided
//               class axis together (vectorised across positions, no transpose).
// Reductions use fixed blocks (256 rows or one 64-position strip) whose float losses are summed in
// double, then combined in block order: the result does not depend on the thread count.
// Targets are validated (and the 'mean' denominator computed, in double) before anything is written.
// Test: pytest tests/test_cross_entropy.py. Bench: python -m fastml.bench --ops cross_entropy.
#pragma once
#include <cstdint>

#include "core/dispatch.h"

namespace fastml {

struct CrossEntropyParams {
  int64_t C;              // classes
  int64_t inner;          // positions per batch item (product of the trailing dims), 1 for (N, C)
  const float* weight;    // (C,) class weights, or null for all ones
  float wsum;             // sum of the weights (C when null)
  float smoothing;        // label smoothing eps in [0, 1]
  int64_t ignore_index;
};

// loss[j] for `count` positions. Rows: x (count, C) contiguous, t (count,).
using CeForwardRowsFn = void (*)(const CrossEntropyParams& p, int64_t count, const float* x, const int64_t* t,
                                 float* loss);
// Strip: positions j < w of one (C, inner) slab: logit (c, j) at x[c * inner + j], target t[j].
using CeForwardStripFn = void (*)(const CrossEntropyParams& p, int64_t w, const float* x, const int64_t* t,
                                  float* loss);
// dx for the same positions; the upstream gradient of position j is g[j * gstride] (gstride 0: one scalar).
using CeBackwardRowsFn = void (*)(const CrossEntropyParams& p, int64_t count, const float* x, const int64_t* t,
                                  const float* g, int64_t gstride, float* dx);
using CeBackwardStripFn = void (*)(const CrossEntropyParams& p, int64_t w, const float* x, const int64_t* t,
                                   const float* g, int64_t gstride, float* dx);

struct CrossEntropyKernels {
  CeForwardRowsFn forward_rows;
  CeForwardStripFn forward_strip;
  CeBackwardRowsFn backward_rows;
  CeBackwardStripFn backward_strip;
};

FASTML_DECLARE_KERNEL_TABLES(CrossEntropyKernels, cross_entropy)

enum class Reduction : int { none = 0, mean = 1, sum = 2 };

// Checks every target (0 <= t < C or t == ignore_index; ValueError naming the first bad value and its
// position otherwise) and returns the 'mean' denominator sum_{non-ignored} w_t, in double.
double cross_entropy_check_targets(const CrossEntropyParams& p, int64_t n, const int64_t* t);

// Per-position losses into loss_none (N*inner floats) when it is not null; returns the double sum of the
// losses (fixed-block order).
double cross_entropy_forward(const CrossEntropyParams& p, int64_t N, const float* x, const int64_t* t,
                             float* loss_none);
void cross_entropy_backward(const CrossEntropyParams& p, int64_t N, const float* x, const int64_t* t,
                            const float* g, int64_t gstride, float* dx);

}  // namespace fastml
