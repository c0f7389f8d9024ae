// Machine-ceiling probes: the bandwidth and FMA throughput that fastml's benchmarks compare against.
//
//   triad   a[i] = b[i] + s * c[i]   (McCalpin's STREAM triad)  counted as 3 x 4 bytes per element
//   copy    a[i] = b[i]                                          counted as 2 x 4 bytes per element
//   read    sum += b[i]                                          counted as 1 x 4 bytes per element
//   fma     K independent chains acc_k = acc_k * m + c over VecF (K = kFmaChains), 2 flops per lane
//
// Byte counts follow the STREAM convention: write-allocate traffic of the regular (not streaming) stores
// is NOT counted, so a triad that really moves 4 x 4 bytes per element reports 3 x 4. fastml's benchmarks
// count bytes the same way (reads + writes of the arrays an op touches), so ratios are like for like.
// The FMA chains: K accumulators cover latency x throughput (4-cycle latency x 2 FMA ports = 8 on current
// x86 cores; 12 leaves margin). The scalar variant is built at the baseline ISA (no FMA instruction): it
// measures mul+add pairs, which the compiler may pack into SSE registers.
// Variants: probe_{scalar,avx2,avx512}.cpp over probe_impl.h. Test: pytest tests/test_bench.py.
// Bench: python -m fastml.bench --list (the header prints the ceilings).
#pragma once
#include <cstdint>

#include "core/dispatch.h"

namespace fastml {

inline constexpr int kFmaChains = 12;

struct ProbeKernels {
  int lanes;  // floats per vector register
  void (*triad)(int64_t n, float* a, const float* b, const float* c, float s);
  void (*copy)(int64_t n, float* a, const float* b);
  float (*read)(int64_t n, const float* b);
  // Runs `iters` rounds of kFmaChains dependent FMAs per chain; returns a value derived from every chain.
  float (*fma_chains)(int64_t iters, float m, float c);
};

FASTML_DECLARE_KERNEL_TABLES(ProbeKernels, probe)

enum class StreamKind : int { triad = 0, copy = 1, read = 2 };

// Best-of-`repeats` bandwidth in GB/s (1e9 bytes/s) of `kind` over arrays of n floats, on `threads`
// threads (each thread first-touches and then streams its own contiguous chunk). Small n (cache-resident)
// repeats the pass inside each timed sample so a sample lasts about a millisecond.
double probe_stream(StreamKind kind, int64_t n, int threads, int repeats);

// One triad pass a = b + s*c over caller-owned arrays of n floats on `threads` threads (same chunking as
// probe_stream). The benchmark runner times it interleaved with the op under test, over the same
// working-set size, so that "% of triad" compares two numbers measured under the same conditions.
void probe_triad_pass(int64_t n, float* a, const float* b, const float* c, float s, int threads);

// FMA throughput in GFLOP/s of the kernels compiled for `isa` on `threads` threads, best of 3 samples
// lasting about seconds/3 each. Throws ValueError when the CPU cannot run `isa` or it was not compiled.
double probe_fma_peak(Isa isa, int threads, double seconds);

}  // namespace fastml
