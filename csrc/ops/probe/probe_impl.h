// Generic bodies of the probe kernels (contract: probe.h), included by probe_<isa>.cpp after that ISA's
// vec header. Loops are unrolled 4x so that loop overhead does not cap cache-resident bandwidth.
#pragma once
#include <cstdint>

#include "ops/probe/probe.h"

namespace fastml::probe_impl {

template <class V>
void triad(int64_t n, float* a, const float* b, const float* c, float s) {
  constexpr int N = V::N;
  const V vs = V::set1(s);
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    fmadd(vs, V::load(c + i), V::load(b + i)).store(a + i);
    fmadd(vs, V::load(c + i + N), V::load(b + i + N)).store(a + i + N);
    fmadd(vs, V::load(c + i + 2 * N), V::load(b + i + 2 * N)).store(a + i + 2 * N);
    fmadd(vs, V::load(c + i + 3 * N), V::load(b + i + 3 * N)).store(a + i + 3 * N);
  }
  for (; i < n; ++i) a[i] = b[i] + s * c[i];
}

template <class V>
void copy(int64_t n, float* a, const float* b) {
  constexpr int N = V::N;
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    V::load(b + i).store(a + i);
    V::load(b + i + N).store(a + i + N);
    V::load(b + i + 2 * N).store(a + i + 2 * N);
    V::load(b + i + 3 * N).store(a + i + 3 * N);
  }
  for (; i < n; ++i) a[i] = b[i];
}

template <class V>
float read(int64_t n, const float* b) {
  constexpr int N = V::N;
  V s0 = V::zero(), s1 = V::zero(), s2 = V::zero(), s3 = V::zero();  // 4 chains hide the add latency
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    s0 = s0 + V::load(b + i);
    s1 = s1 + V::load(b + i + N);
    s2 = s2 + V::load(b + i + 2 * N);
    s3 = s3 + V::load(b + i + 3 * N);
  }
  float lanes[N];  // summed by hand: GCC 12 warns about the reduce_add intrinsics' undefined upper halves
  ((s0 + s1) + (s2 + s3)).store(lanes);
  float t = 0.f;
  for (int j = 0; j < N; ++j) t += lanes[j];
  for (; i < n; ++i) t += b[i];
  return t;
}

template <class V>
float fma_chains(int64_t iters, float m, float c) {
  const V vm = V::set1(m), vc = V::set1(c);
  V acc[kFmaChains];
#pragma GCC unroll 16
  for (int k = 0; k < kFmaChains; ++k) acc[k] = V::set1(static_cast<float>(k));
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int k = 0; k < kFmaChains; ++k) acc[k] = fmadd(acc[k], vm, vc);
  }
  V s = acc[0];
#pragma GCC unroll 16
  for (int k = 1; k < kFmaChains; ++k) s = s + acc[k];
  float lanes[V::N];
  s.store(lanes);
  float t = 0.f;
  for (int j = 0; j < V::N; ++j) t += lanes[j];
  return t;
}

template <class V>
constexpr ProbeKernels make_kernels() {
  return ProbeKernels{V::N, &triad<V>, &copy<V>, &read<V>, &fma_chains<V>};
}

}  // namespace fastml::probe_impl
