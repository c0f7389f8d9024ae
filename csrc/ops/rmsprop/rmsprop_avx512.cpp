// RMSprop kernels, avx512 variant: the generic body of rmsprop_impl.h over the avx512 VecF.
// Maths and contract: rmsprop.h. Test: FASTML_ISA=avx512 pytest tests/test_optim.py
#include "core/simd/vec_avx512.h"
#include "ops/rmsprop/rmsprop_impl.h"

namespace fastml::cpu::avx512 {
extern const RmspropKernels rmsprop_kernels_avx512;
constexpr RmspropKernels rmsprop_kernels_avx512 = rmsprop_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx512
