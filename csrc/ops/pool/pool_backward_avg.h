// Average-pool backward (maths and contract: pool.h), included by pool_backward_impl.h: the general plane
// (avg_backward_plane: each input row zeroed just before the first window adds to it, then given, per output
// row, the share of each column, computed once from the output row divided by the divisors: strides 1 and 2
// in vectors, with zero margins so the borders need no special case; larger strides by a scalar share per
// row) and two planes written directly, without a row scratch or a read-back of grad_input: whole 2x2 s2
// planes and 3x3 s2 p1 planes with one divisor (ResNet-style and DenseNet-style pools). 2-D stride-1 planes
// take the separable sums of pool_forward_s1.h (avg_backward_plane_s1). store2 is shared with the max-pool
// gather.
// Test: pytest tests/test_pool.py (test_avg_*, test_s2_planes). Bench: python -m fastml.bench --ops pool
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "ops/pool/pool_forward_impl.h"

namespace fastml::pool_impl {
namespace {  // internal linkage: see pool_forward_impl.h

// p[0:m) = (lo, hi) for m <= 2N
template <class V>
inline void store2(float* p, int m, V lo, V hi) {
  if (m >= 2 * V::N) {
    lo.store(p);
    hi.store(p + V::N);
    return;
  }
  lo.store_tail(p, std::min(m, V::N));
  if (m > V::N) hi.store_tail(p + V::N, m - V::N);
}

// True when dividing by div rounds exactly as multiplying by 1 / div: a power of two (2x2 windows: 4) whose
// reciprocal is a normal float. The same bits without the divide unit (a divide a vector was a tenth of the 2x2
// backward on one Zen 3 core).
inline bool divides_as_reciprocal(float div) {
  int e2 = 0;
  return std::frexp(div, &e2) == 0.5f && e2 > -125 && e2 < 126;
}

// The share one output row q (q[ow] = gy / divisor, zero outside [0, oW)) gives each of the input rows its
// windows cover, into r[0:W): column w receives q[ow] for every tap c with ow*S - p + c = w. Stride 1: w
// takes q[w + p - c] over all c; stride 2: the even column 2j takes q[j + (p - c)/2] over c = p mod 2, the
// odd column 2j+1 q[j + (p + 1 - c)/2] over the other taps, and the two are interleaved.
// A kernel longer than kAvgBackwardAllTaps runs, per vector, only the taps that name an output column
// for one of its lanes: the others would add zeros (no change to any sum), and their count is the
// kernel's, which may be 2^31 over a few columns; q is then read only within a vector of [0, oW).
// KW > 0: the kernel width KW and padding PW fixed at compile time (the 2x2 and 3x3 p1 windows: the tap loop
// unrolled, its parity tests and offsets constants; the same adds in the same order).
template <class V, int S, int KW = 0, int PW = 0>
void avg_backward_row_share(const PoolGeom& g, float* r, const float* q) {
  const int64_t W = g.in[2], oW = g.out[2], p = KW > 0 ? PW : g.p[2], kw = KW > 0 ? KW : g.k[2];
  const bool clip = KW == 0 && kw > kAvgBackwardAllTaps;
  if constexpr (S == 1) {
    for (int64_t w0 = 0; w0 < W; w0 += V::N) {
      const int n = static_cast<int>(std::min<int64_t>(V::N, W - w0));
      V acc = V::zero();
      // long kernels: only the taps whose column w + p - c is an output column for some lane
      const int64_t c0 = clip ? std::max<int64_t>(0, w0 + p - oW + 1) : 0;
      const int64_t c1 = clip ? std::min<int64_t>(kw, w0 + V::N + p) : kw;
      for (int64_t c = c0; c < c1; ++c) acc = acc + V::load(q + w0 + p - c);
      if (n == V::N) acc.store(r + w0);
      else acc.store_tail(r + w0, n);
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
      store2<V>(r + 2 * j0, static_cast<int>(std::min<int64_t>(2 * V::N, W - 2 * j0)), lo, hi);
    }
  }
}

// Any W stride (3 and up): the row's share built by adding each window's q[ow] to its valid columns, windows in
// order (each column's sum in window order, as the per-element scatter it replaces). Scalar: it runs once per
// output row and the adds into the input rows that use it are vectorised (a per-column form with an integer
// division per column was slower than the scatter). Strides of 3 and more scattered each window's share into
// every input row instead: avg_pool2d 4x4 s4 backward on 8x512x28x28 was 0.66x torch.
inline void avg_backward_row_share_any(const PoolGeom& g, float* r, const float* q) {
  const int64_t W = g.in[2], oW = g.out[2], p = g.p[2], k = g.k[2], s = g.s[2];
  std::fill(r, r + W, 0.0f);
  for (int64_t ow = 0; ow < oW; ++ow) {
    const int64_t w0 = ow * s - p;
    int64_t c0, c1;
    valid_taps(w0, k, 1, W, c0, c1);
    for (int64_t c = c0; c < c1; ++c) r[w0 + c] += q[ow];
  }
}

// The plane of plane_s2k2_ok (2x2 s2 windows, all inside the input): each output row's q = gy / div goes to
// columns 2 ow and 2 ow + 1 of input rows 2 oh and 2 oh + 1, and nothing else reaches them, so the two rows are
// stored at once from one interleave of q with itself; columns and rows past the windows are zeros. The same
// bits as avg_backward_plane (q + 0: a -0 share is stored as +0, as a zeroed row plus the share gives).
template <class V>
void avg_backward_plane_s2k2(const PoolGeom& g, float div, const float* gy, float* gx) {
  const int64_t H = g.in[1], W = g.in[2], oH = g.out[1], oW = g.out[2];
  const bool pow2 = divides_as_reciprocal(div);
  const V rec = V::set1(1.0f / div), d = V::set1(div);
  for (int64_t oh = 0; oh < oH; ++oh) {
    const float* grow = gy + oh * oW;
    float* r0 = gx + 2 * oh * W;
    float* r1 = r0 + W;
    for (int64_t j0 = 0; j0 < oW; j0 += V::N) {
      const int n = static_cast<int>(std::min<int64_t>(V::N, oW - j0));
      const V v = n == V::N ? V::load(grow + j0) : V::load_tail(grow + j0, n);
      const V q = (pow2 ? v * rec : v / d) + V::zero();
      V lo, hi;
      interleave2(q, q, lo, hi);
      store2<V>(r0 + 2 * j0, 2 * n, lo, hi);
      store2<V>(r1 + 2 * j0, 2 * n, lo, hi);
    }
    if (2 * oW < W)
      for (float* r : {r0, r1}) std::memset(r + 2 * oW, 0, sizeof(float) * static_cast<size_t>(W - 2 * oW));
  }
  if (2 * oH < H) std::memset(gx + 2 * oH * W, 0, sizeof(float) * static_cast<size_t>((H - 2 * oH) * W));
}

// The plane of plane_s2k3_ok (3x3 s2 p1 windows, none past the last row or column) with one divisor for every
// window (count_include_pad, or divisor_override): window row k's share of the columns, S_k, is q_k[j] at
// column 2 j and q_k[j + 1] + q_k[j] at 2 j + 1 (q_k = gy row k / div, q_k[oW] = 0), and input row 2 k gets S_k,
// row 2 k + 1 S_k + S_{k + 1}. Row by row, S_{k + 1} computed once and kept for the next row in `carry` (one
// row of whole vectors, stored and loaded at the same addresses): no read-back of gx, one division per window.
// The same adds in the same order as avg_backward_plane (a row's first share plus +0, the next added to it), so
// the same bits. avg_pool2d_backward 3x3 s2 p1, 2 threads: 8x64x112x112 1.11 -> 0.72 ms, 1x64x112x112 0.12 ->
// 0.06 ms (column strips of 2 N outputs down the plane, S_k in registers: 0.87 and 0.05 ms).
template <class V>
void avg_backward_plane_s2k3(const PoolGeom& g, float div, const float* gy, float* gx, float* carry) {
  const int64_t H = g.in[1], W = g.in[2], oH = g.out[1], oW = g.out[2];
  const V d = V::set1(div), z = V::zero();
  auto share = [&](int64_t k, int64_t j0, V& lo, V& hi) {  // S_k of the 2 N columns from 2 j0
    const int n = static_cast<int>(std::clamp<int64_t>(oW - j0, 0, V::N));       // windows j0 ...
    const int ns = static_cast<int>(std::clamp<int64_t>(oW - j0 - 1, 0, V::N));  // windows j0 + 1 ...
    const float* gr = gy + k * oW + j0;
    const V q = (n == V::N ? V::load(gr) : V::load_tail(gr, n)) / d;
    const V qs = (ns == V::N ? V::load(gr + 1) : V::load_tail(gr + 1, ns)) / d;
    interleave2(q + z, (qs + z) + q, lo, hi);
  };
  for (int64_t j0 = 0; 2 * j0 < W; j0 += V::N) {  // S_0 into the carry
    V lo, hi;
    share(0, j0, lo, hi);
    lo.store(carry + 2 * j0);
    hi.store(carry + 2 * j0 + V::N);
  }
  for (int64_t k = 0; k < oH; ++k) {
    float* r = gx + 2 * k * W;
    for (int64_t j0 = 0; 2 * j0 < W; j0 += V::N) {
      const int m = static_cast<int>(std::min<int64_t>(2 * V::N, W - 2 * j0));  // columns
      float* cj = carry + 2 * j0;
      const V lo = V::load(cj), hi = V::load(cj + V::N);
      store2<V>(r + 2 * j0, m, lo, hi);  // row 2 k: S_k
      if (k + 1 == oH) {
        store2<V>(r + W + 2 * j0, m, lo, hi);  // row 2 oH - 1: S_k alone
        continue;
      }
      V nlo, nhi;
      share(k + 1, j0, nlo, nhi);
      store2<V>(r + W + 2 * j0, m, lo + nlo, hi + nhi);  // row 2 k + 1
      nlo.store(cj);
      nhi.store(cj + V::N);
    }
  }
  if (2 * oH < H) std::memset(gx + 2 * oH * W, 0, sizeof(float) * static_cast<size_t>((H - 2 * oH) * W));
}

// gx = the avg windows' gradient, accumulated into rows zeroed on first use: per output row, the share of
// each input column (the same for every input row the windows cover) is computed once and added to those
// rows (no border split). `row` holds avg_backward_row_floats(g) floats.
template <class V>
void avg_backward_plane(const PoolGeom& g, const AvgMode& m, const float* gy, float* gx, float* row) {
  if (plane_s1_ok(g)) return avg_backward_plane_s1<V>(g, m, gy, gx);
  if (plane_s2k2_ok(g)) {
    const int64_t st[3] = {0, 0, 0};
    return avg_backward_plane_s2k2<V>(g, avg_divisor(g, m, st), gy, gx);
  }
  if (plane_s2k3_ok(g) && (m.count_include_pad || m.divisor != 0)) {  // every window's divisor is the same
    const int64_t st[3] = {0, -1, -1};
    return avg_backward_plane_s2k3<V>(g, avg_divisor(g, m, st), gy, gx, row);
  }
  float* acc = gx;
  const int64_t H = g.in[1], W = g.in[2], oW = g.out[2], sw_ = g.s[2], pw = g.p[2];
  const int64_t rows_in = g.in[0] * H;
  // Each row is zeroed just before the first window adds to it (with any rows skipped on the way), not in
  // a pass over the plane first: a plane larger than L1 would go through L2 twice (zeroed lines evicted,
  // then read back). avg_pool2d_backward 2x2 s2 on 8x64x112x112: 1.06 -> 0.7 ms. Same bits.
  int64_t zeroed = 0;  // rows [0, zeroed) are zero or hold their sums so far
  // interior columns [lo, hi): windows wholly inside the input in W
  const int64_t lo = std::min<int64_t>(oW, (pw + sw_ - 1) / sw_);
  const int64_t lim = W - 1 + pw - (g.k[2] - 1);
  const int64_t hi = lim < 0 ? lo : std::max(lo, std::min<int64_t>(oW, lim / sw_ + 1));
  const int64_t M = avg_backward_margin(g);
  float* q = row + M;
  float* share = q + oW + M;  // W floats after q's right margin
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
          const float div = avg_divisor(g, m, st);
          auto scale = [&](auto op) {  // q[ow] = op(gy[ow]) over the interior columns
            for (; ow + V::N <= hi; ow += V::N) op(V::load(grow + ow)).store(q + ow);
            if (ow < hi) {
              const int n = static_cast<int>(hi - ow);
              op(V::load_tail(grow + ow, n)).store_tail(q + ow, n);
            }
          };
          // the choice is made once, outside the loop
          if (divides_as_reciprocal(div))
            scale([rec = V::set1(1.0f / div)](V v) { return v * rec; });
          else
            scale([d = V::set1(div)](V v) { return v / d; });
          ow = hi;
          if (ow >= oW) break;
        }
        const int64_t st[3] = {sd, sh, ow * sw_ - pw};
        q[ow] = grow[ow] / avg_divisor(g, m, st);
      }
      // the row's share, the same for each input row it covers: computed once, then added
      if (sw_ == 1) avg_backward_row_share<V, 1>(g, share, q);
      else if (sw_ > 2) avg_backward_row_share_any(g, share, q);
      else if (g.k[2] == 2 && pw == 0) avg_backward_row_share<V, 2, 2, 0>(g, share, q);
      else if (g.k[2] == 3 && pw == 1) avg_backward_row_share<V, 2, 3, 1>(g, share, q);
      else avg_backward_row_share<V, 2>(g, share, q);
      for (int64_t a = a0; a < a1; ++a)
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t ir = (sd + a) * H + sh + b;  // the input row
          float* r = acc + ir * W;
          if (ir >= zeroed) {  // first use: the share plus +0 (as a zeroed row would get), no read
            if (ir > zeroed)
              std::memset(acc + zeroed * W, 0, sizeof(float) * static_cast<size_t>((ir - zeroed) * W));
            zeroed = ir + 1;
            int64_t w = 0;
            for (; w + V::N <= W; w += V::N) (V::load(share + w) + V::zero()).store(r + w);
            if (w < W) {
              const int n = static_cast<int>(W - w);
              (V::load_tail(share + w, n) + V::zero()).store_tail(r + w, n);
            }
          } else {
            int64_t w = 0;
            for (; w + V::N <= W; w += V::N) (V::load(r + w) + V::load(share + w)).store(r + w);
            if (w < W) {
              const int n = static_cast<int>(W - w);
              (V::load_tail(r + w, n) + V::load_tail(share + w, n)).store_tail(r + w, n);
            }
          }
        }
    }
  }
  if (zeroed < rows_in)  // rows no window covers
    std::memset(acc + zeroed * W, 0, sizeof(float) * static_cast<size_t>((rows_in - zeroed) * W));
}

}  // namespace
}  // namespace fastml::pool_impl
