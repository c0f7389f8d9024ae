// Adam/AdamW kernels, avx2 variant: the generic body of adam_impl.h over the avx2 VecF.
// Maths and contract: adam.h. Test: FASTML_ISA=avx2 pytest tests/test_optim.py
#include "core/simd/vec_avx2.h"
#include "ops/adam/adam_impl.h"

namespace fastml::cpu::avx2 {
extern const AdamKernels adam_kernels_avx2;
constexpr AdamKernels adam_kernels_avx2 = adam_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx2
