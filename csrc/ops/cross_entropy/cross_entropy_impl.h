// Generic bodies of the cross-entropy kernels (maths and layouts: cross_entropy.h). Included by
// cross_entropy_<isa>.cpp after that ISA's vec header; V is its VecF. The vector passes produce the
// row statistics m = max x, s = sum exp(x - m) and (with label smoothing) sw = sum w_c (x_c - m); the
// per-position loss is then finished in double by position_loss().
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/simd/math.h"
#include "ops/cross_entropy/cross_entropy.h"
#include "ops/softmax/softmax_impl.h"

namespace fastml::cross_entropy_impl {

using softmax_impl::Cols;
using softmax_impl::kNegInf;

// ls = log s in float: s already carries float rounding (relative eps).
inline float position_loss(const CrossEntropyParams& p, int64_t t, float m, float ls_f, float sw, float xt) {
  if (t == p.ignore_index) return 0.0f;
  const double ls = ls_f;
  const double wt = p.weight ? p.weight[t] : 1.0;
  const double zt = static_cast<double>(xt) - static_cast<double>(m);
  double loss = (1.0 - p.smoothing) * wt * (ls - zt);
  if (p.smoothing > 0.0f) loss += static_cast<double>(p.smoothing) / p.C * (p.wsum * ls - sw);
  return static_cast<float>(loss);
}

// s = sum exp(x - m); with kSmooth also sw = sum w_c (x_c - m) (w null: all ones).
// `prefetch` (optional): the next row, requested while this exp pass runs (see softmax_impl.h).
template <class V, bool kSmooth>
inline void row_stats(int64_t C, const float* x, const float* w, float m, float* s_out, float* sw_out,
                      const float* prefetch) {
  constexpr int N = V::N;
  const V vm = V::set1(m);
  const V one = V::set1(1.0f);
  V s0 = V::zero(), s1 = V::zero(), a0 = V::zero(), a1 = V::zero();
  int64_t i = 0;
  for (; i + 2 * N <= C; i += 2 * N) {
    if (prefetch)
      for (int k = 0; k < 2 * N; k += 16) __builtin_prefetch(prefetch + i + k);
    const V z0 = V::load(x + i) - vm;
    const V z1 = V::load(x + i + N) - vm;
    s0 = s0 + simd::exp(z0);
    s1 = s1 + simd::exp(z1);
    if constexpr (kSmooth) {
      a0 = fmadd(w ? V::load(w + i) : one, z0, a0);
      a1 = fmadd(w ? V::load(w + i + N) : one, z1, a1);
    }
  }
  for (; i + N <= C; i += N) {
    const V z = V::load(x + i) - vm;
    s0 = s0 + simd::exp(z);
    if constexpr (kSmooth) a0 = fmadd(w ? V::load(w + i) : one, z, a0);
  }
  if (i < C) {
    const int r = static_cast<int>(C - i);
    s0 = s0 + simd::exp(V::load_tail(x + i, r, kNegInf) - vm);       // missing lanes add exp(-inf) = 0
    if constexpr (kSmooth) {
      const V z = V::load_tail(x + i, r, m) - vm;                     // missing lanes: z = 0
      a0 = fmadd(w ? V::load_tail(w + i, r) : one, z, a0);
    }
  }
  *s_out = (s0 + s1).hsum();
  *sw_out = kSmooth ? (a0 + a1).hsum() : 0.0f;
}

template <class V, bool kSmooth>
void forward_rows_impl(const CrossEntropyParams& p, int64_t count, const float* x, const int64_t* t, float* loss) {
  const int64_t C = p.C;
  for (int64_t r = 0; r < count; ++r, x += C) {
    if (t[r] == p.ignore_index) {
      loss[r] = 0.0f;
      continue;
    }
    const float m = softmax_impl::row_max<V>(C, x);
    float s, sw;
    row_stats<V, kSmooth>(C, x, p.weight, m, &s, &sw, r + 1 < count ? x + C : nullptr);
    loss[r] = position_loss(p, t[r], m, std::log(s), sw, x[t[r]]);
  }
}

template <class V>
void forward_rows(const CrossEntropyParams& p, int64_t count, const float* x, const int64_t* t, float* loss) {
  if (p.smoothing > 0.0f) forward_rows_impl<V, true>(p, count, x, t, loss);
  else forward_rows_impl<V, false>(p, count, x, t, loss);
}

template <class V>
void backward_rows(const CrossEntropyParams& p, int64_t count, const float* x, const int64_t* t, const float* g,
                   int64_t gstride, float* dx) {
  constexpr int N = V::N;
  const int64_t C = p.C;
  const double b = static_cast<double>(p.smoothing) / C;
  for (int64_t r = 0; r < count; ++r, x += C, dx += C) {
    const int64_t tr = t[r];
    if (tr == p.ignore_index) {
      for (int64_t c = 0; c < C; ++c) dx[c] = 0.0f;
      continue;
    }
    const float m = softmax_impl::row_max<V>(C, x);
    const float s = softmax_impl::row_exp_sum<V, false>(C, x, nullptr, m, r + 1 < count ? x + C : nullptr);
    const double gs = g[r * gstride];
    const double wt = p.weight ? p.weight[tr] : 1.0;
    const double a = (1.0 - p.smoothing) * wt + b * p.wsum;
    // dx_c = q exp(x_c - m) - bb w_c, then the target column loses gs (1 - eps) w_t
    const V q = V::set1(static_cast<float>(gs * a / s));
    const V bb = V::set1(static_cast<float>(gs * b));
    const V vm = V::set1(m);
    const V one = V::set1(1.0f);
    const float* w = p.weight;
    int64_t i = 0;
    for (; i + N <= C; i += N)
      fnmadd(bb, w ? V::load(w + i) : one, q * simd::exp(V::load(x + i) - vm)).store(dx + i);
    if (i < C) {
      const int rr = static_cast<int>(C - i);
      fnmadd(bb, w ? V::load_tail(w + i, rr) : one, q * simd::exp(V::load_tail(x + i, rr) - vm)).store_tail(dx + i, rr);
    }
    dx[tr] = static_cast<float>(dx[tr] - gs * (1.0 - p.smoothing) * wt);
  }
}

// ---- channel-strided layout: strips of adjacent positions --------------------------------------------

template <class V, int U, bool kSmooth>
inline void strip_forward_block(const CrossEntropyParams& p, const float* x, const int64_t* t, float* loss, int last) {
  constexpr int N = V::N;
  const Cols<V, U> c{last};
  const int64_t C = p.C, inner = p.inner;
  V m[U], s[U], a[U];
  for (int k = 0; k < U; ++k) {
    m[k] = V::set1(kNegInf);
    s[k] = V::zero();
    a[k] = V::zero();
  }
  for (int64_t cc = 0; cc < C; ++cc)
    for (int k = 0; k < U; ++k) m[k] = max(m[k], c.load(x + cc * inner, k));
  for (int64_t cc = 0; cc < C; ++cc) {
    const V wv = V::set1(p.weight ? p.weight[cc] : 1.0f);
    for (int k = 0; k < U; ++k) {
      const V z = c.load(x + cc * inner, k) - m[k];
      s[k] = s[k] + simd::exp(z);
      if constexpr (kSmooth) a[k] = fmadd(wv, z, a[k]);
    }
  }
  alignas(64) float mt[U * N], st[U * N], at[U * N];
  for (int k = 0; k < U; ++k) {
    m[k].store(mt + k * N);
    simd::log(s[k]).store(st + k * N);  // log s of every position at once
    a[k].store(at + k * N);
  }
  const int w = (U - 1) * N + last;
  for (int j = 0; j < w; ++j) {
    const int64_t tj = t[j];
    const float xt = tj == p.ignore_index ? 0.0f : x[tj * inner + j];
    loss[j] = position_loss(p, tj, mt[j], st[j], at[j], xt);
  }
}

template <class V, int U>
inline void strip_backward_block(const CrossEntropyParams& p, const float* x, const int64_t* t, const float* g,
                                 int64_t gstride, float* dx, int last) {
  constexpr int N = V::N;
  const Cols<V, U> c{last};
  const int64_t C = p.C, inner = p.inner;
  V m[U], s[U];
  for (int k = 0; k < U; ++k) {
    m[k] = V::set1(kNegInf);
    s[k] = V::zero();
  }
  for (int64_t cc = 0; cc < C; ++cc)
    for (int k = 0; k < U; ++k) m[k] = max(m[k], c.load(x + cc * inner, k));
  for (int64_t cc = 0; cc < C; ++cc)
    for (int k = 0; k < U; ++k) s[k] = s[k] + simd::exp(c.load(x + cc * inner, k) - m[k]);
  alignas(64) float st[U * N], qt[U * N], bt[U * N];
  for (int k = 0; k < U; ++k) s[k].store(st + k * N);
  const double b = static_cast<double>(p.smoothing) / C;
  const int w = (U - 1) * N + last;
  bool any_ignored = false;
  for (int j = 0; j < U * N; ++j) {
    qt[j] = 0.0f;
    bt[j] = 0.0f;
    if (j >= w) continue;
    if (t[j] == p.ignore_index) {
      any_ignored = true;
      continue;
    }
    const double gs = g[j * gstride];
    const double wt = p.weight ? p.weight[t[j]] : 1.0;
    qt[j] = static_cast<float>(gs * ((1.0 - p.smoothing) * wt + b * p.wsum) / st[j]);
    bt[j] = static_cast<float>(gs * b);
  }
  V q[U], bb[U];
  for (int k = 0; k < U; ++k) {
    q[k] = V::load(qt + k * N);
    bb[k] = V::load(bt + k * N);
  }
  for (int64_t cc = 0; cc < C; ++cc) {
    const V wv = V::set1(p.weight ? p.weight[cc] : 1.0f);
    for (int k = 0; k < U; ++k)
      c.store(fnmadd(bb[k], wv, q[k] * simd::exp(c.load(x + cc * inner, k) - m[k])), dx + cc * inner, k);
  }
  for (int j = 0; j < w; ++j) {
    const int64_t tj = t[j];
    if (tj == p.ignore_index) continue;
    const double gs = g[j * gstride];
    const double wt = p.weight ? p.weight[tj] : 1.0;
    float& d = dx[tj * inner + j];
    d = static_cast<float>(d - gs * (1.0 - p.smoothing) * wt);
  }
  if (any_ignored)  // exact zeros there, even where exp(x - m) is not finite
    for (int j = 0; j < w; ++j)
      if (t[j] == p.ignore_index)
        for (int64_t cc = 0; cc < C; ++cc) dx[cc * inner + j] = 0.0f;
}

template <class V, class Block>
inline void for_position_blocks(int64_t w, Block&& block) {
  softmax_impl::for_col_blocks<V>(w, block);
}

template <class V>
void forward_strip(const CrossEntropyParams& p, int64_t w, const float* x, const int64_t* t, float* loss) {
  const bool smooth = p.smoothing > 0.0f;
  for_position_blocks<V>(w, [&](int64_t j, auto u, int last) {
    constexpr int U = decltype(u)::value;
    if (smooth) strip_forward_block<V, U, true>(p, x + j, t + j, loss + j, last);
    else strip_forward_block<V, U, false>(p, x + j, t + j, loss + j, last);
  });
}

template <class V>
void backward_strip(const CrossEntropyParams& p, int64_t w, const float* x, const int64_t* t, const float* g,
                    int64_t gstride, float* dx) {
  for_position_blocks<V>(w, [&](int64_t j, auto u, int last) {
    strip_backward_block<V, decltype(u)::value>(p, x + j, t + j, g + j * gstride, gstride, dx + j, last);
  });
}

template <class V>
constexpr CrossEntropyKernels make_kernels() {
  return CrossEntropyKernels{&forward_rows<V>, &forward_strip<V>, &backward_rows<V>, &backward_strip<V>};
}

}  // namespace fastml::cross_entropy_impl
