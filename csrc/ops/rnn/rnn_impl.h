// Generic bodies of the fused recurrent gate kernels (contract and maths: rnn.h), written once over VecF
// and instantiated by rnn_{scalar,avx2,avx512}.cpp. Each kernel makes one vectorised pass over the n
// hidden units of one batch row: gate nonlinearities, cell update and saved values together, with no
// full-size temporaries. Tails use masked loads/stores, so any n >= 0 works.
#pragma once
#include <cstdint>

#include "core/simd/math.h"
#include "ops/rnn/rnn.h"

namespace fastml::rnn_impl {

// Calls f(offset, count) over [0, n) in vector steps; count < V::N only for the tail.
template <class V, class F>
inline void for_lanes(int64_t n, F f) {
  int64_t j = 0;
  for (; j + V::N <= n; j += V::N) f(j, V::N);
  if (j < n) f(j, static_cast<int>(n - j));
}

template <class V>
inline V ld(const float* p, int c) {
  return c == V::N ? V::load(p) : V::load_tail(p, c);
}
template <class V>
inline void st(float* p, V v, int c) {
  if (c == V::N) v.store(p); else v.store_tail(p, c);
}

// Pre-activation of gate q: g[q gs + j] (+ r[q rs + j] when the recurrent product is in a separate tile).
template <class V>
inline V pre(const float* g, int64_t gs, const float* r, int64_t rs, int q, int64_t j, int c) {
  const V a = ld<V>(g + q * gs + j, c);
  return r ? a + ld<V>(r + q * rs + j, c) : a;
}

template <class V>
void lstm_fwd(int64_t n, int64_t gs, float* g, const float* r, int64_t rs, const float* cp, float* cn, float* m,
              int keep) {
  for_lanes<V>(n, [&](int64_t j, int c) {
    const V i = simd::sigmoid(pre<V>(g, gs, r, rs, 0, j, c));
    const V f = simd::sigmoid(pre<V>(g, gs, r, rs, 1, j, c));
    const V gg = simd::tanh(pre<V>(g, gs, r, rs, 2, j, c));
    const V o = simd::sigmoid(pre<V>(g, gs, r, rs, 3, j, c));
    if (keep) {
      st(g + j, i, c);
      st(g + gs + j, f, c);
      st(g + 2 * gs + j, gg, c);
      st(g + 3 * gs + j, o, c);
    }
    const V cc = fmadd(f, ld<V>(cp + j, c), i * gg);
    st(cn + j, cc, c);
    st(m + j, o * simd::tanh(cc), c);
  });
}

template <class V>
void lstm_bwd(int64_t n, int64_t gs, const float* g, const float* cp, const float* dm, float* dc, float* da) {
  const V one = V::set1(1.0f);
  for_lanes<V>(n, [&](int64_t j, int c) {
    const V i = ld<V>(g + j, c), f = ld<V>(g + gs + j, c);
    const V gg = ld<V>(g + 2 * gs + j, c), o = ld<V>(g + 3 * gs + j, c);
    const V cpv = ld<V>(cp + j, c);
    const V tc = simd::tanh(fmadd(f, cpv, i * gg));
    const V dmv = ld<V>(dm + j, c);
    const V dct = fmadd(dmv * o, fnmadd(tc, tc, one), ld<V>(dc + j, c));
    st(da + j, dct * gg * (i * (one - i)), c);
    st(da + gs + j, dct * cpv * (f * (one - f)), c);
    st(da + 2 * gs + j, dct * i * fnmadd(gg, gg, one), c);
    st(da + 3 * gs + j, dmv * tc * (o * (one - o)), c);
    st(dc + j, dct * f, c);
  });
}

template <class V>
void gru_fwd(int64_t n, int64_t gs, const float* gi, const float* gh, int64_t hs, const float* b_hn, const float* hp,
             float* s, float* h) {
  for_lanes<V>(n, [&](int64_t j, int c) {
    const V r = simd::sigmoid(ld<V>(gi + j, c) + ld<V>(gh + j, c));
    const V z = simd::sigmoid(ld<V>(gi + gs + j, c) + ld<V>(gh + hs + j, c));
    V ghn = ld<V>(gh + 2 * hs + j, c);
    if (b_hn) ghn = ghn + ld<V>(b_hn + j, c);
    const V nn = simd::tanh(fmadd(r, ghn, ld<V>(gi + 2 * gs + j, c)));
    st(s + j, r, c);
    st(s + gs + j, z, c);
    st(s + 2 * gs + j, nn, c);
    st(s + 3 * gs + j, ghn, c);
    st(h + j, fmadd(z, ld<V>(hp + j, c) - nn, nn), c);
  });
}

template <class V>
void gru_bwd(int64_t n, int64_t gs, const float* s, const float* hp, const float* dh, float* dgi, float* dgh,
             float* dhd) {
  const V one = V::set1(1.0f);
  for_lanes<V>(n, [&](int64_t j, int c) {
    const V r = ld<V>(s + j, c), z = ld<V>(s + gs + j, c);
    const V nn = ld<V>(s + 2 * gs + j, c), ghn = ld<V>(s + 3 * gs + j, c);
    const V d = ld<V>(dh + j, c);
    const V dan = d * (one - z) * fnmadd(nn, nn, one);
    const V dar = dan * ghn * (r * (one - r));
    const V daz = d * (ld<V>(hp + j, c) - nn) * (z * (one - z));
    st(dgi + j, dar, c);
    st(dgi + gs + j, daz, c);
    st(dgi + 2 * gs + j, dan, c);
    st(dgh + j, dar, c);
    st(dgh + gs + j, daz, c);
    st(dgh + 2 * gs + j, dan * r, c);
    st(dhd + j, d * z, c);
  });
}

template <class V>
void rnn_fwd(int64_t n, const float* a, const float* r, float* h, int relu) {
  for_lanes<V>(n, [&](int64_t j, int c) {
    const V v = r ? ld<V>(a + j, c) + ld<V>(r + j, c) : ld<V>(a + j, c);
    st(h + j, relu ? select(cmp_lt(v, V::zero()), V::zero(), v) : simd::tanh(v), c);
  });
}

template <class V>
void rnn_bwd(int64_t n, const float* h, const float* dh, float* da, int relu) {
  const V one = V::set1(1.0f);
  for_lanes<V>(n, [&](int64_t j, int c) {
    const V hv = ld<V>(h + j, c), d = ld<V>(dh + j, c);
    st(da + j, relu ? select(cmp_gt(hv, V::zero()), d, V::zero()) : d * fnmadd(hv, hv, one), c);
  });
}

// R rows at once sharing the loads of x; each row has the same two accumulators and summation order
// whatever R is, so a row's result does not depend on how rows are grouped (thread-count invariance).
// next: the first of the R rows that the caller reads after these (nullptr: none), prefetched one line per
// row and step. The rows are short streams (1-2 KiB) that restart 3 rows further on at every block, so
// the hardware prefetcher retrains on each of them and part of every row came in as a demand miss.
template <class V, int R>
inline void dot_block(int64_t K, const float* W, int64_t ldw, const float* x, float* y, const float* next) {
  constexpr int N = V::N;
  V a0[R], a1[R];
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = V::zero();
  int64_t k = 0;
  for (; k + 2 * N <= K; k += 2 * N) {
    const V x0 = V::load(x + k), x1 = V::load(x + k + N);
    if (next)
      for (int r = 0; r < R; ++r) __builtin_prefetch(next + r * ldw + k, 0, 3);
    for (int r = 0; r < R; ++r) {
      a0[r] = fmadd(V::load(W + r * ldw + k), x0, a0[r]);
      a1[r] = fmadd(V::load(W + r * ldw + k + N), x1, a1[r]);
    }
  }
  if (k + N <= K) {
    const V x0 = V::load(x + k);
    for (int r = 0; r < R; ++r) a0[r] = fmadd(V::load(W + r * ldw + k), x0, a0[r]);
    k += N;
  }
  if (k < K) {
    const int c = static_cast<int>(K - k);
    const V x1 = V::load_tail(x + k, c);
    for (int r = 0; r < R; ++r) a1[r] = fmadd(V::load_tail(W + r * ldw + k, c), x1, a1[r]);
  }
  for (int r = 0; r < R; ++r) y[r] += (a0[r] + a1[r]).hsum();
}

template <class V>
void dot_rows(int64_t rows, int64_t K, const float* W, int64_t ldw, const float* x, float* y, int rev) {
  const int64_t full = rows / 4 * 4;
  if (!rev) {
    for (int64_t r = 0; r < full; r += 4)
      dot_block<V, 4>(K, W + r * ldw, ldw, x, y + r, r + 8 <= full ? W + (r + 4) * ldw : nullptr);
    for (int64_t r = full; r < rows; ++r) dot_block<V, 1>(K, W + r * ldw, ldw, x, y + r, nullptr);
  } else {  // the same blocks, last row first
    for (int64_t r = rows - 1; r >= full; --r) dot_block<V, 1>(K, W + r * ldw, ldw, x, y + r, nullptr);
    for (int64_t r = full - 4; r >= 0; r -= 4)
      dot_block<V, 4>(K, W + r * ldw, ldw, x, y + r, r >= 4 ? W + (r - 4) * ldw : nullptr);
  }
}

template <class V>
constexpr RnnKernels make_kernels() {
  return RnnKernels{&lstm_fwd<V>, &lstm_bwd<V>, &gru_fwd<V>, &gru_bwd<V>, &rnn_fwd<V>, &rnn_bwd<V>, &dot_rows<V>};
}

}  // namespace fastml::rnn_impl
