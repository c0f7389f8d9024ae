// Stride-1 max and average pooling of 2-D (and 1-D) planes (maths and contract: pool.h; included by
// pool_forward_impl.h). Averages: each input row's kW-tap sums once, the window's sum over its rows' sums
// (avg_plane_s1); their backward is the same sums over gy / divisor (avg_backward_plane_s1). Max, values and
// indices: torch's scan runs row by row over the window (a later tap wins when strictly greater, or NaN), and
// that rule gives the same winner in any grouping that keeps the order: the winner of a window is the winner
// among its rows' winners, taken in row order. So each input row's kW-tap winners are found once (max_row_s1)
// into a ring of kH rows, and each output row joins its window rows' winners in order (max_join_rows_s1):
// kH + kW steps per output instead of kH * kW, the same values and indices as the window loop (ties between
// -0 and +0, the last NaN, an all -inf window's first tap).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "ops/pool/pool_forward_rows.h"

namespace fastml::pool_impl {
namespace {  // internal linkage: see pool_forward_impl.h

// 2-D (or 1-D) stride-1 windows without dilation: Inception's 3x3 s1 p1, the 5x5 s1 p2 of YOLO's SPPF, at
// most kMaxS1Rows window rows and columns (the scratch holds kH rows and a row padded by about kW), indices
// exact as floats (vector_ok).
constexpr int64_t kMaxS1Rows = 64;
inline bool plane_s1_ok(const PoolGeom& g) {
  return g.out[0] == 1 && g.k[0] == 1 && g.p[0] == 0 && g.s[1] == 1 && g.d[1] == 1 && g.s[2] == 1 && g.d[2] == 1 &&
         g.k[1] * g.k[2] > 1 && g.k[1] <= kMaxS1Rows && g.k[2] <= kMaxS1Rows && vector_ok(g);
}

// The taps of a stride-1 window starting at st (k taps) inside [0, n), as a float (at least 1: the lanes past
// the last output, whose windows may lie outside, divide by 1).
inline float s1_taps_inside(int64_t st, int64_t k, int64_t n) {
  return static_cast<float>(std::max<int64_t>(1, std::min(st + k, n) - std::max<int64_t>(st, 0)));
}

// The divisor of a stride-1 plane's windows: returned when it is the same for all (divisor_override, or the
// padding counted: every window lies inside the padded input, so kH kW); else 0, with colf[ow] for ow in
// [0, oWr) the window's taps inside the input in W, the divisor of row oh being s1_taps_inside(oh - ph, kH, H)
// times colf[ow].
inline float s1_divisors(const PoolGeom& g, const AvgMode& m, int64_t oWr, float* colf) {
  if (m.divisor != 0) return static_cast<float>(m.divisor);
  if (m.count_include_pad) return static_cast<float>(g.k[1] * g.k[2]);
  for (int64_t ow = 0; ow < oWr; ++ow) colf[ow] = s1_taps_inside(ow - g.p[2], g.k[2], g.in[2]);
  return 0.f;
}

// Scratch rows are whole cache lines (16 floats), so that the ring's rows and the padded rows' first taps load
// without splitting lines.
inline int64_t s1_row_floats(int64_t n) { return (n + 15) / 16 * 16; }

// The thread's scratch for a stride-1 plane: two padded rows and `rings` rings of kH rows, 64-byte aligned.
inline float* s1_scratch(const PoolGeom& g, int64_t rings) {
  thread_local std::vector<float> t_buf;
  const int64_t oWr = s1_row_floats(g.out[2]), rowlen = s1_row_floats(g.out[2] + g.k[2] + 16);
  const size_t need = static_cast<size_t>(2 * rowlen + rings * g.k[1] * oWr + 16);
  if (t_buf.size() < need) t_buf.resize(need);
  const uintptr_t a = reinterpret_cast<uintptr_t>(t_buf.data());
  return t_buf.data() + ((64 - a % 64) % 64) / sizeof(float);
}

// Torch's max scan step on values, later tap v into the running acc: SAFE, a later NaN wins and a NaN stays
// (nan_max); else plain max, the same where no tap is NaN (max returns its second operand, the earlier tap,
// on ties such as -0 / +0).
template <class V, bool SAFE>
[[gnu::always_inline]] inline V scan_max(V acc, V v) {
  return SAFE ? nan_max(acc, v) : max(v, acc);
}

// Lane l: l as a float.
template <class V>
inline V lane_ramp() {
  alignas(64) static constexpr float kRamp[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  static_assert(V::N <= 16, "lane_ramp: at most 16 lanes");
  return V::load(kRamp);
}

// One input row's kW-tap winners at every output column ow in [0, oWr): xp holds the row at offset pw with
// -inf around it (padding, which never wins), so every chunk is kW plain loads; hr[ow] = the value and, IDX,
// hc[ow] = its column in the row, starting from the window's first column inside the row (torch's index of an
// all -inf window).
template <class V, bool SAFE, bool IDX, int KW>
inline void max_row_s1(const float* xp, int64_t kw_rt, int64_t oWr, int64_t pw, float* hr, float* hc) {
  const int64_t kw = KW > 0 ? KW : kw_rt;
  const V ramp = lane_ramp<V>();
  for (int64_t o = 0; o < oWr; o += V::N) {
    if constexpr (IDX) {
      const V col0 = ramp + V::set1(static_cast<float>(o - pw));  // each lane's first tap's column
      V acc = V::set1(-kInf), col = max(col0, V::zero());
      for (int64_t c = 0; c < kw; ++c) {
        const V v = V::load(xp + o + c);
        const auto m = cmp_gt_or_nan(v, acc);
        acc = select(m, v, acc);
        col = select(m, col0 + V::set1(static_cast<float>(c)), col);
      }
      acc.store(hr + o);
      col.store(hc + o);
    } else {
      V acc = V::load(xp + o);
      for (int64_t c = 1; c < kw; ++c) acc = scan_max<V, SAFE>(acc, V::load(xp + o + c));
      acc.store(hr + o);
    }
  }
}

// An output row from its window rows' winners rows[0 .. n) (NR > 0 fixes n), joined in order; IDX: cols[b] are
// row b's winning columns and base[b] its first element's index, and the index starts at the window's first
// tap inside the input (row 0's base plus the first column inside the row).
template <class V, bool SAFE, bool IDX, int NR>
inline void max_join_rows_s1(const float* const* rows, const float* const* cols, const float* base, int n_rt,
                             int64_t oW, int64_t pw, float* yr, int64_t* ir) {
  const int n = NR > 0 ? NR : n_rt;
  const V ramp = lane_ramp<V>();
  for (int64_t o = 0; o < oW; o += V::N) {
    V acc, at;
    if constexpr (IDX) {
      acc = V::set1(-kInf);
      at = V::set1(base[0]) + max(ramp + V::set1(static_cast<float>(o - pw)), V::zero());
      for (int b = 0; b < n; ++b) {
        const V v = V::load(rows[b] + o);
        const auto m = cmp_gt_or_nan(v, acc);
        acc = select(m, v, acc);
        at = select(m, V::load(cols[b] + o) + V::set1(base[b]), at);
      }
    } else {
      acc = V::load(rows[0] + o);
      for (int b = 1; b < n; ++b) acc = scan_max<V, SAFE>(acc, V::load(rows[b] + o));
    }
    if (o + V::N <= oW) {
      acc.store(yr + o);
      if constexpr (IDX) at.store_i64(ir + o, 0);
    } else {
      const int m = static_cast<int>(oW - o);
      acc.store_tail(yr + o, m);
      if constexpr (IDX) {
        alignas(64) float t[V::N];
        at.store(t);
        for (int l = 0; l < m; ++l) ir[o + l] = static_cast<int64_t>(t[l]);
      }
    }
  }
}

// The ring walk of a stride-1 plane: input rows copied into two padded rows (fill around them; row ih + 1 is
// copied before row ih is read, so that no load reads bytes stored just before at another alignment, a
// store-forwarding stall on every load), row(xp, slot) once per input row (slot: its place in a ring of kH),
// then join(oh, r0, n, slot0) per output row over its n valid window rows r0, r0 + 1, ... (in the ring from
// slot0 on, wrapping at kH).
// PROBE: the copies also sum v - v (NaN exactly for NaN and +-inf), and a hit stops the plane (false).
template <class V, bool PROBE, class Row, class Join>
bool s1_ring_walk(const PoolGeom& g, const float* x, float* xpbuf, int64_t rowlen, float fill, Row&& row,
                  Join&& join) {
  const int64_t H = g.in[1], W = g.in[2], oH = g.out[1], kH = g.k[1], ph = g.p[1], pw = g.p[2];
  float* xp[2] = {xpbuf, xpbuf + rowlen};
  for (int64_t i = 0; i < 2 * rowlen; ++i) xpbuf[i] = fill;  // the padding; [pw, pw + W) is rewritten per row
  V probe = V::zero();
  auto copy_row = [&](int64_t ih) {
    if (ih >= H) return;
    const float* src = x + ih * W;
    float* dst = xp[ih & 1] + pw;
    if (!PROBE) return static_cast<void>(std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(W)));
    int64_t i = 0;
    for (; i + V::N <= W; i += V::N) {
      const V v = V::load(src + i);
      v.store(dst + i);
      probe = probe + (v - v);
    }
    if (i < W) {
      const V v = V::load_tail(src + i, static_cast<int>(W - i));
      v.store_tail(dst + i, static_cast<int>(W - i));
      probe = probe + (v - v);
    }
  };
  int64_t done = -1;  // the last input row whose results are in the ring
  for (int64_t oh = 0; oh < oH; ++oh) {
    const int64_t sh = oh - ph;
    int64_t b0, b1;
    valid_taps(sh, kH, 1, H, b0, b1);
    for (int64_t ih = std::max(done + 1, sh + b0); ih < sh + b1; ++ih) {
      if (ih == 0 || ih != done + 1) copy_row(ih);
      copy_row(ih + 1);
      if (PROBE && V::mask_any(is_nan(probe))) return false;
      row(xp[ih & 1], ih % kH);
      done = ih;
    }
    join(oh, sh + b0, static_cast<int>(b1 - b0), (sh + b0) % kH);
  }
  return true;
}

// The plane of plane_s1_ok, max (IDX: with indices, always under the NaN rule; else SAFE: the NaN rule, or
// without it a probe that returns false on a NaN or infinity, for the caller to run the plane again with SAFE).
template <class V, bool SAFE, bool IDX, int KW>
bool max_plane_s1_rows(const PoolGeom& g, const float* x, float* y, int64_t* idx, float* buf) {
  const int64_t W = g.in[2], oW = g.out[2], kH = g.k[1], kW = g.k[2], pw = g.p[2];
  const int64_t oWr = s1_row_floats(oW), rowlen = s1_row_floats(oW + kW + V::N);
  float* ring = buf + 2 * rowlen;  // kH rows of winners
  float* cring = ring + kH * oWr;  // IDX: kH rows of their columns
  auto row = [&](const float* xp, int64_t slot) {
    max_row_s1<V, SAFE, IDX, KW>(xp, kW, oWr, pw, ring + slot * oWr, cring + slot * oWr);
  };
  auto join = [&](int64_t oh, int64_t r0, int n, int64_t slot) {
    const float* rows[kMaxS1Rows];
    const float* cols[kMaxS1Rows];
    float base[kMaxS1Rows];
    for (int b = 0; b < n; ++b, slot = slot + 1 == kH ? 0 : slot + 1) {
      rows[b] = ring + slot * oWr;
      if constexpr (IDX) {
        cols[b] = cring + slot * oWr;
        base[b] = static_cast<float>((r0 + b) * W);
      }
    }
    float* yr = y + oh * oW;
    int64_t* ir = IDX ? idx + oh * oW : nullptr;
    switch (n) {
      case 1: max_join_rows_s1<V, SAFE, IDX, 1>(rows, cols, base, n, oW, pw, yr, ir); break;
      case 2: max_join_rows_s1<V, SAFE, IDX, 2>(rows, cols, base, n, oW, pw, yr, ir); break;
      case 3: max_join_rows_s1<V, SAFE, IDX, 3>(rows, cols, base, n, oW, pw, yr, ir); break;
      case 4: max_join_rows_s1<V, SAFE, IDX, 4>(rows, cols, base, n, oW, pw, yr, ir); break;
      case 5: max_join_rows_s1<V, SAFE, IDX, 5>(rows, cols, base, n, oW, pw, yr, ir); break;
      default: max_join_rows_s1<V, SAFE, IDX, 0>(rows, cols, base, n, oW, pw, yr, ir); break;
    }
  };
  return s1_ring_walk<V, !SAFE && !IDX>(g, x, buf, rowlen, -kInf, row, join);
}

// One input row's kW-tap sums at every output column (in tap order; the padding around the row is +0).
template <class V, int KW>
inline void avg_row_s1(const float* xp, int64_t kw_rt, int64_t oWr, float* hr) {
  const int64_t kw = KW > 0 ? KW : kw_rt;
  for (int64_t o = 0; o < oWr; o += V::N) {
    V acc = V::load(xp + o);
    for (int64_t c = 1; c < kw; ++c) acc = acc + V::load(xp + o + c);
    acc.store(hr + o);
  }
}

// An output row of averages: its n window rows' sums added in order to +0 (so an all -0 window sums to +0, as
// the window loop's does), divided by the window's divisor: `div` for every column, or (div = 0) rowf times
// colf[ow], the valid taps counted in H and in W.
template <class V, int NR>
inline void avg_join_rows_s1(const float* const* rows, int n_rt, int64_t oW, float div, float rowf, const float* colf,
                             float* yr) {
  const int n = NR > 0 ? NR : n_rt;
  const V vdiv = V::set1(div), vrow = V::set1(rowf);
  for (int64_t o = 0; o < oW; o += V::N) {
    V acc = V::zero();
    for (int b = 0; b < n; ++b) acc = acc + V::load(rows[b] + o);
    const V y = acc / (div != 0.f ? vdiv : vrow * V::load(colf + o));
    if (o + V::N <= oW) y.store(yr + o);
    else y.store_tail(yr + o, static_cast<int>(oW - o));
  }
}

// The averages of a plane_s1_ok plane: each input row's kW-tap sums once into the ring, each output row the sum
// of its window rows' sums, divided. The row sums join before the window's sum, as on the other vector paths
// (the scalar window loop adds tap by tap: the last bits may differ).
template <class V, int KW>
void avg_plane_s1_rows(const PoolGeom& g, const AvgMode& m, const float* x, float* y, float* buf) {
  const int64_t H = g.in[1], oW = g.out[2], kH = g.k[1], kW = g.k[2], ph = g.p[1];
  const int64_t oWr = s1_row_floats(oW), rowlen = s1_row_floats(oW + kW + V::N);
  float* ring = buf + 2 * rowlen;  // kH rows of sums
  float* colf = ring + kH * oWr;   // s1_divisors' column counts (a ring of kH rows is reserved: one is used)
  const float div = s1_divisors(g, m, oWr, colf);
  auto row = [&](const float* xp, int64_t slot) { avg_row_s1<V, KW>(xp, kW, oWr, ring + slot * oWr); };
  auto join = [&](int64_t oh, int64_t, int n, int64_t slot) {
    const float* rows[kMaxS1Rows];
    for (int b = 0; b < n; ++b, slot = slot + 1 == kH ? 0 : slot + 1) rows[b] = ring + slot * oWr;
    const float rowf = s1_taps_inside(oh - ph, kH, H);
    float* yr = y + oh * oW;
    switch (n) {
      case 2: avg_join_rows_s1<V, 2>(rows, n, oW, div, rowf, colf, yr); break;
      case 3: avg_join_rows_s1<V, 3>(rows, n, oW, div, rowf, colf, yr); break;
      case 5: avg_join_rows_s1<V, 5>(rows, n, oW, div, rowf, colf, yr); break;
      default: avg_join_rows_s1<V, 0>(rows, n, oW, div, rowf, colf, yr); break;
    }
  };
  s1_ring_walk<V, false>(g, x, buf, rowlen, 0.f, row, join);
}

template <class V>
void avg_plane_s1(const PoolGeom& g, const AvgMode& m, const float* x, float* y) {
  float* buf = s1_scratch(g, 2);  // the sums' ring and the column divisors (one row)
  if (g.k[2] == 3) avg_plane_s1_rows<V, 3>(g, m, x, y, buf);
  else if (g.k[2] == 5) avg_plane_s1_rows<V, 5>(g, m, x, y, buf);
  else avg_plane_s1_rows<V, 0>(g, m, x, y, buf);
}

// Average-pool backward of a plane_s1_ok plane: gx = the box sum, kH x kW, of q = gy / divisor over the windows
// covering each element, which is a stride-1 sum pool of q with padding k - 1 - p (the box is its own flip):
// q into the thread's scratch plane, then avg_plane_s1_rows on it with divisor 1 (exact). Each element sums
// its windows' q row by row from +0 (torch adds them window by window into a zeroed plane: the last bits may
// differ; an all -0 gradient gives +0 in both).
template <class V>
void avg_backward_plane_s1(const PoolGeom& g, const AvgMode& m, const float* gy, float* gx) {
  const int64_t H = g.in[1], W = g.in[2], oH = g.out[1], oW = g.out[2], kH = g.k[1], kW = g.k[2];
  const int64_t ph = g.p[1], pw = g.p[2];
  const int64_t oWr = s1_row_floats(oW);
  thread_local std::vector<float> t_q;  // q (oH x oW), then s1_divisors' column counts
  if (t_q.size() < static_cast<size_t>(oH * oW + oWr)) t_q.resize(static_cast<size_t>(oH * oW + oWr));
  float* q = t_q.data();
  float* colf = q + oH * oW;
  const float div = s1_divisors(g, m, oWr, colf);
  const V vdiv = V::set1(div);
  for (int64_t oh = 0; oh < oH; ++oh) {
    const V vrow = V::set1(s1_taps_inside(oh - ph, kH, H));
    for (int64_t o = 0; o < oW; o += V::N) {
      const int n = static_cast<int>(std::min<int64_t>(V::N, oW - o));
      const V v = V::load_tail(gy + oh * oW + o, n) / (div != 0.f ? vdiv : vrow * V::load(colf + o));
      if (n == V::N) v.store(q + oh * oW + o);
      else v.store_tail(q + oh * oW + o, n);
    }
  }
  PoolGeom t = g;  // the sum pool of q: input (oH, oW), output (H, W), padding k - 1 - p
  t.in[1] = oH, t.in[2] = oW, t.out[1] = H, t.out[2] = W, t.p[1] = kH - 1 - ph, t.p[2] = kW - 1 - pw;
  const AvgMode sum{true, 1};
  float* buf = s1_scratch(t, 2);
  if (kW == 3) avg_plane_s1_rows<V, 3>(t, sum, q, gx, buf);
  else if (kW == 5) avg_plane_s1_rows<V, 5>(t, sum, q, gx, buf);
  else avg_plane_s1_rows<V, 0>(t, sum, q, gx, buf);
}

template <class V>
void max_plane_s1(const PoolGeom& g, const float* x, float* y, int64_t* idx) {
  float* buf = s1_scratch(g, 2);  // the winners' ring and their columns'
  auto run = [&](auto safe_c, auto idx_c) {
    constexpr bool S = decltype(safe_c)::value, I = decltype(idx_c)::value;
    if (g.k[2] == 3) return max_plane_s1_rows<V, S, I, 3>(g, x, y, idx, buf);
    if (g.k[2] == 5) return max_plane_s1_rows<V, S, I, 5>(g, x, y, idx, buf);
    return max_plane_s1_rows<V, S, I, 0>(g, x, y, idx, buf);
  };
  if (idx) run(std::true_type{}, std::true_type{});
  else if (!run(std::false_type{}, std::false_type{})) run(std::true_type{}, std::false_type{});
}

}  // namespace
}  // namespace fastml::pool_impl
