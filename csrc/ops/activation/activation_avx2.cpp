// Activation kernels, avx2 variant: the generic bodies of activation_impl.h over the avx2 VecF.
// Maths and contract: activation.h. Test: FASTML_ISA=avx2 pytest tests/test_activation.py
#include "core/simd/vec_avx2.h"
#include "ops/activation/activation_impl.h"

namespace fastml::cpu::avx2 {
extern const ActivationKernels activation_kernels_avx2;
constexpr ActivationKernels activation_kernels_avx2 = activation_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx2
