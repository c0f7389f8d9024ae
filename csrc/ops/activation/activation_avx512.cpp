// Activation kernels, avx512 variant: the generic bodies of activation_impl.h over the avx512 VecF.
// Maths and contract: activation.h. Test: FASTML_ISA=avx512 pytest tests/test_activation.py
// GCC 12 flags the undefined pass-through operand of the unmasked min/max intrinsics (_mm512_undefined_ps)
// as uninitialised use once the exact-GELU and tanh fallbacks are inlined: a header false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "core/simd/vec_avx512.h"
#include "ops/activation/activation_impl.h"

namespace fastml::cpu::avx512 {
extern const ActivationKernels activation_kernels_avx512;
constexpr ActivationKernels activation_kernels_avx512 = activation_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx512
