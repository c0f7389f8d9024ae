// Pooling kernels, scalar variant: the generic bodies of pool_impl.h over the scalar VecF.
// Maths and contract: pool.h. Test: FASTML_ISA=scalar pytest tests/test_pool.py
#include "core/simd/vec_scalar.h"
#include "ops/pool/pool_impl.h"

namespace fastml::cpu::scalar {
extern const PoolKernels pool_kernels_scalar;
constexpr PoolKernels pool_kernels_scalar = pool_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::scalar
