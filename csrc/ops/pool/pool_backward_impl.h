// Generic bodies of the pooling backward kernels (maths and contract: pool.h), included through
// pool_impl.h after pool_forward_impl.h (whose tap-range and divisor helpers, in pool_forward_rows.h, they
// share).
//
// Max: pass 1 (max_backward_encode) turns each plane's int64 indices into one-byte tap codes and checks
// them; pass 2 gathers grad_input row by row from the windows whose code names each element
// (max_backward_gather, strides 1 and 2 in W, no dilation), or scatters into a zeroed plane
// (max_backward_plane: any index, any geometry). Average pooling: pool_backward_avg.h.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "ops/pool/pool_backward_avg.h"
#include "ops/pool/pool_forward_impl.h"

namespace fastml::pool_impl {
namespace {  // internal linkage: see pool_forward_impl.h

constexpr int64_t kWritePrefetchRows = 8, kEncodePrefetchRows = 4;

// The frame of a vector encoder (EncodeRows in pool_avx2.cpp; pool_avx512.cpp's runs the same loop inline): for
// each of `rows` output rows, the read-prefetch of its indices kEncodePrefetchRows rows ahead (past the array's
// end too: prefetches never fault), row(org) with the row's window origin base + q step (mod 2^32: the
// differences the steps take from it are exact for indices in [0, 2^30), plane < 2^30), then step(iq, n, cq)
// for each run of n <= LANES windows in order (iq their indices, cq their codes; the step advances its own
// window starts by LANES sw).
template <int LANES, class Row, class Step>
inline void encode_rows_frame(const int64_t* ip, int64_t rows, int64_t oW, int64_t base, int64_t step, uint8_t* cp,
                              int64_t CR, Row&& row, Step&& fn) {
  for (int64_t q = 0; q < rows; ++q) {
    const int64_t* iq = ip + q * oW;
    uint8_t* cq = cp + q * CR;
    for (int64_t l = 0; l < oW; l += 8) __builtin_prefetch(iq + kEncodePrefetchRows * oW + l, 0, 3);
    row(static_cast<int32_t>(static_cast<uint32_t>(base + q * step)));
    for (int64_t l = 0; l < oW; l += LANES) fn(iq + l, static_cast<int>(std::min<int64_t>(LANES, oW - l)), cq + l);
  }
}

// `rows` consecutive output rows of oW windows with the same NB valid tap rows (offsets off[] from the window
// origin, first codes tap[]): the code of lane l of row q, whose window starts at base + q * step + l * sw in
// the plane, into cp[q * CR + l]. No column check: right only for windows wholly inside the input in W (the
// caller redoes the others), where a tap hit is an in-plane position. Returns the OR of the indices (below
// 2^30 only if every index is in [0, 2^30); the codes are exact only then). Arithmetic is unsigned mod 2^32,
// so no index can overflow it. Generic form: integer loops the compiler vectorises, codes staged as int32
// (with byte stores it would step 64 lanes, more than a row may have) then narrowed; an ISA may specialise
// EncodeRows (pool_avx2.cpp and pool_avx512.cpp do: kColumnCheck, and run<NB, CHECK> also checks each tap's
// column, the window start plus c, against [0, W) when CHECK, the border windows included).
template <class V>
struct EncodeRows {
  static constexpr bool kColumnCheck = false;  // pw, W, CHECK unused: the caller redoes the border windows
  template <int NB, bool CHECK>
  static uint64_t run(const int64_t* __restrict ip, int64_t rows, int64_t oW, int64_t base, int64_t step,
                      int32_t sw, int32_t kw, uint64_t plane, const int32_t* off, const int32_t* tap,
                      uint8_t* __restrict cp, int64_t CR, int32_t /*pw*/, int32_t /*W*/) {
    constexpr int kB = 256;
    uint32_t stage[kB];
    const uint32_t o0 = NB > 0 ? off[0] : 0, o1 = NB > 1 ? off[1] : 0, o2 = NB > 2 ? off[2] : 0,
                   o3 = NB > 3 ? off[3] : 0;
    const uint32_t t0 = NB > 0 ? tap[0] : 0, t1 = NB > 1 ? tap[1] : 0, t2 = NB > 2 ? tap[2] : 0,
                   t3 = NB > 3 ? tap[3] : 0;
    const uint32_t ukw = static_cast<uint32_t>(kw), uplane = static_cast<uint32_t>(plane);
    const uint32_t usw = static_cast<uint32_t>(sw);
    uint64_t any = 0;
    for (int64_t q = 0; q < rows; ++q) {
      // read-prefetch the indices kEncodePrefetchRows rows ahead (past the array's end too: prefetches never fault)
      for (int64_t l = 0; l < oW; l += 8) __builtin_prefetch(ip + (q + kEncodePrefetchRows) * oW + l, 0, 3);
      for (int64_t l0 = 0; l0 < oW; l0 += kB) {
        const int m = static_cast<int>(std::min<int64_t>(kB, oW - l0));
        const int64_t* __restrict iq = ip + q * oW + l0;
        const uint32_t org = static_cast<uint32_t>(base + q * step + l0 * sw);
        for (int l = 0; l < m; ++l) {
          const int64_t v = iq[l];
          any |= static_cast<uint64_t>(v);
          const uint32_t r = static_cast<uint32_t>(v) - org - static_cast<uint32_t>(l) * usw;
          // in the plane by its low 32 bits (exact for v in [0, 2^30)): else kCodeOutside
          uint32_t code = kCodeOutside + static_cast<uint32_t>(static_cast<uint32_t>(v) < uplane);
          // tap row (offset o, first code t): the code of column c = r - o when c is inside the window
          if (NB > 0) code = r - o0 < ukw ? t0 + (r - o0) : code;
          if (NB > 1) code = r - o1 < ukw ? t1 + (r - o1) : code;
          if (NB > 2) code = r - o2 < ukw ? t2 + (r - o2) : code;
          if (NB > 3) code = r - o3 < ukw ? t3 + (r - o3) : code;
          stage[l] = code;
        }
        uint8_t* __restrict cq = cp + q * CR + l0;
        for (int l = 0; l < m; ++l) cq[l] = static_cast<uint8_t>(stage[l]);
      }
    }
    return any;
  }
};

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
  // every code row's margins (and, until written, its codes) hold kCodeMargin: one fill for the plane
  std::memset(codes, kCodeMargin, static_cast<size_t>(oD * oH * CR));
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
        // the following rows with the same valid tap rows (all of them) join this one
        int64_t rows = 1;
        if (b0 == 0 && b1 == g.k[1])
          while (oh + rows < oH && (oh + rows) * g.s[1] - g.p[1] + g.k[1] <= H) ++rows;
        const int64_t* ip = idx + row;
        uint8_t* cp = crow + L;
        const int64_t base = origin - g.p[2], step = g.s[1] * W;
        uint64_t any = 0;
        const bool check = nlo > 0 || nhi > 0;  // windows that start left of the input or end past it
        auto enc = [&](auto nbc) {
          constexpr int NB = decltype(nbc)::value;
          using E = EncodeRows<V>;
          if (E::kColumnCheck && check)
            return E::template run<NB, true>(ip, rows, oW, base, step, sw, kw, plane, off, tap, cp, CR, pw, w32);
          return E::template run<NB, false>(ip, rows, oW, base, step, sw, kw, plane, off, tap, cp, CR, pw, w32);
        };
        switch (nb) {
          case 0: any = enc(std::integral_constant<int, 0>{}); break;
          case 1: any = enc(std::integral_constant<int, 1>{}); break;
          case 2: any = enc(std::integral_constant<int, 2>{}); break;
          case 3: any = enc(std::integral_constant<int, 3>{}); break;
          default: any = enc(std::integral_constant<int, 4>{}); break;
        }
        if (any >> 30) goto generic;  // an index outside [0, 2^30): this row through the exact path below
        for (int64_t q = 0; q < rows && !EncodeRows<V>::kColumnCheck; ++q) {  // the border windows
          const int64_t* iq = ip + q * oW;
          uint8_t* cr = crow + q * CR;
          auto border = [&](int64_t j) {  // one lane again, with the column check
            const int64_t v = iq[j];
            int32_t code = kCodeOutside;
            if (static_cast<uint64_t>(v) < plane) {
              code = kCodeForeign;
              const int64_t st = j * g.s[2] - g.p[2];  // the window's start in W
              const int64_t rel = v - origin - q * step - st;
              for (int64_t t = 0; t < nb; ++t) {
                const int64_t c = rel - off[t];
                if (c >= 0 && c < kw && st + c >= 0 && st + c < W) code = tap[t] + static_cast<int32_t>(c);
              }
            }
            cr[L + j] = static_cast<uint8_t>(code);
          };
          for (int64_t j = 0; j < nlo; ++j) border(j);
          for (int64_t j = std::max(nlo, oW - nhi); j < oW; ++j) border(j);
        }
        oh += rows - 1;
        continue;
      }
    generic:
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
// The window rows that cover one input row, in output order: each one's gy row and code row (at output
// column 0) and the code of its tap (a, b, 0) in that row.
struct GatherSrc {
  const float* g;
  const uint8_t* c;
  int64_t tq;
};

// U vectors of one input row from column block j0 (S == 2: pairs of columns), summed over the n covering
// window rows src. KW > 0 fixes the W kernel size and PW the W padding (unrolled taps), KW = 0 reads both from
// kw_rt / pw_rt. The U vectors are summed side by side (independent add chains); the adds are masked (the sum
// is never -0, so adding the +0 of a window that does not match would change nothing either).
template <class V, int S, int KW, int PW, int U, int NS>
inline void max_backward_gather_cols(float* r, int64_t W, int64_t kw_rt, int64_t pw_rt, const GatherSrc* src,
                                     int n_rt, int64_t j0) {
  const int n = NS > 0 ? NS : n_rt;
  const int64_t cols = S == 1 ? W : (W + 1) / 2;
  const int64_t kw = KW > 0 ? KW : kw_rt, pw = KW > 0 ? PW : pw_rt;
  V even[U], odd[U];
  for (int u = 0; u < U; ++u) even[u] = odd[u] = V::zero();
  for (int i = 0; i < n; ++i) {
    const float* gr = src[i].g + j0;
    const uint8_t* cr = src[i].c + j0;
    for (int64_t c = kw - 1; c >= 0; --c) {  // increasing ow
      const uint8_t tc = static_cast<uint8_t>(src[i].tq + c);
      const bool ev = S == 1 || ((pw - c) & 1) == 0;
      const int64_t o = S == 1 ? pw - c : ev ? (pw - c) / 2 : (pw + 1 - c) / 2;
      for (int u = 0; u < U; ++u) {
        const typename V::Mask hit = V::eq_u8(cr + o + u * V::N, tc);
        if (ev) even[u] = add_if(hit, even[u], V::load(gr + o + u * V::N));
        else odd[u] = add_if(hit, odd[u], V::load(gr + o + u * V::N));
      }
    }
  }
  for (int u = 0; u < U; ++u) {
    const int64_t j = j0 + u * V::N;
    if (j >= cols) break;
    if (S == 1) {
      const int m = static_cast<int>(std::min<int64_t>(V::N, W - j));
      if (m == V::N) even[u].store(r + j);
      else even[u].store_tail(r + j, m);
    } else {
      V lo, hi;
      interleave2(even[u], odd[u], lo, hi);
      store2<V>(r + 2 * j, static_cast<int>(std::min<int64_t>(2 * V::N, W - 2 * j)), lo, hi);
    }
  }
}

// One input row of grad_input from its n covering window rows: blocks of 2 vectors, then 1; NS > 0 fixes n
// (the sources then sit in registers), NS = 0 reads it at run time.
template <class V, int S, int KW, int PW, int NS>
void max_backward_gather_row_n(float* r, int64_t W, int64_t kw, int64_t pw, const GatherSrc* src_p, int n) {
  GatherSrc src[NS > 0 ? NS : 1];
  if (NS > 0) for (int i = 0; i < NS; ++i) src[i] = src_p[i];
  const GatherSrc* sp = NS > 0 ? src : src_p;
  const int64_t cols = S == 1 ? W : (W + 1) / 2;
  int64_t j0 = 0;
  for (; j0 + V::N < cols; j0 += 2 * V::N) max_backward_gather_cols<V, S, KW, PW, 2, NS>(r, W, kw, pw, sp, n, j0);
  for (; j0 < cols; j0 += V::N) max_backward_gather_cols<V, S, KW, PW, 1, NS>(r, W, kw, pw, sp, n, j0);
}

// One input row of grad_input from its n covering window rows (none: zeros).
template <class V, int S, int KW, int PW>
void max_backward_gather_row(float* r, int64_t W, int64_t kw, int64_t pw, const GatherSrc* src, int n) {
  if (n == 0) std::memset(r, 0, sizeof(float) * static_cast<size_t>(W));
  else if (n == 1) max_backward_gather_row_n<V, S, KW, PW, 1>(r, W, kw, pw, src, n);
  else if (n == 2) max_backward_gather_row_n<V, S, KW, PW, 2>(r, W, kw, pw, src, n);
  else max_backward_gather_row_n<V, S, KW, PW, 0>(r, W, kw, pw, src, n);
}

// The square 2x2 s2 and 3x3 s2 p1 windows of 2D pooling (ResNet's and VGG's pools), K = 2 or 3: the gather
// by pairs of input rows 2 oh and 2 oh + 1, which read window row oh (and, K = 3, the second row also oh + 1:
// its tap row 0), a vector of windows a step. The code and gy vectors of a window row are loaded once for
// both rows (the generic loop loads them per tap and row), the gy loads masked only at the row's end (no
// padded copies); same adds in the same order as the generic gather, so the same bits. Rows no window covers
// are zeroed.
template <class V, int K>
void max_backward_gather_pairs(const PoolGeom& g, const float* gy, const uint8_t* codes, float* gx) {
  const int64_t H = g.in[1], W = g.in[2], oH = g.out[1], oW = g.out[2];
  const int64_t L = max_backward_margin_left(g), CR = max_backward_code_row(g);
  const V z = V::zero();
  using Mask = typename V::Mask;
  // windows cover rows and columns [0, 2 oH) x [0, 2 oW) (clipped to the input); the rest is zero
  for (int64_t ih = std::min(H, 2 * oH); ih < H; ++ih)
    std::memset(gx + ih * W, 0, sizeof(float) * static_cast<size_t>(W));
  for (int64_t oh = 0; oh < oH; ++oh) {
    const int64_t i0 = 2 * oh;  // the pair's first row; i0 + 1 may be past the input (ceil_mode)
    if (i0 >= H) break;
    float* r0 = gx + i0 * W;
    float* r1 = r0 + W;
    const bool second = i0 + 1 < H, next = K == 3 && oh + 1 < oH;  // row i0 + 1; window row oh + 1 for it
    // write-prefetch the rows kWritePrefetchRows ahead (see max_backward_gather)
    if (i0 + kWritePrefetchRows + 1 < H)
      for (int64_t j = 0; j < 2 * W; j += 16) __builtin_prefetch(r0 + kWritePrefetchRows * W + j, 1, 3);
    const uint8_t* ca = codes + oh * CR + L;
    const uint8_t* cb = ca + CR;
    const float* ga = gy + oh * oW;
    const float* gb = ga + oW;
    // FULL: a whole vector of windows j ... and of windows j + 1 ... (K = 3), and 2 N columns: plain loads and
    // stores; the blocks at the row's end mask them (the same values)
    auto block = [&](int64_t j, auto full) __attribute__((always_inline)) {
      constexpr bool FULL = decltype(full)::value;
      const int n = FULL ? V::N : static_cast<int>(std::clamp<int64_t>(oW - j, 0, V::N));  // windows in this block
      const int ns = FULL ? V::N : static_cast<int>(std::clamp<int64_t>(oW - j - 1, 0, V::N));  // windows j + 1 ...
      auto load_gy = [](const float* p, int cnt) { return FULL ? V::load(p) : V::load_tail(p, cnt); };
      const V a = load_gy(ga + j, n);
      const auto c = V::load_codes(ca + j);  // each code vector loaded (and widened) once for all its tests
      V e0, o0, e1 = z, o1 = z;
      if (K == 2) {  // row i0: taps 0, 1; row i0 + 1: taps 2, 3 (tap c = 0 even columns, c = 1 odd)
        e0 = add_if(V::eq_code(c, 0), z, a);
        o0 = add_if(V::eq_code(c, 1), z, a);
        if (second) {
          e1 = add_if(V::eq_code(c, 2), z, a);
          o1 = add_if(V::eq_code(c, 3), z, a);
        }
      } else {  // column 2j: window j's tap c = 1; 2j + 1: window j's c = 2, then window j + 1's c = 0
        const V as = load_gy(ga + j + 1, ns);
        const auto cs = V::load_codes(ca + j + 1);
        e0 = add_if(V::eq_code(c, 4), z, a);  // row i0 = 2 oh: tap row 1 of window row oh
        o0 = add_if(V::eq_code(cs, 3), add_if(V::eq_code(c, 5), z, a), as);
        if (second) {  // row 2 oh + 1: tap row 2 of window row oh, then tap row 0 of oh + 1
          e1 = add_if(V::eq_code(c, 7), z, a);
          o1 = add_if(V::eq_code(cs, 6), add_if(V::eq_code(c, 8), z, a), as);
          if (next) {
            const V b = load_gy(gb + j, n), bs = load_gy(gb + j + 1, ns);
            const auto cn = V::load_codes(cb + j);
            const Mask m1 = V::eq_code(cn, 1), m2 = V::eq_code(cn, 2), m0 = V::eq_u8(cb + j + 1, 0);
            e1 = add_if(m1, e1, b);
            o1 = add_if(m0, add_if(m2, o1, b), bs);
          }
        }
      }
      const int m = FULL ? 2 * V::N : static_cast<int>(std::min<int64_t>(2 * V::N, W - 2 * j));  // columns
      V lo, hi;
      interleave2(e0, o0, lo, hi);
      store2(r0 + 2 * j, m, lo, hi);
      if (second) {
        interleave2(e1, o1, lo, hi);
        store2(r1 + 2 * j, m, lo, hi);
      }
    };
    // blocks past the last window write zero columns
    const int64_t full_end = std::min<int64_t>(oW - (K == 3 ? 1 : 0), W / 2) / V::N * V::N;
    int64_t j = 0;
    for (; j < full_end; j += V::N) block(j, std::true_type{});
    for (; 2 * j < W; j += V::N) block(j, std::false_type{});
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

// What the gather needs of a geometry beyond the plane's data: for every input row (id, ih), its covering
// window rows q = od * oH + oh in output order with their tap codes (a * kH + b) * kW, rows [first[i],
// first[i + 1]) of q / tq. Built once per thread and geometry, reused for every plane of that geometry.
struct GatherPlan {
  PoolGeom g{};
  bool valid = false;
  std::vector<int32_t> first, q, tq;
};

inline const GatherPlan& gather_plan(const PoolGeom& g) {
  thread_local GatherPlan plan;
  if (plan.valid && std::memcmp(&plan.g, &g, sizeof g) == 0) return plan;
  const int64_t D = g.in[0], H = g.in[1];
  std::vector<int64_t> cover(static_cast<size_t>(2 * (D + H)));
  int64_t* dfirst = cover.data();
  int64_t* dlast = dfirst + D;
  int64_t* hfirst = dlast + D;
  int64_t* hlast = hfirst + H;
  covering_windows(g.out[0], D, g.k[0], g.s[0], g.p[0], dfirst, dlast);
  covering_windows(g.out[1], H, g.k[1], g.s[1], g.p[1], hfirst, hlast);
  plan.valid = false;
  plan.first.assign(1, 0);
  plan.q.clear();
  plan.tq.clear();
  for (int64_t id = 0; id < D; ++id)
    for (int64_t ih = 0; ih < H; ++ih) {
      for (int64_t od = dfirst[id]; od <= dlast[id]; ++od)
        for (int64_t oh = hfirst[ih]; oh <= hlast[ih]; ++oh) {
          const int64_t a = id - (od * g.s[0] - g.p[0]), b = ih - (oh * g.s[1] - g.p[1]);
          plan.q.push_back(static_cast<int32_t>(od * g.out[1] + oh));
          plan.tq.push_back(static_cast<int32_t>((a * g.k[1] + b) * g.k[2]));
        }
      plan.first.push_back(static_cast<int32_t>(plan.q.size()));
    }
  plan.g = g;
  plan.valid = true;
  return plan;
}

template <class V>
void max_backward_gather(const PoolGeom& g, const float* gy, const uint8_t* codes, float* gx, float* scratch) {
  const int64_t D = g.in[0], H = g.in[1], W = g.in[2], oW = g.out[2], rows = g.out[0] * g.out[1];
  const int64_t L = max_backward_margin_left(g), CR = max_backward_code_row(g);
  // 2D: the tap code is b kW + c
  if (const int pk = max_backward_pairs_k(g); pk == 2) return max_backward_gather_pairs<V, 2>(g, gy, codes, gx);
  else if (pk == 3) return max_backward_gather_pairs<V, 3>(g, gy, codes, gx);
  const GatherPlan& plan = gather_plan(g);
  thread_local std::vector<const float*> t_rows;
  if (static_cast<int64_t>(t_rows.size()) < rows) t_rows.resize(static_cast<size_t>(rows));
  // where each gy row is read from (its element 0): in place when the margins stay inside the plane's gy, else
  // a padded copy (the first and last rows)
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
  GatherSrc src[64];  // at most kD * kH window rows cover an input row (max_backward_gather_ok)
  for (int64_t i = 0; i < D * H; ++i) {
    float* r = gx + i * W;
    // write-prefetch a few rows ahead: the stores would otherwise wait for each line's read for ownership
    if (i + kWritePrefetchRows < D * H)
      for (int64_t j = 0; j < W; j += 16) __builtin_prefetch(r + kWritePrefetchRows * W + j, 1, 3);
    const int n = plan.first[i + 1] - plan.first[i];
    for (int t = 0; t < n; ++t) {
      const int64_t q = plan.q[plan.first[i] + t];
      src[t] = {grows[q], codes + q * CR + L, plan.tq[plan.first[i] + t]};
    }
    if (k2) max_backward_gather_row<V, 2, 2, 0>(r, W, 2, 0, src, n);
    else if (k3) max_backward_gather_row<V, 2, 3, 1>(r, W, 3, 1, src, n);
    else if (g.s[2] == 1) max_backward_gather_row<V, 1, 0, 0>(r, W, g.k[2], g.p[2], src, n);
    else max_backward_gather_row<V, 2, 0, 0>(r, W, g.k[2], g.p[2], src, n);
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
