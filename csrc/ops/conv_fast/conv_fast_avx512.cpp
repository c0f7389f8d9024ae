// Specialised conv kernels, avx512 variant: the generic bodies of conv_fast_impl.h and
// conv_fast_wino_impl.h over the avx512 VecF. Contract: conv_fast.h.
// Test: FASTML_ISA=avx512 pytest tests/test_conv_fast.py
#include "core/simd/vec_avx512.h"
#include "ops/conv_fast/conv_fast_impl.h"
#include "ops/conv_fast/conv_fast_wino_impl.h"

namespace fastml::cpu::avx512 {
extern const ConvFastKernels conv_fast_kernels_avx512;
constexpr ConvFastKernels conv_fast_kernels_avx512 = conv_fast_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx512
