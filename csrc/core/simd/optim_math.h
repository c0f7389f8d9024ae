// Small generic helpers shared by the optimizer kernels (sgd, rmsprop, adam), written over VecF.
// Included by <op>_impl.h after the ISA's vec header.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace fastml::simd {

// a*b + c with ONE rounding on every ISA (the scalar VecF's fmadd is a*b + c with two roundings when
// the baseline has no FMA; optimizer parity with torch needs the fused form torch computes).
template <class V>
inline V fma1(V a, V b, V c) {
  if constexpr (V::N == 1) {
    return V{std::fma(a.v, b.v, c.v)};
  } else {
    return fmadd(a, b, c);
  }
}

// torch.lerp(a, b, w) with a float weight: |w| < 0.5 ? a + w (b - a) : b - (b - a)(1 - w), each as one
// fused multiply-add (torch's vectorised lerp). `wm1` is w - 1 (exact in float32 for 0.5 <= w <= 1).
template <class V>
inline V lerp(V a, V b, V w, V wm1, bool small) {
  const V d = b - a;
  return small ? fma1(w, d, a) : fma1(wm1, d, b);
}

// max(a, b) that returns NaN when either is NaN (torch.maximum); x86 MAXPS alone returns b.
template <class V>
inline V max_nan(V a, V b) {
  const V m = max(a, b);
  return select(is_nan(a), a, m);
}

// Loads of a full vector or a masked tail of r lanes.
template <class V, bool Tail>
inline V ld(const float* p, int r) {
  if constexpr (Tail) {
    return V::load_tail(p, r);
  } else {
    return V::load(p);
  }
}
template <class V, bool Tail>
inline void st(V x, float* p, int r) {
  if constexpr (Tail) {
    x.store_tail(p, r);
  } else {
    x.store(p);
  }
}

// Runs body(tail, i, r) over [0, n) in vectors of V::N: r lanes in use, `tail` is std::true_type for the
// last partial vector (masked loads/stores), std::false_type otherwise.
template <class V, class Body>
inline void for_each_vec(int64_t n, Body&& body) {
  constexpr int N = V::N;
  int64_t i = 0;
  for (; i + N <= n; i += N) body(std::false_type{}, i, N);
  if (i < n) body(std::true_type{}, i, static_cast<int>(n - i));
}

}  // namespace fastml::simd
