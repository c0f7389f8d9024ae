// Probe entry: allocation, first touch, threading and timing around the kernels of probe_<isa>.cpp.
// Contract and byte counting: probe.h. Test: pytest tests/test_bench.py. Bench: python -m fastml.bench --list
#include "ops/probe/probe.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>

#include "core/check.h"
#include "core/parallel.h"

namespace fastml {

namespace {

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float, FreeDeleter>;

Buffer alloc_floats(int64_t n) {
  constexpr size_t kAlign = 4096;  // page aligned: each thread's chunk starts on its own page
  const size_t bytes = (static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float) + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, bytes);
  FASTML_CHECK(p != nullptr, "probe: could not allocate ", bytes, " bytes");
  return Buffer(static_cast<float*>(p));
}

// The chunk [b, e) of thread t of T over n items, aligned to 1024 floats (one 4 KiB page).
inline void chunk_of(int64_t n, int t, int T, int64_t* b, int64_t* e) {
  int64_t c = (n + T - 1) / T;
  c = (c + 1023) / 1024 * 1024;
  *b = std::min<int64_t>(n, c * t);
  *e = std::min<int64_t>(n, *b + c);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int resolve_threads(int threads) { return threads > 0 ? threads : get_num_threads(); }

}  // namespace

double probe_stream(StreamKind kind, int64_t n, int threads, int repeats) {
  FASTML_CHECK(n >= 1024, "probe: expected at least 1024 elements, got ", n);
  FASTML_CHECK(repeats >= 1, "probe: expected repeats >= 1, got ", repeats);
  const int T = resolve_threads(threads);
  const ProbeKernels& k = select_kernels(probe_tables);
  Buffer a = alloc_floats(n), b = alloc_floats(n), c = alloc_floats(n);
  float* pa = a.get();
  float* pb = b.get();
  float* pc = c.get();
  // Passes per timed sample: about 4M elements per sample, so cache-resident sizes are not dominated by
  // the fork-join of the parallel region.
  const int64_t inner = std::max<int64_t>(1, (int64_t{1} << 22) / n);
  double sink = 0.0;
  double best = 0.0;
#pragma omp parallel num_threads(T) reduction(+ : sink)
  {
    const int t = omp_get_thread_num();
    int64_t lo, hi;
    chunk_of(n, t, omp_get_num_threads(), &lo, &hi);
    for (int64_t i = lo; i < hi; ++i) {  // first touch by the thread that streams this chunk
      pa[i] = 0.f;
      pb[i] = 1.f;
      pc[i] = 2.f;
    }
  }
  const double bytes_per_elem = kind == StreamKind::triad ? 12.0 : kind == StreamKind::copy ? 8.0 : 4.0;
  for (int r = 0; r < repeats + 1; ++r) {  // sample 0 warms caches, TLB and the thread pool
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(T) reduction(+ : sink)
    {
      int64_t lo, hi;
      chunk_of(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
      const int64_t m = hi - lo;
      for (int64_t it = 0; it < inner && m > 0; ++it) {
        switch (kind) {
          case StreamKind::triad: k.triad(m, pa + lo, pb + lo, pc + lo, 0.5f); break;
          case StreamKind::copy: k.copy(m, pa + lo, pb + lo); break;
          case StreamKind::read: sink += k.read(m, pb + lo); break;
        }
      }
    }
    const double s = seconds_since(t0);
    if (r > 0) best = std::max(best, bytes_per_elem * static_cast<double>(n) * static_cast<double>(inner) / s * 1e-9);
  }
  volatile double keep = sink;  // the read pass's sums stay observable, so the loads cannot be dropped
  (void)keep;
  return best;
}

void probe_triad_pass(int64_t n, float* a, const float* b, const float* c, float s, int threads) {
  if (n <= 0) return;
  const int T = resolve_threads(threads);
  const ProbeKernels& k = select_kernels(probe_tables);
  if (T <= 1) {
    k.triad(n, a, b, c, s);
    return;
  }
#pragma omp parallel num_threads(T)
  {
    int64_t lo, hi;
    chunk_of(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
    if (hi > lo) k.triad(hi - lo, a + lo, b + lo, c + lo, s);
  }
}

double probe_fma_peak(Isa isa, int threads, double seconds) {
  FASTML_CHECK(isa_supported(isa), "probe_fma_peak: this CPU cannot run ", isa_name(isa));
  const ProbeKernels* table = probe_tables[static_cast<int>(isa)];
  FASTML_CHECK(table != nullptr, "probe_fma_peak: the ", isa_name(isa), " kernels were not compiled");
  FASTML_CHECK(seconds > 0.0 && seconds <= 60.0, "probe_fma_peak: expected 0 < seconds <= 60, got ", seconds);
  const int T = resolve_threads(threads);
  const double flops_per_iter = 2.0 * kFmaChains * table->lanes;
  const float m = 0.99999994f, c = 1e-7f;  // bounded, never denormal: acc -> c / (1 - m)
  volatile float sink = 0.f;

  // Calibrate on one thread: grow iters until a run lasts >= 2 ms, then scale to seconds / 3.
  int64_t iters = 1 << 12;
  double t_cal = 0.0;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    sink = sink + table->fma_chains(iters, m, c);
    t_cal = seconds_since(t0);
    if (t_cal >= 2e-3 || iters >= (int64_t{1} << 40)) break;
    iters *= 4;
  }
  iters = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iters) * (seconds / 3.0) / t_cal));

  double best = 0.0;
  for (int r = 0; r < 3; ++r) {
    float part = 0.f;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(T) reduction(+ : part)
    part += table->fma_chains(iters, m, c);
    const double s = seconds_since(t0);
    sink = sink + part;
    best = std::max(best, flops_per_iter * static_cast<double>(iters) * T / s * 1e-9);
  }
  return best;
}

}  // namespace fastml
