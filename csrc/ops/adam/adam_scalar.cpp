// Adam/AdamW kernels, scalar variant: the generic body of adam_impl.h over the scalar VecF.
// Maths and contract: adam.h. Test: FASTML_ISA=scalar pytest tests/test_optim.py
#include "core/simd/vec_scalar.h"
#include "ops/adam/adam_impl.h"

namespace fastml::cpu::scalar {
extern const AdamKernels adam_kernels_scalar;
constexpr AdamKernels adam_kernels_scalar = adam_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::scalar
