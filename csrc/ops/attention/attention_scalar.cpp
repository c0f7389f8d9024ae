// Attention row kernels, scalar variant: the generic bodies of attention_impl.h over the scalar VecF.
// Maths, layouts and contract: attention.h. Test: FASTML_ISA=scalar pytest tests/test_attention.py
#include "core/simd/vec_scalar.h"
#include "ops/attention/attention_impl.h"

namespace fastml::cpu::scalar {
extern const AttentionKernels attention_kernels_scalar;
constexpr AttentionKernels attention_kernels_scalar = attention_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::scalar
