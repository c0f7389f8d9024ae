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
// the MR-row weight slivers, then every (offset, channel block): the C micro-tile stays in L1 across
// the whole K sum. Each element's sum order depends on the shape only (thread-count invariant).
// Pixel-rows variant (conv_forward_shifted_rows, AVX-512, 29-32 output channels per group): the grid
// points are the MR broadcast rows, read in place from a channels-last padded input, and the output
// channels one NR-wide vector sliver (no 14 + 14 + 4 row edge); the tile is transposed into the output.
//
// Test: pytest tests/test_conv.py (CASES with stride 1). Bench: python -m fastml.bench --ops conv
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/isa.h"
#include "core/parallel.h"
#include "gemm/gemm_kernels.h"
#include "ops/conv/conv.h"

namespace fastml::conv_detail {

// True when the shifted path applies and pays: AVX-512, stride 1, NCDHW in and out, C/G >= 16, at least 18
// kernel offsets (measured on an AVX-512 Xeon: 1.1-1.15x the column-buffer path on 3x3x3; even with it on
// 3x3 and k5 1-D, where the column buffer is cheap relative to the GEMM), little of the grid dropped.
// Not on AVX2: on Zen 3 (2 threads, im2col forced) the column path took 0.77-0.86x its time on 5x5 and
// 7x7 conv2d at 28x28-56x56 and on 3x3x3 conv3d, and level at 14x14 and 9x9. Its microkernel calls run
// k = C/G steps (64 there) per kernel offset against the column path's K blocks of ~230; the loop order
// that keeps a B sliver in L1 across the weight slivers did not close the gap (measured), and the cause
// was not isolated further.
inline bool shifted_applies(const ConvShape& s) {
  if (active_isa() != Isa::avx512) return false;
  if (s.in_cl || s.out_cl || s.C / s.G < 16 || s.kvol() < 18) return false;
  for (int d = 0; d < 3; ++d)
    if (s.stride[d] != 1) return false;
  const int64_t Wp = s.out[2] + s.dil[2] * (s.k[2] - 1);
  return 8 * (Wp - s.out[2]) <= Wp;  // at most 1/8 of the grid computed and dropped
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

// Pixel-rows variant for few output channels per group (Kg <= NR, AVX-512 where the in-place-A
// microkernel is native): the roles of the GEMM operands swap so that the output channels fill one
// NR-wide vector sliver instead of MR-row weight slivers with a ragged edge (32 channels: one sliver
// instead of 14 + 14 + 4 rows). The input is zero-padded channels-last, (N, Dp, Hp, Wp, C), so that for
// kernel offset kk the A rows (one per grid point, Cg channels each) are read in place, lda = C; the
// weights are reordered to B (G, kv, Cg, Kg) (row = channel, column = output channel, ldb = Kg). Each
// MR-point x Kg tile sums its offsets in kk order (then channels in KC blocks), the same order for
// every element whatever the tiling or thread count. The (point, channel) tile is transposed into the
// NCDHW output, dropping the x >= oW points.
template <class Scratch>
void conv_forward_shifted_rows(const ConvShape& s, const float* x, const float* w, const float* bias, GemmAct act,
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
  for (int64_t g = 0; g < G; ++g)
    for (int64_t k = 0; k < Kg; ++k)
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t kk = 0; kk < kv; ++kk)
          wb[((g * kv + kk) * Cg + c) * Kg + k] = w[((g * Kg + k) * Cg + c) * kv + kk];
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

// scratch(n) returns a float buffer of n elements owned by the calling thread (cols_scratch: per thread).
template <class Scratch>
void conv_forward_shifted(const ConvShape& s, const float* x, const float* w, const float* bias, GemmAct act,
                          float* y, Scratch& xpad_scratch, Scratch& wpack_scratch, Scratch& (*cols_scratch)()) {
  const GemmKernels& kt = select_kernels(gemm_tables);
  // pixel rows when the output channels fill one vector sliver better than MR-row slivers (AVX-512: Kg 29-32,
  // measured 1.2-1.3x; Kg 16-28 0.7-0.9x: the masked sliver still costs its full FMAs)
  const int64_t kg = s.K / s.G;
  if (active_isa() == Isa::avx512 && kg <= kt.nr && kt.nr < kt.mr * ((kg + kt.mr - 1) / kt.mr)) {
    conv_forward_shifted_rows(s, x, w, bias, act, y, xpad_scratch, wpack_scratch, cols_scratch);
    return;
  }
  const int64_t MR = kt.mr, NR = kt.nr, KC = gemm_blocking().kc;
  const int64_t G = s.G, Cg = s.C / G, Kg = s.K / G, kv = s.kvol();
  const int64_t oD = s.out[0], oH = s.out[1], oW = s.out[2], P = s.out_pixels();
  const int64_t Dp = oD + s.dil[0] * (s.k[0] - 1), Hp = oH + s.dil[1] * (s.k[1] - 1),
                Wp = oW + s.dil[2] * (s.k[2] - 1);
  const int64_t HWp = Hp * Wp, Sp = channel_stride(Dp * HWp);
  const int64_t D = s.in[0], H = s.in[1], W = s.in[2];
  // 1. the zero-padded input (N, C, Dp, Hp, Wp), channels Sp apart (the gap after each plane zeroed too)
  float* xp = xpad_scratch.get(s.N * s.C * Sp);
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
          const float* in = src + (z * H + yy) * W;
          for (int64_t xq = 0; xq < Wp; ++xq) {
            const int64_t xx = xq - s.pad[2];
            row[xq] = (xx >= 0 && xx < W) ? in[xx] : 0.0f;
          }
        }
      std::fill(dst + Dp * HWp, dst + Sp, 0.0f);
    }
  });
  // 2. weights reordered to K = (offset, channel) and packed: group g, offset kk, channel block c0
  //    (length kb <= KC): sliver i at wp + ((g * kv + kk) * Cg + c0) * ms * MR + i * MR * kb.
  const int64_t ms = (Kg + MR - 1) / MR;
  float* wp = wpack_scratch.get(G * kv * Cg * (ms * MR + Kg));
  float* wr = wp + G * kv * Cg * ms * MR;  // reordered (G, kv, Kg, Cg), packed from
  for (int64_t g = 0; g < G; ++g)
    for (int64_t k = 0; k < Kg; ++k)
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t kk = 0; kk < kv; ++kk)
          wr[((g * kv + kk) * Kg + k) * Cg + c] = w[((g * Kg + k) * Cg + c) * kv + kk];
  for (int64_t g = 0; g < G; ++g)
    for (int64_t kk = 0; kk < kv; ++kk)
      for (int64_t c0 = 0; c0 < Cg; c0 += KC)
        kt.pack_a_transpose(Kg, std::min(KC, Cg - c0), wr + (g * kv + kk) * Kg * Cg + c0, Cg,
                            wp + ((g * kv + kk) * Cg + c0) * ms * MR);
  // 3. tiles: a run of whole grid rows of one z slice (~512 grid points), per (image, group)
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(oH, 512 / Wp));
  const int64_t ytiles = (oH + rows - 1) / rows;
  const int64_t units = s.N * G * oD * ytiles;
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(4e5 * units / (2.0 * s.N * s.K * P * Cg * kv)));
  parallel_for(units, grain, 1, [&](int64_t ub, int64_t ue) {
    for (int64_t u = ub; u < ue; ++u) {
      const int64_t yt = u % ytiles, z = (u / ytiles) % oD, g = (u / (ytiles * oD)) % G, n = u / (ytiles * oD * G);
      const int64_t y0 = yt * rows, nr = std::min(rows, oH - y0);
      const int64_t q0 = z * HWp + y0 * Wp, L = (nr - 1) * Wp + oW;  // grid points of the tile
      float* C = cols_scratch().get(Kg * L);
      const float* xg = xp + (n * s.C + g * Cg) * Sp + q0;
      for (int64_t j0 = 0; j0 < L; j0 += NR) {
        const int nn = static_cast<int>(std::min(NR, L - j0));
        for (int64_t i = 0; i < ms; ++i) {
          const int m = static_cast<int>(std::min(MR, Kg - i * MR));
          bool first = true;
          for (int64_t a = 0; a < s.k[0]; ++a)
            for (int64_t b = 0; b < s.k[1]; ++b)
              for (int64_t e = 0; e < s.k[2]; ++e) {
                const int64_t kk = (a * s.k[1] + b) * s.k[2] + e;
                const int64_t off = a * s.dil[0] * HWp + b * s.dil[1] * Wp + e * s.dil[2];
                for (int64_t c0 = 0; c0 < Cg; c0 += KC) {
                  const int64_t kb = std::min(KC, Cg - c0);
                  GemmTile t;
                  t.beta = first ? 0.0f : 1.0f;
                  if (first && bias) t.bias = bias + g * Kg + i * MR, t.bias_kind = GemmBias::row;
                  kt.micro(kb, wp + ((g * kv + kk) * Cg + c0) * ms * MR + i * MR * kb, xg + c0 * Sp + off + j0, Sp,
                           C + i * MR * L + j0, L, m, nn, t);
                  first = false;
                }
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
