// Cross-entropy kernels, avx512 variant: the generic bodies of cross_entropy_impl.h over the avx512 VecF.
// Maths and layouts: cross_entropy.h. Test: FASTML_ISA=avx512 pytest tests/test_cross_entropy.py
#include "core/simd/vec_avx512.h"
#include "ops/cross_entropy/cross_entropy_impl.h"

namespace fastml::cpu::avx512 {
extern const CrossEntropyKernels cross_entropy_kernels_avx512;
constexpr CrossEntropyKernels cross_entropy_kernels_avx512 = cross_entropy_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx512
