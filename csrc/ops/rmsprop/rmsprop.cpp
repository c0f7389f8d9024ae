// RMSprop entry: float32 coefficients once per call, the active ISA's kernel, one parallel region over
// all parameter tensors (core/multi_tensor.h).
#include "ops/rmsprop/rmsprop.h"

#include "core/check.h"
#include "core/multi_tensor.h"

namespace fastml {

void rmsprop_step(const std::vector<ParamSlot>& slots, const RmspropHyper& h) {
  const char* op = "rmsprop_step";
  FASTML_CHECK(h.lr >= 0.0, op, ": expected lr >= 0, got ", h.lr);
  FASTML_CHECK(h.alpha >= 0.0 && h.alpha < 1.0, op, ": expected 0 <= alpha < 1, got ", h.alpha);
  FASTML_CHECK(h.eps >= 0.0, op, ": expected eps >= 0, got ", h.eps);
  FASTML_CHECK(h.weight_decay >= 0.0, op, ": expected weight_decay >= 0, got ", h.weight_decay);
  FASTML_CHECK(h.momentum >= 0.0, op, ": expected momentum >= 0, got ", h.momentum);
  RmspropCoeffs c{};
  c.neg_lr = static_cast<float>(-h.lr);
  c.alpha = static_cast<float>(h.alpha);
  c.one_m_alpha = static_cast<float>(1.0 - h.alpha);
  c.eps = static_cast<float>(h.eps);
  c.weight_decay = static_cast<float>(h.weight_decay);
  c.momentum = static_cast<float>(h.momentum);
  c.sign = h.maximize ? -1.0f : 1.0f;
  c.decay = h.weight_decay != 0.0;
  c.centered = h.centered;
  c.use_momentum = h.momentum > 0.0;
  for (const ParamSlot& s : slots) {
    FASTML_CHECK(s.buf0 != nullptr || s.size == 0, op, ": square_avgs is required");
    FASTML_CHECK(!c.centered || s.buf1 != nullptr || s.size == 0, op, ": centered=True requires grad_avgs");
    FASTML_CHECK(!c.use_momentum || s.buf2 != nullptr || s.size == 0, op,
                 ": momentum > 0 requires momentum_buffers");
  }
  const RmspropUpdateFn fn = select_kernels(rmsprop_tables).update;
  parallel_over_slots(slots, [&](const ParamSlot& s, int64_t b, int64_t e) {
    fn(c, e - b, s.param + b, s.grad + b, s.buf0 + b, c.centered ? s.buf1 + b : nullptr,
       c.use_momentum ? s.buf2 + b : nullptr);
  });
}

}  // namespace fastml
