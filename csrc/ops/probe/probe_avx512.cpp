// Probe kernels, avx512 variant: the generic bodies of probe_impl.h over the avx512 VecF.
// Contract: probe.h. Test: pytest tests/test_bench.py
#include "core/simd/vec_avx512.h"
#include "ops/probe/probe_impl.h"

namespace fastml::cpu::avx512 {
extern const ProbeKernels probe_kernels_avx512;
constexpr ProbeKernels probe_kernels_avx512 = probe_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::avx512
