// SGD kernels, avx2 variant: the generic body of sgd_impl.h over the avx2 VecF.
// Maths and contract: sgd.h. Test: FASTML_ISA=avx2 pytest tests/test_optim.py
#include "core/simd/vec_avx2.h"
#include "ops/sgd/sgd_impl.h"

namespace fastml::cpu::avx2 {
extern const SgdKernels sgd_kernels_avx2;
constexpr SgdKernels sgd_kernels_avx2 = sgd_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx2
