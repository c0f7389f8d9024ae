// Attention row kernels, avx512 variant: the generic bodies of attention_impl.h over the avx512 VecF.
// Maths, layouts and contract: attention.h. Test: FASTML_ISA=avx512 pytest tests/test_attention.py
// GCC 12 flags _mm512_reduce_add_ps (its _mm256_undefined_pd) as uninitialised use: a header false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "core/simd/vec_avx512.h"
#include "ops/attention/attention_impl.h"

namespace fastml::cpu::avx512 {
extern const AttentionKernels attention_kernels_avx512;
constexpr AttentionKernels attention_kernels_avx512 = attention_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx512
