// Generic bodies of the softmax kernels (maths, layouts and variants: softmax.h). Included by
// softmax_<isa>.cpp after that ISA's vec header; V is its VecF. Row kernels keep four independent
// accumulators (16 on the one-lane scalar ISA; combined in a fixed order) so the max / sum chains do not
// serialise on latency; strip kernels reduce up to four vectors of adjacent columns over d at once. Tails
// use masked loads/stores.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/simd/map.h"
#include "core/simd/math.h"
#include "ops/softmax/softmax.h"

namespace fastml::softmax_impl {

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Independent partial sums of the row kernels: four vectors, or 16 chains on the one-lane (scalar) ISA, so
// that no chain is longer than about a sixteenth of the row whatever the vector width (accuracy as well as
// latency: 4 scalar chains over a 1025-wide row gave log_softmax_backward twice torch's error).
template <class V>
inline constexpr int kChains = V::N >= 4 ? 4 : 16 / V::N;

// s[0] = the chains' sum, added pairwise in a fixed order (((s0 + s1) + (s2 + s3)) for four)
template <class V, int K>
inline V sum_chains(V* s) {
  for (int w = 1; w < K; w *= 2)
    for (int j = 0; j + w < K; j += 2 * w) s[j] = s[j] + s[j + w];
  return s[0];
}

// ---- contiguous rows ------------------------------------------------------------------------------

template <class V>
inline float row_max(int64_t n, const float* x) {
  constexpr int N = V::N;
  const V ninf = V::set1(kNegInf);
  V m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    m0 = max(m0, V::load(x + i));
    m1 = max(m1, V::load(x + i + N));
    m2 = max(m2, V::load(x + i + 2 * N));
    m3 = max(m3, V::load(x + i + 3 * N));
  }
  for (; i + N <= n; i += N) m0 = max(m0, V::load(x + i));
  if (i < n) m0 = max(m0, V::load_tail(x + i, static_cast<int>(n - i), kNegInf));
  // A NaN may be dropped here (max returns its second operand on NaN); the sum pass still sees it
  // through exp(NaN - m), so the row becomes NaN either way.
  return max(max(m0, m1), max(m2, m3)).hmax();
}

// sum_i exp(x_i - m); with kStore also y_i = exp(x_i - m) (kStoreShifted: y_i = x_i - m instead).
// Tail lanes load -inf and add exp(-inf) = 0.
// `prefetch` (optional): the next row, requested line by line while this compute-heavy pass runs, so
// the next row's DRAM reads overlap the exp work instead of stalling the light max pass.
template <class V, bool kStore, bool kStoreShifted = false>
inline float row_exp_sum(int64_t n, const float* x, float* y, float m, const float* prefetch = nullptr) {
  constexpr int N = V::N, K = kChains<V>;
  const V vm = V::set1(m);
  V s[K];
  for (int k = 0; k < K; ++k) s[k] = V::zero();
  int64_t i = 0;
  for (; i + K * N <= n; i += K * N) {
    if (prefetch)
      for (int k = 0; k < K * N; k += 16) __builtin_prefetch(prefetch + i + k);
    V z[K], e[K];
    for (int k = 0; k < K; ++k) z[k] = V::load(x + i + k * N) - vm;
    for (int k = 0; k < K; ++k) e[k] = simd::exp(z[k]);
    if constexpr (kStore)
      for (int k = 0; k < K; ++k) (kStoreShifted ? z[k] : e[k]).store(y + i + k * N);
    for (int k = 0; k < K; ++k) s[k] = s[k] + e[k];
  }
  for (; i + N <= n; i += N) {
    const V z = V::load(x + i) - vm;
    const V e = simd::exp(z);
    if constexpr (kStore) (kStoreShifted ? z : e).store(y + i);
    s[0] = s[0] + e;
  }
  if (i < n) {
    const int r = static_cast<int>(n - i);
    const V z = V::load_tail(x + i, r, kNegInf) - vm;
    const V e = simd::exp(z);
    if constexpr (kStore) (kStoreShifted ? z : e).store_tail(y + i, r);
    s[0] = s[0] + e;
  }
  return sum_chains<V, K>(s).hsum();
}

template <class V, bool kLog>
void forward_rows(int64_t rows, int64_t D, const float* x, float* y) {
  for (int64_t r = 0; r < rows; ++r, x += D, y += D) {
    const float m = row_max<V>(D, x);
    const float* next = r + 1 < rows ? x + D : nullptr;
    if constexpr (kLog) {
      // The sum pass also stores z = x - m, so the first write of each output line (a read-for-ownership
      // from DRAM) overlaps the exp work instead of stalling the light final pass; y = z - log s then
      // runs in L1 (4096 x 1024, 1 thread: 2.48 -> 1.54 ms).
      const V ls = V::set1(std::log(row_exp_sum<V, true, true>(D, x, y, m, next)));
      simd::map1<V>(D, y, y, [ls](V z) { return z - ls; });
    } else {
      const V rs = V::set1(1.0f / row_exp_sum<V, true>(D, x, y, m, next));
      simd::map1<V>(D, y, y, [rs](V e) { return e * rs; });
    }
  }
}

// Pass 1 of the online variant: the row max m and s = sum exp(x - m) in one read. The running max is
// raised once per block of 4 vectors (one horizontal max per block, one scalar exp when it grows).
template <class V>
inline void row_online_max_sum(int64_t n, const float* x, float* m_out, float* s_out) {
  constexpr int N = V::N;
  constexpr int64_t B = 4 * N;
  float m = kNegInf;
  V s0 = V::zero(), s1 = V::zero(), s2 = V::zero(), s3 = V::zero();
  for (int64_t i = 0; i < n; i += B) {
    V a0, a1, a2, a3;
    if (i + B <= n) {
      a0 = V::load(x + i);
      a1 = V::load(x + i + N);
      a2 = V::load(x + i + 2 * N);
      a3 = V::load(x + i + 3 * N);
    } else {  // last partial block: missing lanes are -inf and add exp(-inf - m) = 0
      const int64_t r = n - i;
      auto lanes = [r](int k) { return static_cast<int>(r - k * N < 0 ? 0 : (r - k * N > N ? N : r - k * N)); };
      a0 = V::load_tail(x + i, lanes(0), kNegInf);
      a1 = r > N ? V::load_tail(x + i + N, lanes(1), kNegInf) : V::set1(kNegInf);
      a2 = r > 2 * N ? V::load_tail(x + i + 2 * N, lanes(2), kNegInf) : V::set1(kNegInf);
      a3 = r > 3 * N ? V::load_tail(x + i + 3 * N, lanes(3), kNegInf) : V::set1(kNegInf);
    }
    const float cm = max(max(a0, a1), max(a2, a3)).hmax();
    if (!(cm <= m)) {  // larger block max, or NaN (then the scale and the sums become NaN, as they must)
      const V sc = V::set1(std::exp(m - cm));
      s0 = s0 * sc;
      s1 = s1 * sc;
      s2 = s2 * sc;
      s3 = s3 * sc;
      m = cm;
    }
    if (m == kNegInf) {
      // Everything so far is -inf: nothing to add (and -inf - -inf would be NaN), unless the block
      // hides a NaN that the max dropped (the block is otherwise all -inf, so its sum is NaN only then).
      const float t = ((a0 + a1) + (a2 + a3)).hsum();
      if (t != t) s0 = V::set1(std::numeric_limits<float>::quiet_NaN());
      continue;
    }
    const V vm = V::set1(m);
    s0 = s0 + simd::exp(a0 - vm);
    s1 = s1 + simd::exp(a1 - vm);
    s2 = s2 + simd::exp(a2 - vm);
    s3 = s3 + simd::exp(a3 - vm);
  }
  *m_out = m;
  *s_out = ((s0 + s1) + (s2 + s3)).hsum();
}

template <class V, bool kLog>
void forward_rows__online(int64_t rows, int64_t D, const float* x, float* y) {
  for (int64_t r = 0; r < rows; ++r, x += D, y += D) {
    float m, s;
    row_online_max_sum<V>(D, x, &m, &s);
    const V vm = V::set1(m);
    if constexpr (kLog) {
      const V ls = V::set1(std::log(s));
      simd::map1<V>(D, x, y, [vm, ls](V v) { return (v - vm) - ls; });
    } else {
      const V rs = V::set1(1.0f / s);
      simd::map1<V>(D, x, y, [vm, rs](V v) { return simd::exp(v - vm) * rs; });
    }
  }
}

template <class V, bool kLog>
void backward_rows(int64_t rows, int64_t D, const float* g, const float* y, float* dx) {
  constexpr int N = V::N;
  for (int64_t r = 0; r < rows; ++r, g += D, y += D, dx += D) {
    // softmax: dot = sum g*y; log_softmax: dot = sum g
    constexpr int K = kChains<V>;
    V s[K];
    for (int k = 0; k < K; ++k) s[k] = V::zero();
    auto acc = [](V sk, V gv, V yv) {
      if constexpr (kLog) return sk + gv;
      else return fmadd(gv, yv, sk);
    };
    int64_t i = 0;
    for (; i + K * N <= D; i += K * N)
      for (int k = 0; k < K; ++k) s[k] = acc(s[k], V::load(g + i + k * N), V::load(y + i + k * N));
    for (; i + N <= D; i += N) s[0] = acc(s[0], V::load(g + i), V::load(y + i));
    if (i < D) {
      const int t = static_cast<int>(D - i);
      s[0] = acc(s[0], V::load_tail(g + i, t), V::load_tail(y + i, t));
    }
    const V dot = V::set1(sum_chains<V, K>(s).hsum());
    i = 0;
    auto out = [dot](V gv, V yv) {
      if constexpr (kLog) return fnmadd(simd::exp(yv), dot, gv);  // g - exp(y) * sum g
      else return (gv - dot) * yv;                                 // y * (g - sum g*y)
    };
    for (; i + N <= D; i += N) out(V::load(g + i), V::load(y + i)).store(dx + i);
    if (i < D) {
      const int t = static_cast<int>(D - i);
      out(V::load_tail(g + i, t), V::load_tail(y + i, t)).store_tail(dx + i, t);
    }
  }
}

// ---- strided axis: strips of adjacent columns --------------------------------------------------------

// U vectors of adjacent columns; the last one holds `last` lanes (1..N).
template <class V, int U>
struct Cols {
  int last;
  V load(const float* p, int k, float fill = 0.f) const {
    return (k == U - 1 && last < V::N) ? V::load_tail(p + k * V::N, last, fill) : V::load(p + k * V::N);
  }
  void store(V v, float* p, int k) const {
    if (k == U - 1 && last < V::N) v.store_tail(p + k * V::N, last);
    else v.store(p + k * V::N);
  }
};

template <class V, int U>
inline void lane_log(V* s) {  // log of each column's sum (simd::log: no scalar call per softmax row)
  for (int k = 0; k < U; ++k) s[k] = simd::log(s[k]);
}

template <class V, int U, bool kLog>
inline void strip_forward_block(int64_t D, int64_t inner, const float* x, float* y, int last) {
  const Cols<V, U> c{last};
  V m[U], s[U];
  for (int k = 0; k < U; ++k) {
    m[k] = V::set1(kNegInf);
    s[k] = V::zero();
  }
  for (int64_t d = 0; d < D; ++d)
    for (int k = 0; k < U; ++k) m[k] = max(m[k], c.load(x + d * inner, k));
  for (int64_t d = 0; d < D; ++d)
    for (int k = 0; k < U; ++k) {
      const V z = c.load(x + d * inner, k) - m[k];
      const V e = simd::exp(z);
      c.store(kLog ? z : e, y + d * inner, k);  // log: z = x - m, finished below (as the row kernel)
      s[k] = s[k] + e;
    }
  if constexpr (kLog) {
    lane_log<V, U>(s);
    for (int64_t d = 0; d < D; ++d)
      for (int k = 0; k < U; ++k) c.store(c.load(y + d * inner, k) - s[k], y + d * inner, k);
  } else {
    for (int k = 0; k < U; ++k) s[k] = V::set1(1.0f) / s[k];
    for (int64_t d = 0; d < D; ++d)
      for (int k = 0; k < U; ++k) c.store(c.load(y + d * inner, k) * s[k], y + d * inner, k);
  }
}

template <class V, int U, bool kLog>
inline void strip_backward_block(int64_t D, int64_t inner, const float* g, const float* y, float* dx, int last) {
  const Cols<V, U> c{last};
  V s[U];
  for (int k = 0; k < U; ++k) s[k] = V::zero();
  for (int64_t d = 0; d < D; ++d)
    for (int k = 0; k < U; ++k) {
      if constexpr (kLog) s[k] = s[k] + c.load(g + d * inner, k);
      else s[k] = fmadd(c.load(g + d * inner, k), c.load(y + d * inner, k), s[k]);
    }
  for (int64_t d = 0; d < D; ++d)
    for (int k = 0; k < U; ++k) {
      const V gv = c.load(g + d * inner, k);
      const V yv = c.load(y + d * inner, k);
      if constexpr (kLog) c.store(fnmadd(simd::exp(yv), s[k], gv), dx + d * inner, k);
      else c.store((gv - s[k]) * yv, dx + d * inner, k);
    }
}

// Splits w columns into blocks of 4 vectors and one final block of 1-4 vectors (last one partial).
template <class V, class Block>
inline void for_col_blocks(int64_t w, Block&& block) {
  constexpr int N = V::N;
  int64_t j = 0;
  for (; j + 4 * N <= w; j += 4 * N) block(j, std::integral_constant<int, 4>{}, N);
  const int64_t rem = w - j;
  if (rem <= 0) return;
  const int nv = static_cast<int>((rem + N - 1) / N);
  const int last = static_cast<int>(rem - (nv - 1) * N);
  switch (nv) {
    case 1: block(j, std::integral_constant<int, 1>{}, last); break;
    case 2: block(j, std::integral_constant<int, 2>{}, last); break;
    case 3: block(j, std::integral_constant<int, 3>{}, last); break;
    default: block(j, std::integral_constant<int, 4>{}, last); break;
  }
}

template <class V, bool kLog>
void forward_strip(int64_t D, int64_t inner, int64_t w, const float* x, float* y) {
  for_col_blocks<V>(w, [&](int64_t j, auto u, int last) {
    strip_forward_block<V, decltype(u)::value, kLog>(D, inner, x + j, y + j, last);
  });
}

template <class V, bool kLog>
void backward_strip(int64_t D, int64_t inner, int64_t w, const float* g, const float* y, float* dx) {
  for_col_blocks<V>(w, [&](int64_t j, auto u, int last) {
    strip_backward_block<V, decltype(u)::value, kLog>(D, inner, g + j, y + j, dx + j, last);
  });
}

template <class V>
constexpr SoftmaxKernels make_kernels() {
  return SoftmaxKernels{
      {&forward_rows<V, false>, &forward_rows<V, true>},
      {&forward_rows__online<V, false>, &forward_rows__online<V, true>},
      {&forward_strip<V, false>, &forward_strip<V, true>},
      {&backward_rows<V, false>, &backward_rows<V, true>},
      {&backward_strip<V, false>, &backward_strip<V, true>}};
}

}  // namespace fastml::softmax_impl
