// Generic body of the Adam/AdamW update (maths and rounding order: adam.h), over the ISA's VecF.
// Included by adam_<isa>.cpp after that ISA's vec header. Tails use masked loads/stores with the same
// arithmetic as full vectors, so every element's result is independent of where a chunk starts.
#pragma once
#include <cstdint>

#include "core/simd/optim_math.h"
#include "ops/adam/adam.h"

namespace fastml::adam_impl {

template <class V, bool Amsgrad>
void update_impl(const AdamCoeffs& c, int64_t n, float* p, const float* g, float* m, float* v, float* vmax) {
  using simd::fma1;
  using simd::ld;
  using simd::st;
  const V sign = V::set1(c.sign), wd = V::set1(c.weight_decay), decay = V::set1(c.decay);
  const V w = V::set1(c.lerp_w), wm1 = V::set1(c.lerp_w - 1.0f);
  const bool small = c.lerp_w < 0.5f;  // lerp_w is in (0, 1]
  const V b2 = V::set1(c.beta2), omb2 = V::set1(c.one_m_beta2);
  const V nss = V::set1(c.neg_step_size), bc2s = V::set1(c.bc2_sqrt), eps = V::set1(c.eps);
  const bool coupled = c.coupled_decay, decoupled = c.decoupled_decay;
  simd::for_each_vec<V>(n, [&](auto tail, int64_t i, int r) {
    constexpr bool Tail = decltype(tail)::value;
    V pi = ld<V, Tail>(p + i, r);
    V gi = ld<V, Tail>(g + i, r) * sign;
    if (coupled) gi = fma1(pi, wd, gi);
    if (decoupled) pi = pi * decay;
    const V mi = simd::lerp(ld<V, Tail>(m + i, r), gi, w, wm1, small);
    const V vi = fma1(omb2 * gi, gi, ld<V, Tail>(v + i, r) * b2);
    V vh = vi;
    if constexpr (Amsgrad) {
      vh = simd::max_nan(ld<V, Tail>(vmax + i, r), vi);
      st<V, Tail>(vh, vmax + i, r);
    }
    const V denom = sqrt(vh) / bc2s + eps;
    pi = pi + (nss * mi) / denom;
    st<V, Tail>(mi, m + i, r);
    st<V, Tail>(vi, v + i, r);
    st<V, Tail>(pi, p + i, r);
  });
}

template <class V>
void update(const AdamCoeffs& c, int64_t n, float* p, const float* g, float* m, float* v, float* vmax) {
  if (c.amsgrad) {
    update_impl<V, true>(c, n, p, g, m, v, vmax);
  } else {
    update_impl<V, false>(c, n, p, g, m, v, vmax);
  }
}

template <class V>
constexpr AdamKernels make_kernels() {
  return AdamKernels{&update<V>};
}

}  // namespace fastml::adam_impl
