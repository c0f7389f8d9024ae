// Recurrent gate kernels, avx512 variant: the generic bodies of rnn_impl.h over the avx512 VecF.
// Maths and contract: rnn.h. Test: FASTML_ISA=avx512 pytest tests/test_rnn.py
// GCC 12 flags the _mm512_undefined_ps inside the exp / rcp14 intrinsics as uninitialised use once they
// are inlined into lstm_fwd: a header false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "core/simd/vec_avx512.h"
#include "ops/rnn/rnn_impl.h"

namespace fastml::cpu::avx512 {
extern const RnnKernels rnn_kernels_avx512;
constexpr RnnKernels rnn_kernels_avx512 = rnn_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx512
