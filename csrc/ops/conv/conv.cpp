// Convolution entry points (contract and formulas: conv.h): tiled im2col / col2im around the SGEMM engine.
//
// Work decomposition
//   forward        units (image, group, tile of output pixels) in parallel; each unit builds its column
//                  tile in the thread's workspace and multiplies it serially: NCDHW output drives the
//                  GEMM microkernels directly (weights packed once per call or read in place, columns
//                  read in place: weights_in_place),
//                  channels-last output calls sgemm (which runs serially inside a parallel region).
//                  Stride 1 where conv_detail::shifted_applies (few output channels per group; AVX-512
//                  also >= 18 kernel offsets and C/G >= 16): conv_shifted.h (no column buffer; AVX-512 with 29-32
//                  output channels per group: pixels as the GEMM rows, on expanded input rows with groups).
//                  Tile size depends on the shape only (never on the thread count); images of fewer
//                  than kSpanPixels output pixels share a tile (span_images), 1x1 included. With fewer
//                  units than threads (batch 1) each unit's output channels are shared out (RowSplit).
//   backward data  1x1: tiles of W^T dy in parallel. Stride 1 and C/G >= 16 (or small C/G and K/G): the
//                  forward pass above on flipped kernels. Otherwise (col2im): spans of small images (one
//                  product each), or units (image, group) in parallel when there are
//                  enough of them for every thread; else units run one after the other, each tile's
//                  GEMM is threaded by the engine and its col2im is split over channels (no two threads
//                  add into the same element).
//   backward wt    (image, tile) units (or spans of images, as in the forward) cut into at most
//                  kWeightBlocks fixed blocks (fewer for big weights); each block sums its units into a
//                  private partial (cols dy^T, beta = 1 GEMMs); partials are added in block order, then
//                  transposed into (K, C/G, k...). AVX-512, groups, stride 1, 16-32 output channels per
//                  group (conv_detail::grouped_rows_weight): conv_backward_weight_rows (conv_shifted.h),
//                  (group, block of tiles) items on the expanded pixel rows' tiles, no column buffer.
// All three give bitwise identical results for any thread count.
//
// Test: pytest tests/test_conv.py tests/test_conv_algorithms.py. Bench: python -m fastml.bench --ops conv
#include "ops/conv/conv.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>


#include "core/isa.h"
#include "core/parallel.h"
#include "core/scratch.h"
#include "gemm/gemm_kernels.h"
#include "ops/conv/conv_shifted.h"

namespace fastml {

namespace {

constexpr int64_t kWeightBlocks = 8;         // fixed split of the weight-gradient sum over (image, tile) units
constexpr int64_t kWeightPartialBytes = 16 << 20;  // budget for the blocks' partial sums
constexpr int64_t kWeightRowsKg = 256;  // from this many output channels per group: dy cols^T, gw's layout
// Column tile of the forward / backward-data passes: an eighth of L2 (measured best at 2 MB L2: the
// tile plus the GEMM's packed panels stay cache resident); the weight gradient uses larger tiles (the
// tile is the K of its GEMM, and each tile re-reads the partial result).
int64_t l2_bytes() { return cpu_info().l2_bytes > 0 ? cpu_info().l2_bytes : (1 << 20); }  // 1 MiB if unreported
int64_t forward_tile_bytes() { return std::clamp<int64_t>(l2_bytes() / 8, 128 << 10, 512 << 10); }
int64_t weight_tile_bytes() { return std::clamp<int64_t>(l2_bytes() / 2, 512 << 10, 2 << 20); }
constexpr int64_t kSpanPixels = 256;         // images of fewer output pixels share column tiles (span_images)
constexpr double kFlopsPerThread = 4e5;      // below this much work per thread, stay on one thread

// Per-thread buffers (core/scratch.h). Those of 1 MiB and more are on transparent huge pages: the shifted
// path reads the padded input with a channel-sized stride, one 4 KiB page per channel otherwise.
thread_local Scratch t_cols;      // this thread's column tile
thread_local Scratch t_ctile;     // this thread's output tile when a column tile spans several images
thread_local Scratch t_partials;  // the calling thread's weight-gradient block partials
thread_local Scratch t_xpad;      // the calling thread's zero-padded input (stride-1 shifted path)
thread_local Scratch t_wpack;     // the calling thread's weights packed into microkernel A slivers (forward)
thread_local Scratch t_wflip;     // the calling thread's flipped, channel-swapped weights (backward data)

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Images per column tile when an image has fewer than kSpanPixels output pixels (one tile each): tiles
// of up to ~kSpanPixels columns, the images balanced over them; 1 (no spanning) otherwise.
int64_t span_images(int64_t N, int64_t P, int64_t ntiles) {
  if (ntiles != 1 || P >= kSpanPixels || N <= 1) return 1;
  return ceil_div(N, ceil_div(N, ceil_div(kSpanPixels, P)));
}

// dst (rows x ni P, row stride ni P) = the rows of images [n0, n0 + ni) side by side: row r of image i is
// src + (n0 + i) * image + r * P (P contiguous floats), e.g. dy_g of a span of images.
void gather_images(float* dst, const float* src, int64_t image, int64_t rows, int64_t n0, int64_t ni, int64_t P) {
  for (int64_t i = 0; i < ni; ++i)
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(dst + r * ni * P + i * P, src + (n0 + i) * image + r * P, sizeof(float) * P);
}

// The inverse: row r of image i of dst (dst + (n0 + i) * image + r * P) = columns [i P, (i + 1) P) of row r
// of src (row stride ni P), e.g. a span's output tile written back to each image.
void scatter_images(float* dst, const float* src, int64_t image, int64_t rows, int64_t n0, int64_t ni, int64_t P) {
  for (int64_t i = 0; i < ni; ++i)
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(dst + (n0 + i) * image + r * P, src + r * ni * P + i * P, sizeof(float) * P);
}

// Output pixels per tile: the column tile (rows x tile floats) stays near `bytes` but has at least 128
// pixels (fewer make the GEMM re-pack the weights too often per flop); tiles are balanced (no short
// tail tile) and a multiple of 16 pixels where that does not add a tile.
int64_t tile_pixels(int64_t rows, int64_t P, int64_t bytes, int64_t min_pixels = 128) {
  const int64_t target = std::max<int64_t>(min_pixels, bytes / (4 * std::max<int64_t>(rows, 1)));
  if (target >= P) return P;
  const int64_t ntiles = (P + target - 1) / target;
  const int64_t even = (P + ntiles - 1) / ntiles;
  const int64_t rounded = (even + 15) / 16 * 16;
  return (P + rounded - 1) / rounded == ntiles ? rounded : even;
}

template <class F>
void parallel_units(int64_t units, double flops, F&& fn) {
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(kFlopsPerThread * units / std::max(flops, 1.0)));
  // one unit at a time to whichever thread is free (parallel_chunks): each unit writes its own output
  parallel_chunks(units, grain, 1, [&](int64_t b, int64_t e) {
    for (int64_t u = b; u < e; ++u) fn(u);
  });
}

// Element strides of the input for channel, z, y, x.
struct InStrides {
  int64_t c, z, y, x, image;
};
InStrides in_strides(const ConvShape& s, bool cl) {
  const int64_t D = s.in[0], H = s.in[1], W = s.in[2], C = s.C;
  if (cl) return {1, H * W * C, W * C, C, D * H * W * C};
  return {D * H * W, H * W, W, 1, C * D * H * W};
}

// Valid index range [lo, hi) of i in [0, run) for which 0 <= ix0 + i * st < W.
inline void valid_range(int64_t ix0, int64_t st, int64_t W, int64_t run, int64_t& lo, int64_t& hi) {
  if (st == 1) {
    lo = std::min(run, std::max<int64_t>(0, -ix0));
    hi = std::max(lo, std::min(run, W - ix0));
    return;
  }
  lo = ix0 >= 0 ? 0 : (-ix0 + st - 1) / st;
  hi = ix0 > W - 1 ? 0 : std::min<int64_t>(run, (W - 1 - ix0) / st + 1);
  lo = std::min(lo, run);
  hi = std::max(hi, lo);
}

// The output pixels [p0, p0 + tp) of a tile as runs along W (computed once per tile, reused by every
// column row): tile offset j, length, and the input coordinates of the run's first pixel at kernel offset 0.
struct Run {
  int64_t j, len, z, y, x;
};
thread_local std::vector<Run> t_runs;

const std::vector<Run>& tile_runs(const ConvShape& s, int64_t p0, int64_t tp) {
  std::vector<Run>& runs = t_runs;
  runs.clear();
  const int64_t oH = s.out[1], oW = s.out[2];
  int64_t p = p0, j = 0;
  while (j < tp) {
    const int64_t oz = p / (oH * oW), rem = p % (oH * oW);
    const int64_t oy = rem / oW, ox = rem % oW;
    const int64_t len = std::min(oW - ox, tp - j);
    runs.push_back({j, len, oz * s.stride[0] - s.pad[0], oy * s.stride[1] - s.pad[1], ox * s.stride[2] - s.pad[2]});
    p += len;
    j += len;
  }
  return runs;
}

// d[i] = s[2 i] for i < n (stride-2 columns): a loop of its own, which the compiler vectorises (two
// loads and a shuffle per vector) where the general strided loop stays scalar.
inline void gather2(float* __restrict d, const float* __restrict s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = s[2 * i];
}

// d[2 i] += s[i] for i < n (col2im's stride-2 columns): the pairs (d[2 i], d[2 i + 1]) are loaded and
// stored whole, the odd one unchanged, which the compiler vectorises (the bare strided update stays
// scalar); the last element alone, so nothing past d[2 n - 2] is written.
inline void scatter_add2(float* __restrict d, const float* __restrict s, int64_t n) {
  for (int64_t i = 0; i + 1 < n; ++i) {
    const float a = d[2 * i], b = d[2 * i + 1];
    d[2 * i] = a + s[i];
    d[2 * i + 1] = b;
  }
  if (n > 0) d[2 * (n - 1)] += s[n - 1];
}

// cols[(c * kvol + kk) * ld + j] = x[c, input position of output pixel p0 + j under kernel offset kk]
// for c in [0, Cg), j in [0, tp); xg points at channel 0 of the group in image n. ld defaults to tp.
void im2col_tile(const ConvShape& s, const float* xg, const InStrides& st, int64_t Cg, int64_t p0, int64_t tp,
                 float* cols, int64_t ld = 0) {
  if (ld == 0) ld = tp;
  const int64_t kD = s.k[0], kH = s.k[1], kW = s.k[2];
  const int64_t D = s.in[0], H = s.in[1], W = s.in[2], sw = s.stride[2];
  const int64_t step = sw * st.x;
  const std::vector<Run>& runs = tile_runs(s, p0, tp);
  if (step == 1) {  // stride 1 along contiguous W: the vector row kernel, all kW offsets of a run per call
    const GemmKernels& kt = select_kernels(gemm_tables);
    const int64_t dw = s.dil[2];
    for (int64_t c = 0; c < Cg; ++c) {
      const float* xc = xg + c * st.c;
      for (int64_t a = 0; a < kD; ++a)
        for (int64_t b = 0; b < kH; ++b) {
          float* row0 = cols + ((c * kD + a) * kH + b) * kW * ld;  // offset e's row is e ld further
          for (const Run& r : runs) {
            const int64_t iz = r.z + a * s.dil[0], iy = r.y + b * s.dil[1];
            const bool in = iz >= 0 && iz < D && iy >= 0 && iy < H;
            const float* src = in ? xc + iz * st.z + iy * st.y : xc;
            const int64_t w = in ? W : 0;  // a row outside the input: zeros
            if (dw == 1) kt.shift_rows(kW, r.len, src, r.x, w, row0 + r.j, ld);
            else
              for (int64_t e = 0; e < kW; ++e) kt.shift_rows(1, r.len, src, r.x + e * dw, w, row0 + e * ld + r.j, ld);
          }
        }
    }
    return;
  }
  for (int64_t c = 0; c < Cg; ++c) {
    const float* xc = xg + c * st.c;
    for (int64_t a = 0; a < kD; ++a)
      for (int64_t b = 0; b < kH; ++b)
        for (int64_t e = 0; e < kW; ++e) {
          float* row = cols + ((c * kD + a) * kH * kW + b * kW + e) * ld;
          for (const Run& r : runs) {
            float* dst = row + r.j;
            const int64_t iz = r.z + a * s.dil[0], iy = r.y + b * s.dil[1];
            if (iz < 0 || iz >= D || iy < 0 || iy >= H) {
              for (int64_t i = 0; i < r.len; ++i) dst[i] = 0.0f;
              continue;
            }
            const int64_t ix0 = r.x + e * s.dil[2];
            int64_t lo, hi;
            valid_range(ix0, sw, W, r.len, lo, hi);
            for (int64_t i = 0; i < lo; ++i) dst[i] = 0.0f;
            const float* src = xc + iz * st.z + iy * st.y + (ix0 + lo * sw) * st.x;
            if (step == 2) {
              gather2(dst + lo, src, hi - lo);
            } else {
              for (int64_t i = lo; i < hi; ++i) dst[i] = src[(i - lo) * step];
            }
            for (int64_t i = hi; i < r.len; ++i) dst[i] = 0.0f;
          }
        }
  }
}

// Adjoint of im2col_tile for channels [c0, c1) of the group (NCDHW gradient): gx[...] += cols[...].
void col2im_tile(const ConvShape& s, const float* cols, int64_t c0, int64_t c1, int64_t p0, int64_t tp, float* gxg,
                 int64_t ld = 0) {
  if (ld == 0) ld = tp;  // the row stride of cols
  const int64_t kD = s.k[0], kH = s.k[1], kW = s.k[2];
  const int64_t D = s.in[0], H = s.in[1], W = s.in[2], sw = s.stride[2];
  const std::vector<Run>& runs = tile_runs(s, p0, tp);
  for (int64_t c = c0; c < c1; ++c) {
    float* gc = gxg + c * D * H * W;
    for (int64_t a = 0; a < kD; ++a)
      for (int64_t b = 0; b < kH; ++b)
        for (int64_t e = 0; e < kW; ++e) {
          const float* row = cols + ((c * kD + a) * kH * kW + b * kW + e) * ld;
          for (const Run& r : runs) {
            const int64_t iz = r.z + a * s.dil[0], iy = r.y + b * s.dil[1];
            if (iz < 0 || iz >= D || iy < 0 || iy >= H) continue;
            const int64_t ix0 = r.x + e * s.dil[2];
            int64_t lo, hi;
            valid_range(ix0, sw, W, r.len, lo, hi);
            float* dst = gc + (iz * H + iy) * W + ix0 + lo * sw;
            const float* src = row + r.j;
            if (sw == 1) {
              for (int64_t i = lo; i < hi; ++i) dst[i - lo] += src[i];
            } else if (sw == 2) {
              scatter_add2(dst, src + lo, hi - lo);
            } else {
              for (int64_t i = lo; i < hi; ++i) dst[(i - lo) * sw] += src[i];
            }
          }
        }
  }
}

// Weights of every group packed once per call into the microkernel's A slivers, K block by K block:
// group g, K block starting at pc (length kb), sliver s at wp + g*ms*MR*CK + pc*ms*MR + s*MR*kb; or, for the
// forward (weights_in_place), the weights themselves, read in place by the direct-A microkernel.
struct PackedWeights {
  const GemmKernels* kt;
  int64_t MR, NR, KC, ms;
  const float* data;
  const float* in_place = nullptr;  // the weights (G Kg x CK, row-major) read in place instead (direct A)
};

constexpr int64_t kNoKcCap = int64_t{1} << 40;  // pack_weights: the engine's KC

// The forward's weights are already the A operand's rows (W_g: Kg x CK, row-major), which the direct-A
// microkernel reads in place: the same FMAs in the same order as on packed slivers (the same bits), without
// the transposing copy of every weight each call. The copy pays only when each weight meets many output
// columns (the direct-A kernel reads MR row streams and loses a little per FMA): in place up to 2048 output
// pixels per group and call. Paired, 2 threads, Zen 4, in place / packed, AVX-512 (AVX2), in two states of
// this VM: 3x3 s2 C256 14x14 -> 512 1.19x (1.17x) and 1.01x (0.99x); batch 1 1.64x (1.65x) and 1.07x
// (1.09x); 3x3 C512 7x7 1.19x (1.18x) and 1.03x (1.08x); 1x1 C512 -> 2048 on 7x7 batch 1 2.17x (1.84x) and
// 1.13x (1.11x); 3x3 s2 C512 14x14 batch 1 1.12x; 1x1 C1024 -> 256 on 14x14 1.07x (1.12x) and 1.00x. Above
// 2048 columns, in place measured 0.95-1.03x on AVX-512 (0.98-1.15x on AVX2): packed there.
constexpr int64_t kInPlaceColumns = 2048;

bool weights_in_place(int64_t columns) {
  return active_isa() != Isa::scalar && columns <= kInPlaceColumns;  // scalar's direct A copies A per call
}

// W_g (Kg x CK, rows of w) as the A operand, or with `transposed` W_g^T (CK x Kg: the backward data's
// columns = W_g^T dy_g), packed once per call in weights_times_cols's layout (rows = the product's M, red =
// its reduction); the forward's W_g read in place instead where weights_in_place(columns: output pixels per
// group in the call; a caller that does not give them gets packed weights).
PackedWeights pack_weights(const float* w, int64_t G, int64_t Kg, int64_t CK, int64_t kc_cap, bool transposed = false,
                           int64_t columns = INT64_MAX) {
  PackedWeights pw;
  pw.kt = &select_kernels(gemm_tables);
  pw.MR = pw.kt->mr, pw.NR = pw.kt->nr, pw.KC = std::min<int64_t>(gemm_blocking().kc, kc_cap);
  const int64_t rows = transposed ? CK : Kg, red = transposed ? Kg : CK;
  pw.ms = (rows + pw.MR - 1) / pw.MR;
  if (!transposed && weights_in_place(columns)) {
    pw.in_place = w;
    pw.data = nullptr;
    return pw;
  }
  float* dst = t_wpack.get(G * pw.ms * pw.MR * red);
  // one item per (group, K block), spread over the threads when the weights are large enough to matter
  // (512 x 2304 is a 4.7 MB transposing copy); every item writes its own part of the buffer
  const int64_t nkb = (red + pw.KC - 1) / pw.KC, items = G * nkb;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, rows * pw.KC));
  parallel_for(items, grain, 1, [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const int64_t g = it / nkb, pc = it % nkb * pw.KC, kb = std::min(pw.KC, red - pc);
      float* d = dst + g * pw.ms * pw.MR * red + pc * pw.ms * pw.MR;
      if (transposed) pw.kt->pack_a_copy(CK, kb, w + g * Kg * CK + pc * CK, CK, d);  // A(i, p) = w_g[p CK + i]
      else pw.kt->pack_a_transpose(Kg, kb, w + g * Kg * CK + pc, CK, d);
    }
  });
  pw.data = dst;
  return pw;
}

// C (Kg x np, ldc) = act(W_g cols + bias) with cols (CK x np) read in place by the microkernel: the
// column sliver (kb x NR) stays in L1 while the weight slivers (packed or in place) stream past it. Each element's
// sum runs over K blocks in order, the microkernel's p order inside a block (thread-count invariant).
// Only the rows of weight slivers [s0, s1) (output channels s0 MR .. min(Kg, s1 MR)) when given: a unit's
// share of the rows (RowSplit); each element's sum is the same whichever share computes it.
void weights_times_cols(const PackedWeights& pw, int64_t g, int64_t Kg, int64_t CK, const float* cols, int64_t ldb,
                        int64_t np, const float* bias, GemmAct act, float* C, int64_t ldc, int64_t s0 = 0,
                        int64_t s1 = -1) {
  const GemmKernels& kt = *pw.kt;
  const float* wg = pw.data ? pw.data + g * pw.ms * pw.MR * CK : nullptr;
  if (s1 < 0) s1 = pw.ms;
  for (int64_t pc = 0; pc < CK; pc += pw.KC) {
    const int64_t kb = std::min(pw.KC, CK - pc);
    const float* ap = wg ? wg + pc * pw.ms * pw.MR : nullptr;
    for (int64_t j0 = 0; j0 < np; j0 += pw.NR) {
      const int n = static_cast<int>(std::min(pw.NR, np - j0));
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t i0 = s * pw.MR;
        GemmTile t;
        t.beta = pc == 0 ? 0.0f : 1.0f;
        if (pc == 0 && bias) t.bias = bias + i0, t.bias_kind = GemmBias::row;
        const int m = static_cast<int>(std::min(pw.MR, Kg - i0));
        if (pw.in_place)
          kt.micro_direct_a(kb, pw.in_place + (g * Kg + i0) * CK + pc, CK, cols + pc * ldb + j0, ldb, C + i0 * ldc + j0,
                            ldc, m, n, t);
        else
          kt.micro(kb, ap + s * pw.MR * kb, cols + pc * ldb + j0, ldb, C + i0 * ldc + j0, ldc, m, n, t);
      }
    }
  }
  if (act != GemmAct::none)
    for (int64_t k = s0 * pw.MR; k < std::min(Kg, s1 * pw.MR); ++k) kt.act(act, np, C + k * ldc);
}

// Row shares of a unit when there are fewer units than threads (batch 1, small planes): each of the `parts`
// shares takes a contiguous range of the MR-row weight slivers, so that every thread has work (the shares
// depend on the thread count, the sums do not). Each share builds the unit's column tile again; 1x1 reads
// its input in place, so there the units are split further, into two shares per thread (load balance).
// Paired, 2 threads, Zen 3, batch 1: 1x1 C256 -> 64 and C64 -> 256 on 56x56 1.42x, C2048 -> 512 on 7x7
// 1.74x, 3x3 C512 on 7x7 1.73x (batch 2, C2048 -> 512 on 7x7, one span: 1.20x).
struct RowSplit {
  int64_t parts = 1, ms = 1;
  RowSplit(int64_t units, int64_t slivers, bool cols_in_place) : ms(slivers) {
    const int64_t want = (cols_in_place ? 2 : 1) * get_num_threads();
    if (units < want) parts = std::min(slivers, ceil_div(want, units));
  }
  int64_t begin(int64_t r) const { return ms * r / parts; }
  int64_t end(int64_t r) const { return ms * (r + 1) / parts; }
};

Scratch& cols_scratch() { return t_cols; }

}  // namespace

// conv_forward with the reduction blocked into at most kc_cap terms per microkernel pass (each output's
// sum is then a chain of block sums: shorter rounding chains, used by the flipped backward-data pass).
static void conv_forward_blocked(const ConvShape& s, ConvAlgo algo, const float* x, const float* w,
                                 const float* bias, GemmAct act, float* y, int64_t kc_cap) {
  const int64_t G = s.G, Cg = s.C / G, Kg = s.K / G, P = s.out_pixels(), CK = Cg * s.kvol();
  const bool direct = algo == ConvAlgo::one_by_one;
  if (!direct && conv_detail::shifted_applies(s)) {
    conv_detail::conv_forward_shifted(s, x, w, bias, act, y, t_xpad, t_wpack, cols_scratch, kc_cap);
    return;
  }
  // 1x1 reads the input in place (no workspace): large tiles, measured faster (fewer weight re-packs).
  const int64_t tp = direct ? std::min<int64_t>(P, 4096) : tile_pixels(CK, P, forward_tile_bytes());
  const int64_t ntiles = (P + tp - 1) / tp;
  const int64_t units = s.N * G * ntiles;
  const InStrides st = in_strides(s, s.in_cl);
  const double flops = 2.0 * s.N * s.K * P * CK;
  // NCDHW output (im2col, or 1x1 from NCDHW input): the microkernels are driven here on the weights
  // packed once per call and the column tile (or the input rows) read in place: no per-tile weight
  // re-pack, no copy of the columns into B panels (measured 1.05-1.2x the sgemm call per tile).
  // Channels-last output keeps sgemm (pixel-major C).
  const bool own_loop = !s.out_cl && !(direct && s.in_cl);
  PackedWeights pw{};
  if (own_loop) pw = pack_weights(w, G, Kg, CK, kc_cap, false, s.N * P);
  // Small outputs (fewer than kSpanPixels per image, e.g. 7x7): a column tile spans several images, so
  // the microkernel's column slivers are mostly full (49 pixels: 32 + 17 columns in two slivers, four
  // images: 196 in 6 + 4); the product goes to a tile buffer and from there to each image.
  // 1x1 included (the images' input rows side by side): paired, 2 threads, Zen 3, C2048 -> 512 and C512 ->
  // 2048 on 7x7, N8 1.27-1.30x, N32 1.18x against each image's 49 columns on their own.
  if (const int64_t ipt = span_images(s.N, P, ntiles); own_loop && ipt > 1) {
    const int64_t nspan = ceil_div(s.N, ipt);
    const RowSplit rs(nspan * G, pw.ms, false);
    parallel_units(nspan * G * rs.parts, flops, [&](int64_t u) {
      const int64_t r = u % rs.parts, g = u / rs.parts % G, n0 = u / (rs.parts * G) * ipt;
      const int64_t ni = std::min(ipt, s.N - n0), np = ni * P;
      float* cols = t_cols.get(CK * np);
      if (direct)
        gather_images(cols, x + g * Cg * P, st.image, Cg, n0, ni, P);
      else
        for (int64_t i = 0; i < ni; ++i)
          im2col_tile(s, x + (n0 + i) * st.image + g * Cg * st.c, st, Cg, 0, P, cols + i * P, np);
      float* C = t_ctile.get(Kg * np);
      const int64_t k0 = rs.begin(r) * pw.MR, k1 = std::min(Kg, rs.end(r) * pw.MR);
      weights_times_cols(pw, g, Kg, CK, cols, np, np, bias ? bias + g * Kg : nullptr, act, C, np, rs.begin(r),
                         rs.end(r));
      scatter_images(y + (g * Kg + k0) * P, C + k0 * np, s.K * P, k1 - k0, n0, ni, P);
    });
    return;
  }
  const RowSplit rs(units, own_loop ? pw.ms : 1, direct);
  parallel_units(units * rs.parts, flops, [&](int64_t uu) {
    const int64_t r = uu % rs.parts, u = uu / rs.parts;
    const int64_t t = u % ntiles, g = (u / ntiles) % G, n = u / (ntiles * G);
    const int64_t p0 = t * tp, np = std::min(tp, P - p0);
    const float* xg = x + n * st.image + g * Cg * st.c;
    if (own_loop) {
      const float* cols = xg + p0;  // 1x1: the input rows themselves (ld P)
      int64_t ldb = P;
      if (!direct) {
        float* c = t_cols.get(CK * np);
        im2col_tile(s, xg, st, Cg, p0, np, c);
        cols = c, ldb = np;
      }
      weights_times_cols(pw, g, Kg, CK, cols, ldb, np, bias ? bias + g * Kg : nullptr, act,
                         y + (n * s.K + g * Kg) * P + p0, P, rs.begin(r), rs.end(r));
      return;
    }
    // op(B) is CK x np: either the column tile (stored CK x np) or the input read in place.
    const float* Bp;
    int64_t ldb;
    bool b_stored_t;  // B stored as np x CK (channels-last 1x1 input)
    if (direct) {
      if (s.in_cl) {
        Bp = xg + p0 * s.C, ldb = s.C, b_stored_t = true;
      } else {
        Bp = xg + p0, ldb = P, b_stored_t = false;
      }
    } else {
      float* cols = t_cols.get(CK * np);
      im2col_tile(s, xg, st, Cg, p0, np, cols);
      Bp = cols, ldb = np, b_stored_t = false;
    }
    const float* wg = w + g * Kg * CK;
    GemmEpilogue ep;
    ep.act = act;
    if (bias) ep.bias = bias + g * Kg;
    if (!s.out_cl) {
      ep.bias_kind = bias ? GemmBias::row : GemmBias::none;
      float* C = y + (n * s.K + g * Kg) * P + p0;
      sgemm(Trans::none, b_stored_t ? Trans::trans : Trans::none, Kg, np, CK, 1.0f, wg, CK, Bp, ldb, 0.0f, C, P, &ep);
    } else {
      ep.bias_kind = bias ? GemmBias::col : GemmBias::none;
      float* C = y + (n * P + p0) * s.K + g * Kg;
      sgemm(b_stored_t ? Trans::none : Trans::trans, Trans::trans, np, Kg, CK, 1.0f, Bp, ldb, wg, CK, 0.0f, C, s.K,
            &ep);
    }
  });
}

void conv_forward(const ConvShape& s, ConvAlgo algo, const float* x, const float* w, const float* bias,
                  GemmAct act, float* y) {
  conv_forward_blocked(s, algo, x, w, bias, act, y, INT64_MAX);
}

void conv_backward_data(const ConvShape& s, const float* dy, const float* w, const float* bias, float* gx) {
  const int64_t G = s.G, Cg = s.C / G, Kg = s.K / G, P = s.out_pixels(), Pin = s.in_pixels(), CK = Cg * s.kvol();
  const double flops = 2.0 * s.N * s.K * P * CK;
  if (s.is_1x1()) {
    // gx_g (Cg x P) = W_g^T dy_g: disjoint output tiles, no scatter.
    const int64_t tp = std::min<int64_t>(P, 1024), ntiles = (P + tp - 1) / tp;
    parallel_units(s.N * G * ntiles, flops, [&](int64_t u) {
      const int64_t t = u % ntiles, g = (u / ntiles) % G, n = u / (ntiles * G);
      const int64_t p0 = t * tp, np = std::min(tp, P - p0);
      GemmEpilogue ep;
      if (bias) ep.bias = bias + g * Cg, ep.bias_kind = GemmBias::row;
      sgemm(Trans::trans, Trans::none, Cg, np, Kg, 1.0f, w + g * Kg * CK, CK, dy + (n * s.K + g * Kg) * P + p0, P,
            0.0f, gx + (n * s.C + g * Cg) * P + p0, P, &ep);
    });
    return;
  }
  // Cg is the M of the flipped GEMM: tiny M (LeNet, depthwise) is faster as col2im, whose product has M = Cg
  // kvol but only Kg reduction steps. With both small (grouped convolutions, Cg = Kg = 4 or 8: ResNeXt) the
  // flipped forward won: 2 threads, N8 3x3 s1, grad_input, C128 56x56 g32 7.4 -> 4.7 ms, C256 28x28 g32 4.9 ->
  // 3.7-4.2 ms, C64 56x56 g8 4.2-4.5 -> 3.0 ms; with Kg 48-64 it lost (C4 / C8 / C12 -> 48-64: 1.2-2.1x slower).
  bool flip_ok = Cg >= 16 || (Cg >= 4 && Kg <= 8);
  for (int d = 0; d < 3; ++d) flip_ok = flip_ok && s.stride[d] == 1 && s.pad[d] <= s.dil[d] * (s.k[d] - 1);
  if (flip_ok) {
    // Stride 1: gx is the convolution of dy with the flipped kernels, in and out channels swapped, front
    // padding dil*(k-1) - pad: a forward pass (gather, tiles in parallel, no scatter-add).
    const int64_t kv = s.kvol();
    float* wf = t_wflip.get(s.K * CK);
    parallel_for(s.K, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, CK)), 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {  // weight row r = g Kg + k
        const int64_t g = r / Kg, k = r % Kg;
        for (int64_t c = 0; c < Cg; ++c) {
          const float* src = w + (r * Cg + c) * kv;
          float* dst = wf + ((g * Cg + c) * Kg + k) * kv;
          for (int64_t i = 0; i < kv; ++i) dst[kv - 1 - i] = src[i];
        }
      }
    });
    ConvShape f = s;
    f.C = s.K, f.K = s.C;
    for (int d = 0; d < 3; ++d) {
      f.in[d] = s.out[d], f.out[d] = s.in[d];
      f.pad[d] = s.dil[d] * (s.k[d] - 1) - s.pad[d];
    }
    f.in_cl = f.out_cl = false;
    // One Kg*kvol-long reduction per element where col2im sums Kg then kvol terms: the reduction is cut
    // into blocks of about Kg + kvol (rounded up to 16) so each rounding chain stays near col2im's. One
    // KC block instead measured 3.0-3.4x the NumPy col2im error at Kg 34, 3x3 (blocks of 64: 1.1-1.6x);
    // blocks of 64 cost 5-8% at Kg 64 and 256; blocks of Kg + kvol (80 at Kg 64) measured within noise
    // (0-5%), and Kg + kvol >= KC keeps the engine's KC.
    const int64_t flip_block = (Kg + kv + 15) / 16 * 16;
    conv_forward_blocked(f, ConvAlgo::im2col, dy, wf, bias, GemmAct::none, gx, flip_block);
    return;
  }
  const int64_t tp = tile_pixels(CK, P, forward_tile_bytes()), ntiles = (P + tp - 1) / tp;
  const int64_t units = s.N * G;
  // The column products cols (CK x np) = W_g^T dy (dy: Kg x np, row stride ldd). W_g^T is packed once per
  // call (weights_times_cols) where it is at most twice the L2, instead of sgemm packing it again for every
  // unit. Paired, 2 threads, Zen 3 (512 KiB L2): conv_transpose2d k4 s2 p1 from C64 28x28 / C128 14x14
  // (W^T 128 / 512 KiB) +6-16%, the stride-2 backward data of C64 56x56 3x3 and the 7x7 stem +4-6%; with
  // 2 MiB (C256 7x7 k4) 10% slower and 4.7 MiB (C256 -> 512 3x3) 2.5% slower, so those keep sgemm (which
  // blocks W^T by the cache). Every path below takes the same kernel for a given shape, so a column's sums
  // do not depend on the path (hence on the thread count); `threaded` splits the columns over the threads.
  const bool prepack_wt = CK * Kg * int64_t(sizeof(float)) <= 2 * l2_bytes();
  const PackedWeights pwt = prepack_wt ? pack_weights(w, G, Kg, CK, kNoKcCap, true) : PackedWeights{};
  auto product = [&](int64_t g, const float* dyp, int64_t ldd, int64_t np, float* cols, bool threaded) {
    if (!prepack_wt) {
      sgemm(Trans::trans, Trans::none, CK, np, Kg, 1.0f, w + g * Kg * CK, CK, dyp, ldd, 0.0f, cols, np);
      return;
    }
    const int64_t NR = pwt.NR, nsl = ceil_div(np, NR);
    const int64_t grain = threaded ? std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, CK * Kg * NR)) : nsl;
    parallel_for(nsl, grain, 1, [&](int64_t b, int64_t e) {
      const int64_t j0 = b * NR, j1 = std::min(np, e * NR);
      weights_times_cols(pwt, g, CK, Kg, dyp + j0, ldd, j1 - j0, nullptr, GemmAct::none, cols + j0, np);
    });
  };
  auto init = [&](int64_t n, int64_t g, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      float* dst = gx + (n * s.C + g * Cg + c) * Pin;
      const float v = bias ? bias[g * Cg + c] : 0.0f;
      std::fill(dst, dst + Pin, v);
    }
  };
  // Small outputs: the images of a span share one product (W^T packed once for them, full column
  // slivers), their dy rows gathered side by side; each image's columns are then scattered on their own.
  if (const int64_t ipt = span_images(s.N, P, ntiles), nspan = ceil_div(s.N, ipt);
      ipt > 1 && nspan * G >= get_num_threads()) {
    parallel_units(nspan * G, flops, [&](int64_t u) {
      const int64_t g = u % G, n0 = (u / G) * ipt, ni = std::min(ipt, s.N - n0), np = ni * P;
      float* dyb = t_ctile.get(Kg * np);
      gather_images(dyb, dy + g * Kg * P, s.K * P, Kg, n0, ni, P);
      float* cols = t_cols.get(CK * np);
      product(g, dyb, np, np, cols, false);
      for (int64_t i = 0; i < ni; ++i) {
        init(n0 + i, g, 0, Cg);
        col2im_tile(s, cols + i * P, 0, Cg, 0, P, gx + ((n0 + i) * s.C + g * Cg) * Pin, np);
      }
    });
    return;
  }
  // dy rows of tile [p0, p0 + np) of unit (n, g), gathered (ld np) for the pre-packed product: read in place
  // they sit P apart, which can map a B sliver's rows to a few L1 sets (P = 112 x 112: four)
  auto dy_tile = [&](int64_t n, int64_t g, int64_t p0, int64_t np, int64_t& ldd) -> const float* {
    const float* src = dy + (n * s.K + g * Kg) * P + p0;
    ldd = P;
    if (!prepack_wt) return src;
    float* dyt = t_ctile.get(Kg * np);
    for (int64_t k = 0; k < Kg; ++k) std::copy_n(src + k * P, np, dyt + k * np);
    ldd = np;
    return dyt;
  };
  if (units >= get_num_threads()) {
    parallel_units(units, flops, [&](int64_t u) {
      const int64_t g = u % G, n = u / G;
      init(n, g, 0, Cg);
      float* gxg = gx + (n * s.C + g * Cg) * Pin;
      for (int64_t t = 0; t < ntiles; ++t) {
        const int64_t p0 = t * tp, np = std::min(tp, P - p0);
        int64_t ldd;
        const float* dyp = dy_tile(n, g, p0, np, ldd);
        float* cols = t_cols.get(CK * np);
        product(g, dyp, ldd, np, cols, false);
        col2im_tile(s, cols, 0, Cg, p0, np, gxg);
      }
    });
    return;
  }
  // Few (image, group) units: thread inside each tile instead.
  for (int64_t u = 0; u < units; ++u) {
    const int64_t g = u % G, n = u / G;
    float* gxg = gx + (n * s.C + g * Cg) * Pin;
    parallel_for(Cg, std::max<int64_t>(1, 65536 / std::max<int64_t>(Pin, 1)), 1,
                 [&](int64_t c0, int64_t c1) { init(n, g, c0, c1); });
    for (int64_t t = 0; t < ntiles; ++t) {
      const int64_t p0 = t * tp, np = std::min(tp, P - p0);
      int64_t ldd;
      const float* dyp = dy_tile(n, g, p0, np, ldd);
      float* cols = t_cols.get(CK * np);
      product(g, dyp, ldd, np, cols, true);
      const int64_t per_c = s.kvol() * np;
      parallel_for(Cg, std::max<int64_t>(1, 16384 / std::max<int64_t>(per_c, 1)), 1,
                   [&](int64_t c0, int64_t c1) { col2im_tile(s, cols, c0, c1, p0, np, gxg); });
    }
  }
}

void conv_backward_weight(const ConvShape& s, const float* dy, const float* x, float* gw) {
  if (conv_detail::grouped_rows_weight(s)) {
    conv_detail::conv_backward_weight_rows(s, dy, x, gw, t_partials, cols_scratch);
    return;
  }
  const int64_t G = s.G, Cg = s.C / G, Kg = s.K / G, P = s.out_pixels(), CK = Cg * s.kvol();
  const bool direct = s.is_1x1();
  const int64_t tp = direct ? std::min<int64_t>(P, 4096) : tile_pixels(CK, P, weight_tile_bytes(), 256);
  const int64_t ntiles = (P + tp - 1) / tp;
  // Small outputs (fewer than kSpanPixels per image): a unit spans ipt images, whose columns and dy rows
  // are gathered side by side, so each product sums ipt * P terms per call instead of P (7x7: 49 terms
  // per round trip of the whole weight-sized partial). A function of the shape only, like the blocks.
  const int64_t ipt = span_images(s.N, P, ntiles);
  const int64_t units = ipt > 1 ? ceil_div(s.N, ipt) : s.N * ntiles;
  // Fixed number of blocks (shape-dependent only): up to 8, fewer for large weights (each block's
  // partial is one more weight-sized array written and summed), a power of two for even thread loads.
  int64_t max_blocks = kWeightBlocks;
  while (max_blocks > 2 && max_blocks * s.K * CK * 4 > kWeightPartialBytes) max_blocks /= 2;
  const int64_t per_block = (units + max_blocks - 1) / max_blocks;
  const int64_t nblocks = (units + per_block - 1) / per_block;
  const int64_t wsize = s.K * CK;
  const InStrides st = in_strides(s, false);
  // Each block's partial is stored per group as CK x Kg: the GEMM is cols (CK x np) dy_g^T (np x Kg),
  // whose M = CK keeps the microkernel rows full (measured 1.1-1.4x faster than dy_g cols^T when Kg is
  // small); the final sum over blocks transposes back to (K, CK). From Kg = kWeightRowsKg output channels
  // the product is dy_g cols^T (Kg x CK), already gw's layout, and the final sum writes gw directly with
  // no transpose pass. Measured at Kg 256-512 (8 images, 7x7 to 28x28, 1x1 and 3x3): 2-30% faster
  // (C256 14x14 3x3: 7.0 -> 6.5 ms); at Kg 64-128 10-35% slower, hence the threshold. The products are
  // the same; their sums can differ in the last bits where the engine takes another path for the
  // swapped shape (still the same for any thread count).
  const bool kc_layout = Kg >= kWeightRowsKg;
  float* partials = t_partials.get(nblocks * wsize);
  const double flops = 2.0 * s.N * s.K * P * CK;
  parallel_units(nblocks, flops, [&](int64_t blk) {
    float* part = partials + blk * wsize;
    const int64_t u0 = blk * per_block, u1 = std::min(units, u0 + per_block);
    for (int64_t u = u0; u < u1; ++u) {
      const float beta = u == u0 ? 0.0f : 1.0f;
      // The unit: pixels [p0, p0 + np) of image n, or (spans) images [n, n + ni) side by side (np = ni P).
      const int64_t n = ipt > 1 ? u * ipt : u / ntiles, ni = ipt > 1 ? std::min(ipt, s.N - n) : 1;
      const int64_t p0 = ipt > 1 ? 0 : u % ntiles * tp, np = ipt > 1 ? ni * P : std::min(tp, P - p0);
      for (int64_t g = 0; g < G; ++g) {
        const float* xg = x + n * st.image + g * Cg * st.c;
        const float* Ap = xg + p0;  // cols (CK x np): the input itself for 1x1
        const float* dyg = dy + (n * s.K + g * Kg) * P + p0;
        int64_t lda = P, ldd = P;
        if (ipt > 1) {  // columns and dy rows of the span gathered, row stride np
          float* cols = t_cols.get(CK * np);
          float* dyb = t_ctile.get(Kg * np);
          if (direct)  // 1x1: the columns are the input rows (NCDHW: CK = Cg rows of P)
            gather_images(cols, x + g * Cg * P, st.image, CK, n, ni, P);
          else
            for (int64_t i = 0; i < ni; ++i) im2col_tile(s, xg + i * st.image, st, Cg, 0, P, cols + i * P, np);
          gather_images(dyb, dy + g * Kg * P, s.K * P, Kg, n, ni, P);
          Ap = cols, dyg = dyb, lda = ldd = np;
        } else if (!direct) {
          float* cols = t_cols.get(CK * np);
          im2col_tile(s, xg, st, Cg, p0, np, cols);
          Ap = cols, lda = np;
        }
        if (kc_layout)
          sgemm(Trans::none, Trans::trans, Kg, CK, np, 1.0f, dyg, ldd, Ap, lda, beta, part + g * Kg * CK, CK);
        else
          sgemm(Trans::none, Trans::trans, CK, Kg, np, 1.0f, Ap, lda, dyg, ldd, beta, part + g * CK * Kg, Kg);
      }
    }
  });
  // dst = the block partials summed in block order (dst may be block 0 itself)
  auto sum_blocks = [&](float* dst) {
    parallel_for(wsize, 16384, 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        float acc = partials[i];
        for (int64_t blk = 1; blk < nblocks; ++blk) acc += partials[blk * wsize + i];
        dst[i] = acc;
      }
    });
  };
  if (kc_layout) {  // already gw's layout
    sum_blocks(gw);
    return;
  }
  // Sum the block partials in place into block 0, then transpose each group's CK x Kg sum into gw's
  // (Kg, CK) rows in 32 x 32 tiles.
  if (nblocks > 1) sum_blocks(partials);
  constexpr int64_t kT = 32;
  const GemmTransposeFn transpose = select_kernels(gemm_tables).transpose;
  const int64_t rt = (CK + kT - 1) / kT, kt = (Kg + kT - 1) / kT;
  parallel_for(G * rt * kt, std::max<int64_t>(1, 16384 / (kT * kT)), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t g = i / (rt * kt), r0 = (i / kt) % rt * kT, k0 = i % kt * kT;
      transpose(std::min(kT, CK - r0), std::min(kT, Kg - k0), partials + g * CK * Kg + r0 * Kg + k0, Kg,
                gw + g * Kg * CK + k0 * CK + r0, CK);
    }
  });
}

}  // namespace fastml
