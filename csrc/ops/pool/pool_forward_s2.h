// Pooling forward, stride-2 rows of 2- and 3-wide windows (2x2 s2, 3x3 s2 p1): the per-chunk scans, the
// paired 3x3 rows and the range kernels over whole output rows (pool_forward_impl.h has the planes).
// Test: pytest tests/test_pool.py
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "ops/pool/pool_forward_rows.h"

namespace fastml::pool_impl {
// Internal linkage: the non-template helpers below are compiled once per ISA with that ISA's flags and
// must never be merged across translation units (a linker-picked AVX-512 copy would run on any CPU).
namespace {

// ---- stride 2, dilation 1, 2- or 3-wide windows (2x2 s2, 3x3 s2 p1, ...): the taps of each kernel row
// are unrolled and reduced on their own before they join the window's running result, so the rows of a
// window are independent chains. kMax: values only; kMaxIdx: values + tap offsets; kAvg: sums. With
// 3-wide windows the third tap of each lane is the first tap of the next lane, moved down one lane
// (max_pool2d 3x3 s2 p1 on 8x64x112x112: 1.05-1.11 -> 0.96 ms against a second pair of loads, which
// split cache lines at odd offsets).
// The row-then-window order is the scan order, so the max rule (first maximum, last NaN) is unchanged.
enum RowMode { kMax, kMaxIdx, kAvg };
// Each chunk also prefetches its two lines kPrefetchRows input rows below. A row of a typical plane is a
// few cache lines (7 at W = 112) and the rows a window row reads are W apart, streams too short for the
// hardware prefetchers to ramp up: 2x2 s2 max/avg on 8x64x112x112 took 0.77 ms without this and 0.64-0.67
// with it (2 threads; 2, 4 and 8 rows ahead measured alike).
inline constexpr int64_t kPrefetchRows = 4;
inline constexpr int kHoistRows = 16;

// 3x3 s2 windows share an input row with the next output row: for averages that row's sum over its three
// taps (per chunk) is kept in `buf` by one output row (store) and read back by the next (load) instead of
// being computed again; the value is the one the row would compute, so results are bitwise the same.
// avg_pool2d 3x3 s2 p1 on 8x64x112x112: 1.00-1.02 -> 0.86-0.91 ms. The same for max (values only) measured
// 3-10% slower than reducing the row again, and within the noise once the third tap came from a lane
// shift, so max does not carry.
struct RowCarry {
  float* buf;  // >= hi + N floats, indexed by the chunk's first output column
  bool load;   // the first valid kernel row of this output row is the one stored by the previous
};

// The taps of one kernel row for a chunk of up to N outputs of stride 2 (row_s2_unrolled): t0, t1 (and t2
// for KW = 3) are each lane's first, second (and third) tap; r is the row at the chunk's first tap, pos its
// column (< 0: padding, read as `fill`), m0 / m1 the row's columns from the first / third tap. Returns the
// extra element t2's last lane takes (0 when that lane is past the row).
template <class V, int KW>
[[gnu::always_inline]] inline float load_taps_s2(const float* r, int64_t pos, int m0, int m1, float fill, V& t0, V& t1,
                                                 V& t2) {
  if (pos < 0)  // the chunk at ow 0 of a padded row: lane 0's first tap is padding
    V::load2_deinterleave_from(r, static_cast<int>(-pos), m0, fill, t0, t1);
  else
    V::load2_deinterleave(r, m0, t0, t1);
  float extra = 0.f;
  // the third tap of lane l is the first of lane l + 1: shifted in from the first, plus one element (read
  // only where the top lane is an output), instead of a second (line-splitting) pair of loads
  if constexpr (KW == 3) {
    extra = m1 >= 2 * V::N - 1 ? r[2 * V::N] : 0.f;
    t2 = shift_down(t0, extra);
  }
  return extra;
}

// Torch's max scan over one kernel row's KW taps, in order: a later tap wins when strictly greater or
// (SAFE) NaN; without SAFE, plain max, the same whenever no tap is NaN (the callers check). Returns the row's
// result; IDX: col = the winning tap's column, 0 .. KW - 1, as a float.
template <class V, int KW, bool SAFE, bool IDX>
[[gnu::always_inline]] inline V row_taps_max(V t0, V t1, V t2, V& col) {
  if constexpr (IDX) {
    auto wins = [](V t, V v) { return SAFE ? cmp_gt_or_nan(t, v) : cmp_gt(t, v); };
    const auto k1 = wins(t1, t0);
    V v = select(k1, t1, t0);
    col = select(k1, V::set1(1.f), V::zero());
    if constexpr (KW == 3) {
      const auto k2 = wins(t2, v);
      v = select(k2, t2, v);
      col = select(k2, V::set1(2.f), col);
    }
    return v;
  } else if constexpr (SAFE) {
    V rm = nan_max(t0, t1);
    if constexpr (KW == 3) rm = nan_max(rm, t2);
    return rm;
  } else {
    V rm = max(t1, t0);
    if constexpr (KW == 3) rm = max(t2, rm);
    return rm;
  }
}

// The same scan step across kernel rows: a later row's result rv (IDX: its winning tap's offset rt from the
// window's first tap) into the running (acc, at); the first row sets them.
template <class V, bool SAFE, bool IDX>
[[gnu::always_inline]] inline void merge_row(V rv, V rt, bool first, V& acc, V& at) {
  if (first) {
    acc = rv;
    at = rt;
  } else if constexpr (IDX) {
    const auto k = SAFE ? cmp_gt_or_nan(rv, acc) : cmp_gt(rv, acc);
    acc = select(k, rv, acc);
    at = select(k, rt, at);
  } else {
    acc = SAFE ? nan_max(acc, rv) : max(rv, acc);
  }
}

// A chunk's n maxima into y and, when idx is given, their flat indices: lane l's window starts at
// origin + 2 l, at_l is its winning tap's offset from there (exact in float: the plane is below 2^24).
template <class V>
inline void store_max_chunk(V acc, V at, int n, float* y, int64_t* idx, int64_t origin) {
  if (n == V::N) acc.store(y); else acc.store_tail(y, n);
  if (!idx) return;
  if (n == V::N) {  // lane l's window starts 2 l after lane 0's: that offset added in float (exact below 2^24)
    static constexpr float kRamp2[16] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    (at + V::load(kRamp2)).store_i64(idx, origin);
    return;
  }
  float rel[V::N];
  at.store(rel);
  for (int l = 0; l < n; ++l) idx[l] = origin + 2 * l + static_cast<int64_t>(rel[l]);
}

// One chunk of up to N outputs of a max row (row_s2_unrolled's taps, in scan order); IDX: also `at`, each
// lane's winning tap as a float offset from its window's first tap. SAFE: torch's scan step (a later NaN
// wins, a NaN stays). Else the NaN-free step (plain max; a strictly greater later tap wins), which is the
// same whenever no tap is NaN, and `probe` sums every tap: NaN when a tap is NaN, or when +inf and -inf both
// occur, and the caller then redoes the chunk with SAFE (the extra tap of 3-wide windows is checked on its
// own). The NaN handling is 2 of the 3 vector ops of a values step, its compares on the port the
// deinterleave's shuffles need: max_pool2d 3x3 s2 p1 on 8x64x112x112, 0.93 -> 0.79 ms.
template <class V, int KW, bool SAFE, bool IDX>
V max_chunk_s2(const PoolGeom& g, const float* x, int64_t sd, int64_t sh, int64_t a0, int64_t a1, int64_t b0,
               int64_t b1, int64_t pos, int m0, int m1, V& probe, bool& extra_nan, V& at) {
  const int64_t H = g.in[1], W = g.in[2];
  V acc = V::zero();
  bool first = true;
  for (int64_t a = a0; a < a1; ++a)
    for (int64_t b = b0; b < b1; ++b, first = false) {
      const float* r = x + ((sd + a * g.d[0]) * H + sh + b * g.d[1]) * W + pos;
      if (!SAFE) {
        __builtin_prefetch(r + kPrefetchRows * W);
        __builtin_prefetch(r + kPrefetchRows * W + 16);
      }
      V t0, t1, t2 = V::zero(), col = V::zero();
      const float extra = load_taps_s2<V, KW>(r, pos, m0, m1, -kInf, t0, t1, t2);
      if (!SAFE) {
        extra_nan |= extra != extra;
        probe = probe + t0 + t1;
      }
      const V rv = row_taps_max<V, KW, SAFE, IDX>(t0, t1, t2, col);
      if constexpr (IDX) col = col + V::set1(static_cast<float>((a * g.d[0] * H + b * g.d[1]) * W));  // offset
      merge_row<V, SAFE, IDX>(rv, col, first, acc, at);
    }
  return acc;
}

// The range kernels below (max_row_s2_values, max_rows_pair_s2k3_values, avg_row_s2_values) take a run of
// `len` outputs, chunk by chunk, the last chunk partial (masked loads and stores) when len is not a multiple
// of N. On AVX2, one Zen 3 core, 64 planes of 112x112 (input in L3): 2x2 s2 max 0.43 -> 0.16-0.18 ms (with
// indices 0.69 -> 0.30 ms), the paired 3x3 s2 p1 max rows 0.23 -> 0.18 ms (with indices 0.54 -> 0.35 ms
// through the Python call), 2x2 s2 average 0.24 -> 0.15 ms, 3x3 s2 p1 average 0.39 -> 0.30 ms (a quarter of
// that is its one division per output vector, which torch's bits need). On AVX-512 (Zen 4, 8x64x112x112, 2
// threads) they replace the per-chunk path, which took 0.78 ms for 2x2 s2 max; the partial last chunk matters
// there: 56 outputs a row are three whole 16-lane chunks and half of one.

// The lines of a chunk's 2 N input columns from p, a few rows ahead of the loads (the hardware prefetchers
// alone left a single core's 2x2 s2 pass over 8x64x112x112 at ~11 GB/s, a third of what a copy reads).
template <class V>
[[gnu::always_inline]] inline void prefetch_taps(const float* p) {
  for (int k = 0; k < 2 * V::N; k += 16) __builtin_prefetch(p + k);
}

// load_taps_s2 in load2_deinterleave_lanes' lane order, for the range kernels, n <= N outputs: r is the tap
// row (width W) at the chunk's first tap, pos its column (< 0: padding, read as `fill`, in the ow-0 chunk
// only); t2 (KW = 3) the even lanes two columns on: a whole chunk's from t0 and the one column after its taps
// (V::next_even_lanes), a partial chunk's loaded (V::load_even_lanes); nothing is read past the chunk's last
// tap, which range_outputs keeps inside the row. Lanes past n read 0. Prefetches the lines kPrefetchRows rows
// below.
template <class V, int KW, bool FULL>
[[gnu::always_inline]] inline void load_taps_s2_lanes(const float* r, int64_t W, int64_t pos, float fill, int n, V& t0,
                                                      V& t1, V& t2) {
  prefetch_taps<V>(r + kPrefetchRows * W);
  if constexpr (FULL) {
    if (pos < 0) V::load2_deinterleave_lanes_from(r, static_cast<int>(-pos), fill, t0, t1);
    else V::load2_deinterleave_lanes(r, t0, t1);
    if constexpr (KW == 3) t2 = V::next_even_lanes(t0, r[2 * V::N]);
    return;
  }
  if (pos < 0) V::load2_deinterleave_lanes_from(r, static_cast<int>(-pos), fill, t0, t1, 2 * n);
  else V::load2_deinterleave_lanes(r, 2 * n, t0, t1);
  if constexpr (KW == 3) t2 = V::load_even_lanes(r + 2, 2 * n - 1);
}

// A chunk's outputs, in order, from its lanes in load2_deinterleave_lanes' order: all N, or the first n.
template <bool FULL, class V>
[[gnu::always_inline]] inline void store_lanes(V acc, int n, float* y) {
  if constexpr (FULL) acc.in_order().store(y); else acc.in_order().store_tail(y, n);
}

// A range kernel's chunks of `len` outputs: body(c, n, full) for chunk c of n outputs, full a
// std::bool_constant (n == N), so the whole chunks' loop has no mask and no branch.
template <class V, class Body>
[[gnu::always_inline]] inline void for_chunks(int64_t len, Body&& body) {
  int64_t c = 0;
  for (; (c + 1) * V::N <= len; ++c) body(c, V::N, std::true_type{});
  if (c * V::N < len) body(c, static_cast<int>(len - c * V::N), std::false_type{});
}

// The range kernels' split of an output row's columns [ow0, hi) (stride 2, padding p, rows of width W): runs
// `chunk` on the leading chunks whose first tap lies further left than the one padding column
// load_taps_s2_lanes takes, advancing ow0 past them, then returns how many outputs from ow0 on have every
// other tap inside the row (the range kernels' `len`). Every output row of a plane splits alike.
template <class V, int KW, class Chunk>
int64_t range_outputs(int64_t& ow0, int64_t hi, int64_t p, int64_t W, Chunk&& chunk) {
  for (; ow0 < hi && 2 * ow0 - p < 1 - V::N; ow0 += V::N) chunk(ow0);
  // output ow's taps end at column 2 ow - p + KW - 1
  const int64_t fit = W - KW + p < 0 ? 0 : (W - KW + p) / 2 + 1;  // outputs [0, fit) end inside the row
  int64_t len = std::max<int64_t>(0, std::min(hi, fit) - ow0);
  // a partial last chunk only where the range reaches hi: the per-chunk path after it starts a chunk further
  // on, and with 3x3 averages the carried sums of a partial chunk (lane order, all N slots) stay whole
  if (ow0 + len < hi) len -= len % V::N;
  return len;
}

// The 3-wide range kernels' NaN probe sums t0 and t1 only: t2's taps (columns pos + 2, ..., pos + 2n of a
// chunk) are t0's of the same chunk and of the next, but for the last chunk's column pos0 + 2 len. Whether
// that column holds a NaN in any of the nrows rows from r (width W); len > 0.
inline bool range_probe_tail(const float* r, int64_t W, int nrows, int64_t pos0, int64_t len) {
  bool nan = false;
  for (int b = 0; b < nrows; ++b) nan |= std::isnan(r[b * W + pos0 + 2 * len]);
  return nan;
}

// max_rows_pair_s2k3's values, `len` outputs a row from column pos0 of the five input rows from r of width
// W (every tap inside them but for padding left of column 0 in the first chunk, read as -inf), in the manner
// of max_row_s2_values: the shared
// row's three-tap max reduced once, lanes in load2_deinterleave_lanes' order until the stores, one NaN probe
// for the range (true: the caller redoes it with torch's steps).
// IDX: also the flat indices of both rows (i0, i1; origin0 the flat position of column pos0 in row r).
template <class V, bool IDX = false>
bool max_rows_pair_s2k3_values(const float* r, int64_t W, int64_t pos0, int64_t len, float* y0, float* y1,
                               int64_t* i0 = nullptr, int64_t* i1 = nullptr, int64_t origin0 = 0) {
  const V rel[3] = {V::zero(), V::set1(static_cast<float>(W)), V::set1(static_cast<float>(2 * W))};
  V probe = V::zero();
  for_chunks<V>(len, [&](int64_t c, int n, auto full) {
    constexpr bool kFull = decltype(full)::value;
    const int64_t pos = pos0 + 2 * V::N * c;
    V rm[5], cm[5], sum = V::zero();
    for (int b = 0; b < 5; ++b) {
      V t0, t1, t2;
      load_taps_s2_lanes<V, 3, kFull>(r + b * W + pos, W, pos, -kInf, n, t0, t1, t2);
      sum = sum + (t0 + t1);  // t2's taps: t0's of this chunk and the next (range_probe_tail: the last one)
      cm[b] = V::zero();
      rm[b] = row_taps_max<V, 3, false, IDX>(t0, t1, t2, cm[b]);
    }
    probe = probe + sum;
    for (int o = 0; o < 2; ++o) {  // output o's tap rows are input rows 2 o .. 2 o + 2
      V acc, at;
      for (int i = 0; i < 3; ++i) {
        V rt = cm[2 * o + i];
        if constexpr (IDX) rt = rt + rel[i];  // the tap's offset from the window's first tap
        merge_row<V, false, IDX>(rm[2 * o + i], rt, i == 0, acc, at);
      }
      float* y = (o == 0 ? y0 : y1) + c * V::N;
      if constexpr (IDX)
        store_max_chunk(acc.in_order(), at.in_order(), n, y, (o == 0 ? i0 : i1) + c * V::N,
                        origin0 + 2 * V::N * c + 2 * o * W);
      else
        store_lanes<kFull>(acc, n, y);
    }
  });
  return V::mask_any(is_nan(probe)) || range_probe_tail(r, W, 5, pos0, len);
}

// Two consecutive output rows of 3x3 s2 windows (IDX: with indices), every tap row inside the input
// (input rows sh .. sh + 4, one depth row): the row both share (the last tap row of the first, the first of
// the second) is reduced once and enters both scans, which are otherwise max_chunk_s2's NaN-free steps (the
// same values and taps in the same order: the same bits); a NaN probe redoes the chunk's two outputs with
// torch's steps. 8x64x112x112 values: 0.85 -> 0.67-0.72 ms.
template <class V, bool IDX>
void max_rows_pair_s2k3(const PoolGeom& g, const float* x, int64_t sd, int64_t sh, int64_t lo, int64_t hi,
                        float* y0, float* y1, int64_t* i0, int64_t* i1) {
  const int64_t H = g.in[1], W = g.in[2], p = g.p[2];
  const V rel[3] = {V::zero(), V::set1(static_cast<float>(W)), V::set1(static_cast<float>(2 * W))};
  auto chunk = [&](int64_t ow0) {
    const int n = static_cast<int>(std::min<int64_t>(V::N, hi - ow0));
    const int64_t pos = 2 * ow0 - p;
    const int m0 = static_cast<int>(std::min<int64_t>(2 * V::N, W - pos));
    const int m1 = static_cast<int>(std::min<int64_t>(2 * V::N, W - pos - 2));
    V probe = V::zero(), rm[5], rc[5];  // each input row's three-tap result and (IDX) its tap column
    bool extra_nan = false;
    for (int b = 0; b < 5; ++b) {
      const float* r = x + (sd * H + sh + b) * W + pos;
      __builtin_prefetch(r + kPrefetchRows * W);
      __builtin_prefetch(r + kPrefetchRows * W + 16);
      V t0, t1, t2;
      const float extra = load_taps_s2<V, 3>(r, pos, m0, m1, -kInf, t0, t1, t2);
      extra_nan |= extra != extra;
      probe = probe + t0 + t1;
      rc[b] = V::zero();
      rm[b] = row_taps_max<V, 3, false, IDX>(t0, t1, t2, rc[b]);
    }
    V acc[2], at[2];
    for (int o = 0; o < 2; ++o)  // output o's tap rows are input rows 2 o .. 2 o + 2
      for (int i = 0; i < 3; ++i) {
        V rt = rc[2 * o + i];
        if constexpr (IDX) rt = rt + rel[i];  // the tap's offset from the window's first tap
        merge_row<V, false, IDX>(rm[2 * o + i], rt, i == 0, acc[o], at[o]);
      }
    if (extra_nan || V::mask_any(is_nan(probe)))
      for (int o = 0; o < 2; ++o)
        acc[o] = max_chunk_s2<V, 3, true, IDX>(g, x, sd, sh + 2 * o, 0, 1, 0, 3, pos, m0, m1, probe, extra_nan,
                                               at[o]);
    const int64_t origin = (sd * H + sh) * W + pos;
    store_max_chunk(acc[0], at[0], n, y0 + ow0, IDX ? i0 + ow0 : nullptr, origin);
    store_max_chunk(acc[1], at[1], n, y1 + ow0, IDX ? i1 + ow0 : nullptr, origin + 2 * W);
  };
  int64_t ow0 = lo;
  const int64_t len = range_outputs<V, 3>(ow0, hi, p, W, chunk);  // the outputs with every tap inside the rows
  if (len > 0) {
    const int64_t origin = (sd * H + sh) * W + 2 * ow0 - p;
    if (max_rows_pair_s2k3_values<V, IDX>(x + (sd * H + sh) * W, W, 2 * ow0 - p, len, y0 + ow0, y1 + ow0,
                                          IDX ? i0 + ow0 : nullptr, IDX ? i1 + ow0 : nullptr, origin))
      for (int64_t c = 0; c * V::N < len; ++c) chunk(ow0 + c * V::N);  // a NaN or +-inf: torch's steps
    ow0 += len;
  }
  for (; ow0 < hi; ow0 += V::N) chunk(ow0);
}

// `len` stride-2 max outputs, N a chunk, from column pos0 of the nrows tap rows of width W,
// every tap inside the rows but for padding left of column 0 in the first chunk (read as -inf). The
// deinterleave's lanes stay in V::load2_deinterleave_lanes' order until the store, and one NaN
// probe (the sum of every tap) covers the whole range: returns true when it is NaN (a NaN tap, or +inf and
// -inf together), and the caller then redoes the range with torch's NaN steps. Plain max elsewhere is
// torch's scan: a later tap wins only when strictly greater (max(t, acc) keeps acc on ties).
// IDX: also the flat indices (idx; origin0 the flat position of column pos0 in the first tap row, rowoff[i]
// tap row i's offset from it), each lane's winning tap tracked as in max_chunk_s2 and put in order with it.
template <class V, int KW, int NR = 0, bool IDX = false>
bool max_row_s2_values(const float* const* rows, int nrows, int64_t W, int64_t pos0, int64_t len, float* y,
                       int64_t* idx = nullptr, int64_t origin0 = 0, const float* rowoff = nullptr) {
  if constexpr (NR > 0) nrows = NR;  // the usual 2-D rows: a fixed trip count, unrolled
  V probe = V::zero();
  for_chunks<V>(len, [&](int64_t c, int n, auto full) {
    constexpr bool kFull = decltype(full)::value;
    const int64_t pos = pos0 + 2 * V::N * c;
    V acc = V::zero(), sum = V::zero(), at = V::zero();
    for (int i = 0; i < nrows; ++i) {
      V t0, t1, t2 = V::zero();
      load_taps_s2_lanes<V, KW, kFull>(rows[i] + pos, W, pos, -kInf, n, t0, t1, t2);
      const V s = t0 + t1;  // KW = 3: t2's taps are t0's of this chunk and the next (range_probe_tail: the last one)
      sum = i == 0 ? s : sum + s;
      V col = V::zero();
      const V rv = row_taps_max<V, KW, false, IDX>(t0, t1, t2, col);
      if constexpr (IDX) col = col + V::set1(rowoff[i]);  // the tap's offset from the window's first tap
      merge_row<V, false, IDX>(rv, col, i == 0, acc, at);
    }
    probe = probe + sum;
    if constexpr (IDX)
      store_max_chunk(acc.in_order(), at.in_order(), n, y + c * V::N, idx + c * V::N, origin0 + 2 * V::N * c);
    else
      store_lanes<kFull>(acc, n, y + c * V::N);
  });
  if constexpr (KW == 3) {
    bool tail = false;
    for (int i = 0; i < nrows; ++i) tail |= range_probe_tail(rows[i], W, 1, pos0, len);
    if (tail) return true;
  }
  return V::mask_any(is_nan(probe));
}

// row_s2_unrolled's averages over the same chunk ranges as max_row_s2_values (padding reads 0): each tap
// row's sum (t0 + t1 (+ t2)), the rows added in order, divided by div, all lane-wise in the deinterleave's
// lane order (the same bits as the per-chunk path). cbuf (3x3 rows with a carry, else null): the first
// row's sum is read from it when load_first, and the last row's sum is stored to it.
template <class V, int KW, int NR = 0>
void avg_row_s2_values(const float* const* rows, int nrows, int64_t W, int64_t pos0, int64_t len, float div,
                       float* y, float* cbuf, bool load_first) {
  if constexpr (NR > 0) nrows = NR;
  const V vdiv = V::set1(div);
  for_chunks<V>(len, [&](int64_t c, int n, auto full) {
    constexpr bool kFull = decltype(full)::value;
    const int64_t pos = pos0 + 2 * V::N * c;
    V acc = V::zero();
    for (int i = 0; i < nrows; ++i) {
      V rs;
      if (i == 0 && load_first) {
        rs = V::load(cbuf + c * V::N);
      } else {
        V t0, t1, t2;
        load_taps_s2_lanes<V, KW, kFull>(rows[i] + pos, W, pos, 0.f, n, t0, t1, t2);
        rs = t0 + t1;
        if constexpr (KW == 3) rs = rs + t2;
        if (cbuf && i == nrows - 1) rs.store(cbuf + c * V::N);
      }
      acc = i == 0 ? rs : acc + rs;
    }
    store_lanes<kFull>(acc / vdiv, n, y + c * V::N);
  });
}

template <class V, int KW, RowMode M>
void row_s2_unrolled(const PoolGeom& g, const float* x, int64_t sd, int64_t sh, int64_t a0, int64_t a1, int64_t b0,
                     int64_t b1, int64_t lo, int64_t hi, float div, float* yrow, int64_t* irow,
                     const RowCarry* carry = nullptr) {
  static_assert(KW == 2 || KW == 3, "unrolled rows cover 2- and 3-wide windows");
  const int64_t H = g.in[1], W = g.in[2], p = g.p[2];
  auto chunk = [&](int64_t ow0) {
    const int n = static_cast<int>(std::min<int64_t>(V::N, hi - ow0));
    const int64_t pos = 2 * ow0 - p;
    const int m0 = static_cast<int>(std::min<int64_t>(2 * V::N, W - pos));
    const int m1 = static_cast<int>(std::min<int64_t>(2 * V::N, W - pos - 2));
    if constexpr (M != kAvg) {
      constexpr bool kIdx = M == kMaxIdx;
      V probe = V::zero(), at = V::zero();
      bool extra_nan = false;
      V acc = max_chunk_s2<V, KW, false, kIdx>(g, x, sd, sh, a0, a1, b0, b1, pos, m0, m1, probe, extra_nan, at);
      if (extra_nan || V::mask_any(is_nan(probe)))
        acc = max_chunk_s2<V, KW, true, kIdx>(g, x, sd, sh, a0, a1, b0, b1, pos, m0, m1, probe, extra_nan, at);
      store_max_chunk(acc, at, n, yrow + ow0, kIdx ? irow + ow0 : nullptr, (sd * H + sh) * W + pos);
      return;
    }
    V acc = V::zero();  // the sums
    bool first = true;
    for (int64_t a = a0; a < a1; ++a) {
      for (int64_t b = b0; b < b1; ++b) {
        if (carry && carry->load && b == b0) {  // this row's sum, from the previous output row
          const V rs = V::load(carry->buf + ow0);
          acc = first ? rs : acc + rs;
          first = false;
          continue;
        }
        const float* r = x + ((sd + a * g.d[0]) * H + sh + b * g.d[1]) * W + pos;
        __builtin_prefetch(r + kPrefetchRows * W);
        __builtin_prefetch(r + kPrefetchRows * W + 16);
        V t0, t1, t2 = V::zero();
        load_taps_s2<V, KW>(r, pos, m0, m1, 0.f, t0, t1, t2);
        V rs = t0 + t1;
        if constexpr (KW == 3) rs = rs + t2;
        if (carry && b == b1 - 1) rs.store(carry->buf + ow0);
        acc = first ? rs : acc + rs;
        first = false;
      }
    }
    acc = acc / V::set1(div);
    if (n == V::N) acc.store(yrow + ow0); else acc.store_tail(yrow + ow0, n);
  };
  int64_t ow0 = lo;
  // the outputs whose taps all lie inside the row (but for the left padding of the first) through the range
  // kernels. Every output row of a plane splits its chunks the same way (range_outputs), so the carried 3x3
  // row sums stay in the range kernel's lane order between the rows that store and load them.
  const float* rows[kHoistRows];
  float rowoff[kHoistRows];  // (with indices) each tap row's flat offset from the first
  int nrows = 0;
  // 16 lanes: 2-D rows only (one depth tap). 3-D 2x2x2 s2 windows on 4x32x16x112x112 (DRAM-bound) measured
  // 0.80-0.86x of the per-chunk path through the range kernels, though 1.2-1.3x on a cache-resident input;
  // 8 lanes (measured on Zen 3) take both.
  if ((a1 - a0) * (b1 - b0) <= kHoistRows && (V::N <= 8 || a1 - a0 == 1)) {
    for (int64_t a = a0; a < a1; ++a)
      for (int64_t b = b0; b < b1; ++b) {
        if constexpr (M == kMaxIdx) rowoff[nrows] = static_cast<float>((a * g.d[0] * H + b * g.d[1]) * W);
        rows[nrows++] = x + ((sd + a * g.d[0]) * H + sh + b * g.d[1]) * W;
      }
    const int64_t len = range_outputs<V, KW>(ow0, hi, p, W, chunk);
    const int64_t pos0 = 2 * ow0 - p;
    if (len > 0 && M != kAvg) {
      constexpr bool kIdx = M == kMaxIdx;
      int64_t* ir = kIdx ? irow + ow0 : nullptr;
      const int64_t origin = (sd * H + sh) * W + pos0;
      float* yr = yrow + ow0;
      const bool nan = nrows == KW
                           ? max_row_s2_values<V, KW, KW, kIdx>(rows, nrows, W, pos0, len, yr, ir, origin, rowoff)
                           : max_row_s2_values<V, KW, 0, kIdx>(rows, nrows, W, pos0, len, yr, ir, origin, rowoff);
      if (nan)
        for (int64_t c = 0; c * V::N < len; ++c) chunk(ow0 + c * V::N);  // a NaN or +-inf: torch's steps
    } else if (len > 0) {
      float* cbuf = carry ? carry->buf + ow0 : nullptr;
      const bool load_first = carry && carry->load;
      if (nrows == KW) avg_row_s2_values<V, KW, KW>(rows, nrows, W, pos0, len, div, yrow + ow0, cbuf, load_first);
      else avg_row_s2_values<V, KW>(rows, nrows, W, pos0, len, div, yrow + ow0, cbuf, load_first);
    }
    ow0 += len;
  }
  for (; ow0 < hi; ow0 += V::N) chunk(ow0);
}
}  // namespace
}  // namespace fastml::pool_impl
