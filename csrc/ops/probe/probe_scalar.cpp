// Probe kernels, scalar variant: the generic bodies of probe_impl.h over the scalar VecF.
// Contract: probe.h. Test: pytest tests/test_bench.py
#include "core/simd/vec_scalar.h"
#include "ops/probe/probe_impl.h"

namespace fastml::cpu::scalar {
extern const ProbeKernels probe_kernels_scalar;
constexpr ProbeKernels probe_kernels_scalar = probe_impl::make_kernels<VecF>();
}  // namespace fastml::cpu::scalar
