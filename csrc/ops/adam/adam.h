// Adam / AdamW step (Kingma & Ba 2015; Loshchilov & Hutter 2019), torch.optim's single-tensor rule,
// float32, in place over a list of parameter tensors (ParamSlot: param, grad, buf0 = exp_avg m,
// buf1 = exp_avg_sq v, buf2 = max_exp_avg_sq (amsgrad only), size).
//
//   g  = (maximize ? -grad : grad);  adam: g = fma(p, wd, g)   adamw: p = p * (1 - lr wd)
//   m  = lerp(m, g, 1 - beta1)            torch lerp: |w| < 0.5 ? fma(w, g - m, m) : fma(w - 1, g - m, g)
//   v  = fma((1 - beta2) g, g, v beta2)   (torch's mul_ + addcmul_, which GCC fuses)
//   vh = amsgrad ? (vmax = max(vmax, v), NaN-propagating) : v
//   p  = p + (-step_size m) / (sqrt(vh) / bc2_sqrt + eps)   step_size = lr / (1 - beta1^t),
//                                                          bc2_sqrt = sqrt(1 - beta2^t)
// Scalar coefficients are computed in double once per call and rounded to float32 (AdamCoeffs).
// One pass: reads p, g, m, v (+vmax), writes p, m, v (+vmax); no temporaries.
// Variants: adam_{scalar,avx2,avx512}.cpp over adam_impl.h. Test: pytest tests/test_optim.py.
// Bench: python -m fastml.bench --ops adam.
#pragma once
#include <cstdint>
#include <vector>

#include "core/dispatch.h"
#include "core/view.h"

namespace fastml {

struct AdamCoeffs {
  float lerp_w;        // 1 - beta1 (torch's lerp weight)
  float beta2;
  float one_m_beta2;   // 1 - beta2
  float weight_decay;  // coupled (Adam) decay, 0 for AdamW
  float decay;         // AdamW factor 1 - lr wd (1 for Adam)
  float neg_step_size; // -lr / (1 - beta1^t)
  float bc2_sqrt;      // sqrt(1 - beta2^t)
  float eps;
  float sign;          // -1 when maximizing, else +1 (exact)
  bool amsgrad;
  bool coupled_decay;  // weight_decay != 0 and not decoupled
  bool decoupled_decay;
};

// One contiguous piece: n elements starting at the given pointers (vmax null unless amsgrad).
using AdamUpdateFn = void (*)(const AdamCoeffs& c, int64_t n, float* p, const float* g, float* m, float* v,
                              float* vmax);

struct AdamKernels {
  AdamUpdateFn update;
};

FASTML_DECLARE_KERNEL_TABLES(AdamKernels, adam)

struct AdamHyper {
  int64_t step;  // 1-based count after this update
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, decoupled, maximize;
};

AdamCoeffs adam_coeffs(const AdamHyper& h);
// Validates the hyperparameters (ValueError), then updates every slot in one parallel region.
void adam_step(const std::vector<ParamSlot>& slots, const AdamHyper& h);

}  // namespace fastml
