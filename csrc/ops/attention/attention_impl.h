// Row kernels of scaled dot-product attention written once over VecF (vec_<isa>.h), instantiated by
// attention_{scalar,avx2,avx512}.cpp. Contract: attention.h (AttentionKernels). Tails are masked loads /
// stores; exp is simd::exp (<= 2 ulp). exp(x) for x < -87 is flushed to 0: such a term is below 1e-38
// of the row maximum's term (which is 1), so the row sum and the products do not change, and masked
// entries (-inf) give exactly 0 without relying on exp's clamp.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/simd/math.h"
#include "ops/attention/attention.h"

namespace fastml::attention_impl {

template <class V>
inline V exp_flush(V x) {
  return select(cmp_gt(x, V::set1(-87.0f)), simd::exp(x), V::zero());
}

template <class V>
void softmax_update(int64_t rows, int64_t cols, float* s, int64_t lds, float* m, float* l, float* alpha) {
  constexpr int W = V::N;
  const float ninf = -__builtin_inff();
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    V vm = V::set1(ninf);
    int64_t c = 0;
    for (; c + W <= cols; c += W) vm = max(vm, V::load(sr + c));
    if (c < cols) vm = max(vm, V::load_tail(sr + c, static_cast<int>(cols - c), ninf));
    const float bm = vm.hmax();
    const float mnew = bm > m[r] ? bm : m[r];
    // Nothing allowed so far: keep p = 0 (exp(-inf - 0)), alpha irrelevant (output still 0).
    const float mu = mnew == ninf ? 0.0f : mnew;
    const V vmu = V::set1(mu);
    V vs = V::zero();
    c = 0;
    for (; c + W <= cols; c += W) {
      const V p = exp_flush(V::load(sr + c) - vmu);
      p.store(sr + c);
      vs = vs + p;
    }
    if (c < cols) {
      const int n = static_cast<int>(cols - c);
      const V p = exp_flush(V::load_tail(sr + c, n, ninf) - vmu);
      p.store_tail(sr + c, n);
      vs = vs + p;
    }
    const float a = m[r] == ninf ? 0.0f : std::exp(m[r] - mu);
    alpha[r] = a;
    l[r] = l[r] * a + vs.hsum();
    m[r] = mnew;
  }
}

template <class V>
void scale_rows(int64_t rows, int64_t n, float* o, int64_t ldo, const float* alpha) {
  constexpr int W = V::N;
  for (int64_t r = 0; r < rows; ++r) {
    if (alpha[r] == 1.0f) continue;
    float* orow = o + r * ldo;
    const V a = V::set1(alpha[r]);
    int64_t c = 0;
    for (; c + W <= n; c += W) (V::load(orow + c) * a).store(orow + c);
    if (c < n) (V::load_tail(orow + c, static_cast<int>(n - c)) * a).store_tail(orow + c, static_cast<int>(n - c));
  }
}

template <class V>
void add_rows(int64_t rows, int64_t n, float* s, int64_t lds, const float* add, int64_t ldadd) {
  constexpr int W = V::N;
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    const float* ar = add + r * ldadd;
    int64_t c = 0;
    for (; c + W <= n; c += W) (V::load(sr + c) + V::load(ar + c)).store(sr + c);
    if (c < n) {
      const int t = static_cast<int>(n - c);
      (V::load_tail(sr + c, t) + V::load_tail(ar + c, t)).store_tail(sr + c, t);
    }
  }
}

template <class V>
void exp_minus_cols(int64_t rows, int64_t cols, float* s, int64_t lds, const float* lse) {
  constexpr int W = V::N;
  const V ninf = V::set1(-__builtin_inff());
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    int64_t c = 0;
    for (; c + W <= cols; c += W) {
      const V x = V::load(lse + c);
      const V p = exp_flush(V::load(sr + c) - x);
      select(cmp_eq(x, ninf), V::zero(), p).store(sr + c);
    }
    if (c < cols) {
      const int t = static_cast<int>(cols - c);
      const V x = V::load_tail(lse + c, t);
      const V p = exp_flush(V::load_tail(sr + c, t) - x);
      select(cmp_eq(x, ninf), V::zero(), p).store_tail(sr + c, t);
    }
  }
}

template <class V>
void ds_cols(int64_t rows, int64_t cols, const float* p, int64_t ldp, float* dp, int64_t lddp, const float* d) {
  constexpr int W = V::N;
  for (int64_t r = 0; r < rows; ++r) {
    const float* pr = p + r * ldp;
    float* dr = dp + r * lddp;
    int64_t c = 0;
    for (; c + W <= cols; c += W) (V::load(pr + c) * (V::load(dr + c) - V::load(d + c))).store(dr + c);
    if (c < cols) {
      const int t = static_cast<int>(cols - c);
      (V::load_tail(pr + c, t) * (V::load_tail(dr + c, t) - V::load_tail(d + c, t))).store_tail(dr + c, t);
    }
  }
}

template <class V>
float dot(int64_t n, const float* a, const float* b) {
  constexpr int W = V::N;
  V acc = V::zero();
  int64_t c = 0;
  for (; c + W <= n; c += W) acc = fmadd(V::load(a + c), V::load(b + c), acc);
  if (c < n) {
    const int t = static_cast<int>(n - c);
    acc = fmadd(V::load_tail(a + c, t), V::load_tail(b + c, t), acc);
  }
  return acc.hsum();
}

template <class V>
constexpr AttentionKernels make_kernels() {
  return AttentionKernels{&softmax_update<V>, &scale_rows<V>, &add_rows<V>, &exp_minus_cols<V>, &ds_cols<V>, &dot<V>};
}

}  // namespace fastml::attention_impl
