// Pooling kernels, avx2 variant: the generic bodies of pool_impl.h over the avx2 VecF.
// Maths and contract: pool.h. Test: FASTML_ISA=avx2 pytest tests/test_pool.py
#include "core/simd/vec_avx2.h"
#include "ops/pool/pool_impl.h"

namespace fastml::cpu::avx2 {
extern const PoolKernels pool_kernels_avx2;
constexpr PoolKernels pool_kernels_avx2 = pool_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx2
