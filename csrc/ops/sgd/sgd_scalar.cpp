// SGD kernels, scalar variant: the generic body of sgd_impl.h over the scalar VecF.
// Maths and contract: sgd.h. Test: FASTML_ISA=scalar pytest tests/test_optim.py
#include "core/simd/vec_scalar.h"
#include "ops/sgd/sgd_impl.h"

namespace fastml::cpu::scalar {
extern const SgdKernels sgd_kernels_scalar;
constexpr SgdKernels sgd_kernels_scalar = sgd_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::scalar
