// Stride-1 forward convolution without a column buffer ("shifted GEMM"), included by conv.cpp only.
//
// With the input zero-padded once per call to (Dp, Hp, Wp) = out + dilation*(k-1), output pixel
// (z, y, x) is given the grid index q = z*Hp*Wp + y*Wp + x, and kernel offset (a, b, e) reads the
// padded input at q + off(a, b, e), off = a*dD*Hp*Wp + b*dH*Wp + e*dW: for a fixed offset the "column"
// rows (one per input channel) are the padded input itself, shifted, with a uniform stride (the padded
// channel size). So the GEMM microkernels read B in place from the padded input, the K sum running
// over (offset, channel) instead of (channel, offset); the weights are reordered and packed once.
// Grid points with x >= out W (Wp - oW per row) are computed and dropped when the tile is copied
// into the output (used only when that waste is small). Loop order per tile: NR pixel columns, then
// the MR-row weight slivers, then the chunks of the (offset, channel) sum: whole offsets, as many as fit
// in KC, or channel blocks of one offset when C/G > KC. One offsets-microkernel call per chunk (AVX2 and
// AVX-512: the C micro-tile stays in registers across the chunk's offsets; scalar: one microkernel call per
// offset),
// the C micro-tile in L1 across chunks. Each element's sum order depends on the shape only (thread-count
// invariant).
// Pixel-rows variants (AVX-512, 29-32 output channels per group): the output pixels are the MR broadcast
// rows and the output channels one NR-wide vector sliver (no 14 + 14 + 4 row edge); the tile is transposed
// into the output. One group: the points of the channels-last padded grid, read in place
// (conv_forward_shifted_rows_grid). Several: each tile's input expanded along W (RowsTile), no points
// dropped, with the weight gradient on the same tiles (conv_backward_weight_rows).
//
// Test: pytest tests/test_conv.py (CASES with stride 1). Bench: python -m fastml.bench --ops conv
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/isa.h"
#include "core/parallel.h"
#include "gemm/gemm_kernels.h"
#include "ops/conv/conv.h"

namespace fastml::conv_detail {

// True when the shifted path applies and pays: stride 1, NCDHW in and out, little of the grid dropped, and
// - AVX-512: C/G >= 16 and at least 18 kernel offsets (measured on an AVX-512 Xeon: 1.1-1.15x the
//   column-buffer path on 3x3x3; even with it on 3x3 and k5 1-D, where the column buffer is cheap relative
//   to the GEMM; level on Zen 4: 0.95-1.07x); at most 1/8 of the grid dropped. Also, as on AVX2, at most
//   16 output channels per group with at least 9 offsets and at most 1/4 of the grid dropped: on Zen 4
//   (paired, 2 threads, shifted / column speed) groups=32 C256 28x28 1.71, C512 14x14 1.64, groups=8 C128
//   28x28 1.52, groups=4 C64 56x56 1.44. With 32 output channels in one group it is the pixel-rows variant
//   on the padded grid, 0.85-1.13 there: left to the first rule.
// - AVX2: few output channels per group (K/G <= 32) and at least 9 offsets; at most 1/4 of the grid
//   dropped. The column buffer costs one store per (channel, offset, pixel) whatever K/G, the GEMM K/G FMAs
//   on it: with 4-16 output channels per group it was 45% of the time (ResNeXt's groups of 32). Paired,
//   2 threads, Zen 3, shifted / column speed: N8 3x3 groups=32 C128 56x56 1.02, C256 28x28 1.31, C512
//   14x14 1.50, C1024 7x7 1.37, batch 1 C256 28x28 1.31, dilation 2 2.0, C512 14x14 groups=16 1.19, C64
//   56x56 groups=4 1.08, conv3d C64 groups=8 1.67; the flipped backward data of groups=32 1.26-1.50. With
//   32 output channels per group (once the half-width edge tiles and plain whole-vector tail stores came):
//   5x5 C32 56x56 1.13 (batch 1 1.16), 5x5 C64 groups=2 0.96-1.18, 7x7 C32 1.10, 3x3 groups=2 / 3 / 4
//   1.05-1.22, 3x3 C32 and C256 -> 32 0.95-1.0. With 64-128 (groups 1-4, 5x5, 7x7) it was 0.84-0.97 (the
//   grid's dropped columns and the padded copy are then not repaid), and on 1-D k3 / k5 groups=32 0.87-0.95.
//   Also on AVX-512 where grouped_rows_forward: the pixel-rows variant on expanded rows (below).

// True for the output channels per group whose pixel-rows form pays (AVX-512: they fill one NR-wide vector
// sliver better than MR-row weight slivers; Kg 29-32: one sliver instead of 14 + 14 + 4 rows, measured
// 1.2-1.3x; Kg 16-28 0.7-0.9x, the masked sliver still costs its full FMAs).
inline bool pixel_rows_kg(int64_t kg) {
  if (active_isa() != Isa::avx512) return false;
  const GemmKernels& kt = select_kernels(gemm_tables);
  return kg <= kt.nr && kt.nr < kt.mr * ((kg + kt.mr - 1) / kt.mr);
}

// The expanded pixel rows (conv_forward_shifted_rows, conv_backward_weight_rows) fit: AVX-512, several
// groups, stride 1, NCDHW, at least 9 kernel offsets, at most 1/4 of the padded grid's points dropped (the
// shifted paths' rule: beyond that the planes are tiny) and 16 to NR output channels per group (with 8 the
// half-empty vector lost: weight gradient 3.95 -> 7.2 ms on groups=32 C256 28x28).
inline bool grouped_rows_fit(const ConvShape& s, int64_t& drop, int64_t& Wp) {
  if (s.G == 1 || s.in_cl || s.out_cl || active_isa() != Isa::avx512) return false;
  for (int d = 0; d < 3; ++d)
    if (s.stride[d] != 1) return false;
  Wp = s.out[2] + s.dil[2] * (s.k[2] - 1), drop = Wp - s.out[2];
  const int64_t Kg = s.K / s.G;
  return s.kvol() >= 9 && 4 * drop <= Wp && Kg >= 16 && Kg <= select_kernels(gemm_tables).nr;
}

// The forward (and grad_input, the flipped forward, whose Kg is the forward's C/G) takes them with 29-32
// output channels per group (pixel_rows_kg), or from 16 where more than 1/8 of the padded grid would be
// dropped (small planes), or with 16 and an even group count from 1/8 dropped (two groups per tile, one
// vector each: micro_dual); the weight gradient from 16 (grouped_rows_weight). Paired, 2 threads, Zen 4, N8
// unless said, forward / grad_input / grad_weight against the previous paths (the channel-row shifted GEMM
// up to 16 per group, else the column buffer): groups=32 C1024 7x7 1.95-2.5x / 1.99x / 1.93x (batch 1 2.15x /
// 2.05x / 3.70x), groups=4 C128 14x14 1.40-1.53x forward, groups=2 C64 28x28 1.13-1.22x forward; 24 per
// group, groups=8 C192 7x7 1.87x / 1.75x / 1.92x; 16 per group, groups=32 C512 7x7 1.39-1.40x / 1.46-1.65x /
// 2.61x, C512 14x14 (pairs) 1.01-1.08x / 1.05-1.17x / 1.59-1.88x, batch 1 1.18-1.20x / 1.25-1.27x. Left to the
// other paths: C192 28x28 (24 per group) grad_input measured 0.85x on the expanded rows, C128 28x28 groups=8
// (16, pairs) 0.95x forward; their weight gradients gain (C192: 1.08-1.10x).
// Two groups per tile (micro_dual): their output channels fit one NR-wide sliver and the groups pair up.
inline bool grouped_rows_pairs(const ConvShape& s) {
  return 2 * (s.K / s.G) <= select_kernels(gemm_tables).nr && s.G % 2 == 0;
}
inline bool grouped_rows_forward(const ConvShape& s) {
  int64_t drop = 0, Wp = 1;
  return grouped_rows_fit(s, drop, Wp) &&
         (pixel_rows_kg(s.K / s.G) || 8 * drop > Wp || (grouped_rows_pairs(s) && 8 * drop >= Wp));
}
inline bool grouped_rows_weight(const ConvShape& s) {
  int64_t drop = 0, Wp = 1;
  return grouped_rows_fit(s, drop, Wp);
}

inline bool shifted_applies(const ConvShape& s) {
  if (s.in_cl || s.out_cl) return false;
  for (int d = 0; d < 3; ++d)
    if (s.stride[d] != 1) return false;
  const int64_t Wp = s.out[2] + s.dil[2] * (s.k[2] - 1), drop = Wp - s.out[2], Kg = s.K / s.G;
  switch (active_isa()) {
    case Isa::avx512:
      return (s.kvol() >= 9 && 4 * drop <= Wp && Kg <= 16) || grouped_rows_forward(s) ||
             (s.C / s.G >= 16 && s.kvol() >= 18 && 8 * drop <= Wp);
    case Isa::avx2:
      return Kg <= 32 && s.kvol() >= 9 && 4 * drop <= Wp;
    default: return false;
  }
}

// Floats between consecutive channels of the padded input: the plane size rounded up to a whole number of
// 64-byte lines, made an odd number of lines. The microkernel reads a B sliver row per channel, Sp apart; a
// plane of a multiple of 4 KiB (5x5, padding 2 on 28x28: 32 x 32 floats) put every row of the sliver in
// one L1 set, and the sliver, reused by every weight sliver, evicted itself (AVX2, N8 C64 28x28 5x5: 29.6
// -> 13.5 ms with the odd stride). With an odd line count consecutive channels cycle through all the sets.
// Only the layout of the scratch copy changes, not the sums.
inline int64_t channel_stride(int64_t plane) {
  const int64_t lines = (plane + 15) / 16;
  return 16 * (lines | 1);
}

// True when the stride-1 shifted path of one group takes its pixel-rows form on the padded grid
// (conv_forward_shifted_rows_grid; several groups: grouped_rows_forward).
inline bool grid_rows_applies(const ConvShape& s) {
  return s.G == 1 && shifted_applies(s) && pixel_rows_kg(s.K / s.G);
}

// The pixel-rows tiling: a tile is about 256 output pixels of one z slice of one image: a run of whole output
// rows, or a segment of one row when a row is longer. Its input, channels-last and expanded along W, is X
// (RowsTile::build): X row (a, r, i) holds, for e < kW, the Cg channels of the group's input point
// (z + a dD - pD, y0 + r - pH, x0 + i + e dW - pW) (zeros outside the input): kW Cg floats. For kernel
// offsets (a, b, *) the row of the tile's pixel p = yy w + i is then X row (a, yy + b dH, i), a uniform stride
// of kW Cg floats over the tile's pixels, so a microkernel reads it in place as A (or packs it), every pixel
// a real output (no padded-grid points computed and dropped), and one call covers the (e, channel) terms of a
// whole kernel row. X is kW copies of the tile's input, against kv for a column buffer.
struct RowsTile {
  struct Tile {
    int64_t y0, nr, x0, w;  // output rows [y0, y0 + nr), columns [x0, x0 + w)
    int64_t L, R;           // pixels (nr w), X rows per depth offset
    int64_t out_offset(int64_t oW) const { return y0 * oW + x0; }  // first pixel in the z slice (contiguous run)
  };
  int64_t Cg, kD, kH, kW, KW, oH, oW, rows, ytiles, xw, xtiles, tiles;
  explicit RowsTile(const ConvShape& s)
      : Cg(s.C / s.G), kD(s.k[0]), kH(s.k[1]), kW(s.k[2]), KW(s.k[2] * (s.C / s.G)), oH(s.out[1]), oW(s.out[2]),
        rows(std::max<int64_t>(1, std::min<int64_t>(s.out[1], 256 / s.out[2]))),
        ytiles((s.out[1] + rows - 1) / rows), xw(s.out[2]), xtiles(1) {
    if (oW > 256) xtiles = (oW + 255) / 256, xw = (oW + xtiles - 1) / xtiles;  // balanced segments
    tiles = ytiles * xtiles;
  }
  // tile t (< tiles) of a z slice
  Tile tile(const ConvShape& s, int64_t t) const {
    Tile q;
    q.y0 = t / xtiles * rows, q.nr = std::min(rows, oH - q.y0);
    q.x0 = t % xtiles * xw, q.w = std::min(xw, oW - q.x0);
    q.L = q.nr * q.w, q.R = q.nr + s.dil[1] * (kH - 1);
    return q;
  }
  int64_t x_floats(const Tile& q) const { return kD * q.R * q.w * KW; }
  // input columns [xlo, xhi) that the tile reads (clipped to the input)
  void in_cols(const ConvShape& s, const Tile& q, int64_t& xlo, int64_t& xhi) const {
    xlo = std::clamp<int64_t>(q.x0 - s.pad[2], 0, s.in[2]);
    xhi = std::clamp<int64_t>(q.x0 + q.w - 1 + s.dil[2] * (kW - 1) - s.pad[2] + 1, xlo, s.in[2]);
  }
  // X plus the channels-last staging of one depth offset's input rows
  int64_t scratch_floats(const ConvShape& s, const Tile& q) const {
    int64_t xlo, xhi;
    in_cols(s, q, xlo, xhi);
    return x_floats(q) + q.R * (xhi - xlo) * Cg;
  }
  // X of tile q of z slice z from xg, the group's first input channel of the image (NCDHW), into X; row_cl
  // is the staging (scratch_floats(q) - x_floats(q) floats)
  void build(const ConvShape& s, const GemmKernels& kt, const float* xg, int64_t z, const Tile& q, float* X,
             float* row_cl) const {
    const int64_t D = s.in[0], H = s.in[1], W = s.in[2], DHW = D * H * W, XR = q.w * KW;  // XR: floats per X row
    int64_t xlo, xhi;
    in_cols(s, q, xlo, xhi);
    const int64_t nx = xhi - xlo;
    for (int64_t a = 0; a < kD; ++a) {
      float* Xa = X + a * q.R * XR;
      const int64_t zi = z + a * s.dil[0] - s.pad[0];
      // X rows [r0, r1) are inside the input: their columns [xlo, xhi) channels-last, in one transpose when
      // they are whole rows (contiguous in NCDHW)
      const int64_t yb = q.y0 - s.pad[1];
      const int64_t r0 = std::clamp<int64_t>(-yb, 0, q.R), r1 = std::clamp<int64_t>(H - yb, r0, q.R);
      const bool zin = zi >= 0 && zi < D && nx > 0;
      if (zin && r1 > r0) {
        const float* src = xg + (zi * H + yb + r0) * W + xlo;
        if (nx == W) kt.transpose(Cg, (r1 - r0) * W, src, DHW, row_cl, Cg);
        else
          for (int64_t r = r0; r < r1; ++r)
            kt.transpose(Cg, nx, src + (r - r0) * W, DHW, row_cl + (r - r0) * nx * Cg, Cg);
      }
      for (int64_t r = 0; r < q.R; ++r) {
        float* xr = Xa + r * XR;
        if (!zin || r < r0 || r >= r1) {
          std::fill(xr, xr + XR, 0.0f);
          continue;
        }
        const float* src = row_cl + (r - r0) * nx * Cg;
        for (int64_t i = 0; i < q.w; ++i) {
          const int64_t xb = q.x0 + i - s.pad[2];  // input column of offset e = 0
          if (s.dil[2] == 1) {  // the offsets read consecutive points: one copy of the valid ones
            const int64_t e0 = std::clamp<int64_t>(xlo - xb, 0, kW), e1 = std::clamp<int64_t>(xhi - xb, e0, kW);
            float* d = xr + i * KW;
            std::fill(d, d + e0 * Cg, 0.0f);
            if (e1 > e0) std::copy_n(src + (xb + e0 - xlo) * Cg, (e1 - e0) * Cg, d + e0 * Cg);
            std::fill(d + e1 * Cg, d + KW, 0.0f);
            continue;
          }
          for (int64_t e = 0; e < kW; ++e) {
            float* d = xr + i * KW + e * Cg;
            const int64_t xi = xb + e * s.dil[2];
            if (xi >= xlo && xi < xhi) std::copy_n(src + (xi - xlo) * Cg, Cg, d);
            else std::fill(d, d + Cg, 0.0f);
          }
        }
      }
    }
  }
};

// The weights as the pixel-rows B operand and back: wb (G, kv, Cg, Kg) <-> w (G Kg, Cg, kv), i.e. per group
// (output channel, (channel, offset)) <-> ((offset, channel), output channel). Per (group, block of 16
// channels): one transpose of the Kg x 16 kv strip through a per-thread buffer (rows (channel, offset)),
// whose rows are copied in (offset, channel) order. A transpose per (group, channel) of a Kg x kv strip
// instead wrote its kv rows Cg Kg floats apart (4 KiB at Cg = Kg = 32: one L1 set): groups=32 C1024 7x7,
// one thread, the whole forward 3.13 -> 2.61 ms with this form.
constexpr int64_t kReorderChannels = 16;

// to_rows: wb = w reordered (src = w, dst = wb); else the way back (src = wb, dst = w)
template <class Scratch>
void reorder_weight_rows(const GemmKernels& kt, bool to_rows, const float* src, int64_t G, int64_t Kg, int64_t Cg,
                         int64_t kv, float* dst, Scratch& (*tmp_scratch)()) {
  const int64_t cblocks = (Cg + kReorderChannels - 1) / kReorderChannels;
  parallel_for(G * cblocks, std::max<int64_t>(1, 16384 / (Kg * kv * kReorderChannels)), 1, [&](int64_t b, int64_t e) {
    float* tmp = tmp_scratch().get(kReorderChannels * kv * Kg);  // rows (channel, offset) of the block
    for (int64_t it = b; it < e; ++it) {
      const int64_t g = it / cblocks, c0 = it % cblocks * kReorderChannels, cn = std::min(kReorderChannels, Cg - c0);
      const int64_t w_off = (g * Kg * Cg + c0) * kv;  // the strip's first weight in w
      if (to_rows) kt.transpose(Kg, cn * kv, src + w_off, Cg * kv, tmp, Kg);
      for (int64_t c = 0; c < cn; ++c)
        for (int64_t kk = 0; kk < kv; ++kk) {
          float* t = tmp + (c * kv + kk) * Kg;
          const int64_t row = ((g * kv + kk) * Cg + c0 + c) * Kg;  // its row in wb
          if (to_rows) std::copy_n(t, Kg, dst + row);
          else std::copy_n(src + row, Kg, t);
        }
      if (!to_rows) kt.transpose(cn * kv, Kg, tmp, Kg, dst + w_off, Cg * kv);
    }
  });
}

// Pixel-rows forward on expanded rows (grouped_rows_forward): the roles of the GEMM operands swap so that the
// output channels fill one NR-wide vector sliver; the output pixels are the MR broadcast rows, read in place
// from the tile's X (RowsTile), the weights B (G, kv, Cg, Kg) (row = (offset, channel), column = output
// channel, ldb = Kg). Each MR-pixel x Kg tile sums its kernel rows (a, b) in order, each row's (e, channel)
// terms in KC-blocks (at most kc_cap) in order: the same for every element whatever the tiling or thread count.
// The (pixel, channel) tile is transposed into the output.
template <class Scratch>
void conv_forward_shifted_rows(const ConvShape& s, const float* x, const float* w, const float* bias, GemmAct act,
                               float* y, Scratch& wpack_scratch, Scratch& (*cols_scratch)(), int64_t kc_cap) {
  const GemmKernels& kt = select_kernels(gemm_tables);
  const int64_t MR = kt.mr, KC = std::min(gemm_blocking().kc, kc_cap);
  const int64_t G = s.G, Cg = s.C / G, Kg = s.K / G, kv = s.kvol();
  const RowsTile rt(s);
  const int64_t kD = rt.kD, kH = rt.kH, kW = rt.kW, KW = rt.KW;
  const int64_t oD = s.out[0], oH = s.out[1], oW = s.out[2], P = s.out_pixels();
  // 1. weights as B (G, kv, Cg, Kg)
  float* wb = wpack_scratch.get(G * kv * Cg * Kg);
  reorder_weight_rows(kt, true, w, G, Kg, Cg, kv, wb, cols_scratch);
  // 2. tiles (the tile, its X rows and the weights stay in L2), per (image, group), or per (image, pair of
  //    groups) where two groups' output channels fill one vector sliver (micro_dual)
  const int64_t gs = grouped_rows_pairs(s) ? 2 : 1, ng = G / gs, KT = gs * Kg;  // KT: tile columns
  const int64_t units = s.N * ng * oD * rt.tiles;
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(4e5 * units / (2.0 * s.N * s.K * P * Cg * kv)));
  parallel_for(units, grain, 1, [&](int64_t ub, int64_t ue) {
    for (int64_t u = ub; u < ue; ++u) {
      const int64_t z = (u / rt.tiles) % oD, g0 = (u / (rt.tiles * oD)) % ng * gs, n = u / (rt.tiles * oD * ng);
      const RowsTile::Tile q = rt.tile(s, u % rt.tiles);
      const int64_t L = q.L, XR = q.w * KW, xf = rt.x_floats(q), sf = rt.scratch_floats(s, q);
      float* T = cols_scratch().get(L * KT + gs * sf);
      float* X[2] = {T + L * KT, T + L * KT + sf};  // each group's X, then its staging
      for (int64_t j = 0; j < gs; ++j)
        rt.build(s, kt, x + (n * s.C + (g0 + j) * Cg) * s.in_pixels(), z, q, X[j], X[j] + xf);
      // 3. (kernel row, K block) outer, pixel slivers inner: the weight block (kb x Kg) stays in L1
      bool first = true;
      for (int64_t a = 0; a < kD; ++a)
        for (int64_t b = 0; b < kH; ++b) {
          const int64_t xo = (a * q.R + b * s.dil[1]) * XR, wo = (a * kH + b) * kW * Cg * Kg;
          const float* bw = wb + g0 * kv * Cg * Kg + wo;
          for (int64_t c0 = 0; c0 < KW; c0 += KC) {
            const int64_t kb = std::min(KC, KW - c0);
            GemmTile t;
            t.beta = first ? 0.0f : 1.0f;
            if (first && bias) t.bias = bias + g0 * Kg, t.bias_kind = GemmBias::col;
            for (int64_t i0 = 0; i0 < L; i0 += MR) {
              const int m = static_cast<int>(std::min(MR, L - i0));
              const float* a0 = X[0] + xo + i0 * KW + c0;
              if (gs == 2)
                kt.micro_dual(kb, a0, X[1] + xo + i0 * KW + c0, KW, bw + c0 * Kg, bw + kv * Cg * Kg + c0 * Kg, Kg,
                              T + i0 * KT, KT, m, static_cast<int>(Kg), t);
              else
                kt.micro_direct_a(kb, a0, KW, bw + c0 * Kg, Kg, T + i0 * KT, KT, m, static_cast<int>(Kg), t);
            }
            first = false;
          }
        }
      if (act != GemmAct::none) kt.act(act, L * KT, T);
      // 4. (pixel, channel) -> the output's (channel, pixel)
      kt.transpose(L, KT, T, KT, y + ((n * s.K + g0 * Kg) * oD + z) * oH * oW + q.out_offset(oW), P);
    }
  });
}

// Weight gradient on the pixel-rows tiling (grouped_rows_weight; one group keeps the column buffer): per group,
// gw_g^T ((offset, channel) x Kg) = sum over the tiles of X_ab^T dy_tile^T, kernel row (a, b) by kernel row: A =
// the tile's X rows of (a, b) packed into MR-row slivers of (e, channel) (kW Cg rows, full but for the last), B =
// the tile's dy transposed to (pixel, output channel) (one NR-wide sliver), K = the tile's pixels. No column
// buffer: X is kW copies of the tile's input where im2col is kv. Work items are (group, block of tiles) with a
// fixed number of blocks (ceil(8 / G), at most 8: shape-dependent only), each summing its tiles in order into its
// own partial; the partials are added in block order, then reordered into gw (K, Cg, k...): the same bits for any
// thread count.
template <class Scratch>
void conv_backward_weight_rows(const ConvShape& s, const float* dy, const float* x, float* gw,
                               Scratch& partial_scratch, Scratch& (*cols_scratch)()) {
  const GemmKernels& kt = select_kernels(gemm_tables);
  const int64_t MR = kt.mr, KC = gemm_blocking().kc;
  const int64_t G = s.G, Cg = s.C / G, Kg = s.K / G, kv = s.kvol();
  const RowsTile rt(s);
  const int64_t kH = rt.kH, KW = rt.KW, ms = (KW + MR - 1) / MR;
  const int64_t oD = s.out[0], oH = s.out[1], oW = s.out[2], P = s.out_pixels();
  const int64_t units = s.N * oD * rt.tiles;  // (image, z slice, tile)
  const int64_t want = std::min<int64_t>(units, (8 + G - 1) / G);  // blocks per group
  const int64_t per_block = (units + want - 1) / want, nb = (units + per_block - 1) / per_block;
  const int64_t wg = kv * Cg * Kg;  // a group's partial: rows (offset, channel), Kg columns
  float* part = partial_scratch.get(nb * G * wg);
  parallel_for(G * nb, 1, 1, [&](int64_t ib, int64_t ie) {
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t g = it / nb, blk = it % nb;
      float* Cp = part + (blk * G + g) * wg;
      const int64_t u0 = blk * per_block, u1 = std::min(units, u0 + per_block);
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t z = (u / rt.tiles) % oD, n = u / (rt.tiles * oD);
        const RowsTile::Tile q = rt.tile(s, u % rt.tiles);
        const int64_t L = q.L, XR = q.w * KW, kb_max = std::min(KC, L);
        float* dyT = cols_scratch().get(L * Kg + ms * MR * kb_max + rt.scratch_floats(s, q));
        float* ap = dyT + L * Kg;
        float* X = ap + ms * MR * kb_max;
        rt.build(s, kt, x + (n * s.C + g * Cg) * s.in_pixels(), z, q, X, X + rt.x_floats(q));
        kt.transpose(Kg, L, dy + ((n * s.K + g * Kg) * oD + z) * oH * oW + q.out_offset(oW), P, dyT, Kg);
        for (int64_t a = 0; a < rt.kD; ++a)
          for (int64_t b = 0; b < kH; ++b) {
            const float* xa = X + (a * q.R + b * s.dil[1]) * XR;
            float* Cab = Cp + (a * kH + b) * KW * Kg;
            for (int64_t p0 = 0; p0 < L; p0 += KC) {
              const int64_t kb = std::min(KC, L - p0);
              kt.pack_a_copy(KW, kb, xa + p0 * KW, KW, ap);
              GemmTile t;
              t.beta = (u == u0 && p0 == 0) ? 0.0f : 1.0f;
              for (int64_t sl = 0; sl < ms; ++sl)
                kt.micro(kb, ap + sl * MR * kb, dyT + p0 * Kg, Kg, Cab + sl * MR * Kg, Kg,
                         static_cast<int>(std::min(MR, KW - sl * MR)), static_cast<int>(Kg), t);
            }
          }
      }
    }
  });
  // the block partials summed in block order into block 0, then reordered into gw
  const int64_t total = G * wg;
  if (nb > 1)
    parallel_for(total, 16384, 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        float acc = part[i];
        for (int64_t blk = 1; blk < nb; ++blk) acc += part[blk * total + i];
        part[i] = acc;
      }
    });
  reorder_weight_rows(kt, false, part, G, Kg, Cg, kv, gw, cols_scratch);
}

// Pixel-rows forward on the padded grid, for one group (grid_rows_applies): the output channels fill one
// NR-wide vector sliver as in conv_forward_shifted_rows, but the A rows are the grid points of the whole
// zero-padded input, channels-last (N, Dp, Hp, Wp, C), so that for
// kernel offset kk the A rows (one per grid point, Cg channels each) are read in place, lda = C; the
// weights are reordered to B (G, kv, Cg, Kg) (row = channel, column = output channel, ldb = Kg). Each
// MR-point x Kg tile sums its offsets in kk order (then channels in KC blocks), the same order for
// every element whatever the tiling or thread count. The (point, channel) tile is transposed into the
// NCDHW output, dropping the x >= oW points. Against the expanded rows of conv_forward_shifted_rows: no kW-fold
// copy of the input and A rows that overlap (lda = C), where those hold kW C floats each (long kernels: more
// A than L1 holds beside the weights; paired, 2 threads, Zen 4, grid / expanded: 1-D k19 C16 -> 32 1.30x,
// 5x5 C32 56x56 0.99-1.08x), for the price of the dropped points (Wp - oW per row).
template <class Scratch>
void conv_forward_shifted_rows_grid(const ConvShape& s, const float* x, const float* w, const float* bias, GemmAct act,
                               float* y, Scratch& xpad_scratch, Scratch& wpack_scratch,
                               Scratch& (*cols_scratch)()) {
  const GemmKernels& kt = select_kernels(gemm_tables);
  const int64_t MR = kt.mr, KC = gemm_blocking().kc;
  const int64_t C = s.C, G = s.G, Cg = s.C / G, Kg = s.K / G, kv = s.kvol();
  const int64_t oD = s.out[0], oH = s.out[1], oW = s.out[2];
  const int64_t Dp = oD + s.dil[0] * (s.k[0] - 1), Hp = oH + s.dil[1] * (s.k[1] - 1),
                Wp = oW + s.dil[2] * (s.k[2] - 1);
  const int64_t HWp = Hp * Wp, Sp = Dp * HWp;
  const int64_t D = s.in[0], H = s.in[1], W = s.in[2];
  // 1. the zero-padded input, channels-last (N, Dp, Hp, Wp, C): one unit per (image, padded row)
  float* xp = xpad_scratch.get(s.N * Sp * C);
  parallel_for(s.N * Dp * Hp, std::max<int64_t>(1, 16384 / std::max<int64_t>(Wp * C, 1)), 1,
               [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t n = r / (Dp * Hp), zp = (r / Hp) % Dp, yp = r % Hp;
      float* row = xp + (n * Sp + zp * HWp + yp * Wp) * C;
      const int64_t z = zp - s.pad[0], yy = yp - s.pad[1];
      if (z < 0 || z >= D || yy < 0 || yy >= H) {
        std::fill(row, row + Wp * C, 0.0f);
        continue;
      }
      const int64_t x0 = std::min<int64_t>(s.pad[2], Wp), x1 = std::min<int64_t>(Wp, s.pad[2] + W);
      std::fill(row, row + x0 * C, 0.0f);
      std::fill(row + x1 * C, row + Wp * C, 0.0f);
      const float* src = x + n * C * D * H * W + (z * H + yy) * W + (x0 - s.pad[2]);
      kt.transpose(C, x1 - x0, src, D * H * W, row + x0 * C, C);  // (channel, x) -> (x, channel)
    }
  });
  // 2. weights as B (G, kv, Cg, Kg)
  float* wb = wpack_scratch.get(G * kv * Cg * Kg);
  reorder_weight_rows(kt, true, w, G, Kg, Cg, kv, wb, cols_scratch);
  // 3. tiles: a run of whole grid rows of one z slice (~256 grid points: the tile and
  //    its input rows stay in L2; measured ~4% faster than 512 on C32 16x56x56), per (image, group)
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(oH, 256 / Wp));
  const int64_t ytiles = (oH + rows - 1) / rows;
  const int64_t units = s.N * G * oD * ytiles;
  const int64_t grain =
      std::max<int64_t>(1, static_cast<int64_t>(4e5 * units / (2.0 * s.N * s.K * s.out_pixels() * Cg * kv)));
  parallel_for(units, grain, 1, [&](int64_t ub, int64_t ue) {
    for (int64_t u = ub; u < ue; ++u) {
      const int64_t yt = u % ytiles, z = (u / ytiles) % oD, g = (u / (ytiles * oD)) % G, n = u / (ytiles * oD * G);
      const int64_t y0 = yt * rows, nr = std::min(rows, oH - y0);
      const int64_t q0 = z * HWp + y0 * Wp, L = (nr - 1) * Wp + oW;  // grid points of the tile
      float* T = cols_scratch().get(L * Kg);                          // (point, channel), ld Kg
      const float* xg = xp + (n * Sp + q0) * C + g * Cg;
      const int nn = static_cast<int>(Kg);
      // With one group and unit W dilation, the row offsets e of a (a, b) pair read consecutive points,
      // whose channels-last rows are contiguous: one call sums (e, channel) = k[2] * C terms at once.
      const int64_t ew = (G == 1 && s.dil[2] == 1 && s.k[2] * Cg <= KC) ? s.k[2] : 1;
      // (kernel offset, channel block) outer, point slivers inner: the weight block (kb x Kg, kb <= KC) stays
      // in L1 across the tile while the input rows and the tile stream from L2 (measured ~5% faster than
      // each sliver's whole sum in turn on C32 16x56x56 3x3x3).
      bool first = true;
      for (int64_t a = 0; a < s.k[0]; ++a)
        for (int64_t b = 0; b < s.k[1]; ++b)
          for (int64_t e = 0; e < s.k[2]; e += ew) {
            const int64_t kk = (a * s.k[1] + b) * s.k[2] + e;
            const int64_t off = a * s.dil[0] * HWp + b * s.dil[1] * Wp + e * s.dil[2];
            for (int64_t c0 = 0; c0 < ew * Cg; c0 += KC) {
              const int64_t kb = std::min(KC, ew * Cg - c0);
              GemmTile t;
              t.beta = first ? 0.0f : 1.0f;
              if (first && bias) t.bias = bias + g * Kg, t.bias_kind = GemmBias::col;
              const float* bw = wb + ((g * kv + kk) * Cg + c0) * Kg;
              for (int64_t i0 = 0; i0 < L; i0 += MR)
                kt.micro_direct_a(kb, xg + (i0 + off) * C + c0, C, bw, Kg, T + i0 * Kg, Kg,
                                  static_cast<int>(std::min(MR, L - i0)), nn, t);
              first = false;
            }
          }
      if (act != GemmAct::none) kt.act(act, L * Kg, T);
      // 4. transpose into the output, keeping the x < oW points of each grid row: (point, channel) ->
      //    (channel, point)
      float* out = y + ((n * s.K + g * Kg) * oD + z) * oH * oW + y0 * oW;
      for (int64_t r = 0; r < nr; ++r) kt.transpose(oW, Kg, T + r * Wp * Kg, Kg, out + r * oW, oD * oH * oW);
    }
  });
}

// The grid of the shifted passes: (Dp, Hp, Wp) = out + dilation * (k - 1), padded channels Sp floats apart,
// the shift of each kernel offset, and the tiles (a run of whole grid rows of one z slice, ~512 grid points).
struct ShiftedGrid {
  int64_t Dp, Hp, Wp, HWp, Sp, rows, ytiles;
  std::vector<int64_t> offs;  // offs[kk]: kernel offset kk's shift in the padded input
  explicit ShiftedGrid(const ConvShape& s)
      : Dp(s.out[0] + s.dil[0] * (s.k[0] - 1)), Hp(s.out[1] + s.dil[1] * (s.k[1] - 1)),
        Wp(s.out[2] + s.dil[2] * (s.k[2] - 1)), HWp(Hp * Wp), Sp(channel_stride(Dp * HWp)),
        rows(std::max<int64_t>(1, std::min<int64_t>(s.out[1], 512 / Wp))), ytiles((s.out[1] + rows - 1) / rows),
        offs(s.kvol()) {
    for (int64_t a = 0; a < s.k[0]; ++a)
      for (int64_t b = 0; b < s.k[1]; ++b)
        for (int64_t e = 0; e < s.k[2]; ++e)
          offs[(a * s.k[1] + b) * s.k[2] + e] = a * s.dil[0] * HWp + b * s.dil[1] * Wp + e * s.dil[2];
  }
  // y tile t of a z slice: its first output row y0, nr rows, first grid point q0 and L grid points
  void tile(int64_t t, int64_t z, int64_t oH, int64_t oW, int64_t& y0, int64_t& nr, int64_t& q0, int64_t& L) const {
    y0 = t * rows, nr = std::min(rows, oH - y0);
    q0 = z * HWp + y0 * Wp, L = (nr - 1) * Wp + oW;
  }
  // the zero-padded input (N, C, Dp, Hp, Wp), channels Sp apart (the gap after each plane zeroed too)
  template <class Scratch>
  float* pad(const ConvShape& s, const float* x, Scratch& scratch) const {
    const int64_t D = s.in[0], H = s.in[1], W = s.in[2];
    float* xp = scratch.get(s.N * s.C * Sp);
    parallel_for(s.N * s.C, std::max<int64_t>(1, 65536 / std::max<int64_t>(Sp, 1)), 1, [&](int64_t b, int64_t e) {
      for (int64_t nc = b; nc < e; ++nc) {
        const float* src = x + nc * D * H * W;
        float* dst = xp + nc * Sp;
        for (int64_t zp = 0; zp < Dp; ++zp)
          for (int64_t yp = 0; yp < Hp; ++yp) {
            float* row = dst + zp * HWp + yp * Wp;
            const int64_t z = zp - s.pad[0], yy = yp - s.pad[1];
            if (z < 0 || z >= D || yy < 0 || yy >= H) {
              std::fill(row, row + Wp, 0.0f);
              continue;
            }
            // columns [x0, x1) of the padded row hold input columns [x0 - pad, x1 - pad), the rest zeros
            const int64_t x0 = std::min<int64_t>(s.pad[2], Wp);
            const int64_t x1 = std::max(x0, std::min<int64_t>(Wp, s.pad[2] + W));
            std::fill(row, row + x0, 0.0f);
            if (x1 > x0) std::copy_n(src + (z * H + yy) * W + (x0 - s.pad[2]), x1 - x0, row + x0);
            std::fill(row + x1, row + Wp, 0.0f);
          }
        std::fill(dst + Dp * HWp, dst + Sp, 0.0f);
      }
    });
    return xp;
  }
};

// scratch(n) returns a float buffer of n elements owned by the calling thread (cols_scratch: per thread).
// Each microkernel pass sums at most kc_cap terms (then added to C): conv_forward_blocked's cap.
template <class Scratch>
void conv_forward_shifted(const ConvShape& s, const float* x, const float* w, const float* bias, GemmAct act,
                          float* y, Scratch& xpad_scratch, Scratch& wpack_scratch, Scratch& (*cols_scratch)(),
                          int64_t kc_cap) {
  const GemmKernels& kt = select_kernels(gemm_tables);
  if (grouped_rows_forward(s)) {
    conv_forward_shifted_rows(s, x, w, bias, act, y, wpack_scratch, cols_scratch, kc_cap);
    return;
  }
  if (grid_rows_applies(s)) {
    conv_forward_shifted_rows_grid(s, x, w, bias, act, y, xpad_scratch, wpack_scratch, cols_scratch);
    return;
  }
  const int64_t MR = kt.mr, NR = kt.nr;
  const int64_t KC = std::min(gemm_blocking().kc, kc_cap);
  const int64_t G = s.G, Cg = s.C / G, Kg = s.K / G, kv = s.kvol();
  const int64_t oD = s.out[0], oH = s.out[1], oW = s.out[2], P = s.out_pixels();
  const ShiftedGrid grid(s);
  const int64_t Wp = grid.Wp, Sp = grid.Sp;
  // 1. the zero-padded input
  const float* xp = grid.pad(s, x, xpad_scratch);
  // 2. weights reordered to K = (offset, channel), (G, Kg, kv, Cg), and packed by chunks of that K: whole
  //    offsets (as many as fit in KC, each of the Cg channels) when Cg <= KC, else one channel block of one
  //    offset. Chunk (kk0, nk offsets, channels c0 .. c0 + kb) of group g: its ms slivers (nk kb steps each)
  //    at wp + ((g * kv + kk0) * Cg + c0) * ms * MR, sliver i a further i * MR * nk * kb.
  const int64_t ms = (Kg + MR - 1) / MR;
  float* wp = wpack_scratch.get(G * kv * Cg * (ms * MR + Kg));
  float* wr = wp + G * kv * Cg * ms * MR;  // reordered, packed from
  struct Chunk {
    int64_t kk0, nk, c0, kb;
  };
  std::vector<Chunk> chunks;
  if (Cg <= KC) {
    const int64_t per = std::max<int64_t>(1, KC / Cg);
    for (int64_t kk = 0; kk < kv; kk += per) chunks.push_back({kk, std::min(per, kv - kk), 0, Cg});
  } else {
    for (int64_t kk = 0; kk < kv; ++kk)
      for (int64_t c0 = 0; c0 < Cg; c0 += KC) chunks.push_back({kk, 1, c0, std::min(KC, Cg - c0)});
  }
  auto packed = [&](int64_t g, const Chunk& ch) { return wp + ((g * kv + ch.kk0) * Cg + ch.c0) * ms * MR; };
  // per group, spread over the threads (serial, they held groups=32 C1024 on 7x7 back: 1.08x at batch 8,
  // 1.49x at batch 1 on two threads once parallel)
  parallel_for(G, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, Kg * Cg * kv)), 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      for (int64_t k = 0; k < Kg; ++k)
        for (int64_t c = 0; c < Cg; ++c)
          for (int64_t kk = 0; kk < kv; ++kk)
            wr[((g * Kg + k) * kv + kk) * Cg + c] = w[((g * Kg + k) * Cg + c) * kv + kk];
      for (const Chunk& ch : chunks)
        kt.pack_a_transpose(Kg, ch.nk * ch.kb, wr + g * Kg * kv * Cg + ch.kk0 * Cg + ch.c0, kv * Cg, packed(g, ch));
    }
  });
  // 3. tiles, per (image, group)
  const int64_t ytiles = grid.ytiles;
  const int64_t units = s.N * G * oD * ytiles;
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(4e5 * units / (2.0 * s.N * s.K * P * Cg * kv)));
  parallel_for(units, grain, 1, [&](int64_t ub, int64_t ue) {
    for (int64_t u = ub; u < ue; ++u) {
      const int64_t yt = u % ytiles, z = (u / ytiles) % oD, g = (u / (ytiles * oD)) % G, n = u / (ytiles * oD * G);
      int64_t y0, nr, q0, L;  // the tile's output rows, its first grid point and grid points
      grid.tile(yt, z, oH, oW, y0, nr, q0, L);
      float* C = cols_scratch().get(Kg * L);
      const float* xg = xp + (n * s.C + g * Cg) * Sp + q0;
      for (int64_t j0 = 0; j0 < L; j0 += NR) {
        const int nn = static_cast<int>(std::min(NR, L - j0));
        for (int64_t i = 0; i < ms; ++i) {
          const int m = static_cast<int>(std::min(MR, Kg - i * MR));
          for (size_t ci = 0; ci < chunks.size(); ++ci) {
            const Chunk& ch = chunks[ci];
            GemmTile t;
            t.beta = ci == 0 ? 0.0f : 1.0f;
            if (ci == 0 && bias) t.bias = bias + g * Kg + i * MR, t.bias_kind = GemmBias::row;
            kt.micro_offsets(ch.kb, ch.nk, grid.offs.data() + ch.kk0, packed(g, ch) + i * MR * ch.nk * ch.kb,
                             xg + ch.c0 * Sp + j0, Sp, C + i * MR * L + j0, L, m, nn, t);
          }
        }
      }
      // 4. keep the x < oW points of each grid row
      for (int64_t k = 0; k < Kg; ++k) {
        float* out = y + ((n * s.K + g * Kg + k) * oD + z) * oH * oW + y0 * oW;
        for (int64_t r = 0; r < nr; ++r) {
          float* crow = C + k * L + r * Wp;
          if (act != GemmAct::none) kt.act(act, oW, crow);
          std::copy(crow, crow + oW, out + r * oW);
        }
      }
    }
  });
}

}  // namespace fastml::conv_detail
