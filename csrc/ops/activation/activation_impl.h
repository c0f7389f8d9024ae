// Generic bodies of the activation kernels (see activation.h for the maths). Included by
// activation_<isa>.cpp after that ISA's vec header; V is its VecF. Each loop handles its own tail
// with masked loads/stores, so any n >= 0 is valid.
#pragma once
#include <cstdint>

#include "core/simd/map.h"
#include "core/simd/math.h"
#include "ops/activation/activation.h"

namespace fastml::activation_impl {

using simd::map1;
using simd::map2;

inline constexpr float kSqrt2OverPi = 0.7978845608028654f;
inline constexpr float kGeluTanhC = 0.044715f;
inline constexpr float kInvSqrt2Pi = 0.3989422804014327f;

template <class V>
void relu_forward(int64_t n, const float* x, float* y, float) {
  map1<V>(n, x, y, [](V v) { return select(cmp_lt(v, V::zero()), V::zero(), v); });
}
template <class V>
void relu_backward(int64_t n, const float* dy, const float* x, float* dx, float) {
  map2<V>(n, dy, x, dx, [](V g, V v) { return select(cmp_le(v, V::zero()), V::zero(), g); });
}

template <class V>
void leaky_relu_forward(int64_t n, const float* x, float* y, float slope) {
  const V a = V::set1(slope);
  map1<V>(n, x, y, [a](V v) { return select(cmp_gt(v, V::zero()), v, v * a); });
}
template <class V>
void leaky_relu_backward(int64_t n, const float* dy, const float* x, float* dx, float slope) {
  const V a = V::set1(slope);
  map2<V>(n, dy, x, dx, [a](V g, V v) { return select(cmp_gt(v, V::zero()), g, g * a); });
}

template <class V>
void sigmoid_forward(int64_t n, const float* x, float* y, float) {
  map1<V>(n, x, y, [](V v) { return simd::sigmoid(v); });
}
template <class V>
void sigmoid_backward(int64_t n, const float* dy, const float* y, float* dx, float) {
  const V one = V::set1(1.0f);
  map2<V>(n, dy, y, dx, [one](V g, V s) { return g * (s * (one - s)); });
}

template <class V>
void tanh_forward(int64_t n, const float* x, float* y, float) {
  map1<V>(n, x, y, [](V v) { return simd::tanh(v); });
}
template <class V>
void tanh_backward(int64_t n, const float* dy, const float* y, float* dx, float) {
  const V one = V::set1(1.0f);
  map2<V>(n, dy, y, dx, [one](V g, V t) { return g * fnmadd(t, t, one); });
}

// Exact GELU. With a 32-entry register lookup (V::kTable32), lanes with |x| < 8 take Phi and phi from
// the piecewise polynomial of the normal tail (simd::poly32): Phi(x) = Q(|x|) for x < 0, 1 - Q(x) else.
// In the forward, x >= 5.5 gives y = x (Phi(x) = 1 - Q(x) rounds to 1 there). The other lanes (forward:
// x <= -(8 - 2^-10); backward: |x| >= 8; NaN) use the erfc / exp formulas, computed only for vectors that
// hold such a lane (simd::where_else: per lane, never depending on the neighbours in the vector).
template <class V>
V gelu_exact(V v) {
  return v * simd::normal_cdf(v);
}
template <class V>
V gelu_exact_grad(V v) {  // Phi(x) + x phi(x)
  const V pdf = V::set1(kInvSqrt2Pi) * simd::exp(V::set1(-0.5f) * v * v);
  return fmadd(v, pdf, simd::normal_cdf(v));
}
template <class V>
V gelu_cdf_from_tail(V v, V q) {
  return select(cmp_lt(v, V::zero()), q, V::set1(1.0f) - q);
}

template <class V>
void gelu_forward(int64_t n, const float* x, float* y, float) {
  if constexpr (V::kTable32) {
    // |x| is clamped to the last interval, below 8: for x >= 5.5 Phi(x) = 1 - Q rounds to 1 whatever the
    // clamp, so y = x exactly; x <= -c (and NaN) take the erfc form
    constexpr float c = 8.0f - 1.0f / 1024.0f;
    map1<V>(n, x, y, [](V v) {
      const auto ok = cmp_gt(v, V::set1(-c));  // NaN: false
      const V a = min(abs(v), V::set1(c));
      const V q = simd::poly32(simd::kNormalTailPoly, simd::piece32(simd::kNormalTailPoly, a));
      const V fast = v * gelu_cdf_from_tail(v, q);
      return simd::where_else(ok, fast, [v] { return gelu_exact(v); });
    });
  } else {
    map1<V>(n, x, y, [](V v) { return gelu_exact(v); });
  }
}
template <class V>
void gelu_backward(int64_t n, const float* dy, const float* x, float* dx, float) {
  if constexpr (V::kTable32) {
    map2<V>(n, dy, x, dx, [](V g, V v) {
      const V a = abs(v);
      const auto ok = cmp_lt(a, V::set1(8.0f));  // NaN: false
      V slope;
      const V q = simd::poly32_slope(simd::kNormalTailPoly, simd::piece32(simd::kNormalTailPoly, a), slope);
      // x phi(x) = x (-4 dQ/ds): the factor -4 is exact
      const V fast = fmadd(v, slope * V::set1(-4.0f), gelu_cdf_from_tail(v, q));
      return g * simd::where_else(ok, fast, [v] { return gelu_exact_grad(v); });
    });
  } else {
    map2<V>(n, dy, x, dx, [](V g, V v) { return g * gelu_exact_grad(v); });
  }
}

template <class V>
inline V gelu_tanh_u2(V v) {  // 2u = 2 sqrt(2/pi) (x + 0.044715 x^3)
  return V::set1(2.0f * kSqrt2OverPi) * fmadd(V::set1(kGeluTanhC) * v, v * v, v);
}
template <class V>
inline V gelu_tanh_gate(V v) {  // sigmoid(2u)
  return simd::sigmoid(gelu_tanh_u2(v));
}
template <class V>
void gelu_tanh_forward(int64_t n, const float* x, float* y, float) {
  map1<V>(n, x, y, [](V v) { return v * gelu_tanh_gate(v); });
}
template <class V>
void gelu_tanh_backward(int64_t n, const float* dy, const float* x, float* dx, float) {
  map2<V>(n, dy, x, dx, [](V g, V v) {
    const V one = V::set1(1.0f);
    V s, s1;  // sigmoid(2u) and 1 - sigmoid(2u), each accurate in relative terms
    simd::sigmoid_pair(gelu_tanh_u2(v), s, s1);
    const V du = V::set1(kSqrt2OverPi) * fmadd(V::set1(3.0f * kGeluTanhC) * v, v, one);
    const V ds = V::set1(2.0f) * s * s1 * du;  // d sigmoid(2u) / dx
    return g * fmadd(v, ds, s);
  });
}

template <class V>
constexpr ActivationKernels make_kernels() {
  return ActivationKernels{
      {&relu_forward<V>, &leaky_relu_forward<V>, &sigmoid_forward<V>, &tanh_forward<V>, &gelu_forward<V>,
       &gelu_tanh_forward<V>},
      {&relu_backward<V>, &leaky_relu_backward<V>, &sigmoid_backward<V>, &tanh_backward<V>, &gelu_backward<V>,
       &gelu_tanh_backward<V>}};
}

}  // namespace fastml::activation_impl
