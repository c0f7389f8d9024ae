// Softmax kernels, scalar variant: the generic bodies of softmax_impl.h over the scalar VecF.
// Maths, layouts and variants: softmax.h. Test: FASTML_ISA=scalar pytest tests/test_softmax.py
#include "core/simd/vec_scalar.h"
#include "ops/softmax/softmax_impl.h"

namespace fastml::cpu::scalar {
extern const SoftmaxKernels softmax_kernels_scalar;
constexpr SoftmaxKernels softmax_kernels_scalar = softmax_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::scalar
