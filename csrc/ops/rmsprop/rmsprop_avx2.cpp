// RMSprop kernels, avx2 variant: the generic body of rmsprop_impl.h over the avx2 VecF.
// Maths and contract: rmsprop.h. Test: FASTML_ISA=avx2 pytest tests/test_optim.py
#include "core/simd/vec_avx2.h"
#include "ops/rmsprop/rmsprop_impl.h"

namespace fastml::cpu::avx2 {
extern const RmspropKernels rmsprop_kernels_avx2;
constexpr RmspropKernels rmsprop_kernels_avx2 = rmsprop_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx2
