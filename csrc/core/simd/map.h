// Elementwise loops over the VecF contract (vec_<isa>.h): y = f(x) and y = f(a, b) over n floats, with
// a 2x unrolled main loop and a masked tail, so any n >= 0 works. In place (y == x) is allowed.
#pragma once
#include <cstdint>

namespace fastml::simd {

template <class V, class F>
inline void map1(int64_t n, const float* x, float* y, F f) {
  constexpr int N = V::N;
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    const V a = f(V::load(x + i));
    const V b = f(V::load(x + i + N));
    a.store(y + i);
    b.store(y + i + N);
  }
  for (; i + N <= n; i += N) f(V::load(x + i)).store(y + i);
  if (i < n) f(V::load_tail(x + i, static_cast<int>(n - i))).store_tail(y + i, static_cast<int>(n - i));
}

template <class V, class F>
inline void map2(int64_t n, const float* a, const float* b, float* y, F f) {
  constexpr int N = V::N;
  int64_t i = 0;
  for (; i + N <= n; i += N) f(V::load(a + i), V::load(b + i)).store(y + i);
  if (i < n) {
    const int r = static_cast<int>(n - i);
    f(V::load_tail(a + i, r), V::load_tail(b + i, r)).store_tail(y + i, r);
  }
}

}  // namespace fastml::simd
