// Generic bodies of the pooling forward kernels (maths and contract: pool.h), included through
// pool_impl.h by pool_<isa>.cpp after that ISA's vec header; V is its VecF.
//
// Each output row (od, oh) is split along the output width: the columns whose windows lie inside the
// input in W (the interior) run vectorised, N outputs at a time: stride 1 with plain loads, stride 2
// by loading 2N floats and splitting them into even/odd lanes (with dilation 1 the odd half is the next
// tap), larger strides with gathers; taps of D and H outside the input are skipped for the whole row. Stride 2 with 2- or 3-wide windows
// (2x2 s2, 3x3 s2 p1) has unrolled rows that also take the left border column of 1-padded rows. The
// other border columns and planes of 2^24 elements or more run the scalar window loop. 2-D stride 1 (max
// values and indices, averages) is separable (pool_forward_s1.h: each input row's results once, then joined
// down the window rows).
// Max values and indices are the same on every path (the scan rule is order-exact); averages may
// differ in the last bits between paths (rows are summed before they join the window's sum).
//
// Max with indices keeps, per lane, the offset of the winning tap relative to the window origin as a
// float (exact below 2^24) and turns it into the flat index when the row is stored.
//
// This file: the planes (max_plane, avg_plane, mean_planes). pool_forward_rows.h: the window loop and the
// generic rows; pool_forward_s2.h: the stride-2 rows and their range kernels; pool_forward_s1.h: stride 1.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "ops/pool/pool_forward_s1.h"
#include "ops/pool/pool_forward_s2.h"

namespace fastml::pool_impl {
// Internal linkage: the non-template helpers below are compiled once per ISA with that ISA's flags and
// must never be merged across translation units (a linker-picked AVX-512 copy would run on any CPU).
namespace {

inline bool unrolled_ok(const PoolGeom& g) { return g.s[2] == 2 && g.d[2] == 1 && (g.k[2] == 2 || g.k[2] == 3); }

// 2-D 3x3 s2 windows (the rows of consecutive output rows overlap by one): RowCarry applies.
inline bool row_carry_ok(const PoolGeom& g) {
  return unrolled_ok(g) && g.k[2] == 3 && g.k[0] == 1 && g.k[1] == 3 && g.s[1] == 2 && g.d[1] == 1;
}

// The carry of one output row (oh, taps [b0, b1)) given the input row the previous one stored (-1: none);
// returns the input row this one stores.
inline int64_t next_carry(RowCarry& c, int64_t stored_row, int64_t sh, int64_t b0, int64_t b1) {
  c.load = stored_row >= 0 && stored_row == sh + b0;
  return sh + b1 - 1;
}

// After a max row computed in vectors from ow 0 with padding in W: a -inf result there may carry the padding
// tap's index; the scalar scan of that window gives torch's.
inline void first_index_fix(const PoolGeom& g, const float* x, int64_t sd, int64_t sh, float* yr, int64_t* ir) {
  if (ir && g.p[2] > 0 && yr[0] == -kInf) max_window(g, x, sd, sh, -g.p[2], yr, ir);
}

// 2-D 2x2 s2 windows that all lie inside the plane (ResNet's and VGG's pools without padding).
inline bool plane_s2k2_ok(const PoolGeom& g) {
  return g.out[0] == 1 && g.k[0] == 1 && g.p[0] == 0 && g.k[1] == 2 && g.s[1] == 2 && g.p[1] == 0 && g.d[1] == 1 &&
         g.k[2] == 2 && g.s[2] == 2 && g.p[2] == 0 && g.d[2] == 1 && 2 * g.out[1] <= g.in[1] &&
         2 * g.out[2] <= g.in[2] && vector_ok(g);
}

// The plane of plane_s2k2_ok (M: max values, max with indices, or averages with divisor div): every output row
// is the range kernel over its two input rows, with none of the per-row work of the general loops below (tap
// ranges, border windows, chunk split), which at W = 112 (seven vectors a row) took longer than the row's
// vectors (a row not a multiple of N ends in one partial chunk). Any max row whose probe finds a NaN or both
// infinities goes through row_s2_unrolled (torch's NaN steps): the same values and indices.
template <class V, RowMode M>
void plane_s2k2(const PoolGeom& g, const float* x, float* y, int64_t* idx, float div) {
  const int64_t W = g.in[2], oH = g.out[1], oW = g.out[2];  // every output's columns end at 2 oW <= W
  const float rowoff[2] = {0.f, static_cast<float>(W)};
  for (int64_t oh = 0; oh < oH; ++oh) {
    const float* rows[2] = {x + 2 * oh * W, x + (2 * oh + 1) * W};
    float* yrow = y + oh * oW;
    int64_t* irow = M == kMaxIdx ? idx + oh * oW : nullptr;
    __builtin_prefetch(rows[1] + 2 * W);
    bool nan = false;
    if constexpr (M == kAvg) avg_row_s2_values<V, 2, 2>(rows, 2, W, 0, oW, div, yrow, nullptr, false);
    else nan = max_row_s2_values<V, 2, 2, M == kMaxIdx>(rows, 2, W, 0, oW, yrow, irow, 2 * oh * W, rowoff);
    if (nan) row_s2_unrolled<V, 2, M>(g, x, 0, 2 * oh, 0, 1, 0, 2, 0, oW, div, yrow, irow);
  }
}

// 2-D 3x3 s2 windows with padding 1 on both axes (ResNet's stem pool) none of which reaches past the input's
// last row or column (2 out <= in: even sizes without ceil_mode), at least one pair of rows and one vector.
inline bool plane_s2k3_ok(const PoolGeom& g) {
  return g.out[0] == 1 && g.k[0] == 1 && g.p[0] == 0 && g.k[1] == 3 && g.s[1] == 2 && g.p[1] == 1 && g.d[1] == 1 &&
         g.k[2] == 3 && g.s[2] == 2 && g.p[2] == 1 && g.d[2] == 1 && 2 * g.out[1] <= g.in[1] &&
         2 * g.out[2] <= g.in[2] && g.in[1] >= 5 && g.in[2] >= 16 && vector_ok(g);
}

// The plane of plane_s2k3_ok, max values (IDX: and indices): the output rows from 1 on in pairs that share
// their middle input row, each pair one range-kernel call (max_rows_pair_s2k3_values) over the columns whose
// taps it reads whole (the left padding column included; output ow's taps end at column 2 ow + 1 < 2 oW <= W)
// -- none of the per-row work of max_plane's general loop. Row 0 (its top tap row is padding), a last row
// without a pair and any pair whose probe finds a NaN or both infinities take max_plane's own per-row calls:
// the same values and indices.
template <class V, bool IDX>
void plane_s2k3(const PoolGeom& g, const float* x, float* y, int64_t* idx) {
  const int64_t H = g.in[1], W = g.in[2], oH = g.out[1], oW = g.out[2];
  auto single = [&](int64_t oh) {  // one output row through the general row kernel
    const int64_t sh = 2 * oh - 1;
    int64_t b0, b1;
    valid_taps(sh, 3, 1, H, b0, b1);
    float* yr = y + oh * oW;
    int64_t* ir = IDX ? idx + oh * oW : nullptr;
    row_s2_unrolled<V, 3, IDX ? kMaxIdx : kMax>(g, x, 0, sh, 0, 1, b0, b1, 0, oW, 0.f, yr, ir);
    first_index_fix(g, x, 0, sh, yr, ir);
  };
  single(0);
  int64_t oh = 1;
  for (; oh + 1 < oH && 2 * oh - 1 + 5 <= H; oh += 2) {
    const int64_t sh = 2 * oh - 1;
    float* y0 = y + oh * oW;
    int64_t* i0 = IDX ? idx + oh * oW : nullptr;
    __builtin_prefetch(x + (sh + 6) * W);
    __builtin_prefetch(x + (sh + 7) * W);
    const bool nan = max_rows_pair_s2k3_values<V, IDX>(x + sh * W, W, -1, oW, y0, y0 + oW, i0,
                                                        IDX ? i0 + oW : nullptr, sh * W - 1);
    if (nan) max_rows_pair_s2k3<V, IDX>(g, x, 0, sh, 0, oW, y0, y0 + oW, i0, IDX ? i0 + oW : nullptr);
    if (IDX)
      for (int i = 0; i < 2; ++i) first_index_fix(g, x, 0, sh + 2 * i, y0 + i * oW, i0 + i * oW);
  }
  for (; oh < oH; ++oh) single(oh);
}

template <class V>
void max_plane(const PoolGeom& g, const float* x, float* y, int64_t* idx) {
  if (plane_s1_ok(g)) return max_plane_s1<V>(g, x, y, idx);
  if (plane_s2k2_ok(g)) {  // max_pool2d 2x2 s2 on 1x8x112x112, one thread (AVX2): 33 -> 11.6 us
    if (idx) plane_s2k2<V, kMaxIdx>(g, x, y, idx, 0.f);
    else plane_s2k2<V, kMax>(g, x, y, nullptr, 0.f);
    return;
  }
  if (plane_s2k3_ok(g)) {
    if (idx) plane_s2k3<V, true>(g, x, y, idx);
    else plane_s2k3<V, false>(g, x, y, nullptr);
    return;
  }
  const int64_t oW = g.out[2];
  int64_t lo = 0, hi = 0;
  const bool vec = vector_ok(g);
  if (vec) {
    interior(g, lo, hi);
  }
  for (int64_t od = 0; od < g.out[0]; ++od) {
    const int64_t sd = od * g.s[0] - g.p[0];
    int64_t a0, a1;
    valid_taps(sd, g.k[0], g.d[0], g.in[0], a0, a1);
    // 3x3 s2: output rows in pairs where both have all their tap rows (the shared row once)
    const bool pairs = vec && unrolled_ok(g) && g.k[2] == 3 && g.k[1] == 3 && g.s[1] == 2 && g.d[1] == 1 &&
                       a1 - a0 == 1 && hi > lo;
    int64_t paired = -1;  // the output row whose vector part the previous row's pair computed
    for (int64_t oh = 0; oh < g.out[1]; ++oh) {
      const int64_t sh = oh * g.s[1] - g.p[1];
      int64_t b0, b1;
      valid_taps(sh, g.k[1], g.d[1], g.in[1], b0, b1);
      const int64_t o = (od * g.out[1] + oh) * oW;
      float* yrow = y + o;
      int64_t* irow = idx ? idx + o : nullptr;
      if (pairs && oh != paired && oh + 1 < g.out[1] && sh >= 0 && sh + 5 <= g.in[1]) {
        const int64_t vlo = g.p[2] == 1 ? 0 : lo, sd0 = sd + a0 * g.d[0];
        if (irow) max_rows_pair_s2k3<V, true>(g, x, sd0, sh, vlo, hi, yrow, yrow + oW, irow, irow + oW);
        else max_rows_pair_s2k3<V, false>(g, x, sd0, sh, vlo, hi, yrow, yrow + oW, nullptr, nullptr);
        if (vlo == 0)
          for (int i = 0; i < 2; ++i)
            first_index_fix(g, x, sd, sh + 2 * i, yrow + i * oW, irow ? irow + i * oW : nullptr);
        paired = oh + 1;
      }
      const bool rowvec = vec && a1 > a0 && b1 > b0 && hi > lo;
      // unrolled rows also take the left border column of a 1-padded row (lane 0 reads -inf padding)
      const int64_t vlo = rowvec && unrolled_ok(g) && g.p[2] == 1 ? 0 : lo;
      for (int64_t ow = 0; ow < oW; ++ow) {
        if (rowvec && ow == vlo) ow = hi;
        if (ow >= oW) break;
        max_window(g, x, sd, sh, ow * g.s[2] - g.p[2], yrow + ow, irow ? irow + ow : nullptr);
      }
      if (!rowvec || oh == paired || (pairs && oh + 1 == paired)) continue;  // (the pair wrote it)
      if (unrolled_ok(g)) {
        const int64_t lo = vlo;
        if (g.k[2] == 2) {
          if (irow) row_s2_unrolled<V, 2, kMaxIdx>(g, x, sd, sh, a0, a1, b0, b1, lo, hi, 0.f, yrow, irow);
          else row_s2_unrolled<V, 2, kMax>(g, x, sd, sh, a0, a1, b0, b1, lo, hi, 0.f, yrow, irow);
        } else {
          if (irow) row_s2_unrolled<V, 3, kMaxIdx>(g, x, sd, sh, a0, a1, b0, b1, lo, hi, 0.f, yrow, irow);
          else row_s2_unrolled<V, 3, kMax>(g, x, sd, sh, a0, a1, b0, b1, lo, hi, 0.f, yrow, irow);
        }
        if (lo == 0) first_index_fix(g, x, sd, sh, yrow, irow);
      } else if (g.s[2] == 1) max_row_vec<V, 1>(g, x, sd, sh, a0, a1, b0, b1, lo, hi, yrow, irow);
      else if (g.s[2] == 2) max_row_vec<V, 2>(g, x, sd, sh, a0, a1, b0, b1, lo, hi, yrow, irow);
      else if (!irow && wide_ok(g)) row_wide<V, true>(g, x, sd, sh, a0, a1, b0, b1, lo, hi, 0.f, yrow);
      else max_row_vec<V, 0>(g, x, sd, sh, a0, a1, b0, b1, lo, hi, yrow, irow);
    }
  }
}

// The averages of a plane_s2k3_ok plane: each output row one range-kernel call over its valid tap rows, with the
// carried sum of the input row it shares with the previous output row (cbuf, RowCarry), divided by the row's
// interior divisor -- none of the per-row work of avg_plane's general loop. Every row splits its columns the
// same way (one range of oW outputs: output ow's taps end at column 2 ow + 1 < 2 oW <= W), so the carried sums
// keep their lane order; the left border column without count_include_pad is recomputed as the general loop
// does. Same bits.
template <class V>
void avg_plane_s2k3(const PoolGeom& g, const AvgMode& m, const float* x, float* y, float* cbuf) {
  const int64_t H = g.in[1], W = g.in[2], oH = g.out[1], oW = g.out[2];
  RowCarry carry{cbuf, false};
  int64_t stored = -1;
  for (int64_t oh = 0; oh < oH; ++oh) {
    const int64_t sh = 2 * oh - 1;
    int64_t b0, b1;
    valid_taps(sh, 3, 1, H, b0, b1);
    const int64_t st[3] = {0, sh, 1};  // a window of an interior column (ow >= 1)
    const float div = avg_divisor(g, m, st);
    stored = next_carry(carry, stored, sh, b0, b1);
    float* yrow = y + oh * oW;
    const float* rows[3];
    int nrows = 0;
    for (int64_t b = b0; b < b1; ++b) rows[nrows++] = x + (sh + b) * W;
    if (nrows == 3) avg_row_s2_values<V, 3, 3>(rows, 3, W, -1, oW, div, yrow, cbuf, carry.load);
    else avg_row_s2_values<V, 3>(rows, nrows, W, -1, oW, div, yrow, cbuf, carry.load);
    if (!m.count_include_pad && m.divisor == 0) yrow[0] = avg_window(g, m, x, 0, sh, -1);
  }
}

template <class V>
void avg_plane(const PoolGeom& g, const AvgMode& m, const float* x, float* y) {
  if (plane_s1_ok(g)) return avg_plane_s1<V>(g, m, x, y);
  if (plane_s2k2_ok(g)) {  // every window is whole: one divisor
    const int64_t st[3] = {0, 0, 0};
    plane_s2k2<V, kAvg>(g, x, y, nullptr, avg_divisor(g, m, st));
    return;
  }
  const int64_t oW = g.out[2];
  int64_t lo = 0, hi = 0;
  const bool vec = vector_ok(g);
  if (vec) {
    interior(g, lo, hi);
  }
  thread_local std::vector<float> t_carry;
  RowCarry carry{nullptr, false};
  if (vec && row_carry_ok(g)) {
    // the range kernels store whole vectors of carried sums: up to N slots past the row's last output
    const size_t need = static_cast<size_t>(std::max(hi, oW) + V::N);
    if (t_carry.size() < need) t_carry.resize(need);
    carry.buf = t_carry.data();
  }
  if (carry.buf && plane_s2k3_ok(g)) return avg_plane_s2k3<V>(g, m, x, y, carry.buf);
  for (int64_t od = 0; od < g.out[0]; ++od) {
    const int64_t sd = od * g.s[0] - g.p[0];
    int64_t a0, a1;
    valid_taps(sd, g.k[0], 1, g.in[0], a0, a1);
    int64_t stored = -1;  // the input row whose sums carry.buf holds
    for (int64_t oh = 0; oh < g.out[1]; ++oh) {
      const int64_t sh = oh * g.s[1] - g.p[1];
      int64_t b0, b1;
      valid_taps(sh, g.k[1], 1, g.in[1], b0, b1);
      float* yrow = y + (od * g.out[1] + oh) * oW;
      const bool rowvec = vec && a1 > a0 && b1 > b0 && hi > lo;
      const int64_t vlo = rowvec && unrolled_ok(g) && g.p[2] == 1 ? 0 : lo;
      for (int64_t ow = 0; ow < oW; ++ow) {
        if (rowvec && ow == vlo) ow = hi;
        if (ow >= oW) break;
        yrow[ow] = avg_window(g, m, x, sd, sh, ow * g.s[2] - g.p[2]);
      }
      if (!rowvec) {
        stored = -1;
        continue;
      }
      // interior columns share one divisor (their W extent is the whole kernel)
      const int64_t st[3] = {sd, sh, lo * g.s[2] - g.p[2]};
      const float div = avg_divisor(g, m, st);
      if (unrolled_ok(g)) {
        if (g.k[2] == 2) row_s2_unrolled<V, 2, kAvg>(g, x, sd, sh, a0, a1, b0, b1, vlo, hi, div, yrow, nullptr);
        else if (carry.buf) {
          stored = next_carry(carry, stored, sh, b0, b1);
          row_s2_unrolled<V, 3, kAvg>(g, x, sd, sh, a0, a1, b0, b1, vlo, hi, div, yrow, nullptr, &carry);
        } else {
          row_s2_unrolled<V, 3, kAvg>(g, x, sd, sh, a0, a1, b0, b1, vlo, hi, div, yrow, nullptr);
        }
        // the border column's divisor differs when padding is not counted
        if (vlo < lo && !m.count_include_pad && m.divisor == 0) yrow[0] = avg_window(g, m, x, sd, sh, -g.p[2]);
      } else if (g.s[2] == 1) avg_row_vec<V, 1>(g, x, sd, sh, a0, a1, b0, b1, lo, hi, div, yrow);
      else if (g.s[2] == 2) avg_row_vec<V, 2>(g, x, sd, sh, a0, a1, b0, b1, lo, hi, div, yrow);
      else if (wide_ok(g)) row_wide<V, false>(g, x, sd, sh, a0, a1, b0, b1, lo, hi, div, yrow);
      else avg_row_vec<V, 0>(g, x, sd, sh, a0, a1, b0, b1, lo, hi, div, yrow);
    }
  }
}

// One plane's lane sums (the accumulator mean_planes reduces).
template <class V>
inline V plane_lanes(int64_t n, const float* x) {
  V acc = V::zero();
  int64_t i = 0;
  for (; i + V::N <= n; i += V::N) acc = acc + V::load(x + i);
  if (i < n) acc = acc + V::load_tail(x + i, static_cast<int>(n - i));
  return acc;
}

template <class V>
void mean_planes(int64_t planes, int64_t n, const float* x, float* y) {
  const float fn = static_cast<float>(n);
  for (int64_t i = 0; i < planes; ++i) y[i] = plane_lanes<V>(n, x + i * n).hsum() / fn;
}

}  // namespace
}  // namespace fastml::pool_impl
