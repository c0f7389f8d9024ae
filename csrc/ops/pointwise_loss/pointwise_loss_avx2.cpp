// Elementwise loss kernels, avx2 variant: the generic bodies of pointwise_loss_impl.h over the avx2 VecF.
// Maths and contract: pointwise_loss.h. Test: FASTML_ISA=avx2 pytest tests/test_losses.py
#include "core/simd/vec_avx2.h"
#include "ops/pointwise_loss/pointwise_loss_impl.h"

namespace fastml::cpu::avx2 {
extern const PointwiseLossKernels pointwise_loss_kernels_avx2;
constexpr PointwiseLossKernels pointwise_loss_kernels_avx2 = pointwise_loss_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx2
