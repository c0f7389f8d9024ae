// Generic bodies of the specialised conv kernels (contract and maths: conv_fast.h), written once over
// VecF and instantiated by conv_fast_<isa>.cpp. Every loop over an output row is vectorised along the
// output width, except the depthwise kernel for narrow planes (dw_forward_grid), which is vectorised along
// the flattened padded plane. At a row's end the forward kernels load whole vectors from the padded rows' slack
// (>= 32 floats inside the buffer) and mask their stores; the reductions and the scatter mask their
// loads instead, since a lane past the row must add nothing (0 * Inf would be NaN).
// Test: pytest tests/test_conv_fast.py (every ISA). Bench: python -m fastml.bench --ops conv_fast
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "ops/conv_fast/conv_fast.h"

namespace fastml::conv_fast_impl {

// Offset in a padded, phase-split row of padded column o (phase o % sw, slot o / sw): called in the tap
// loops, so strides 1 and 2 avoid the integer division.
template <class V>  // a template so each ISA's TU keeps its own copy (no cross-ISA inline merging)
inline int64_t tap_offset(const ConvGeom& g, int64_t o) {
  if (g.sw == 1) return o;
  if (g.sw == 2) return (o & 1) * g.wq + (o >> 1);
  return (o % g.sw) * g.wq + o / g.sw;
}

// ---- padded, phase-split copies ----
// dst[b * wq + i] = src[i * SW + b] for i < groups, b < SW (one group of SW columns per phase slot).
template <class V, int SW>  // templated on V: one copy per ISA translation unit
inline void deal_groups(const float* src, float* dst, int64_t wq, int64_t groups) {
  for (int64_t i = 0; i < groups; ++i)
    for (int b = 0; b < SW; ++b) dst[b * wq + i] = src[i * SW + b];
}

template <class V, int SW>  // the inverse of deal_groups
inline void gather_groups(const float* src, float* dst, int64_t wq, int64_t groups) {
  for (int64_t i = 0; i < groups; ++i)
    for (int b = 0; b < SW; ++b) dst[i * SW + b] = src[b * wq + i];
}

// pad_rows (ZERO) and pad_interior (!ZERO: only the cells that hold input are written, the zeros of an
// earlier copy with the same geometry stay).
template <class V, bool ZERO>
void pad_rows_impl(const ConvGeom& g, const float* x, int64_t r0, int64_t rows, float* buf) {
  const int64_t sw = g.sw, wq = g.wq;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t ih = r0 + r - g.ph;
    float* dst = buf + r * g.row_floats();
    if (ih < 0 || ih >= g.H) {
      if (ZERO) std::memset(dst, 0, sizeof(float) * static_cast<size_t>(g.row_floats()));
      continue;
    }
    const float* src = x + ih * g.W;
    if (sw == 1) {  // [pw zeros | the row | zeros up to wq]: vector stores (wq is a multiple of 16), where
      // three libc calls per row of a small plane took as long as the 3x3 depthwise kernel on it
      const int64_t lead = g.pw < wq ? g.pw : wq;
      const int64_t n = (g.W < wq - lead) ? g.W : wq - lead;
      if (ZERO)
        for (int64_t c = 0; c < wq; c += V::N) V::zero().store(dst + c);
      int64_t c = 0;
      for (; c + V::N <= n; c += V::N) V::load(src + c).store(dst + lead + c);
      if (c < n) {  // a whole-vector store of the zero-filled tail where the row has room (the cells past
        // the input are zeros already); AMD's masked stores are slow
        const V t = V::load_tail(src + c, static_cast<int>(n - c));
        if (lead + c + V::N <= wq) t.store(dst + lead + c);
        else t.store_tail(dst + lead + c, static_cast<int>(n - c));
      }
      continue;
    }
    // zero the row, then deal the input columns out to the phases: padded column c = col + pw goes to
    // phase c % sw, slot c / sw (counters instead of divisions; columns past the row's slots are dropped)
    if (ZERO) std::memset(dst, 0, sizeof(float) * static_cast<size_t>(g.row_floats()));
    int64_t phase = g.pw % sw, slot = g.pw / sw, col = 0;
    if (sw == 2 || sw == 4) {  // whole groups of sw columns with fixed trip counts (vectorised deinterleave)
      for (; col < g.W && phase != 0 && slot < wq; ++col) {
        dst[phase * wq + slot] = src[col];
        if (++phase == sw) {
          phase = 0;
          ++slot;
        }
      }
      const int64_t groups = std::max<int64_t>(0, std::min<int64_t>((g.W - col) / sw, wq - slot));
      if (sw == 2) deal_groups<V, 2>(src + col, dst + slot, wq, groups);
      else deal_groups<V, 4>(src + col, dst + slot, wq, groups);
      col += groups * sw;
      slot += groups;
    }
    for (; col < g.W && slot < wq; ++col) {
      dst[phase * wq + slot] = src[col];
      if (++phase == sw) {
        phase = 0;
        ++slot;
      }
    }
  }
}

template <class V>
void pad_rows(const ConvGeom& g, const float* x, int64_t r0, int64_t rows, float* buf) {
  pad_rows_impl<V, true>(g, x, r0, rows, buf);
}

template <class V>
void pad_interior(const ConvGeom& g, const float* x, int64_t r0, int64_t rows, float* buf) {
  pad_rows_impl<V, false>(g, x, r0, rows, buf);
}

// gx plane = interior of the padded, phase-split gbuf.
template <class V>
void unpad(const ConvGeom& g, const float* gbuf, float* gx) {
  for (int64_t ih = 0; ih < g.H; ++ih) {
    const float* row = gbuf + (ih + g.ph) * g.row_floats();
    float* d = gx + ih * g.W;
    if (g.sw == 1) {
      std::memcpy(d, row + g.pw, sizeof(float) * static_cast<size_t>(g.W));
      continue;
    }
    // padded column c = iw + pw is phase c % sw, slot c / sw (counters instead of a division per element:
    // the divisions were ~45% of a stride-2 depthwise grad_input); pad_rows' deal in reverse
    const int64_t sw = g.sw, wq = g.wq;
    int64_t phase = g.pw % sw, slot = g.pw / sw, iw = 0;
    if (sw == 2 || sw == 4) {
      for (; iw < g.W && phase != 0; ++iw) {
        d[iw] = row[phase * wq + slot];
        if (++phase == sw) {
          phase = 0;
          ++slot;
        }
      }
      const int64_t groups = (g.W - iw) / sw;
      if (sw == 2) gather_groups<V, 2>(row + slot, d + iw, wq, groups);
      else gather_groups<V, 4>(row + slot, d + iw, wq, groups);
      iw += groups * sw;
      slot += groups;
    }
    for (; iw < g.W; ++iw) {
      d[iw] = row[phase * wq + slot];
      if (++phase == sw) {
        phase = 0;
        ++slot;
      }
    }
  }
}

// Two-level sum (vector partials over blocks of 64 vectors, blocks added in order): the rounding error
// grows with n / (64 N) + 64 instead of n / N, close to NumPy's pairwise sum for planes of any size.
template <class V>
float sum(int64_t n, const float* x) {
  constexpr int N = V::N;
  constexpr int64_t kBlock = 64 * N;
  V tot = V::zero();
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = b + kBlock < n ? b + kBlock : n;
    V a0 = V::zero(), a1 = V::zero();
    int64_t i = b;
    for (; i + 2 * N <= e; i += 2 * N) {
      a0 = a0 + V::load(x + i);
      a1 = a1 + V::load(x + i + N);
    }
    for (; i + N <= e; i += N) a0 = a0 + V::load(x + i);
    if (i < e) a1 = a1 + V::load_tail(x + i, static_cast<int>(e - i));
    tot = tot + (a0 + a1);
  }
  return tot.hsum();
}

// ---- depthwise forward: one output plane ----
// Register block: RB = 4 output rows x 2 vectors of output columns (8 independent FMA chains, each
// weight broadcast once per block): acc = bias + sum_{p,q} w[p,q] * (phase row of padded row
// i*sh + p*dh)[j + (q*dw)/sw]. Loads past the row end stay inside the padded rows' >= 32 floats of
// slack; the stores are masked.
// 3x3, stride 1, no dilation (MobileNet's and the bench's depthwise layer): blocks of 4 output rows x one
// vector, each input row vector loaded once per column shift and fed to the up to three output rows that
// use it (4.5 loads per output vector instead of 9), the nine weights in registers, the geometry
// compile-time. Each output's FMAs run in the general kernel's (p, q) order: the same bits.
template <class V, int RN>
[[gnu::always_inline]] inline void dw_3x3s1_block(const float* base, int64_t rf, const V* wv, V vb, float* y,
                                                  int64_t Wo, int64_t j) {
  V acc[RN];
  for (int r = 0; r < RN; ++r) acc[r] = vb;
#pragma GCC unroll 8
  for (int sr = 0; sr < RN + 2; ++sr)  // input row sr: tap row p = sr - r of output row r
#pragma GCC unroll 3
    for (int q = 0; q < 3; ++q) {
      const V xv = V::load(base + sr * rf + j + q);
#pragma GCC unroll 4
      for (int r = 0; r < RN; ++r)
        if (sr - r >= 0 && sr - r <= 2) acc[r] = fmadd(xv, wv[3 * (sr - r) + q], acc[r]);
    }
  for (int r = 0; r < RN; ++r) {
    float* yr = y + r * Wo + j;
    if (j + V::N <= Wo) acc[r].store(yr);
    else acc[r].store_tail(yr, static_cast<int>(Wo - j));
  }
}

template <class V>
void dw_forward_3x3s1(const ConvGeom& g, const float* buf, const float* w, float bias, float* y) {
  constexpr int RB = 4;
  const int64_t Wo = g.Wo, rf = g.row_floats();
  V wv[9];
  for (int t = 0; t < 9; ++t) wv[t] = V::set1(w[t]);
  const V vb = V::set1(bias);
  int64_t i0 = 0;
  for (; i0 + RB <= g.Ho; i0 += RB)
    for (int64_t j = 0; j < Wo; j += V::N) dw_3x3s1_block<V, RB>(buf + i0 * rf, rf, wv, vb, y + i0 * Wo, Wo, j);
  for (; i0 < g.Ho; ++i0)
    for (int64_t j = 0; j < Wo; j += V::N) dw_3x3s1_block<V, 1>(buf + i0 * rf, rf, wv, vb, y + i0 * Wo, Wo, j);
}

// Stores of a block's RN rows x 2 vectors of columns from column j (masked past the row's end).
template <class V, int RN>
[[gnu::always_inline]] inline void dw_store2(const V* a0, const V* a1, float* y, int64_t Wo, int64_t j) {
  constexpr int N = V::N;
  for (int r = 0; r < RN; ++r) {
    float* yr = y + r * Wo + j;
    if (j + N <= Wo) a0[r].store(yr);
    else a0[r].store_tail(yr, static_cast<int>(Wo - j));
    if (j + 2 * N <= Wo) a1[r].store(yr + N);
    else if (j + N < Wo) a1[r].store_tail(yr + N, static_cast<int>(Wo - j - N));
  }
}

// RN output rows (compile-time: the accumulators stay in registers; a run-time row count kept them in
// memory, with a test per row per tap, ~40% of the time at 5x5) x 2 vectors of columns from column j.
template <class V, int RN>
[[gnu::always_inline]] inline void dw_block(const ConvGeom& g, const float* base, const float* w, V vb, float* y,
                                            int64_t Wo, int64_t rf, int64_t j) {
  constexpr int N = V::N;
  V a0[RN], a1[RN];
  for (int r = 0; r < RN; ++r) a0[r] = a1[r] = vb;
  for (int64_t p = 0; p < g.kh; ++p) {
    for (int64_t q = 0; q < g.kw; ++q) {
      const int64_t o = q * g.dw;
      const float* s = base + p * g.dh * rf + tap_offset<V>(g, o) + j;
      const V wv = V::set1(w[p * g.kw + q]);
#pragma GCC unroll 4
      for (int r = 0; r < RN; ++r) {
        const float* sr = s + r * g.sh * rf;
        a0[r] = fmadd(V::load(sr), wv, a0[r]);
        a1[r] = fmadd(V::load(sr + N), wv, a1[r]);
      }
    }
  }
  dw_store2<V, RN>(a0, a1, y, Wo, j);
}

// KH kernel rows, row stride SH and no row dilation (compile-time), any kernel width, column stride and
// column dilation: RN output rows x 2 vectors of columns from column j. Per kernel column q, that column's
// KH weights sit in registers and each of the (RN - 1) * SH + KH input row vectors it needs is loaded once
// and fed to every output row of the block that uses it: 2 ((RN - 1) SH + KH) + KH loads per 2 RN KH FMAs
// (5x5 stride 1, RN 4: 21 per 40), where dw_block loads once per FMA and broadcasts once per tap. Each
// output sums its taps column by column (q outer, p inner) after the bias. Registers: KH weights, 2 RN
// accumulators and 2 loaded vectors, within AVX2's 16 for (KH, RN) = (5, 4) and (7, 3).
template <class V, int KH, int SH, int RN>
[[gnu::always_inline]] inline void dw_cols_block(const ConvGeom& g, const float* base, const float* w, V vb,
                                                 float* y, int64_t Wo, int64_t rf, int64_t j) {
  constexpr int N = V::N;
  constexpr int kRows = (RN - 1) * SH + KH;
  V a0[RN], a1[RN];
  for (int r = 0; r < RN; ++r) a0[r] = a1[r] = vb;
  for (int64_t q = 0; q < g.kw; ++q) {
    const float* s = base + tap_offset<V>(g, q * g.dw) + j;
    V wv[KH];
    for (int p = 0; p < KH; ++p) wv[p] = V::set1(w[p * g.kw + q]);
#pragma GCC unroll 16
    for (int sr = 0; sr < kRows; ++sr) {  // input row sr is tap row p = sr - r SH of output row r
      const V x0 = V::load(s + sr * rf), x1 = V::load(s + sr * rf + N);
#pragma GCC unroll 4
      for (int r = 0; r < RN; ++r) {
        const int p = sr - r * SH;
        if (p >= 0 && p < KH) {
          a0[r] = fmadd(x0, wv[p], a0[r]);
          a1[r] = fmadd(x1, wv[p], a1[r]);
        }
      }
    }
  }
  dw_store2<V, RN>(a0, a1, y, Wo, j);
}

// A plane through dw_cols_block: blocks of RB rows, the last rows in one smaller block.
template <class V, int KH, int SH, int RB>
void dw_forward_cols(const ConvGeom& g, const float* buf, const float* w, float bias, float* y) {
  constexpr int N = V::N;
  const int64_t Wo = g.Wo, rf = g.row_floats();
  const V vb = V::set1(bias);
  for (int64_t i0 = 0; i0 < g.Ho; i0 += RB) {
    const int rn = static_cast<int>(g.Ho - i0 < RB ? g.Ho - i0 : RB);
    const float* base = buf + i0 * SH * rf;
    float* yb = y + i0 * Wo;
    for (int64_t j = 0; j < Wo; j += 2 * N) {
      if (rn == RB) dw_cols_block<V, KH, SH, RB>(g, base, w, vb, yb, Wo, rf, j);
      else if (rn == 3) dw_cols_block<V, KH, SH, 3>(g, base, w, vb, yb, Wo, rf, j);
      else if (rn == 2) dw_cols_block<V, KH, SH, 2>(g, base, w, vb, yb, Wo, rf, j);
      else dw_cols_block<V, KH, SH, 1>(g, base, w, vb, yb, Wo, rf, j);
    }
  }
}

// f(std::integral_constant<int, K>{}) with K = n clamped to [1, kBlock8]: a loop's run-time block size
// (kBlock8, or the last block's remainder) as the compile-time count that keeps a kernel's accumulators in
// registers (dw_forward_grid's grid vectors, dw_lanes' output pixels).
inline constexpr int kBlock8 = 8;
template <class F>
[[gnu::always_inline]] inline void with_block8(int64_t n, F&& f) {
  switch (n < kBlock8 ? n : kBlock8) {
    case 8: return f(std::integral_constant<int, 8>{});
    case 7: return f(std::integral_constant<int, 7>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 2: return f(std::integral_constant<int, 2>{});
    default: return f(std::integral_constant<int, 1>{});
  }
}

// 5 x 5 and 7 x 7 rows of taps (any width), strides 1, no dilation, on narrow planes (Wo <= kGridMaxWo): the
// output is computed on the padded plane's grid, flattened. Grid point i = y Wp + x (Wp the padded width)
// gets bias + sum_q sum_p w[p, q] xp[i + p Wp + q], vectors of consecutive grid points (points with
// x >= Wo are computed and dropped). Rows of 7 or 14 outputs fill 7/32 or 14/32 of dw_cols_block's
// two-vector column blocks (AVX-512); the grid fills 49/80 of its vectors at 7x7, 196/256 at 14x14 (5x5).
// Same (q, p) order after the bias as dw_cols_block: the same bits. The padded rows are first copied
// without their slack (Hp x Wp, contiguous) into a per-thread buffer. Paired against the row blocks, 2
// threads, Zen 4, N8: C1152 7x7 k5 1.48x, k7 1.77x, C240 / C672 14x14 k5 1.17x; at output width 16 the
// row blocks were ahead (0.95x: they share each loaded input row among 4 output rows), hence the bound 14.
inline constexpr int64_t kGridMaxWo = 14;

template <class V, int NB>
[[gnu::always_inline]] inline void dw_grid_block(const float* xp, int64_t Wp, int64_t kh, int64_t kw, const float* w,
                                                 V vb, float* out) {
  V a[NB];
  for (int v = 0; v < NB; ++v) a[v] = vb;
  for (int64_t q = 0; q < kw; ++q)
    for (int64_t p = 0; p < kh; ++p) {
      const V wv = V::set1(w[p * kw + q]);
      const float* s = xp + p * Wp + q;
#pragma GCC unroll 8
      for (int v = 0; v < NB; ++v) a[v] = fmadd(V::load(s + v * V::N), wv, a[v]);
    }
  for (int v = 0; v < NB; ++v) a[v].store(out + v * V::N);
}

template <class V>
void dw_forward_grid(const ConvGeom& g, const float* buf, const float* w, float bias, float* y) {
  constexpr int N = V::N, NB = kBlock8;  // grid vectors per register block
  const int64_t Wp = g.W + 2 * g.pw, Hp = g.H + 2 * g.ph, rf = g.row_floats(), Wo = g.Wo;
  const int64_t npts = g.Ho * Wp, nvec = (npts + N - 1) / N;
  const int64_t used = Hp * Wp, need = std::max(used, nvec * N + (g.kh - 1) * Wp + g.kw - 1);
  thread_local std::vector<float> cbuf;
  if (static_cast<int64_t>(cbuf.size()) < need + 2 * N) cbuf.resize(static_cast<size_t>(need + 2 * N));
  float* xp = cbuf.data();
  // whole vectors from the rows (Wp + slack floats each), in row order: each row overwrites what the
  // previous one stored past its end; the tail after the last row is zeroed (read by dropped points only)
  for (int64_t r = 0; r < Hp; ++r)
    for (int64_t j = 0; j < Wp; j += N) V::load(buf + r * rf + j).store(xp + r * Wp + j);
  std::memset(xp + used, 0, sizeof(float) * static_cast<size_t>(need + 2 * N - used));
  alignas(64) float tile[NB * N];
  const V vb = V::set1(bias);
  for (int64_t v0 = 0; v0 < nvec; v0 += NB) {
    const float* s = xp + v0 * N;
    with_block8(nvec - v0, [&](auto nb) { dw_grid_block<V, nb()>(s, Wp, g.kh, g.kw, w, vb, tile); });
    // the block's grid points [i0, i1) that are outputs: row y, columns [x0, x1) below Wo
    const int64_t i0 = v0 * N, i1 = std::min(npts, i0 + NB * N);
    for (int64_t yr = i0 / Wp; yr * Wp < i1; ++yr) {
      const int64_t x0 = std::max<int64_t>(0, i0 - yr * Wp), x1 = std::min(Wo, i1 - yr * Wp);
      for (int64_t x = x0; x < x1; x += N) {
        const int c = static_cast<int>(std::min<int64_t>(N, x1 - x));
        V::load_tail(tile + yr * Wp + x - i0, c).store_tail(y + yr * Wo + x, c);
      }
    }
  }
}

// ---- depthwise forward, channels in the vector lanes (contract: ConvDwLanesFn) ----
// NX consecutive output pixels of one row; per tap one weight vector and NX input pixel vectors. Each lane
// runs its channel's FMA chain in the order `qp` names, from the bias: the same sums as dw_forward.
template <class V, int NX>
[[gnu::always_inline]] inline void dw_lanes_block(const ConvGeom& g, const float* xb, int64_t Wp, const float* wt, V vb,
                                                  bool qp, int64_t y, int64_t x0, float* ob) {
  constexpr int N = V::N;
  V a[NX];
  for (int i = 0; i < NX; ++i) a[i] = vb;
  auto tap = [&](int64_t p, int64_t q) {
    const V wv = V::load(wt + (p * g.kw + q) * N);
    const float* s = xb + ((y * g.sh + p * g.dh) * Wp + x0 * g.sw + q * g.dw) * N;
#pragma GCC unroll 8
    for (int i = 0; i < NX; ++i) a[i] = fmadd(V::load(s + i * g.sw * N), wv, a[i]);
  };
  if (qp) {
    for (int64_t q = 0; q < g.kw; ++q)
      for (int64_t p = 0; p < g.kh; ++p) tap(p, q);
  } else {
    for (int64_t p = 0; p < g.kh; ++p)
      for (int64_t q = 0; q < g.kw; ++q) tap(p, q);
  }
  for (int i = 0; i < NX; ++i) a[i].store(ob + ((y * g.Wo) + x0 + i) * N);
}

template <class V>
void dw_lanes(const ConvGeom& g, const float* xb, const float* wt, const float* bias, bool qp, float* ob) {
  constexpr int XB = kBlock8;  // output pixels per register block
  const int64_t Wp = g.W + 2 * g.pw;
  const V vb = bias ? V::load(bias) : V::zero();
  for (int64_t y = 0; y < g.Ho; ++y)
    for (int64_t x0 = 0; x0 < g.Wo; x0 += XB) {
      with_block8(g.Wo - x0, [&](auto nx) { dw_lanes_block<V, nx()>(g, xb, Wp, wt, vb, qp, y, x0, ob); });
    }
}

// Weight gradient with the channels in the lanes (contract: ConvDwLanesWgradFn): taps in groups of TB, TB
// independent FMA chains per pixel. Each tap's products are summed along each output row, and the row sums
// added in row order (an error growing with Ho + Wo rather than Ho Wo: one chain over a 56 x 56 plane
// failed the 2x-NumPy error bound of the tests where the per-plane kernels pass).
template <class V, int TB>
[[gnu::always_inline]] inline void dw_wgrad_taps(const ConvGeom& g, const float* xb, int64_t Wp, const float* gyb,
                                                 int64_t t0, float* gw) {
  constexpr int N = V::N;
  V tot[TB];
  int64_t off[TB];
  for (int i = 0; i < TB; ++i) {
    tot[i] = V::zero();
    const int64_t t = t0 + i, p = t / g.kw, q = t % g.kw;
    off[i] = (p * g.dh * Wp + q * g.dw) * N;
  }
  for (int64_t y = 0; y < g.Ho; ++y) {
    V a[TB];
    for (int i = 0; i < TB; ++i) a[i] = V::zero();
    for (int64_t x = 0; x < g.Wo; ++x) {
      const V gv = V::load(gyb + (y * g.Wo + x) * N);
      const float* s = xb + (y * g.sh * Wp + x * g.sw) * N;
#pragma GCC unroll 8
      for (int i = 0; i < TB; ++i) a[i] = fmadd(V::load(s + off[i]), gv, a[i]);
    }
    for (int i = 0; i < TB; ++i) tot[i] = tot[i] + a[i];
  }
  for (int i = 0; i < TB; ++i) tot[i].store(gw + (t0 + i) * N);
}

template <class V>
void dw_lanes_wgrad(const ConvGeom& g, const float* xb, const float* gyb, float* gw, float* gb) {
  constexpr int N = V::N, TB = N >= 16 ? 8 : 4;
  const int64_t Wp = g.W + 2 * g.pw, taps = g.kh * g.kw;
  int64_t t0 = 0;
  for (; t0 + TB <= taps; t0 += TB) dw_wgrad_taps<V, TB>(g, xb, Wp, gyb, t0, gw);
  for (; t0 < taps; ++t0) dw_wgrad_taps<V, 1>(g, xb, Wp, gyb, t0, gw);
  if (gb) {  // row sums, then their sum, as for the taps
    V s = V::zero();
    for (int64_t y = 0; y < g.Ho; ++y) {
      V r = V::zero();
      for (int64_t x = 0; x < g.Wo; ++x) r = r + V::load(gyb + (y * g.Wo + x) * N);
      s = s + r;
    }
    s.store(gb);
  }
}

template <class V>
void dw_forward(const ConvGeom& g, const float* buf, const float* w, float bias, float* y) {
  if (g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1)
    return dw_forward_3x3s1<V>(g, buf, w, bias, y);
  // 5 and 7 rows (EfficientNet's, ConvNeXt's), strides 1 and 2 (3x3 stride 2 measured level: 3 rows share
  // little)
  if (dw_taps_qp(g)) {  // 5 or 7 rows, strides 1 or 2, no row dilation: taps q outer, p inner
    if (V::N >= 8 && g.sh == 1 && g.sw == 1 && g.dw == 1 && g.Wo <= kGridMaxWo)
      return dw_forward_grid<V>(g, buf, w, bias, y);
    if (g.kh == 5) {
      if (g.sh == 1) return dw_forward_cols<V, 5, 1, 4>(g, buf, w, bias, y);
      return dw_forward_cols<V, 5, 2, 4>(g, buf, w, bias, y);
    }
    if (g.sh == 1) return dw_forward_cols<V, 7, 1, 3>(g, buf, w, bias, y);
    return dw_forward_cols<V, 7, 2, 3>(g, buf, w, bias, y);
  }
  constexpr int N = V::N;
  constexpr int RB = 4;
  const int64_t Wo = g.Wo, rf = g.row_floats();
  const V vb = V::set1(bias);
  for (int64_t i0 = 0; i0 < g.Ho; i0 += RB) {
    const int rn = static_cast<int>(g.Ho - i0 < RB ? g.Ho - i0 : RB);
    const float* base = buf + i0 * g.sh * rf;
    float* yb = y + i0 * Wo;
    for (int64_t j = 0; j < Wo; j += 2 * N) {
      switch (rn) {
        case 4: dw_block<V, 4>(g, base, w, vb, yb, Wo, rf, j); break;
        case 3: dw_block<V, 3>(g, base, w, vb, yb, Wo, rf, j); break;
        case 2: dw_block<V, 2>(g, base, w, vb, yb, Wo, rf, j); break;
        default: dw_block<V, 1>(g, base, w, vb, yb, Wo, rf, j); break;
      }
    }
  }
}

// ---- transposed conv (grad_input): gbuf[padded i*sh + p*dh, j*sw + q*dw] += sum_kb w_kb[p,q] * gy_kb[i, j] ----
// for nk <= 8 grad_output planes gy + kb*gstride with taps w + kb*wstride: one read-modify-write of gbuf
// per nk FMAs. Each gbuf element receives its terms in (i, p, q, kb) order.
template <class V>
void scatter(const ConvGeom& g, const float* gy, int64_t gstride, const float* w, int64_t wstride, int64_t nk,
             float* gbuf) {
  constexpr int N = V::N;
  constexpr int KB = 8;
  const int64_t Wo = g.Wo, rf = g.row_floats();
  for (int64_t i = 0; i < g.Ho; ++i) {
    const float* gr = gy + i * Wo;
    for (int64_t p = 0; p < g.kh; ++p) {
      float* row = gbuf + (i * g.sh + p * g.dh) * rf;
      for (int64_t q = 0; q < g.kw; ++q) {
        const int64_t o = q * g.dw;
        float* t = row + tap_offset<V>(g, o);
        V wv[KB];
        for (int b = 0; b < KB; ++b) wv[b] = V::set1(b < nk ? w[b * wstride + p * g.kw + q] : 0.0f);
        int64_t j = 0;
        for (; j + N <= Wo; j += N) {
          V acc = V::load(t + j);
          for (int b = 0; b < KB; ++b) {
            if (b >= nk) break;
            acc = fmadd(V::load(gr + b * gstride + j), wv[b], acc);
          }
          acc.store(t + j);
        }
        if (j < Wo) {  // masked: lanes past the row must not add 0 * w (NaN for an infinite w) anywhere
          const int r = static_cast<int>(Wo - j);
          V acc = V::load_tail(t + j, r);
          for (int b = 0; b < KB; ++b) {
            if (b >= nk) break;
            acc = fmadd(V::load_tail(gr + b * gstride + j, r), wv[b], acc);
          }
          acc.store_tail(t + j, r);
        }
      }
    }
  }
}

// ---- grad_weight partials: out[kb*ostride + p*kw + q] = sum_{i,j} gy_kb[i,j] * xpad[i*sh + p*dh, j*sw + q*dw] ----
// for nk <= 4 grad_output planes (gy + kb*gstride) against one padded input plane. Register block: KB
// planes x QB taps of one kernel row, so each gy vector feeds QB FMAs and each x vector KB FMAs. Rows
// are the outer loop (one gy row and kh x rows stay in L1 while every tap uses them); each row's
// register partials are added to per-tap running totals in row order (a two-level sum, see sum()).
// Taps are processed in groups of at most kMaxTaps (the totals live on the stack).
// One output row against QN taps of one kernel row: tot[b*ts + u] += sum_j gy_b[j] * xs[u][j].
// KB and QN are compile-time so the KB x QN accumulators stay in registers.
template <class V, int KB, int QN>
inline void corr_row(const float* gr, int64_t gstride, const float* const* xs, int64_t Wo, V* tot, int64_t ts) {
  constexpr int N = V::N;
  V acc[KB][QN];
  for (int b = 0; b < KB; ++b)
    for (int u = 0; u < QN; ++u) acc[b][u] = V::zero();
  int64_t j = 0;
  for (; j + N <= Wo; j += N) {
    V gv[KB];
    for (int b = 0; b < KB; ++b) gv[b] = V::load(gr + b * gstride + j);
    for (int u = 0; u < QN; ++u) {
      const V xv = V::load(xs[u] + j);
      for (int b = 0; b < KB; ++b) acc[b][u] = fmadd(gv[b], xv, acc[b][u]);
    }
  }
  if (j < Wo) {  // masked x too: 0 * (an infinite x past the row) would be NaN
    const int r = static_cast<int>(Wo - j);
    V gv[KB];
    for (int b = 0; b < KB; ++b) gv[b] = V::load_tail(gr + b * gstride + j, r);
    for (int u = 0; u < QN; ++u) {
      const V xv = V::load_tail(xs[u] + j, r);
      for (int b = 0; b < KB; ++b) acc[b][u] = fmadd(gv[b], xv, acc[b][u]);
    }
  }
  for (int b = 0; b < KB; ++b)
    for (int u = 0; u < QN; ++u) tot[b * ts + u] = tot[b * ts + u] + acc[b][u];
}

template <class V, int KB, int QB>
void corr_block(const ConvGeom& g, const float* buf, const float* gy, int64_t gstride, float* out, int64_t ostride) {
  constexpr int64_t kMaxTaps = 64;
  const int64_t Wo = g.Wo, rf = g.row_floats();
  const int64_t qc = g.kw < kMaxTaps ? g.kw : kMaxTaps;          // columns of taps per group
  const int64_t pg = kMaxTaps / qc;                              // rows of taps per group
  V tot[KB * kMaxTaps];                                          // tot[b * kMaxTaps + tap in group]
  for (int64_t p0 = 0; p0 < g.kh; p0 += pg) {
    const int64_t pn = g.kh - p0 < pg ? g.kh - p0 : pg;
    for (int64_t c0 = 0; c0 < g.kw; c0 += qc) {
      const int64_t cn = g.kw - c0 < qc ? g.kw - c0 : qc;
      for (int64_t t = 0; t < KB * kMaxTaps; ++t) tot[t] = V::zero();
      for (int64_t i = 0; i < g.Ho; ++i) {
        const float* gr = gy + i * Wo;
        for (int64_t p = p0; p < p0 + pn; ++p) {
          const float* xr = buf + (i * g.sh + p * g.dh) * rf;
          for (int64_t q0 = c0; q0 < c0 + cn; q0 += QB) {
            const int qn = static_cast<int>(c0 + cn - q0 < QB ? c0 + cn - q0 : QB);
            const float* xs[QB];
            for (int u = 0; u < qn; ++u) xs[u] = xr + tap_offset<V>(g, (q0 + u) * g.dw);
            V* t = tot + (p - p0) * qc + (q0 - c0);
            switch (qn) {
              case 1: corr_row<V, KB, 1>(gr, gstride, xs, Wo, t, kMaxTaps); break;
              case 2: corr_row<V, KB, 2>(gr, gstride, xs, Wo, t, kMaxTaps); break;
              case 3: corr_row<V, KB, (QB >= 3 ? 3 : 1)>(gr, gstride, xs, Wo, t, kMaxTaps); break;
              default: corr_row<V, KB, QB>(gr, gstride, xs, Wo, t, kMaxTaps); break;
            }
          }
        }
      }
      for (int b = 0; b < KB; ++b)
        for (int64_t p = p0; p < p0 + pn; ++p)
          for (int64_t q = c0; q < c0 + cn; ++q)
            out[b * ostride + p * g.kw + q] = tot[b * kMaxTaps + (p - p0) * qc + q - c0].hsum();
    }
  }
}

// One grad_output plane against 3x3 taps (depthwise, multiplier 1): each gy row vector loaded once for all
// nine taps (nine independent FMA chains) instead of once per tap row (three chains per call, a call per
// tap row). Each tap's sum is the general kernel's: per gy row the lanes' products in column order, the
// row totals added in row order (the same bits).
template <class V>
void corr_3x3_one(const ConvGeom& g, const float* buf, const float* gy, float* out) {
  const int64_t Wo = g.Wo, rf = g.row_floats();
  V tot[9];
  for (int t = 0; t < 9; ++t) tot[t] = V::zero();
  for (int64_t i = 0; i < g.Ho; ++i) {
    const float* gr = gy + i * Wo;
    const float* xs[9];
    for (int p = 0; p < 3; ++p)
      for (int q = 0; q < 3; ++q) xs[3 * p + q] = buf + (i * g.sh + p * g.dh) * rf + tap_offset<V>(g, q * g.dw);
    V acc[9];
    for (int t = 0; t < 9; ++t) acc[t] = V::zero();
    int64_t j = 0;
    for (; j + V::N <= Wo; j += V::N) {
      const V gv = V::load(gr + j);
#pragma GCC unroll 9
      for (int t = 0; t < 9; ++t) acc[t] = fmadd(gv, V::load(xs[t] + j), acc[t]);
    }
    if (j < Wo) {  // masked x too, as in corr_row
      const int r = static_cast<int>(Wo - j);
      const V gv = V::load_tail(gr + j, r);
#pragma GCC unroll 9
      for (int t = 0; t < 9; ++t) acc[t] = fmadd(gv, V::load_tail(xs[t] + j, r), acc[t]);
    }
    for (int t = 0; t < 9; ++t) tot[t] = tot[t] + acc[t];
  }
  for (int t = 0; t < 9; ++t) out[t] = tot[t].hsum();
}

template <class V>
void corr_taps(const ConvGeom& g, const float* buf, const float* gy, int64_t gstride, int64_t nk, float* out,
               int64_t ostride) {
  constexpr int QB = V::N >= 16 ? 4 : 3;
  if (nk == 1 && g.kh == 3 && g.kw == 3) return corr_3x3_one<V>(g, buf, gy, out);
  switch (nk) {
    case 1: corr_block<V, 1, QB>(g, buf, gy, gstride, out, ostride); break;
    case 2: corr_block<V, 2, QB>(g, buf, gy, gstride, out, ostride); break;
    case 3: corr_block<V, 3, QB>(g, buf, gy, gstride, out, ostride); break;
    default: corr_block<V, 4, QB>(g, buf, gy, gstride, out, ostride); break;
  }
}

// ---- direct conv, tiny C: output rows [oh0, oh1) of every output channel ----
// Register block: KB = 8 output channels x NV vectors of output columns; each input vector loaded
// once feeds KB FMAs with broadcast weights wt[(c, p, q), k].
template <class V>
void direct_rows(const ConvGeom& g, int64_t C, int64_t K, const float* buf, int64_t rows_per_c, const float* wt,
                 const float* bias, int64_t oh0, int64_t oh1, float* y, int64_t y_plane) {
  constexpr int N = V::N;
  constexpr int KB = 8;
  constexpr int NV = N >= 16 ? 2 : (N >= 8 ? 2 : 1);
  const int64_t Wo = g.Wo, rf = g.row_floats(), Kp = (K + KB - 1) / KB * KB;
  const int64_t taps = g.kh * g.kw;
  for (int64_t i = oh0; i < oh1; ++i) {
    const int64_t lr = (i - oh0) * g.sh;  // local padded row of tap row 0
    for (int64_t k0 = 0; k0 < K; k0 += KB) {
      const int kb_n = static_cast<int>(K - k0 < KB ? K - k0 : KB);
      for (int64_t j = 0; j < Wo; j += NV * N) {
        V acc[KB][NV];
        for (int b = 0; b < KB; ++b) {
          const V vb = V::set1(bias[k0 + b]);
          for (int u = 0; u < NV; ++u) acc[b][u] = vb;
        }
        for (int64_t c = 0; c < C; ++c) {
          const float* cb = buf + c * rows_per_c * rf + lr * rf + j;
          const float* wc = wt + c * taps * Kp + k0;
          for (int64_t p = 0; p < g.kh; ++p) {
            const float* row = cb + p * g.dh * rf;
            for (int64_t q = 0; q < g.kw; ++q) {
              const int64_t o = q * g.dw;
              const float* s = row + tap_offset<V>(g, o);
              V xv[NV];
              for (int u = 0; u < NV; ++u) xv[u] = V::load(s + u * N);
              const float* wk = wc + (p * g.kw + q) * Kp;
              for (int b = 0; b < KB; ++b) {
                const V wv = V::set1(wk[b]);
                for (int u = 0; u < NV; ++u) acc[b][u] = fmadd(xv[u], wv, acc[b][u]);
              }
            }
          }
        }
        for (int b = 0; b < kb_n; ++b) {
          float* yr = y + (k0 + b) * y_plane + i * Wo + j;
          for (int u = 0; u < NV; ++u) {
            const int64_t jj = j + u * N;
            if (jj >= Wo) break;
            if (jj + N <= Wo) acc[b][u].store(yr + u * N);
            else acc[b][u].store_tail(yr + u * N, static_cast<int>(Wo - jj));
          }
        }
      }
    }
  }
}

}  // namespace fastml::conv_fast_impl
