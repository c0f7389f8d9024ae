// Elementwise loss kernels, scalar variant: the generic bodies of pointwise_loss_impl.h over the scalar VecF.
// Maths and contract: pointwise_loss.h. Test: FASTML_ISA=scalar pytest tests/test_losses.py
#include "core/simd/vec_scalar.h"
#include "ops/pointwise_loss/pointwise_loss_impl.h"

namespace fastml::cpu::scalar {
extern const PointwiseLossKernels pointwise_loss_kernels_scalar;
constexpr PointwiseLossKernels pointwise_loss_kernels_scalar = pointwise_loss_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::scalar
