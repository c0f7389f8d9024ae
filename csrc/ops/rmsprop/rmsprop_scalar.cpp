// RMSprop kernels, scalar variant: the generic body of rmsprop_impl.h over the scalar VecF.
// Maths and contract: rmsprop.h. Test: FASTML_ISA=scalar pytest tests/test_optim.py
#include "core/simd/vec_scalar.h"
#include "ops/rmsprop/rmsprop_impl.h"

namespace fastml::cpu::scalar {
extern const RmspropKernels rmsprop_kernels_scalar;
constexpr RmspropKernels rmsprop_kernels_scalar = rmsprop_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::scalar
