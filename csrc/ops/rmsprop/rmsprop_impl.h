// Generic body of the RMSprop update (maths and rounding order: rmsprop.h), over the ISA's VecF.
#pragma once
#include <cstdint>

#include "core/simd/optim_math.h"
#include "ops/rmsprop/rmsprop.h"

namespace fastml::rmsprop_impl {

template <class V>
void update(const RmspropCoeffs& c, int64_t n, float* p, const float* g, float* s, float* gbar, float* b) {
  using simd::fma1;
  using simd::ld;
  using simd::st;
  const V sign = V::set1(c.sign), wd = V::set1(c.weight_decay), nlr = V::set1(c.neg_lr);
  const V alpha = V::set1(c.alpha), oma = V::set1(c.one_m_alpha), eps = V::set1(c.eps);
  const V mom = V::set1(c.momentum), wm1 = V::set1(c.one_m_alpha - 1.0f);
  const bool small = c.one_m_alpha < 0.5f;
  simd::for_each_vec<V>(n, [&](auto tail, int64_t i, int r) {
    constexpr bool Tail = decltype(tail)::value;
    V pi = ld<V, Tail>(p + i, r);
    V gi = ld<V, Tail>(g + i, r) * sign;
    if (c.decay) gi = fma1(pi, wd, gi);
    const V si = fma1(oma * gi, gi, ld<V, Tail>(s + i, r) * alpha);
    st<V, Tail>(si, s + i, r);
    V avg;
    if (c.centered) {
      const V ga = simd::lerp(ld<V, Tail>(gbar + i, r), gi, oma, wm1, small);
      st<V, Tail>(ga, gbar + i, r);
      avg = sqrt(fma1(-ga, ga, si));
    } else {
      avg = sqrt(si);
    }
    avg = avg + eps;
    if (c.use_momentum) {
      const V bi = ld<V, Tail>(b + i, r) * mom + gi / avg;
      st<V, Tail>(bi, b + i, r);
      pi = fma1(bi, nlr, pi);
    } else {
      pi = pi + (nlr * gi) / avg;
    }
    st<V, Tail>(pi, p + i, r);
  });
}

template <class V>
constexpr RmspropKernels make_kernels() {
  return RmspropKernels{&update<V>};
}

}  // namespace fastml::rmsprop_impl
