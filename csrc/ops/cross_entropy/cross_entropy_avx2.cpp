// Cross-entropy kernels, avx2 variant: the generic bodies of cross_entropy_impl.h over the avx2 VecF.
// Maths and layouts: cross_entropy.h. Test: FASTML_ISA=avx2 pytest tests/test_cross_entropy.py
#include "core/simd/vec_avx2.h"
#include "ops/cross_entropy/cross_entropy_impl.h"

namespace fastml::cpu::avx2 {
extern const CrossEntropyKernels cross_entropy_kernels_avx2;
constexpr CrossEntropyKernels cross_entropy_kernels_avx2 = cross_entropy_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx2
