// Recurrent gate kernels, scalar variant: the generic bodies of rnn_impl.h over the scalar VecF.
// Maths and contract: rnn.h. Test: FASTML_ISA=scalar pytest tests/test_rnn.py
#include "core/simd/vec_scalar.h"
#include "ops/rnn/rnn_impl.h"

namespace fastml::cpu::scalar {
extern const RnnKernels rnn_kernels_scalar;
constexpr RnnKernels rnn_kernels_scalar = rnn_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::scalar
