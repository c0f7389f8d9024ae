// Attention row kernels, avx2 variant: the generic bodies of attention_impl.h over the avx2 VecF.
// Maths, layouts and contract: attention.h. Test: FASTML_ISA=avx2 pytest tests/test_attention.py
#include "core/simd/vec_avx2.h"
#include "ops/attention/attention_impl.h"

namespace fastml::cpu::avx2 {
extern const AttentionKernels attention_kernels_avx2;
constexpr AttentionKernels attention_kernels_avx2 = attention_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx2
