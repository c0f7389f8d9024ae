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

template <class V>
void gelu_forward(int64_t n, const float* x, float* y, float) {
  map1<V>(n, x, y, [](V v) { return v * simd::normal_cdf(v); });
}
template <class V>
void gelu_backward(int64_t n, const float* dy, const float* x, float* dx, float) {
  map2<V>(n, dy, x, dx, [](V g, V v) {
    const V pdf = V::set1(kInvSqrt2Pi) * simd::exp(V::set1(-0.5f) * v * v);
    return g * fmadd(v, pdf, simd::normal_cdf(v));
  });
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
