// Activation kernels, scalar variant: the generic bodies of activation_impl.h over the scalar VecF.
// Maths and contract: activation.h. Test: FASTML_ISA=scalar pytest tests/test_activation.py
#include "core/simd/vec_scalar.h"
#include "ops/activation/activation_impl.h"

namespace fastml::cpu::scalar {
extern const ActivationKernels activation_kernels_scalar;
constexpr ActivationKernels activation_kernels_scalar = activation_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::scalar
