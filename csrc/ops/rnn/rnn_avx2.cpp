// Recurrent gate kernels, avx2 variant: the generic bodies of rnn_impl.h over the avx2 VecF.
// Maths and contract: rnn.h. Test: FASTML_ISA=avx2 pytest tests/test_rnn.py
#include "core/simd/vec_avx2.h"
#include "ops/rnn/rnn_impl.h"

namespace fastml::cpu::avx2 {
extern const RnnKernels rnn_kernels_avx2;
constexpr RnnKernels rnn_kernels_avx2 = rnn_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx2
