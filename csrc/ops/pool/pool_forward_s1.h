// Stride-1 max pooling of 2-D (and 1-D) planes, values and indices (maths and contract: pool.h; included by
// pool_forward_impl.h). Torch's scan runs row by row over the window (a later tap wins when strictly greater,
// or NaN), and that rule gives the same winner in any grouping that keeps the order: the winner of a window
// is the winner among its rows' winners, taken in row order. So each input row's kW-tap winners are found
// once (max_row_s1) into a ring of kH rows, and each output row joins its window rows' winners in order
// (max_join_rows_s1): kH + kW steps per output instead of kH * kW, the same values and indices as the window
// loop (ties between -0 and +0, the last NaN, an all -inf window's first tap).
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
// most kMaxS1Rows window rows, indices exact as floats.
constexpr int64_t kMaxS1Rows = 64;
inline bool plane_s1_ok(const PoolGeom& g) {
  return g.out[0] == 1 && g.k[0] == 1 && g.p[0] == 0 && g.s[1] == 1 && g.d[1] == 1 && g.s[2] == 1 && g.d[2] == 1 &&
         g.k[1] * g.k[2] > 1 && g.k[1] <= kMaxS1Rows && g.in[0] * g.in[1] * g.in[2] < kExactFloatInt;
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

// The plane of plane_s1_ok (IDX: with indices, always under the NaN rule). Without SAFE and IDX, each row
// copied is also probed for NaN (v - v is NaN exactly for NaN and +-inf): a hit stops the plane (false), which
// the caller then runs again with SAFE (an infinity takes that path too, with the same values).
template <class V, bool SAFE, bool IDX, int KW>
bool max_plane_s1_rows(const PoolGeom& g, const float* x, float* y, int64_t* idx, float* buf) {
  constexpr bool PROBE = !SAFE && !IDX;
  const int64_t H = g.in[1], W = g.in[2], oH = g.out[1], oW = g.out[2], kH = g.k[1], kW = g.k[2];
  const int64_t ph = g.p[1], pw = g.p[2];
  const int64_t oWr = (oW + V::N - 1) / V::N * V::N, rowlen = oWr + kW + V::N;
  // two padded rows: row ih + 1 is copied in before row ih is read, so that no load reads bytes stored just
  // before at another alignment (a store-forwarding stall on every load)
  float* xp[2] = {buf, buf + rowlen};
  float* ring = buf + 2 * rowlen;     // kH rows of winners
  float* cring = ring + kH * oWr;     // IDX: kH rows of their columns
  for (int64_t i = 0; i < 2 * rowlen; ++i) buf[i] = -kInf;  // the padding; [pw, pw + W) is rewritten per row
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
  int64_t done = -1;  // the last input row whose winners are in the ring
  for (int64_t oh = 0; oh < oH; ++oh) {
    const int64_t sh = oh - ph;
    int64_t b0, b1;
    valid_taps(sh, kH, 1, H, b0, b1);
    for (int64_t ih = std::max(done + 1, sh + b0); ih < sh + b1; ++ih) {
      if (ih == 0 || ih != done + 1) copy_row(ih);
      copy_row(ih + 1);
      if (PROBE && V::mask_any(is_nan(probe))) return false;
      const int64_t slot = ih % kH;
      max_row_s1<V, SAFE, IDX, KW>(xp[ih & 1], kW, oWr, pw, ring + slot * oWr, cring + slot * oWr);
      done = ih;
    }
    const float* rows[kMaxS1Rows];
    const float* cols[kMaxS1Rows];
    float base[kMaxS1Rows];
    for (int64_t b = b0, slot = (sh + b0) % kH; b < b1; ++b, slot = slot + 1 == kH ? 0 : slot + 1) {
      rows[b - b0] = ring + slot * oWr;
      cols[b - b0] = cring + slot * oWr;
      base[b - b0] = static_cast<float>((sh + b) * W);
    }
    const int n = static_cast<int>(b1 - b0);
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
  }
  return true;
}

template <class V>
void max_plane_s1(const PoolGeom& g, const float* x, float* y, int64_t* idx) {
  const int64_t oW = g.out[2];
  const int64_t oWr = (oW + V::N - 1) / V::N * V::N, rowlen = oWr + g.k[2] + V::N;
  thread_local std::vector<float> t_buf;
  const size_t need = static_cast<size_t>(2 * rowlen + 2 * g.k[1] * oWr);
  if (t_buf.size() < need) t_buf.resize(need);
  auto run = [&](auto safe_c, auto idx_c) {
    constexpr bool S = decltype(safe_c)::value, I = decltype(idx_c)::value;
    if (g.k[2] == 3) return max_plane_s1_rows<V, S, I, 3>(g, x, y, idx, t_buf.data());
    if (g.k[2] == 5) return max_plane_s1_rows<V, S, I, 5>(g, x, y, idx, t_buf.data());
    return max_plane_s1_rows<V, S, I, 0>(g, x, y, idx, t_buf.data());
  };
  if (idx) run(std::true_type{}, std::true_type{});
  else if (!run(std::false_type{}, std::false_type{})) run(std::true_type{}, std::false_type{});
}

}  // namespace
}  // namespace fastml::pool_impl
