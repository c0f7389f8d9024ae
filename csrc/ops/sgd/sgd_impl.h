// Generic body of the SGD update (maths and rounding order: sgd.h), over the ISA's VecF.
#pragma once
#include <cstdint>

#include "core/simd/optim_math.h"
#include "ops/sgd/sgd.h"

namespace fastml::sgd_impl {

template <class V>
void update(const SgdCoeffs& c, int64_t n, float* p, const float* g, float* b) {
  using simd::fma1;
  const V sign = V::set1(c.sign), wd = V::set1(c.weight_decay), nlr = V::set1(c.neg_lr);
  const V mom = V::set1(c.momentum), omd = V::set1(c.one_m_dampening);
  simd::for_each_vec<V>(n, [&](auto tail, int64_t i, int r) {
    constexpr bool Tail = decltype(tail)::value;
    const V pi = simd::ld<V, Tail>(p + i, r);
    V gi = simd::ld<V, Tail>(g + i, r) * sign;
    if (c.decay) gi = fma1(pi, wd, gi);
    if (c.use_momentum) {
      const V bi = c.first_step ? gi : fma1(gi, omd, simd::ld<V, Tail>(b + i, r) * mom);
      simd::st<V, Tail>(bi, b + i, r);
      gi = c.nesterov ? fma1(bi, mom, gi) : bi;
    }
    simd::st<V, Tail>(fma1(gi, nlr, pi), p + i, r);
  });
}

template <class V>
constexpr SgdKernels make_kernels() {
  return SgdKernels{&update<V>};
}

}  // namespace fastml::sgd_impl
