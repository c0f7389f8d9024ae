// Pooling forward, shared pieces (pool_forward_impl.h has the planes): the scalar window loop, the valid
// taps of a window, the interior columns, and the generic vectorised rows of any stride. V is the ISA's
// VecF (pool_<isa>.cpp includes its vec header first). Test: pytest tests/test_pool.py
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "ops/pool/pool.h"

namespace fastml::pool_impl {
// Internal linkage: the non-template helpers below are compiled once per ISA with that ISA's flags and
// must never be merged across translation units (a linker-picked AVX-512 copy would run on any CPU).
namespace {

inline constexpr int64_t kExactFloatInt = int64_t{1} << 24;
inline constexpr float kInf = std::numeric_limits<float>::infinity();

// Planes the vector rows take: tap offsets (64 lanes of stride s) fit 32 bits, flat indices are exact floats.
inline bool vector_ok(const PoolGeom& g) {
  return g.s[2] * 64 < (int64_t{1} << 31) && g.in[0] * g.in[1] * g.in[2] < kExactFloatInt;
}

// Taps t in [t0, t1) of a window starting at `start` (k taps, dilation d) that fall inside [0, L).
inline void valid_taps(int64_t start, int64_t k, int64_t d, int64_t L, int64_t& t0, int64_t& t1) {
  if (d == 1) {  // no divisions on the common path (border windows call this per output)
    t0 = start >= 0 ? 0 : -start;
    t1 = std::min(k, L - start);
  } else {
    t0 = start >= 0 ? 0 : (-start + d - 1) / d;
    const int64_t last = L - 1 - start;
    t1 = last < 0 ? 0 : std::min(k, last / d + 1);
  }
  if (t1 < t0) t1 = t0;
}

// torch's initial index: per dim, the first tap that is not in the left padding.
inline int64_t first_nonneg(int64_t start, int64_t d) {
  return start >= 0 ? start : d == 1 ? 0 : start + (-start + d - 1) / d * d;
}

inline void max_window(const PoolGeom& g, const float* x, int64_t sd, int64_t sh, int64_t sw, float* y, int64_t* idx) {
  const int64_t H = g.in[1], W = g.in[2];
  int64_t a0, a1, b0, b1, c0, c1;
  valid_taps(sd, g.k[0], g.d[0], g.in[0], a0, a1);
  valid_taps(sh, g.k[1], g.d[1], H, b0, b1);
  valid_taps(sw, g.k[2], g.d[2], W, c0, c1);
  float best = -std::numeric_limits<float>::infinity();
  int64_t bi = (first_nonneg(sd, g.d[0]) * H + first_nonneg(sh, g.d[1])) * W + first_nonneg(sw, g.d[2]);
  for (int64_t a = a0; a < a1; ++a) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t row = ((sd + a * g.d[0]) * H + (sh + b * g.d[1])) * W;
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t i = row + sw + c * g.d[2];
        const float v = x[i];
        if (v > best || std::isnan(v)) {
          best = v;
          bi = i;
        }
      }
    }
  }
  *y = best;
  if (idx) *idx = bi;
}

inline float avg_divisor(const PoolGeom& g, const AvgMode& m, const int64_t* st) {
  if (m.divisor != 0) return static_cast<float>(m.divisor);
  int64_t n = 1;
  for (int i = 0; i < 3; ++i) {
    const int64_t end = std::min(st[i] + g.k[i], g.in[i] + g.p[i]);
    n *= m.count_include_pad ? end - st[i] : std::min(end, g.in[i]) - std::max<int64_t>(st[i], 0);
  }
  return static_cast<float>(n);
}

inline float avg_window(const PoolGeom& g, const AvgMode& m, const float* x, int64_t sd, int64_t sh, int64_t sw) {
  const int64_t H = g.in[1], W = g.in[2];
  int64_t a0, a1, b0, b1, c0, c1;
  valid_taps(sd, g.k[0], 1, g.in[0], a0, a1);
  valid_taps(sh, g.k[1], 1, H, b0, b1);
  valid_taps(sw, g.k[2], 1, W, c0, c1);
  float sum = 0.f;
  for (int64_t a = a0; a < a1; ++a)
    for (int64_t b = b0; b < b1; ++b) {
      const float* r = x + ((sd + a) * H + sh + b) * W + sw;
      for (int64_t c = c0; c < c1; ++c) sum += r[c];
    }
  const int64_t st[3] = {sd, sh, sw};
  return sum / avg_divisor(g, m, st);
}

// Interior columns [lo, hi) of a row: every tap in W lies inside the input.
inline void interior(const PoolGeom& g, int64_t& lo, int64_t& hi) {
  const int64_t S = g.s[2], W = g.in[2], p = g.p[2], reach = (g.k[2] - 1) * g.d[2];
  lo = std::min<int64_t>(g.out[2], (p + S - 1) / S);
  const int64_t lim = W - 1 + p - reach;  // ow * S <= lim
  hi = lim < 0 ? lo : std::min<int64_t>(g.out[2], lim / S + 1);
  if (hi < lo) hi = lo;
}

// Calls f(v, rel) for every W tap of the input row r at output columns [ow0, ow0 + n), in tap order;
// rel is the tap's offset from the window origin in W. S = 1, 2, or 0 for a larger stride (gathers).
template <class V, int S, class F>
inline void for_row_taps(const PoolGeom& g, const float* r, int64_t ow0, int n, F&& f) {
  const int64_t W = g.in[2], p = g.p[2], dw = g.d[2];
  if constexpr (S == 0) {
    const int64_t st = g.s[2];
    for (int64_t c = 0; c < g.k[2]; ++c) f(V::load_strided(r + ow0 * st - p + c * dw, st, n), c * dw);
  } else if constexpr (S == 1) {
    for (int64_t c = 0; c < g.k[2]; ++c) {
      const float* q = r + ow0 - p + c * dw;
      f(n == V::N ? V::load(q) : V::load_tail(q, n), c * dw);
    }
  } else {
    int64_t cached = std::numeric_limits<int64_t>::min();
    V even = V::zero(), odd = V::zero();
    for (int64_t c = 0; c < g.k[2]; ++c) {
      const int64_t pos = 2 * ow0 - p + c * dw;
      if (pos == cached + 1) {
        f(odd, c * dw);
      } else {
        V::load2_deinterleave(r + pos, static_cast<int>(std::min<int64_t>(2 * V::N, W - pos)), even, odd);
        cached = pos;
        f(even, c * dw);
      }
    }
  }
}

template <class V>
inline V nan_max(V earlier, V later) {  // torch's scan step on values: a later NaN wins, a NaN stays
  return select(is_nan(later), later, max(later, earlier));
}

template <class V, int S>
void max_row_vec(const PoolGeom& g, const float* x, int64_t sd, int64_t sh, int64_t a0, int64_t a1, int64_t b0,
                 int64_t b1, int64_t lo, int64_t hi, float* yrow, int64_t* irow) {
  const int64_t H = g.in[1], W = g.in[2];
  for (int64_t ow0 = lo; ow0 < hi; ow0 += V::N) {
    const int n = static_cast<int>(std::min<int64_t>(V::N, hi - ow0));
    // each kernel row is reduced on its own (an independent chain), then joins the window's result with
    // the same rule: the scan order, and so the first-maximum / last-NaN choice, is unchanged
    V best = V::zero(), bt = V::zero();
    bool first = true;
    for (int64_t a = a0; a < a1; ++a) {
      for (int64_t b = b0; b < b1; ++b) {
        const float* r = x + ((sd + a * g.d[0]) * H + sh + b * g.d[1]) * W;
        const int64_t rowrel = (a * g.d[0] * H + b * g.d[1]) * W;
        V rb = V::zero(), rt = V::zero();
        bool rfirst = true;
        for_row_taps<V, S>(g, r, ow0, n, [&](V v, int64_t crel) {
          if (rfirst) {
            rb = v;
            if (irow) rt = V::set1(static_cast<float>(rowrel + crel));
            rfirst = false;
          } else if (irow) {
            const auto m = cmp_gt_or_nan(v, rb);
            rb = select(m, v, rb);
            rt = select(m, V::set1(static_cast<float>(rowrel + crel)), rt);
          } else {
            rb = nan_max(rb, v);
          }
        });
        if (first) {
          best = rb;
          bt = rt;
          first = false;
        } else if (irow) {
          const auto m = cmp_gt_or_nan(rb, best);
          best = select(m, rb, best);
          bt = select(m, rt, bt);
        } else {
          best = nan_max(best, rb);
        }
      }
    }
    if (n == V::N) best.store(yrow + ow0); else best.store_tail(yrow + ow0, n);
    if (irow) {
      float rel[V::N];
      bt.store(rel);
      const int64_t st = S ? S : g.s[2];
      const int64_t origin = (sd * H + sh) * W + ow0 * st - g.p[2];
      for (int l = 0; l < n; ++l) irow[ow0 + l] = origin + l * st + static_cast<int64_t>(rel[l]);
    }
  }
}

template <class V, int S>
void avg_row_vec(const PoolGeom& g, const float* x, int64_t sd, int64_t sh, int64_t a0, int64_t a1, int64_t b0,
                 int64_t b1, int64_t lo, int64_t hi, float div, float* yrow) {
  const int64_t H = g.in[1], W = g.in[2];
  const V vdiv = V::set1(div);
  for (int64_t ow0 = lo; ow0 < hi; ow0 += V::N) {
    const int n = static_cast<int>(std::min<int64_t>(V::N, hi - ow0));
    V sum = V::zero();
    for (int64_t a = a0; a < a1; ++a)
      for (int64_t b = b0; b < b1; ++b)
        for_row_taps<V, S>(g, x + ((sd + a) * H + sh + b) * W, ow0, n, [&](V v, int64_t) { sum = sum + v; });
    const V y = sum / vdiv;
    if (n == V::N) y.store(yrow + ow0); else y.store_tail(yrow + ow0, n);
  }
}

// Wide windows with a large W stride (kernel >= 4 along W, stride > 2, no W dilation; 1-D k100 s100, 7x7 s7):
// each output reduces its window's rows along W with contiguous vector loads (masked for the last k mod N),
// instead of N outputs a step with one N-lane gather per tap (k gathers for N outputs: 0.62-0.66x torch at
// k 7-100). Interior columns [lo, hi) only. Averages: one vector accumulator over the rows (then its lanes),
// divided by div: other last bits than the gather rows; max values (no indices): the lane-wise
// NaN-propagating max, any order giving the same value.
inline bool wide_ok(const PoolGeom& g) {
  return g.s[2] > 2 && g.k[2] >= 4 && g.d[2] == 1;
}

template <class V, bool MAX>
void row_wide(const PoolGeom& g, const float* x, int64_t sd, int64_t sh, int64_t a0, int64_t a1, int64_t b0,
              int64_t b1, int64_t lo, int64_t hi, float div, float* yrow) {
  const int64_t H = g.in[1], W = g.in[2], k = g.k[2], kw = k - k % V::N;
  const int tail = static_cast<int>(k - kw);
  const float fill = MAX ? -std::numeric_limits<float>::infinity() : 0.0f;
  for (int64_t ow = lo; ow < hi; ++ow) {
    const int64_t w0 = ow * g.s[2] - g.p[2];
    V acc = MAX ? V::set1(fill) : V::zero();
    for (int64_t a = a0; a < a1; ++a)
      for (int64_t b = b0; b < b1; ++b) {
        const float* r = x + ((sd + a * g.d[0]) * H + sh + b * g.d[1]) * W + w0;
        for (int64_t c = 0; c < kw; c += V::N) acc = MAX ? nan_max(acc, V::load(r + c)) : acc + V::load(r + c);
        if (tail) {
          const V t = V::load_tail(r + kw, tail, fill);
          acc = MAX ? nan_max(acc, t) : acc + t;
        }
      }
    if constexpr (MAX) {
      float l[V::N];
      acc.store(l);
      float m = l[0];
      for (int i = 1; i < V::N; ++i) m = (l[i] != l[i] || l[i] > m) ? l[i] : m;  // a NaN lane wins and stays
      yrow[ow] = m;
    } else {
      yrow[ow] = acc.hsum() / div;
    }
  }
}

}  // namespace
}  // namespace fastml::pool_impl
