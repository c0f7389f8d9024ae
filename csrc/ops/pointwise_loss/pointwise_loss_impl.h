// Generic bodies of the elementwise loss kernels (maths: pointwise_loss.h). Included by
// pointwise_loss_<isa>.cpp after that ISA's vec header; V is its VecF. Tails use masked loads/stores.
#pragma once
#include <cstdint>

#include "core/simd/math.h"
#include "ops/pointwise_loss/pointwise_loss.h"

namespace fastml::pointwise_loss_impl {

template <class V>
struct Mse {
  static V loss(V x, V t, V, V) {
    const V d = x - t;
    return d * d;
  }
  static V grad(V x, V t, V, V) { return V::set1(2.0f) * (x - t); }
};

template <class V>
struct BceWithLogits {
  static V loss(V x, V t, V w, V pw) {
    const V one = V::set1(1.0f);
    // log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|)); x as min's second operand keeps a NaN x
    const V ls = min(V::zero(), x) - simd::log1p_unit(simd::exp(-abs(x)));
    const V lw = fmadd(pw - one, t, one);
    return w * ((one - t) * x - lw * ls);
  }
  static V grad(V x, V t, V w, V pw) {
    const V pt = pw * t;
    return w * ((pt + V::set1(1.0f) - t) * simd::sigmoid(x) - pt);
  }
};

template <class V>
inline V load_or_one(const float* p, int64_t i, int r) {
  if (!p) return V::set1(1.0f);
  return r == V::N ? V::load(p + i) : V::load_tail(p + i, r, 1.0f);
}

template <class V, class L>
float forward(int64_t n, const float* x, const float* t, const float* w, const float* pw, float* out) {
  constexpr int N = V::N;
  V s0 = V::zero(), s1 = V::zero();
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    const V a = L::loss(V::load(x + i), V::load(t + i), load_or_one<V>(w, i, N), load_or_one<V>(pw, i, N));
    const V b = L::loss(V::load(x + i + N), V::load(t + i + N), load_or_one<V>(w, i + N, N),
                        load_or_one<V>(pw, i + N, N));
    if (out) {
      a.store(out + i);
      b.store(out + i + N);
    }
    s0 = s0 + a;
    s1 = s1 + b;
  }
  float tail = 0.0f;
  for (; i < n; i += N) {
    const int r = n - i < N ? static_cast<int>(n - i) : N;
    const V l = L::loss(V::load_tail(x + i, r), V::load_tail(t + i, r), load_or_one<V>(w, i, r),
                        load_or_one<V>(pw, i, r));
    if (out) l.store_tail(out + i, r);
    if (r == N) {
      s0 = s0 + l;
    } else {  // the missing lanes hold the loss of x = t = 0 (log 2 for bce): add only the r real ones
      alignas(64) float lanes[N];
      l.store(lanes);
      for (int j = 0; j < r; ++j) tail += lanes[j];
    }
  }
  return (s0 + s1).hsum() + tail;
}

template <class V, class L>
void backward(int64_t n, const float* x, const float* t, const float* w, const float* pw, const float* g,
              int64_t gstride, float scale, float* dx) {
  constexpr int N = V::N;
  const V vs = V::set1(scale);
  for (int64_t i = 0; i < n; i += N) {
    const int r = n - i < N ? static_cast<int>(n - i) : N;
    const V gv = gstride ? (r == N ? V::load(g + i) : V::load_tail(g + i, r)) : V::set1(*g);
    const V xv = r == N ? V::load(x + i) : V::load_tail(x + i, r);
    const V tv = r == N ? V::load(t + i) : V::load_tail(t + i, r);
    const V d = L::grad(xv, tv, load_or_one<V>(w, i, r), load_or_one<V>(pw, i, r)) * (gv * vs);
    if (r == N) d.store(dx + i);
    else d.store_tail(dx + i, r);
  }
}

template <class V>
constexpr PointwiseLossKernels make_kernels() {
  return PointwiseLossKernels{{&forward<V, Mse<V>>, &forward<V, BceWithLogits<V>>},
                              {&backward<V, Mse<V>>, &backward<V, BceWithLogits<V>>}};
}

}  // namespace fastml::pointwise_loss_impl
