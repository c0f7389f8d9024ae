// SGD entry: float32 coefficients once per call, the active ISA's kernel, one parallel region over all
// parameter tensors (core/multi_tensor.h).
#include "ops/sgd/sgd.h"

#include "core/check.h"
#include "core/multi_tensor.h"

namespace fastml {

void sgd_step(const std::vector<ParamSlot>& slots, const SgdHyper& h) {
  FASTML_CHECK(h.lr >= 0.0, "sgd_step: expected lr >= 0, got ", h.lr);
  FASTML_CHECK(h.momentum >= 0.0, "sgd_step: expected momentum >= 0, got ", h.momentum);
  FASTML_CHECK(h.weight_decay >= 0.0, "sgd_step: expected weight_decay >= 0, got ", h.weight_decay);
  FASTML_CHECK(!h.nesterov || (h.momentum > 0.0 && h.dampening == 0.0),
               "sgd_step: nesterov requires momentum > 0 and dampening == 0, got momentum=", h.momentum,
               ", dampening=", h.dampening);
  SgdCoeffs c{};
  c.neg_lr = static_cast<float>(-h.lr);
  c.momentum = static_cast<float>(h.momentum);
  c.one_m_dampening = static_cast<float>(1.0 - h.dampening);
  c.weight_decay = static_cast<float>(h.weight_decay);
  c.sign = h.maximize ? -1.0f : 1.0f;
  c.use_momentum = h.momentum != 0.0;
  c.nesterov = h.nesterov;
  c.first_step = h.first_step;
  c.decay = h.weight_decay != 0.0;
  if (c.use_momentum) {
    for (const ParamSlot& s : slots)
      FASTML_CHECK(s.buf0 != nullptr || s.size == 0, "sgd_step: momentum > 0 requires momentum_buffers");
  }
  const SgdUpdateFn fn = select_kernels(sgd_tables).update;
  parallel_over_slots(slots, [&](const ParamSlot& s, int64_t b, int64_t e) {
    fn(c, e - b, s.param + b, s.grad + b, c.use_momentum ? s.buf0 + b : nullptr);
  });
}

}  // namespace fastml
