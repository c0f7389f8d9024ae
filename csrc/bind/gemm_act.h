// The activation names of the GEMM epilogue as the bindings receive them (Python None is passed as
// "none"): one parser, so every op that fuses an activation (sgemm, conv, conv_fast) accepts the same
// names and words the same error.
#pragma once
#include <string>

#include "core/check.h"
#include "gemm/gemm.h"

namespace fastml::bind {

inline GemmAct gemm_act_of(const std::string& s, const char* op) {
  if (s == "none") return GemmAct::none;
  if (s == "relu") return GemmAct::relu;
  if (s == "gelu") return GemmAct::gelu;
  if (s == "gelu_tanh") return GemmAct::gelu_tanh;
  if (s == "sigmoid") return GemmAct::sigmoid;
  if (s == "tanh") return GemmAct::tanh;
  FASTML_CHECK(false, op, ": expected activation in (None, 'relu', 'gelu', 'gelu_tanh', 'sigmoid', 'tanh'), got '",
               s, "'");
  return GemmAct::none;
}

}  // namespace fastml::bind
