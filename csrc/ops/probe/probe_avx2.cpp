// Probe kernels, avx2 variant: the generic bodies of probe_impl.h over the avx2 VecF.
// Contract: probe.h. Test: pytest tests/test_bench.py
#include "core/simd/vec_avx2.h"
#include "ops/probe/probe_impl.h"

namespace fastml::cpu::avx2 {
extern const ProbeKernels probe_kernels_avx2;
constexpr ProbeKernels probe_kernels_avx2 = probe_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx2
