// RMSprop step (Hinton, Coursera lecture 6e; torch.optim.RMSprop's single-tensor rule), float32, in place
// over a list of parameter tensors (ParamSlot: param, grad, buf0 = square_avg s, buf1 = grad_avg gbar
// (centered only), buf2 = momentum buffer b (momentum > 0 only), size).
//
//   g = (maximize ? -grad : grad);  if wd != 0: g = fma(p, wd, g)
//   s = fma((1 - alpha) g, g, s * alpha)                   (torch's mul_ + addcmul_, fused by GCC)
//   centered: gbar = lerp(gbar, g, 1 - alpha);  d = sqrt(fma(-gbar, gbar, s)) + eps
//   else:     d = sqrt(s) + eps
//   momentum > 0: b = b * momentum + g / d;  p = fma(b, -lr, p)
//   else:         p = p + (-lr g) / d
// Variants: rmsprop_{scalar,avx2,avx512}.cpp over rmsprop_impl.h. Test: pytest tests/test_optim.py.
// Bench: python -m fastml.bench --ops rmsprop.
#pragma once
#include <cstdint>
#include <vector>

#include "core/dispatch.h"
#include "core/view.h"

namespace fastml {

struct RmspropCoeffs {
  float neg_lr, alpha, one_m_alpha, eps, weight_decay, momentum, sign;
  bool decay, centered, use_momentum;
};

using RmspropUpdateFn = void (*)(const RmspropCoeffs& c, int64_t n, float* p, const float* g, float* s,
                                 float* gbar, float* b);

struct RmspropKernels {
  RmspropUpdateFn update;
};

FASTML_DECLARE_KERNEL_TABLES(RmspropKernels, rmsprop)

struct RmspropHyper {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered, maximize;
};

// Validates the hyperparameters (ValueError), then updates every slot in one parallel region.
void rmsprop_step(const std::vector<ParamSlot>& slots, const RmspropHyper& h);

}  // namespace fastml
