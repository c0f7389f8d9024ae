// SGD step with momentum / Nesterov (torch.optim.SGD's single-tensor rule), float32, in place over a
// list of parameter tensors (ParamSlot: param, grad, buf0 = momentum buffer b (momentum > 0 only), size).
//
//   g = (maximize ? -grad : grad);  if wd != 0: g = fma(p, wd, g)
//   momentum > 0:  b = first_step ? g : fma(g, 1 - dampening, b * momentum)
//                  g = nesterov ? fma(b, momentum, g) : b
//   p = fma(g, -lr, p)
// (torch's add(alpha=) is one fused multiply-add; mul_ rounds on its own.) The first step (torch: the
// buffer is None) copies g into b without dampening.
// Variants: sgd_{scalar,avx2,avx512}.cpp over sgd_impl.h. Test: pytest tests/test_optim.py.
// Bench: python -m fastml.bench --ops sgd.
#pragma once
#include <cstdint>
#include <vector>

#include "core/dispatch.h"
#include "core/view.h"

namespace fastml {

struct SgdCoeffs {
  float neg_lr, momentum, one_m_dampening, weight_decay, sign;
  bool use_momentum, nesterov, first_step, decay;
};

using SgdUpdateFn = void (*)(const SgdCoeffs& c, int64_t n, float* p, const float* g, float* b);

struct SgdKernels {
  SgdUpdateFn update;
};

FASTML_DECLARE_KERNEL_TABLES(SgdKernels, sgd)

struct SgdHyper {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize, first_step;
};

// Validates the hyperparameters (ValueError), then updates every slot in one parallel region.
void sgd_step(const std::vector<ParamSlot>& slots, const SgdHyper& h);

}  // namespace fastml
