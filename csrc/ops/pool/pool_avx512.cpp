// Pooling kernels, avx512 variant: the generic bodies of pool_impl.h over the avx512 VecF.
// Maths and contract: pool.h. Test: FASTML_ISA=avx512 pytest tests/test_pool.py
#include "core/simd/vec_avx512.h"
#include "ops/pool/pool_impl.h"

namespace fastml::cpu::avx512 {
extern const PoolKernels pool_kernels_avx512;
constexpr PoolKernels pool_kernels_avx512 = pool_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx512
