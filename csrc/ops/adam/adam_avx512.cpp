// Adam/AdamW kernels, avx512 variant: the generic body of adam_impl.h over the avx512 VecF.
// Maths and contract: adam.h. Test: FASTML_ISA=avx512 pytest tests/test_optim.py
#include "core/simd/vec_avx512.h"
#include "ops/adam/adam_impl.h"

namespace fastml::cpu::avx512 {
extern const AdamKernels adam_kernels_avx512;
constexpr AdamKernels adam_kernels_avx512 = adam_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx512
