// Generic bodies of the pooling backward kernels (maths and contract: pool.h), included through
// pool_impl.h after pool_forward_impl.h (whose tap-range and divisor helpers they share).
//
// Both zero one grad_input plane (it then sits in cache) and accumulate into it. Max scatters
// grad_output to the indices (2x2 stride-2 windows, which cannot overlap, write grad_input directly
// by comparing each index with its window's positions); avg with strides 1 and 2 gathers, per input
// row, from the output row divided by the divisors (zero margins make the borders need no special
// case); other strides scatter each window's share.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "ops/pool/pool_forward_impl.h"

namespace fastml::pool_impl {
namespace {  // internal linkage: see pool_forward_impl.h

// p[0:m) += (lo, hi) for m <= 2N
template <class V>
inline void add2(float* p, int m, V lo, V hi) {
  if (m >= 2 * V::N) {
    (V::load(p) + lo).store(p);
    (V::load(p + V::N) + hi).store(p + V::N);
    return;
  }
  const int m0 = std::min(m, V::N), m1 = std::max(m - V::N, 0);
  (V::load_tail(p, m0) + lo).store_tail(p, m0);
  if (m1 > 0) (V::load_tail(p + V::N, m1) + hi).store_tail(p + V::N, m1);
}

// One input row r gathers from the output row q (q[ow] = gy / divisor, zero outside [0, oW)):
// column w receives q[ow] for every tap c with ow*S - p + c = w. Stride 1: w takes q[w + p - c] over
// all c; stride 2: the even column 2j takes q[j + (p - c)/2] over c = p mod 2, the odd column 2j+1
// q[j + (p + 1 - c)/2] over the other taps, and the two are interleaved into one read-modify-write.
template <class V, int S>
void avg_backward_row_gather(const PoolGeom& g, float* r, const float* q) {
  const int64_t W = g.in[2], p = g.p[2], kw = g.k[2];
  if constexpr (S == 1) {
    for (int64_t w0 = 0; w0 < W; w0 += V::N) {
      const int n = static_cast<int>(std::min<int64_t>(V::N, W - w0));
      V acc = V::zero();
      for (int64_t c = 0; c < kw; ++c) acc = acc + V::load(q + w0 + p - c);
      if (n == V::N) (V::load(r + w0) + acc).store(r + w0);
      else (V::load_tail(r + w0, n) + acc).store_tail(r + w0, n);
    }
  } else {
    const int64_t half = (W + 1) / 2;
    for (int64_t j0 = 0; j0 < half; j0 += V::N) {
      V even = V::zero(), odd = V::zero();
      for (int64_t c = 0; c < kw; ++c) {
        if (((p - c) & 1) == 0) even = even + V::load(q + j0 + (p - c) / 2);
        else odd = odd + V::load(q + j0 + (p + 1 - c) / 2);
      }
      V lo, hi;
      interleave2(even, odd, lo, hi);
      add2<V>(r + 2 * j0, static_cast<int>(std::min<int64_t>(2 * V::N, W - 2 * j0)), lo, hi);
    }
  }
}

// gx = the avg windows' gradient, accumulated into the zeroed plane. Strides 1 and 2 gather per input
// row (no border split); other strides scatter each window's share to its valid taps. `row` holds
// avg_backward_row_floats(g) floats.
template <class V>
void avg_backward_plane(const PoolGeom& g, const AvgMode& m, const float* gy, float* gx, float* row) {
  float* acc = gx;
  const int64_t H = g.in[1], W = g.in[2], oW = g.out[2], sw_ = g.s[2], pw = g.p[2];
  const int64_t plane = g.in[0] * H * W;
  std::memset(acc, 0, sizeof(float) * static_cast<size_t>(plane));
  const bool gather = sw_ == 1 || sw_ == 2;
  // interior columns [lo, hi): windows wholly inside the input in W
  const int64_t lo = std::min<int64_t>(oW, (pw + sw_ - 1) / sw_);
  const int64_t lim = W - 1 + pw - (g.k[2] - 1);
  const int64_t hi = lim < 0 ? lo : std::max(lo, std::min<int64_t>(oW, lim / sw_ + 1));
  const int64_t M = avg_backward_margin(g);
  float* q = row + M;
  std::memset(row, 0, sizeof(float) * static_cast<size_t>(avg_backward_row_floats(g)));
  for (int64_t od = 0; od < g.out[0]; ++od) {
    const int64_t sd = od * g.s[0] - g.p[0];
    int64_t a0, a1;
    valid_taps(sd, g.k[0], 1, g.in[0], a0, a1);
    for (int64_t oh = 0; oh < g.out[1]; ++oh) {
      const int64_t sh = oh * g.s[1] - g.p[1];
      int64_t b0, b1;
      valid_taps(sh, g.k[1], 1, H, b0, b1);
      if (a1 <= a0 || b1 <= b0) continue;
      const float* grow = gy + (od * g.out[1] + oh) * oW;
      for (int64_t ow = 0; ow < oW; ++ow) {
        if (ow == lo && hi > lo) {  // the interior columns share one divisor
          const int64_t st[3] = {sd, sh, lo * sw_ - pw};
          const V vdiv = V::set1(avg_divisor(g, m, st));
          for (; ow + V::N <= hi; ow += V::N) (V::load(grow + ow) / vdiv).store(q + ow);
          if (ow < hi) {
            const int n = static_cast<int>(hi - ow);
            (V::load_tail(grow + ow, n) / vdiv).store_tail(q + ow, n);
          }
          ow = hi;
          if (ow >= oW) break;
        }
        const int64_t st[3] = {sd, sh, ow * sw_ - pw};
        q[ow] = grow[ow] / avg_divisor(g, m, st);
      }
      for (int64_t a = a0; a < a1; ++a)
        for (int64_t b = b0; b < b1; ++b) {
          float* r = acc + ((sd + a) * H + sh + b) * W;
          if (gather) {
            if (sw_ == 1) avg_backward_row_gather<V, 1>(g, r, q);
            else avg_backward_row_gather<V, 2>(g, r, q);
            continue;
          }
          for (int64_t ow = 0; ow < oW; ++ow) {
            const int64_t sw = ow * sw_ - pw;
            int64_t c0, c1;
            valid_taps(sw, g.k[2], 1, W, c0, c1);
            for (int64_t c = c0; c < c1; ++c) r[sw + c] += q[ow];
          }
        }
    }
  }
}

// Windows 2 wide with stride 2 in W (no W padding, dilation 1) that do not overlap in H and D either
// (2x2 s2): every input element lies in at most one window, so grad_input is written directly, row by
// row: column 2j (2j+1) of a window row takes gy[j] where idx[j] is that position, else 0. Returns
// false, having written part of gx, when some index is not inside its own window (any in-plane index
// is legal); the caller then runs the scatter, which rewrites the whole plane.
template <class V>
bool max_backward_plane_2x2(const PoolGeom& g, const float* gy, const int64_t* idx, float* gx) {
  const int64_t D = g.in[0], H = g.in[1], W = g.in[2], oH = g.out[1], oW = g.out[2];
  const V one = V::set1(1.0f);
  V hits = V::zero();  // per-lane count of outputs whose index was found (exact below 2^24)
  int64_t next = 0;  // first element of gx not yet written (rows are visited in increasing order)
  auto zero_to = [&](int64_t end) {
    if (end > next) std::memset(gx + next, 0, sizeof(float) * static_cast<size_t>(end - next));
    next = std::max(next, end);
  };
  // Loop order od -> a -> oh -> b: with stride >= kernel in D and H the input rows (id, ih) then come in
  // strictly increasing address order, which zero_to relies on.
  for (int64_t od = 0; od < g.out[0]; ++od) {
    for (int64_t a = 0; a < g.k[0]; ++a) {
      const int64_t id = od * g.s[0] - g.p[0] + a;
      if (id < 0 || id >= D) continue;
      for (int64_t oh = 0; oh < oH; ++oh) {
        const float* grow = gy + (od * oH + oh) * oW;
        const int64_t* irow = idx + (od * oH + oh) * oW;
        for (int64_t b = 0; b < g.k[1]; ++b) {
          const int64_t ih = oh * g.s[1] - g.p[1] + b;
          if (ih < 0 || ih >= H) continue;
          const int64_t base = (id * H + ih) * W;
          zero_to(base);
          float* r = gx + base;
          const int64_t cover = std::min<int64_t>(W, 2 * oW);  // columns some window reaches
          for (int64_t j0 = 0; 2 * j0 < cover; j0 += V::N) {
            const int n = static_cast<int>(std::min<int64_t>(V::N, oW - j0));
            const V gv = n == V::N ? V::load(grow + j0) : V::load_tail(grow + j0, n);
            const auto me = V::eq_i64_ramp(irow + j0, base + 2 * j0, 2, n);
            const auto mo = V::eq_i64_ramp(irow + j0, base + 2 * j0 + 1, 2, n);
            const V e = select(me, gv, V::zero()), o = select(mo, gv, V::zero());
            hits = hits + select(me, one, V::zero()) + select(mo, one, V::zero());
            V lo, hi;
            interleave2(e, o, lo, hi);
            const int m = static_cast<int>(std::min<int64_t>(2 * V::N, cover - 2 * j0));
            if (m >= 2 * V::N) {
              lo.store(r + 2 * j0);
              hi.store(r + 2 * j0 + V::N);
            } else {
              lo.store_tail(r + 2 * j0, std::min(m, V::N));
              if (m > V::N) hi.store_tail(r + 2 * j0 + V::N, m - V::N);
            }
          }
          next = base + cover;
        }
      }
    }
  }
  zero_to(D * H * W);
  // every output's index must have landed in its own window (an index matches at most one position)
  return hits.hsum() == static_cast<float>(g.out[0] * oH * oW);
}

inline bool max_backward_2x2_ok(const PoolGeom& g) {
  return g.k[2] == 2 && g.s[2] == 2 && g.p[2] == 0 && g.d[2] == 1 && g.d[1] == 1 && g.d[0] == 1 &&
         g.s[1] >= g.k[1] && g.s[0] >= g.k[0] && 2 * g.out[2] <= g.in[2] &&
         g.in[0] * g.in[1] * g.in[2] < (int64_t{1} << 24);
}

// gx = grad_output scattered to the (in-range) indices of the zeroed plane.
template <class V>
void max_backward_plane(const PoolGeom& g, const float* gy, const int64_t* idx, float* gx) {
  if (max_backward_2x2_ok(g) && max_backward_plane_2x2<V>(g, gy, idx, gx)) return;
  float* acc = gx;
  const int64_t plane = g.in[0] * g.in[1] * g.in[2], n = g.out[0] * g.out[1] * g.out[2];
  std::memset(acc, 0, sizeof(float) * static_cast<size_t>(plane));
  for (int64_t j = 0; j < n; ++j) {
    const int64_t k = idx[j];
    // out-of-plane indices (recomputed, or given: the binding allows them only there) belong to windows
    // lying wholly in the padding (value -inf), whose gradient goes nowhere
    if (k >= 0 && k < plane) acc[k] += gy[j];
  }
}

}  // namespace
}  // namespace fastml::pool_impl
