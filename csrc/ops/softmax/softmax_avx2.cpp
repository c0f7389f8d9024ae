// Softmax kernels, avx2 variant: the generic bodies of softmax_impl.h over the avx2 VecF.
// Maths, layouts and variants: softmax.h. Test: FASTML_ISA=avx2 pytest tests/test_softmax.py
#include "core/simd/vec_avx2.h"
#include "ops/softmax/softmax_impl.h"

namespace fastml::cpu::avx2 {
extern const SoftmaxKernels softmax_kernels_avx2;
constexpr SoftmaxKernels softmax_kernels_avx2 = softmax_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx2
