// Elementwise loss kernels, avx512 variant: the generic bodies of pointwise_loss_impl.h over the avx512 VecF.
// Maths and contract: pointwise_loss.h. Test: FASTML_ISA=avx512 pytest tests/test_losses.py
#include "core/simd/vec_avx512.h"
#include "ops/pointwise_loss/pointwise_loss_impl.h"

namespace fastml::cpu::avx512 {
extern const PointwiseLossKernels pointwise_loss_kernels_avx512;
constexpr PointwiseLossKernels pointwise_loss_kernels_avx512 = pointwise_loss_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx512
