// Softmax kernels, avx512 variant: the generic bodies of softmax_impl.h over the avx512 VecF.
// Maths, layouts and variants: softmax.h. Test: FASTML_ISA=avx512 pytest tests/test_softmax.py
#include "core/simd/vec_avx512.h"
#include "ops/softmax/softmax_impl.h"

namespace fastml::cpu::avx512 {
extern const SoftmaxKernels softmax_kernels_avx512;
constexpr SoftmaxKernels softmax_kernels_avx512 = softmax_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx512
