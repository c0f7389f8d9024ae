// Adam/AdamW entry: coefficients once per call (double -> float32 as torch's Python scalars), the kernel
// table of the active ISA, one parallel region over all parameter tensors (core/multi_tensor.h).
#include "ops/adam/adam.h"

#include <cmath>

#include "core/check.h"
#include "core/multi_tensor.h"

namespace fastml {

AdamCoeffs adam_coeffs(const AdamHyper& h) {
  const double t = static_cast<double>(h.step);
  const double bc1 = 1.0 - std::pow(h.beta1, t);
  const double bc2 = 1.0 - std::pow(h.beta2, t);
  AdamCoeffs c{};
  c.lerp_w = static_cast<float>(1.0 - h.beta1);
  c.beta2 = static_cast<float>(h.beta2);
  c.one_m_beta2 = static_cast<float>(1.0 - h.beta2);
  c.coupled_decay = !h.decoupled && h.weight_decay != 0.0;
  c.decoupled_decay = h.decoupled && h.weight_decay != 0.0;
  c.weight_decay = c.coupled_decay ? static_cast<float>(h.weight_decay) : 0.0f;
  c.decay = c.decoupled_decay ? static_cast<float>(1.0 - h.lr * h.weight_decay) : 1.0f;
  c.neg_step_size = static_cast<float>(-(h.lr / bc1));
  c.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  c.eps = static_cast<float>(h.eps);
  c.sign = h.maximize ? -1.0f : 1.0f;
  c.amsgrad = h.amsgrad;
  return c;
}

void adam_step(const std::vector<ParamSlot>& slots, const AdamHyper& h) {
  const char* op = h.decoupled ? "adamw_step" : "adam_step";
  FASTML_CHECK(h.step >= 1, op, ": expected step >= 1 (the 1-based count after this update), got ", h.step);
  FASTML_CHECK(h.lr >= 0.0, op, ": expected lr >= 0, got ", h.lr);
  FASTML_CHECK(h.beta1 >= 0.0 && h.beta1 < 1.0, op, ": expected 0 <= betas[0] < 1, got ", h.beta1);
  FASTML_CHECK(h.beta2 >= 0.0 && h.beta2 < 1.0, op, ": expected 0 <= betas[1] < 1, got ", h.beta2);
  FASTML_CHECK(h.eps >= 0.0, op, ": expected eps >= 0, got ", h.eps);
  FASTML_CHECK(h.weight_decay >= 0.0, op, ": expected weight_decay >= 0, got ", h.weight_decay);
  const AdamCoeffs c = adam_coeffs(h);
  const AdamUpdateFn fn = select_kernels(adam_tables).update;
  parallel_over_slots(slots, [&](const ParamSlot& s, int64_t b, int64_t e) {
    fn(c, e - b, s.param + b, s.grad + b, s.buf0 + b, s.buf1 + b, c.amsgrad ? s.buf2 + b : nullptr);
  });
}

}  // namespace fastml
