// SGD kernels, avx512 variant: the generic body of sgd_impl.h over the avx512 VecF.
// Maths and contract: sgd.h. Test: FASTML_ISA=avx512 pytest tests/test_optim.py
#include "core/simd/vec_avx512.h"
#include "ops/sgd/sgd_impl.h"

namespace fastml::cpu::avx512 {
extern const SgdKernels sgd_kernels_avx512;
constexpr SgdKernels sgd_kernels_avx512 = sgd_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx512
