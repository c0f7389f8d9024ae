// Specialised conv kernels, scalar variant: the generic bodies of conv_fast_impl.h and
// conv_fast_wino_impl.h over the scalar VecF. Contract: conv_fast.h.
// Test: FASTML_ISA=scalar pytest tests/test_conv_fast.py
#include "core/simd/vec_scalar.h"
#include "ops/conv_fast/conv_fast_impl.h"
#include "ops/conv_fast/conv_fast_wino_impl.h"

namespace fastml::cpu::scalar {
extern const ConvFastKernels conv_fast_kernels_scalar;
constexpr ConvFastKernels conv_fast_kernels_scalar = conv_fast_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::scalar
