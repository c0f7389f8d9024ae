// Cross-entropy kernels, scalar variant: the generic bodies of cross_entropy_impl.h over the scalar VecF.
// Maths and layouts: cross_entropy.h. Test: FASTML_ISA=scalar pytest tests/test_cross_entropy.py
#include "core/simd/vec_scalar.h"
#include "ops/cross_entropy/cross_entropy_impl.h"

namespace fastml::cpu::scalar {
extern const CrossEntropyKernels cross_entropy_kernels_scalar;
constexpr CrossEntropyKernels cross_entropy_kernels_scalar = cross_entropy_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::scalar
