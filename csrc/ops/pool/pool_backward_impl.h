// Generic bodies of the pooling backward kernels (maths and contract: pool.h), included through
// pool_impl.h after pool_forward_impl.h (whose tap-range and divisor helpers they share).
//
// Max: pass 1 (max_backward_encode) turns each plane's int64 indices into one-byte tap codes and checks
// them; pass 2 gathers grad_input row by row from the windows whose code names each element
// (max_backward_gather, strides 1 and 2 in W, no dilation), or scatters into a zeroed plane
// (max_backward_plane: any index, any geometry). Avg zeroes each input row just before the first window
// adds to it and with strides 1 and 2 gathers, per input row, from the output row divided by the divisors
// (zero margins make the borders need no special case); other strides scatter each window's share.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

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
// A kernel longer than kAvgBackwardAllTaps runs, per vector, only the taps that name an output column
// for one of its lanes: the others would add zeros (no change to any sum), and their count is the
// kernel's, which may be 2^31 over a few columns; q is then read only within a vector of [0, oW).
template <class V, int S>
void avg_backward_row_gather(const PoolGeom& g, float* r, const float* q) {
  const int64_t W = g.in[2], oW = g.out[2], p = g.p[2], kw = g.k[2];
  const bool clip = kw > kAvgBackwardAllTaps;
  if constexpr (S == 1) {
    for (int64_t w0 = 0; w0 < W; w0 += V::N) {
      const int n = static_cast<int>(std::min<int64_t>(V::N, W - w0));
      V acc = V::zero();
      // long kernels: only the taps whose column w + p - c is an output column for some lane
      const int64_t c0 = clip ? std::max<int64_t>(0, w0 + p - oW + 1) : 0;
      const int64_t c1 = clip ? std::min<int64_t>(kw, w0 + V::N + p) : kw;
      for (int64_t c = c0; c < c1; ++c) acc = acc + V::load(q + w0 + p - c);
      if (n == V::N) (V::load(r + w0) + acc).store(r + w0);
      else (V::load_tail(r + w0, n) + acc).store_tail(r + w0, n);
    }
  } else {
    const int64_t half = (W + 1) / 2;
    for (int64_t j0 = 0; j0 < half; j0 += V::N) {
      V even = V::zero(), odd = V::zero();
      const int64_t c0 = clip ? std::max<int64_t>(0, p - 2 * (oW - 1 - j0)) : 0;
      const int64_t c1 = clip ? std::min<int64_t>(kw, p + 2 * (j0 + V::N)) : kw;
      for (int64_t c = c0; c < c1; ++c) {
        if (((p - c) & 1) == 0) even = even + V::load(q + j0 + (p - c) / 2);
        else odd = odd + V::load(q + j0 + (p + 1 - c) / 2);
      }
      V lo, hi;
      interleave2(even, odd, lo, hi);
      add2<V>(r + 2 * j0, static_cast<int>(std::min<int64_t>(2 * V::N, W - 2 * j0)), lo, hi);
    }
  }
}

// gx = the avg windows' gradient, accumulated into rows zeroed on first use. Strides 1 and 2 gather per input
// row (no border split); other strides scatter each window's share to its valid taps. `row` holds
// avg_backward_row_floats(g) floats.
template <class V>
void avg_backward_plane(const PoolGeom& g, const AvgMode& m, const float* gy, float* gx, float* row) {
  float* acc = gx;
  const int64_t H = g.in[1], W = g.in[2], oW = g.out[2], sw_ = g.s[2], pw = g.p[2];
  const int64_t rows_in = g.in[0] * H;
  // Each row is zeroed just before the first window adds to it (with any rows skipped on the way), not in
  // a pass over the plane first: a plane larger than L1 would go through L2 twice (zeroed lines evicted,
  // then read back). avg_pool2d_backward 2x2 s2 on 8x64x112x112: 1.06 -> 0.7 ms. Same bits.
  int64_t zeroed = 0;  // rows [0, zeroed) are zero or hold their sums so far
  auto input_row = [&](int64_t row) {
    if (row >= zeroed) {
      std::memset(acc + zeroed * W, 0, sizeof(float) * static_cast<size_t>((row + 1 - zeroed) * W));
      zeroed = row + 1;
    }
    return acc + row * W;
  };
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
          float* r = input_row((sd + a) * H + sh + b);
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
  if (zeroed < rows_in)  // rows no window covers
    std::memset(acc + zeroed * W, 0, sizeof(float) * static_cast<size_t>((rows_in - zeroed) * W));
}

// m lanes of consecutive output rows with the same valid tap rows, in a single loop: lane l is the window
// at origin + pos[l]; NB valid tap rows, offsets off[] from the window origin and first codes tap[]. No
// column check: right only for windows wholly inside the input in W (the caller redoes the others), where
// a tap hit is an in-plane position. Stores the codes as int32 (a byte store would make the compiler step
// 64 lanes, more than a row may have); returns the OR of the indices.
template <int NB>
uint64_t max_backward_encode_block(const int64_t* __restrict ip, int m, int64_t origin,
                                   const int32_t* __restrict pos, int32_t kw, uint64_t plane, const int32_t* off,
                                   const int32_t* tap, int32_t* __restrict cp) {
  // the tap rows as scalars
  const int32_t o0 = NB > 0 ? off[0] : 0, o1 = NB > 1 ? off[1] : 0, o2 = NB > 2 ? off[2] : 0, o3 = NB > 3 ? off[3] : 0;
  const int32_t t0 = NB > 0 ? tap[0] : 0, t1 = NB > 1 ? tap[1] : 0, t2 = NB > 2 ? tap[2] : 0, t3 = NB > 3 ? tap[3] : 0;
  const uint32_t ukw = static_cast<uint32_t>(kw);
  const int32_t org = static_cast<int32_t>(origin);  // low 32 bits: differences below are exact mod 2^32
  const uint32_t uplane = static_cast<uint32_t>(plane);
  uint64_t any = 0;  // the OR of the indices: below 2^30 only if every index is in [0, 2^30)
  for (int l = 0; l < m; ++l) {
    const int64_t v = ip[l];
    any |= static_cast<uint64_t>(v);
    const int32_t r = static_cast<int32_t>(v) - org - pos[l];  // exact for v in [0, 2^30) (plane < 2^30)
    // in the plane by its low 32 bits: exact for v in [0, 2^30), which the caller checks with the returned OR
    int32_t code = kCodeOutside + static_cast<int32_t>(static_cast<uint32_t>(v) < uplane);  // else kCodeForeign
    // tap row (offset o, first code t): the code of column c = r - o when c is inside the window
    auto tap_row = [&](int32_t o, int32_t t) {
      const int32_t c = r - o;
      code = static_cast<uint32_t>(c) < ukw ? t + c : code;
    };
    if (NB > 0) tap_row(o0, t0);
    if (NB > 1) tap_row(o1, t1);
    if (NB > 2) tap_row(o2, t2);
    if (NB > 3) tap_row(o3, t3);
    cp[l] = code;
  }
  return any;
}

// Max backward, pass 1 (see pool.h): codes[o] = the tap of window o that idx[o] names, (a*kH + b)*kW + c, when
// that tap lies inside the input; kCodeForeign when idx[o] is in the plane but no such tap (any in-plane index
// is legal), kCodeOutside when it is outside [0, plane). Integer loops over blocks of one output row (the
// compiler vectorises them); codes null: only the range check. Returns kMaxBwdForeign | kMaxBwdOutside.
template <class V>
int max_backward_encode(const PoolGeom& g, const int64_t* idx, uint8_t* codes) {
  const int64_t D = g.in[0], H = g.in[1], W = g.in[2], oD = g.out[0], oH = g.out[1], oW = g.out[2];
  const uint64_t plane = static_cast<uint64_t>(D * H * W);
  if (!codes) {
    const int64_t n = oD * oH * oW;
    uint64_t bad = 0;
    for (int64_t j = 0; j < n; ++j) bad |= static_cast<uint64_t>(idx[j]) >= plane;
    return bad ? kMaxBwdOutside : 0;
  }
  constexpr int kB = 256;
  int32_t rel[kB], code[kB];
  const int64_t L = max_backward_margin_left(g), CR = max_backward_code_row(g);
  const int32_t kw = static_cast<int32_t>(g.k[2]), sw = static_cast<int32_t>(g.s[2]);
  const int32_t w32 = static_cast<int32_t>(W), pw = static_cast<int32_t>(g.p[2]);
  int32_t foreign = 0, outside = 0;
  // rows are encoded in groups of up to kGroup lanes: lane l = (row q, column w) has its window at
  // pos[l] = q*sH*W + stt[l] from the first row's origin, stt[l] = w*sW - pW
  constexpr int64_t kGroup = 256;
  const int64_t grp = std::max<int64_t>(1, kGroup / std::max<int64_t>(oW, 1));
  const int64_t lanes = grp * oW + 16;
  thread_local std::vector<int32_t> t_enc;
  if (static_cast<int64_t>(t_enc.size()) < 3 * lanes) t_enc.resize(static_cast<size_t>(3 * lanes));
  int32_t* pos = t_enc.data();
  int32_t* stt = pos + lanes;
  int32_t* tcodes = stt + lanes;
  for (int64_t q = 0; q < grp; ++q)
    for (int64_t w = 0; w < oW; ++w) {
      stt[q * oW + w] = static_cast<int32_t>(w * g.s[2] - g.p[2]);
      pos[q * oW + w] = static_cast<int32_t>(q * g.s[1] * W + w * g.s[2] - g.p[2]);
    }
  // windows [0, nlo) start left of the input, the last nhi end past it (the others need no column check)
  int64_t nlo = 0, nhi = 0;
  while (nlo < oW && nlo * g.s[2] - g.p[2] < 0) ++nlo;
  while (nhi < oW && (oW - 1 - nhi) * g.s[2] - g.p[2] + g.k[2] > W) ++nhi;
  for (int64_t od = 0; od < oD; ++od) {
    const int64_t sd = od * g.s[0] - g.p[0];
    int64_t a0, a1;
    valid_taps(sd, g.k[0], 1, D, a0, a1);
    for (int64_t oh = 0; oh < oH; ++oh) {
      const int64_t sh = oh * g.s[1] - g.p[1];
      int64_t b0, b1;
      valid_taps(sh, g.k[1], 1, H, b0, b1);
      const int64_t row = (od * oH + oh) * oW, origin = (sd * H + sh) * W;  // without the W start
      uint8_t* __restrict crow = codes + (od * oH + oh) * CR;
      // the valid tap rows of this output row: offsets from the window origin and first codes
      int32_t off[4], tap[4];
      const int64_t nb = (a1 - a0) * (b1 - b0);
      if (nb <= 4) {
        int t = 0;
        for (int64_t a = a0; a < a1; ++a)
          for (int64_t b = b0; b < b1; ++b, ++t) {
            off[t] = static_cast<int32_t>((a * H + b) * W);
            tap[t] = static_cast<int32_t>((a * g.k[1] + b) * g.k[2]);
          }
        // the following rows with the same valid tap rows (all of them) join this one, up to kGroup lanes
        int64_t rows = 1;
        if (b0 == 0 && b1 == g.k[1])
          while (rows < grp && oh + rows < oH && (oh + rows) * g.s[1] - g.p[1] + g.k[1] <= H) ++rows;
        const int m = static_cast<int>(rows * oW);
        const int64_t* ip = idx + row;
        uint64_t any = 0;
        switch (nb) {  // the windows all inside the input in W need no column check: the border ones next
          case 0: any = max_backward_encode_block<0>(ip, m, origin, pos, kw, plane, off, tap, tcodes); break;
          case 1: any = max_backward_encode_block<1>(ip, m, origin, pos, kw, plane, off, tap, tcodes); break;
          case 2: any = max_backward_encode_block<2>(ip, m, origin, pos, kw, plane, off, tap, tcodes); break;
          case 3: any = max_backward_encode_block<3>(ip, m, origin, pos, kw, plane, off, tap, tcodes); break;
          default: any = max_backward_encode_block<4>(ip, m, origin, pos, kw, plane, off, tap, tcodes); break;
        }
        if (any >> 30) goto generic;  // an index outside [0, 2^30): this row through the exact path below
        auto border = [&](int64_t l) {  // one lane again, with the column check
          const int64_t v = ip[l];
          int32_t code = kCodeOutside;
          if (static_cast<uint64_t>(v) < plane) {
            code = kCodeForeign;
            const int32_t r = static_cast<int32_t>(v - origin) - pos[l];
            for (int64_t t = 0; t < nb; ++t) {
              const int32_t c = r - off[t];
              if (static_cast<uint32_t>(c) < static_cast<uint32_t>(kw) &&
                  static_cast<uint32_t>(stt[l] + c) < static_cast<uint32_t>(w32))
                code = tap[t] + c;
            }
          }
          tcodes[l] = code;
        };
        for (int64_t q = 0; q < rows; ++q) {
          for (int64_t j = 0; j < nlo; ++j) border(q * oW + j);
          for (int64_t j = std::max(nlo, oW - nhi); j < oW; ++j) border(q * oW + j);
        }
        for (int64_t q = 0; q < rows; ++q) {  // narrow into the code rows, then their margins
          uint8_t* __restrict cr = codes + (od * oH + oh + q) * CR;
          const int32_t* tc = tcodes + q * oW;
          for (int64_t l0 = 0; l0 < oW; l0 += 16)  // whole vectors: may run into the right margin
            for (int l = 0; l < 16; ++l) cr[L + l0 + l] = static_cast<uint8_t>(tc[l0 + l]);
          for (int64_t l = 0; l < L; ++l) cr[l] = kCodeMargin;
          for (int64_t l = L + oW; l < CR; ++l) cr[l] = kCodeMargin;
        }
        oh += rows - 1;
        continue;
      }
    generic:
      std::memset(crow, kCodeMargin, static_cast<size_t>(L));
      std::memset(crow + L + oW, kCodeMargin, static_cast<size_t>(CR - L - oW));
      for (int64_t w0 = 0; w0 < oW; w0 += kB) {
        const int m = static_cast<int>(std::min<int64_t>(kB, oW - w0));
        const int64_t* ip = idx + row + w0;
        const int32_t s0 = static_cast<int32_t>(w0) * sw - pw;  // window start in W of lane 0
        for (int l = 0; l < m; ++l) {
          const int64_t v = ip[l];
          // offset from the window's origin; exact for in-plane v (plane < 2^30)
          rel[l] = static_cast<int32_t>(v - origin) - (s0 + l * sw);
          code[l] = static_cast<uint64_t>(v) < plane ? kCodeForeign : kCodeOutside;
        }
        for (int64_t a = a0; a < a1; ++a)
          for (int64_t b = b0; b < b1; ++b) {
            const int32_t off = static_cast<int32_t>((a * H + b) * W);
            const int32_t tap = static_cast<int32_t>((a * g.k[1] + b) * g.k[2]);
            for (int l = 0; l < m; ++l) {
              const int32_t c = rel[l] - off;
              const bool hit = static_cast<uint32_t>(c) < static_cast<uint32_t>(kw) &&
                               static_cast<uint32_t>(s0 + l * sw + c) < static_cast<uint32_t>(w32);
              code[l] = hit ? tap + c : code[l];
            }
          }
        uint8_t* cp = crow + L + w0;
        // an index outside the plane stays kCodeOutside even where its low 32 bits named a tap
        for (int l = 0; l < m; ++l)
          cp[l] = static_cast<uint8_t>(static_cast<uint64_t>(ip[l]) < plane ? code[l] : kCodeOutside);
      }
    }
  }
  // flags: one pass over the plane's code bytes (in cache), exact only where some code is above the taps
  const int64_t nbytes = oD * oH * CR;
  uint8_t hi = 0;
  for (int64_t l = 0; l < nbytes; ++l) hi = std::max(hi, codes[l]);
  if (hi >= kCodeOutside)
    for (int64_t l = 0; l < nbytes; ++l) {
      foreign |= codes[l] == kCodeForeign;
      outside |= codes[l] == kCodeOutside;
    }
  return (foreign ? kMaxBwdForeign : 0) | (outside ? kMaxBwdOutside : 0);
}

// Max backward, pass 2 (max_backward_gather_ok geometries, no kCodeForeign in the plane): each input row
// sums, over the window rows (od, oh) that cover it and then over the windows along W in increasing ow, the
// gradients of the windows whose code names its element: the same additions in the same order as torch's
// scatter (increasing output index) into a zeroed plane, so the results are bitwise equal (adding the +0 of
// a window that does not match changes nothing: the sum starts at +0 and can never be -0). The code rows
// have margins that never match, so whole vectors are loaded without bounds; the gy loads beside a row
// read the neighbouring rows (discarded), or a padded copy where that would leave the plane.
// One input row (id, ih) of grad_input; KW > 0 fixes the W kernel size and PW the W padding (unrolled taps),
// KW = 0 reads both from g. U vectors are summed side by side (independent add chains).
// The geometry a gather row needs, read once per plane.
struct GatherGeom {
  int64_t W, oH, CR, L, kh, kw, pw, sd, pd, sh, ph;
};

// U vectors of one input row (id, ih) from column block j0 (S == 2: pairs of columns), covered by the window
// rows od0..od1 x oh0..oh1. KW > 0 fixes the W kernel size and PW the W padding (unrolled taps), KW = 0
// reads both from gg. The U vectors are summed side by side (independent add chains).
template <class V, int S, int KW, int PW, int U>
void max_backward_gather_cols(const GatherGeom& gg, float* r, const float* const* grows, const uint8_t* codes,
                              int64_t id, int64_t ih, int64_t od0, int64_t od1, int64_t oh0, int64_t oh1,
                              int64_t j0) {
  const int64_t W = gg.W, oH = gg.oH, CR = gg.CR, L = gg.L, cols = S == 1 ? W : (W + 1) / 2;
  const int64_t kw = KW > 0 ? KW : gg.kw, pw = KW > 0 ? PW : gg.pw;
  V even[U], odd[U];
  for (int u = 0; u < U; ++u) even[u] = odd[u] = V::zero();
  for (int64_t od = od0; od <= od1; ++od)  // the window rows that cover this input row, in output order
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      const int64_t q = od * oH + oh;
      const float* gr = grows[q] + j0;
      const uint8_t* cr = codes + q * CR + L + j0;
      const int64_t a = id - (od * gg.sd - gg.pd), b = ih - (oh * gg.sh - gg.ph);
      const int64_t tq = (a * gg.kh + b) * kw;
      for (int64_t c = kw - 1; c >= 0; --c) {  // increasing ow
        const uint8_t tc = static_cast<uint8_t>(tq + c);
        const bool ev = S == 1 || ((pw - c) & 1) == 0;
        const int64_t o = S == 1 ? pw - c : ev ? (pw - c) / 2 : (pw + 1 - c) / 2;
        for (int u = 0; u < U; ++u) {
          const V t = select(V::eq_u8(cr + o + u * V::N, tc), V::load(gr + o + u * V::N), V::zero());
          if (ev) even[u] = even[u] + t;
          else odd[u] = odd[u] + t;
        }
      }
    }
  for (int u = 0; u < U; ++u) {
    const int64_t j = j0 + u * V::N;
    if (j >= cols) break;
    if (S == 1) {
      const int n = static_cast<int>(std::min<int64_t>(V::N, W - j));
      if (n == V::N) even[u].store(r + j);
      else even[u].store_tail(r + j, n);
    } else {
      V lo, hi;
      interleave2(even[u], odd[u], lo, hi);
      const int m = static_cast<int>(std::min<int64_t>(2 * V::N, W - 2 * j));
      if (m >= 2 * V::N) {
        lo.store(r + 2 * j);
        hi.store(r + 2 * j + V::N);
      } else {
        lo.store_tail(r + 2 * j, std::min(m, V::N));
        if (m > V::N) hi.store_tail(r + 2 * j + V::N, m - V::N);
      }
    }
  }
}

// One input row (id, ih) of grad_input: blocks of 4 vectors, the last 1 to 3 together (none: zeros).
template <class V, int S, int KW, int PW>
void max_backward_gather_row(const GatherGeom& gg, float* r, const float* const* grows, const uint8_t* codes,
                             int64_t id, int64_t ih, int64_t od0, int64_t od1, int64_t oh0, int64_t oh1) {
  if (od1 < od0 || oh1 < oh0) {
    std::memset(r, 0, sizeof(float) * static_cast<size_t>(gg.W));
    return;
  }
  const int64_t cols = S == 1 ? gg.W : (gg.W + 1) / 2;
  for (int64_t j0 = 0; j0 < cols;) {
    const int64_t nv = (cols - j0 + V::N - 1) / V::N;
    switch (nv) {
      case 1: max_backward_gather_cols<V, S, KW, PW, 1>(gg, r, grows, codes, id, ih, od0, od1, oh0, oh1, j0); break;
      case 2: max_backward_gather_cols<V, S, KW, PW, 2>(gg, r, grows, codes, id, ih, od0, od1, oh0, oh1, j0); break;
      case 3: max_backward_gather_cols<V, S, KW, PW, 3>(gg, r, grows, codes, id, ih, od0, od1, oh0, oh1, j0); break;
      default: max_backward_gather_cols<V, S, KW, PW, 4>(gg, r, grows, codes, id, ih, od0, od1, oh0, oh1, j0); break;
    }
    j0 += std::min<int64_t>(nv, 4) * V::N;
  }
}

// first[i] / last[i]: the first and last window (of n, start o*s - p, k taps) covering position i of L
// (first > last: none), without divisions.
inline void covering_windows(int64_t n, int64_t L, int64_t k, int64_t s, int64_t p, int64_t* first, int64_t* last) {
  for (int64_t i = 0; i < L; ++i) {
    first[i] = n;
    last[i] = -1;
  }
  for (int64_t o = 0; o < n; ++o)
    for (int64_t t = 0; t < k; ++t) {
      const int64_t i = o * s - p + t;
      if (i < 0 || i >= L) continue;
      first[i] = std::min(first[i], o);
      last[i] = std::max(last[i], o);
    }
}

template <class V>
void max_backward_gather(const PoolGeom& g, const float* gy, const uint8_t* codes, float* gx, float* scratch) {
  const int64_t D = g.in[0], H = g.in[1], W = g.in[2], oW = g.out[2], rows = g.out[0] * g.out[1];
  const int64_t L = max_backward_margin_left(g), CR = max_backward_code_row(g);
  const GatherGeom gg{W, g.out[1], CR, L, g.k[1], g.k[2], g.p[2], g.s[0], g.p[0], g.s[1], g.p[1]};
  thread_local std::vector<const float*> t_rows;
  thread_local std::vector<int64_t> t_cover;
  if (static_cast<int64_t>(t_rows.size()) < rows) t_rows.resize(static_cast<size_t>(rows));
  if (static_cast<int64_t>(t_cover.size()) < 2 * (D + H)) t_cover.resize(static_cast<size_t>(2 * (D + H)));
  int64_t* dfirst = t_cover.data();
  int64_t* dlast = dfirst + D;
  int64_t* hfirst = dlast + D;
  int64_t* hlast = hfirst + H;
  covering_windows(g.out[0], D, g.k[0], g.s[0], g.p[0], dfirst, dlast);
  covering_windows(g.out[1], H, g.k[1], g.s[1], g.p[1], hfirst, hlast);
  // where each gy row is read from (its element 0): in place when the margins stay inside the plane's gy
  const float** grows = t_rows.data();
  for (int64_t q = 0; q < rows; ++q) {
    if (q * oW - L >= 0 && q * oW + CR - L <= rows * oW) {
      grows[q] = gy + q * oW;
      continue;
    }
    float* pr = scratch + q * CR;
    for (int64_t i = 0; i < CR; ++i) pr[i] = 0.f;
    std::memcpy(pr + L, gy + q * oW, sizeof(float) * static_cast<size_t>(oW));
    grows[q] = pr + L;
  }
  const bool k2 = g.s[2] == 2 && g.k[2] == 2 && g.p[2] == 0, k3 = g.s[2] == 2 && g.k[2] == 3 && g.p[2] == 1;
  for (int64_t id = 0; id < D; ++id)
    for (int64_t ih = 0; ih < H; ++ih) {
      float* r = gx + (id * H + ih) * W;
      const int64_t a0 = dfirst[id], a1 = dlast[id], b0 = hfirst[ih], b1 = hlast[ih];
      if (k2) max_backward_gather_row<V, 2, 2, 0>(gg, r, grows, codes, id, ih, a0, a1, b0, b1);
      else if (k3) max_backward_gather_row<V, 2, 3, 1>(gg, r, grows, codes, id, ih, a0, a1, b0, b1);
      else if (g.s[2] == 1) max_backward_gather_row<V, 1, 0, 0>(gg, r, grows, codes, id, ih, a0, a1, b0, b1);
      else max_backward_gather_row<V, 2, 0, 0>(gg, r, grows, codes, id, ih, a0, a1, b0, b1);
    }
}

// gx = grad_output scattered to the (in-range) indices of the zeroed plane.
template <class V>
void max_backward_plane(const PoolGeom& g, const float* gy, const int64_t* idx, float* gx) {
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
