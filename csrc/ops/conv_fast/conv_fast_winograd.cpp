// Winograd F(m x m, 3x3) forward (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
// CVPR 2016), m = 4 (alpha = 6, 36 products) or m = 2 (alpha = 4, 16 products), stride 1, dilation 1,
// groups 1, zero padding p in {0, 1}:
//
//   U[e][k][c] = (G g[k,c] G^T)[e]            filter transform, once per call (float32, vectorised)
//   V[e][c][t] = (B^T d[c,t] B)[e]            input transform of tile t (alpha x alpha input patch)
//   M[e][k][t] = sum_c U[e][k][c] V[e][c][t]  alpha^2 GEMMs (K x C) x (C x tiles) on the SGEMM engine
//   Y[k][t]    = A^T M[.][k][t] A + bias[k] -> activation   (m x m outputs of tile t, clipped at the edge)
//
//  G (F(2x2,3x3)) = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//  G (F(4x4,3x3)) = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
// (B^T and A^T: conv_fast_wino_impl.h.) Tiles are processed in blocks of whole tile rows, sized so the
// per-thread V and M buffers stay around 4 MiB (each GEMM then has enough tiles to run near the
// engine's peak); blocks run in parallel, each thread calling the engine serially (a single block
// lets the engine thread itself); the engine's results do not depend on the thread count, so neither
// do these. Temporaries live in per-thread workspaces reused across calls.
//
// Accuracy: F(4x4,3x3) multiplies the input by coefficients up to 5 and the products by up to 8 (A^T),
// so its rounding error is larger than a direct sum's; tests/test_conv_fast.py measures it against the
// float64 reference (see fastml/functional/_conv_fast.py winograd_conv2d for the figures).
// Test: pytest tests/test_conv_fast.py -k winograd. Bench: python -m fastml.bench --ops conv_fast
#include <algorithm>
#include <cstring>
#include <new>

#include "core/parallel.h"
#include "gemm/gemm_kernels.h"
#include "ops/conv_fast/conv_fast.h"
#include "ops/conv_fast/conv_fast_scratch.h"

namespace fastml {

namespace {

thread_local ConvScratch t_wino_v, t_wino_m, t_wino_pad;
thread_local ConvScratch t_wino_u;  // calling thread: the transformed filters
thread_local ConvScratch t_wino_acc;    // calling thread: the weight gradient's float64 sums
thread_local ConvScratch t_wino_bpack;  // each thread: the weight gradient's packed V^T chunk

constexpr int64_t kKChunk = 256;  // microkernel k steps per call (the engine's KC bound)
constexpr int64_t kBlockBytes = int64_t(4) << 20;  // one thread's V + M buffers: >= ~64 tiles per GEMM at C = K = 256
// 3-D: V and M are 8x the input they come from (64 points per 2x2x2 tile), and with C = K = 32 the GEMMs
// do only 2 K flops per V element, so the V and M of a block should stay in L2: at N2 C32 16x56x56 a 1 MiB
// block (2 tile rows) took 11.4-12.7 ms, 2 MiB 12.5-13.2, 4 MiB 19.8-20.6 (2 threads, 2 MiB L2 each).
// Larger C and K make the GEMMs denser and want more tiles per block: the budget is (C + K) / 4 tiles'
// worth, from 1 MiB up to 8 MiB. Measured (N C D H W, C = K; block budget 0.5 / 1 / 2 / 4 / 8 MiB, ms):
//   2 32 16 56 56: 13.5 / 13.0 / 14.3 / 19.5 / 19.8     4 64 8 28 28: 17.5 / 11.3 / 12.9 / 16.4 / 14.8
//   1 128 8 16 16:  9.5 /  5.8 /  4.0 /  3.8 /  3.8     1 256 8 14 14: 31.9 / 32.2 / 21.1 / 16.0 / 14.9
constexpr int64_t kBlockBytes3d = int64_t(1) << 20;
// Weight gradient: V and DY of one block (the whole team shares it; its GEMMs reduce over the tiles).
// 2-D 8 MiB, 3-D 2 MiB, measured (grad_weight alone, 2 threads, ms, budgets 2 / 8 MiB): N2 C32 16x56x56
// conv3d 19.3 / 22.1 (its transforms write 64 points per tile: 5.4 + 4.0 ms at 2 MiB, 7.9 + 7.2 at 8);
// N8 C128 28x28 conv2d 5.2-5.8 / 4.7-5.2; C64 56x56 and C256 14x14 within 4% either way.
constexpr int64_t kBlockBytesWgrad = int64_t(8) << 20, kBlockBytesWgrad3d = int64_t(2) << 20;
// 3-D products above C_in 128 sum C in chunks of 64: F(2x2x2,3x3x3) scales the points up to 8x (B^T along
// three axes), and with 256-step chains its max error was 1.5-2.4x that of a float32 im2col at C_in 256-512
// (1.2-1.7x at 128, 4 seeds each); with 64-step chains added in float32, 0.8-1.1x at C_in 128-512 (float64
// sums of the chunks measured the same, 20-35% slower). The chunks cost 7-14% (C128 8x16x16 3.9 -> 4.2 ms,
// C96 8x28x28 16.5 -> 18.8, C256 8x14x14 14.6 -> 16.7), so up to C_in 128 the sum stays one chain.
constexpr int64_t kWino3Chunk = 64, kWino3ChainMax = 128;
constexpr int64_t kWgradChunk = 64;  // tiles per float32 product sum (then summed in float64)

// A stride of n floats (n rounded up) whose cache-line count is odd: the E transform points of one tile
// vector are written (read) E strides apart, and strides of a multiple of 4 KiB (e.g. C * ldv = 32 x 224
// floats) put all of those lines in one L1 set, which holds 12.
int64_t alias_free(int64_t n) {
  int64_t s = (n + 15) / 16 * 16;
  if ((s / 16) % 2 == 0) s += 16;
  return s;
}

// The transformed filters as the GEMMs' packed A operand: Up[e * ld + (i C + c) MR + r] = (G g G^T)[e]
// (3-D: G along three axes) of the filter g = w[k, c], k = i MR + r (zero for k >= K), i.e. the MR-row
// slivers of U[e] (K x C) in pack_a_transpose's layout. The transform is elementwise over the filters, so
// it commutes with that permutation: the filters are gathered straight into the packed order, tap-major
// (wt[t * ld + the same index]; swapped: w of shape (C, K, taps) read flipped, w[c, k, taps - 1 - t], the
// kernel whose convolution is the grad_input of the convolution by w), and the kernels wino_filter /
// wino3_filter (vectorised over that index) write Up. (U made in (k, c) order and packed afterwards took a
// second pass over E K C floats: 10% of a batch-1 C256 14x14 convolution.) One sliver per work item.
// ld: the callers' alias_free(Kp C). The 9 (27) rows of wt and the E rows of Up are read and written side
// by side, and with Kp C a multiple of 1024 floats rows K C apart all fell into one 8-way L1 set.
void transform_filters(const ConvFastKernels& kt, const GemmKernels& gk, bool d3, int64_t m, int64_t K, int64_t C,
                       const float* w, bool swapped, float* wt, float* Up, int64_t ld) {
  const int64_t MR = gk.mr, ns = (K + MR - 1) / MR, sl = MR * C, taps = d3 ? 27 : 9;
  parallel_for(ns, 1, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float* d = wt + i * sl;
      for (int64_t r = 0; r < MR; ++r) {
        const int64_t k = i * MR + r;
        for (int64_t c = 0; c < C; ++c) {
          float* dd = d + c * MR + r;
          if (k >= K) {
            for (int64_t t = 0; t < taps; ++t) dd[t * ld] = 0.0f;
          } else if (!swapped) {
            const float* src = w + (k * C + c) * taps;
            for (int64_t t = 0; t < taps; ++t) dd[t * ld] = src[t];
          } else {
            const float* src = w + (c * K + k) * taps;
            for (int64_t t = 0; t < taps; ++t) dd[t * ld] = src[taps - 1 - t];
          }
        }
      }
      if (d3) kt.wino3_filter(sl, ld, d, Up + i * sl);
      else kt.wino_filter(m, sl, ld, d, Up + i * sl);
    }
  });
}

// The tiles of output size Ho x Wo for F(m, 3), and the padded rows they read: split into m phases of wq
// floats (tile j's column l is phase l % m at offset j + l / m).
WinoGeom wino_geom(int64_t m, int64_t Ho, int64_t Wo) {
  WinoGeom wg{m, m + 2, (Ho + m - 1) / m, (Wo + m - 1) / m, 0};
  wg.wq = (wg.tw + 16 + 15) / 16 * 16;  // j + l/m < tw + 1, plus whole-vector loads of up to 16 lanes
  return wg;
}

// pad_rows' geometry for planes of H x W with zero padding (ph, pw), split into wg.m phases.
ConvGeom split_rows(const WinoGeom& wg, int64_t H, int64_t W, int64_t ph, int64_t pw) {
  ConvGeom pg{};
  pg.H = H;
  pg.W = W;
  pg.ph = ph;
  pg.pw = pw;
  pg.sh = 1;
  pg.sw = wg.m;
  pg.wq = wg.wq;
  return pg;
}

// fn(n, tz, ty0, s0, s1) for the segments [s0, s1) of tile rows [g0, g1) with the same image n and tile
// plane tz (th tile rows per plane, td planes per image; td = 1 in 2-D), ty0 the first one's tile row.
template <class F>
void for_segments(int64_t g0, int64_t g1, int64_t th, int64_t td, F&& fn) {
  for (int64_t s0 = g0; s0 < g1;) {
    const int64_t nz = s0 / th, s1 = std::min(g1, (nz + 1) * th);
    fn(nz / td, nz % td, s0 % th, s0, s1);
    s0 = s1;
  }
}

// The Winograd input of an (N, C, D, H, W) input x (2-D: D = 1, pd = 0, td = 1) for the channels [c0, c1)
// of the tile rows [g0, g1): V[e][c][tile] at V + e * sv + c * ldv + (tile row - g0) * tw + tile. Per
// segment and channel the padded rows of all its tile rows are made once (tile rows overlap by 2 input
// rows; in 3-D, the 4 input planes of the tile plane), then each tile row is transformed. pbuf holds 4
// (2-D: 1) planes of plane_floats >= ((g1 - g0) m + 2) m wq floats.
void input_tiles(const ConvFastKernels& kt, bool d3, const WinoGeom& wg, const ConvGeom& pg, int64_t D, int64_t pd,
                 int64_t td, const float* x, int64_t C, int64_t c0, int64_t c1, int64_t g0, int64_t g1, float* V,
                 int64_t ldv, int64_t sv, float* pbuf, int64_t plane_floats) {
  const int64_t m = wg.m, row_floats = m * wg.wq, plane_in = pg.H * pg.W;
  for_segments(g0, g1, wg.th, td, [&](int64_t n, int64_t tz, int64_t ty0, int64_t s0, int64_t s1) {
    const int64_t rows = (s1 - s0) * m + 2;
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t z = 0; z < (d3 ? 4 : 1); ++z) {
        float* pz = pbuf + z * plane_floats;
        const int64_t iz = tz * m - pd + z;
        if (iz < 0 || iz >= D) std::memset(pz, 0, sizeof(float) * static_cast<size_t>(rows * row_floats));
        else kt.pad_rows(pg, x + ((n * C + c) * D + iz) * plane_in, ty0 * m, rows, pz);
      }
      for (int64_t gr = s0; gr < s1; ++gr) {
        float* v = V + c * ldv + (gr - g0) * wg.tw;
        const float* b = pbuf + (gr - s0) * m * row_floats;
        if (d3) kt.wino3_input(wg, b, plane_floats, v, sv);
        else kt.wino_input(wg, b, v, sv);
      }
    }
  });
}

// Tile rows per block (R tile rows of tw tiles, per_tile bytes of V and M each): within the workspace
// budget, and at least 8 blocks (load balance over the threads) as long as each keeps >= 64 tiles. Depends
// on the shape only, never on the thread count (the block size is the GEMMs' N, which fixes their
// summation order). The block count is rounded up to a multiple of 8 (while blocks keep >= 32 tiles): 13
// blocks on two threads left one thread a block more than the other (C64 56x56 N8: 5.5-6.2 -> 4.6-5.1 ms
// measured with 16), 4 blocks of 18, 18, 18 and 2 tile rows at C256 14x14 likewise.
int64_t block_rows(int64_t R, int64_t tw, int64_t per_tile, int64_t budget = kBlockBytes) {
  const int64_t rb_mem = std::max<int64_t>(1, std::min<int64_t>(R, budget / per_tile / tw));
  int64_t want = std::max<int64_t>((R + rb_mem - 1) / rb_mem, std::min<int64_t>(8, R * tw / 64));
  const int64_t want8 = (want + 7) / 8 * 8;
  if (want8 > 0 && want8 <= R && R * tw / want8 >= 32) want = want8;
  return std::max<int64_t>(1, (R + want - 1) / std::max<int64_t>(1, want));
}

// M[e] (K x T, rows T apart, e at Mk + e * sm) = U[e] (K x C) V[e] (C x T, rows ldv apart, e at V + e * sv)
// for e0 <= e < e1 on the microkernel: U packed (transform_filters; U[e] at Up + e * su), V read in place, a
// B sliver (NR tiles) reused from L1 by the K / MR row slivers. No packing of V and no per-call cost of the
// engine's driver (64 small products per block in 3-D). The sum over C runs in chunks of `chunk` steps (one
// FMA chain per element each), added to M in order: the sum order depends on the shape only.
void wino_products(const GemmKernels& gk, int64_t e0, int64_t e1, int64_t K, int64_t C, const float* Up,
                   int64_t su, const float* V, int64_t sv, int64_t ldv, int64_t T, float* Mk, int64_t sm,
                   int64_t chunk) {
  const int64_t MR = gk.mr, NR = gk.nr;
  for (int64_t ee = e0; ee < e1; ++ee) {
    const float* ue = Up + ee * su;
    for (int64_t pc = 0; pc < C; pc += chunk) {
      const int64_t kb = std::min(chunk, C - pc);
      GemmTile t;
      t.beta = pc == 0 ? 0.0f : 1.0f;
      for (int64_t j = 0; j < T; j += NR) {
        const int nn = static_cast<int>(std::min(NR, T - j));
        for (int64_t i = 0; i < K; i += MR)
          gk.micro(kb, ue + i * C + pc * MR, V + ee * sv + pc * ldv + j, ldv, Mk + ee * sm + i * T + j, T,
                   static_cast<int>(std::min(MR, K - i)), nn, t);
      }
    }
  }
}

// Runs fn(blk, V, M, team) for the nblk blocks: with enough blocks each thread takes whole blocks on its
// own V / M workspaces (team false); with few (a small batch: 1 block at N1 C256 14x14) the blocks run one
// after another on the calling thread's workspaces and fn spreads each of its phases over the team (team
// true; `phase`). Every output element goes through the same operations either way, so the schedule, which
// depends on the thread count, never changes a result.
constexpr int64_t kMinBlocksPerThread = 2;

template <class F>
void run_blocks(int64_t nblk, int64_t v_floats, int64_t m_floats, F&& fn) {
  if (nblk >= kMinBlocksPerThread * get_num_threads()) {
    parallel_for_guarded(nblk, 1, [&](int64_t b, int64_t e) {
      float* V = t_wino_v.get(v_floats);
      float* M = t_wino_m.get(m_floats);
      for (int64_t blk = b; blk < e; ++blk) fn(blk, V, M, false);
    });
    return;
  }
  float* V = t_wino_v.get(v_floats);
  float* M = t_wino_m.get(m_floats);
  for (int64_t blk = 0; blk < nblk; ++blk) fn(blk, V, M, true);
}

// fn(lo, hi) over [0, n): spread over the threads (team) or all here.
template <class F>
void phase(bool team, int64_t n, F&& fn) {
  if (team) parallel_for_guarded(n, 1, [&](int64_t b, int64_t e) { fn(b, e); });
  else fn(0, n);
}

}  // namespace

void winograd_conv2d_forward(const Conv2dArgs& a, int64_t m, const float* x, const float* w, const float* bias,
                             GemmAct act, float* y, bool swapped) {
  const ConvFastKernels& kt = select_kernels(conv_fast_tables);
  const GemmActFn actf = select_kernels(gemm_tables).act;
  const int64_t A = m + 2, E = A * A, C = a.C, K = a.K, p = a.ph;
  const int64_t Ho = a.H + 2 * p - 2, Wo = a.W + 2 * p - 2;
  const WinoGeom wg = wino_geom(m, Ho, Wo);
  const ConvGeom pg = split_rows(wg, a.H, a.W, p, p);  // the padded rows of one channel, split into m phases

  const GemmKernels& gk = select_kernels(gemm_tables);
  const int64_t Kp = (K + gk.mr - 1) / gk.mr * gk.mr;
  // U packed (E rows of Kp x C, ldf apart), then the filters gathered (9 rows)
  const int64_t ldf = alias_free(Kp * C);
  float* Up = t_wino_u.get((E + 9) * ldf);
  transform_filters(kt, gk, false, m, K, C, w, swapped, Up + E * ldf, Up, ldf);

  const int64_t R = a.N * wg.th;  // tile rows of the whole batch
  const int64_t rb = block_rows(R, wg.tw, E * (C + K) * int64_t(sizeof(float)));
  const int64_t ldv = rb * wg.tw, nblk = (R + rb - 1) / rb;
  const int64_t sv = alias_free(C * ldv), sm = alias_free(K * ldv);  // V[e] and M[e] strides
  const int64_t row_floats = m * wg.wq;
  run_blocks(nblk, E * sv, E * sm, [&](int64_t blk, float* V, float* Mk, bool team) {
    const int64_t g0 = blk * rb, g1 = std::min(R, g0 + rb), T = (g1 - g0) * wg.tw;
    phase(team, C, [&](int64_t c0, int64_t c1) {
      const int64_t plane_floats = (rb * m + 2) * row_floats;
      input_tiles(kt, false, wg, pg, 1, 0, 1, x, C, c0, c1, g0, g1, V, ldv, sv, t_wino_pad.get(plane_floats),
                  plane_floats);
    });
    phase(team, E, [&](int64_t e0, int64_t e1) {  // M[e] (K x T) = U[e] (K x C) V[e] (C x T)
      wino_products(gk, e0, e1, K, C, Up, ldf, V, sv, ldv, T, Mk, sm, kKChunk);
    });
    phase(team, K, [&](int64_t k0, int64_t k1) {
      for (int64_t gr = g0; gr < g1; ++gr) {
        const int64_t n = gr / wg.th, ti = gr % wg.th, ra = std::min(m, Ho - ti * m);
        for (int64_t k = k0; k < k1; ++k) {
          float* yk = y + ((n * K + k) * Ho + ti * m) * Wo;
          kt.wino_output(wg, Mk + k * T + (gr - g0) * wg.tw, sm, bias ? bias[k] : 0.0f, yk, Wo, ra);
          if (act != GemmAct::none) actf(act, ra * Wo, yk);
        }
      }
    });
  });
}

// F(2x2x2,3x3x3): the 2-D scheme with one more nesting. A tile row is (n, tile plane tz, tile row ty),
// tw tiles along W; its input patch is 4 padded planes x 4 padded rows, made per channel once for all the
// tile rows of a segment (same n and tz) of the block. 64 GEMMs (K x C) x (C x tiles).
void winograd_conv3d_forward(const Conv3dArgs& a, const float* x, const float* w, const float* bias, GemmAct act,
                             float* y, bool swapped) {
  const ConvFastKernels& kt = select_kernels(conv_fast_tables);
  const GemmActFn actf = select_kernels(gemm_tables).act;
  constexpr int64_t E = 64;
  const int64_t C = a.C, K = a.K;
  const int64_t Do = a.D + 2 * a.pd - 2, Ho = a.H + 2 * a.ph - 2, Wo = a.W + 2 * a.pw - 2;
  const int64_t td = (Do + 1) / 2, plane_out = Ho * Wo;
  const WinoGeom wg = wino_geom(2, Ho, Wo);
  const ConvGeom pg = split_rows(wg, a.H, a.W, a.ph, a.pw);

  const GemmKernels& gk = select_kernels(gemm_tables);
  const int64_t Kp = (K + gk.mr - 1) / gk.mr * gk.mr;
  // U packed (64 rows of Kp x C, ldf apart: per e, MR-row slivers of C steps), then the filters gathered
  const int64_t ldf = alias_free(Kp * C);
  float* Up = t_wino_u.get((E + 27) * ldf);
  transform_filters(kt, gk, true, 2, K, C, w, swapped, Up + E * ldf, Up, ldf);

  const int64_t R = a.N * td * wg.th;  // tile rows of the whole batch
  const int64_t per_tile = E * (C + K) * int64_t(sizeof(float));
  const int64_t budget = std::clamp(per_tile * (C + K) / 4, kBlockBytes3d, 2 * kBlockBytes);
  const int64_t rb = block_rows(R, wg.tw, per_tile, budget);
  const int64_t ldv = rb * wg.tw, nblk = (R + rb - 1) / rb;
  const int64_t sv = alias_free(C * ldv), sm = alias_free(K * ldv);  // V[e] and M[e] strides
  const int64_t row_floats = 2 * wg.wq, plane_floats = (2 * rb + 2) * row_floats;
  run_blocks(nblk, E * sv, E * sm, [&](int64_t blk, float* V, float* Mk, bool team) {
    const int64_t g0 = blk * rb, g1 = std::min(R, g0 + rb), T = (g1 - g0) * wg.tw;
    phase(team, C, [&](int64_t c0, int64_t c1) {
      input_tiles(kt, true, wg, pg, a.D, a.pd, td, x, C, c0, c1, g0, g1, V, ldv, sv,
                  t_wino_pad.get(4 * plane_floats), plane_floats);
    });
    phase(team, E, [&](int64_t e0, int64_t e1) {
      wino_products(gk, e0, e1, K, C, Up, ldf, V, sv, ldv, T, Mk, sm,
                    C <= kWino3ChainMax ? kKChunk : kWino3Chunk);
    });
    phase(team, K, [&](int64_t k0, int64_t k1) {
      for (int64_t gr = g0; gr < g1; ++gr) {
        const int64_t nz = gr / wg.th, ty = gr % wg.th, n = nz / td, oz = (nz % td) * 2;
        const int64_t rows = std::min<int64_t>(2, Ho - ty * 2), planes = std::min<int64_t>(2, Do - oz);
        for (int64_t k = k0; k < k1; ++k) {
          float* yk = y + (((n * K + k) * Do + oz) * Ho + ty * 2) * Wo;
          kt.wino3_output(wg, Mk + k * T + (gr - g0) * wg.tw, sm, bias ? bias[k] : 0.0f, yk, Wo, plane_out, rows,
                          planes);
          if (act != GemmAct::none)
            for (int64_t dz = 0; dz < planes; ++dz) actf(act, rows * Wo, yk + dz * plane_out);
        }
      }
    });
  });
}

// Weight gradient by F(3x3, 2x2) / F(3x3x3, 2x2x2) (conv_fast_wino_impl.h): per block of tile rows, the
// forward's input transform of x (V, E x C x tiles) and the A transform of grad_output (DY, E x K x tiles),
// then M[e] (K x C) += DY[e] V[e]^T, one GEMM per e (the E GEMMs spread over the threads, each serial, so
// every sum runs over the tiles in block order whatever the thread count); finally dW = G^T M G per (k, c).
// The tile reduction is as long as an im2col weight gradient's (one product per output position and tap).
void winograd_conv_backward_weight(int nd, const Conv3dArgs& a, const float* gy, const float* x, float* gw) {
  const ConvFastKernels& kt = select_kernels(conv_fast_tables);
  const GemmKernels& gk = select_kernels(gemm_tables);
  const int64_t MR = gk.mr, NR = gk.nr, Cp = (a.C + NR - 1) / NR * NR;
  const bool d3 = nd == 3;
  const int64_t E = d3 ? 64 : 16, taps = d3 ? 27 : 9, C = a.C, K = a.K, KC = K * C;
  const int64_t Do = d3 ? a.D + 2 * a.pd - 2 : 1, Ho = a.H + 2 * a.ph - 2, Wo = a.W + 2 * a.pw - 2;
  const int64_t td = (Do + 1) / 2, zout = d3 ? 2 : 1;
  const WinoGeom wg = wino_geom(2, Ho, Wo);
  // x and grad_output rows, split into 2 phases
  const ConvGeom px = split_rows(wg, a.H, a.W, a.ph, a.pw), pd = split_rows(wg, Ho, Wo, 0, 0);
  const int64_t R = a.N * td * wg.th;  // tile rows
  const int64_t per_tile = E * (C + K) * int64_t(sizeof(float));
  const int64_t rb = std::clamp<int64_t>((d3 ? kBlockBytesWgrad3d : kBlockBytesWgrad) / per_tile / wg.tw, 1, R);
  const int64_t ldv = rb * wg.tw, nblk = (R + rb - 1) / rb;
  const int64_t sv = alias_free(C * ldv), sd = alias_free(K * ldv);
  const int64_t row_floats = 2 * wg.wq, plane_floats = (2 * rb + 2) * row_floats;
  float* V = t_wino_v.get(E * sv);
  float* DY = t_wino_m.get(E * sd);
  // M: the float32 products of one chunk of tiles per e, summed into M64 (float64) chunk by chunk, then
  // rounded once: a float32 running sum over all the tiles measured up to 2.3x the error of the NumPy
  // float32 weight gradient (products of transformed values run ~4x (2-D) to ~8x (3-D) larger than x * dy),
  // chunks of 64 tiles summed in float64 0.5-1.1x (about the im2col kernels' 0.3-1.0x).
  // rows of M, M64 and wt ldm apart (alias_free: the E rows are read side by side by wino_wgrad)
  const int64_t ldm = alias_free(KC);
  float* M = t_wino_u.get((E + taps) * ldm);
  float* wt = M + E * ldm;
  double* M64 = reinterpret_cast<double*>(t_wino_acc.get(2 * E * ldm));  // 64-byte aligned
  const int64_t out_plane = Ho * Wo;
  for (int64_t blk = 0; blk < nblk; ++blk) {
    const int64_t g0 = blk * rb, g1 = std::min(R, g0 + rb), T = (g1 - g0) * wg.tw;
    parallel_for_guarded(C, 1, [&](int64_t c0, int64_t c1) {  // V: the forward's input transform
      input_tiles(kt, d3, wg, px, a.D, a.pd, td, x, C, c0, c1, g0, g1, V, ldv, sv,
                  t_wino_pad.get(4 * plane_floats), plane_floats);
    });
    parallel_for_guarded(K, 1, [&](int64_t k0, int64_t k1) {  // DY: grad_output through A
      float* pbuf = t_wino_pad.get(2 * plane_floats);
      for (int64_t k = k0; k < k1; ++k)
        for_segments(g0, g1, wg.th, td, [&](int64_t n, int64_t tz, int64_t ty0, int64_t s0, int64_t s1) {
          const int64_t rows = (s1 - s0) * 2;
          for (int64_t z = 0; z < zout; ++z) {
            float* pz = pbuf + z * plane_floats;
            const int64_t oz = tz * 2 + z;
            if (oz >= Do) std::memset(pz, 0, sizeof(float) * static_cast<size_t>(rows * row_floats));
            else kt.pad_rows(pd, gy + ((n * K + k) * Do + oz) * out_plane, ty0 * 2, rows, pz);
          }
          for (int64_t gr = s0; gr < s1; ++gr)
            kt.wino_dy(wg, pbuf + (gr - s0) * 2 * row_floats, plane_floats, static_cast<int>(zout),
                       DY + k * ldv + (gr - g0) * wg.tw, sd);
        });
    });
    // M64[e] += DY[e] V[e]^T, kWgradChunk tiles at a time, on the microkernel: DY read in place (rows of
    // tiles), the chunk of V[e]^T packed into NR-column slivers (sgemm's per-call cost dominated these
    // 32 x 32 x 64 products of a C32 conv3d)
    parallel_for(E, 1, 1, [&](int64_t e0, int64_t e1) {
      float* bp = t_wino_bpack.get(Cp * kWgradChunk);
      for (int64_t e = e0; e < e1; ++e) {
        float* me = M + e * ldm;
        double* acc = M64 + e * ldm;
        for (int64_t t0 = 0; t0 < T; t0 += kWgradChunk) {
          const int64_t kb = std::min(kWgradChunk, T - t0);
          gk.pack_b_transpose(C, kb, V + e * sv + t0, ldv, bp);
          const GemmTile tile;  // alpha 1, beta 0
          for (int64_t j = 0; j < C; j += NR)
            for (int64_t i = 0; i < K; i += MR)
              gk.micro_direct_a(kb, DY + e * sd + i * ldv + t0, ldv, bp + j * kb, NR, me + i * C + j, C,
                                static_cast<int>(std::min(MR, K - i)), static_cast<int>(std::min(NR, C - j)), tile);
          if (blk == 0 && t0 == 0)
            for (int64_t i = 0; i < KC; ++i) acc[i] = me[i];
          else
            for (int64_t i = 0; i < KC; ++i) acc[i] += me[i];
        }
      }
    });
  }
  parallel_for(E * KC, 1 << 14, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e;) {  // the part of row i / KC in [b, e)
      const int64_t row = i / KC * ldm + i % KC, n = std::min(KC - i % KC, e - i);
      for (int64_t j = 0; j < n; ++j) M[row + j] = static_cast<float>(M64[row + j]);
      i += n;
    }
  });
  constexpr int64_t kChunk = 1024;  // filters per work item
  parallel_for((KC + kChunk - 1) / kChunk, 8, 1, [&](int64_t b, int64_t e) {
    const int64_t lo = b * kChunk, hi = std::min(KC, e * kChunk);
    kt.wino_wgrad(static_cast<int>(nd), hi - lo, ldm, M + lo, wt + lo);
    for (int64_t kc = lo; kc < hi; ++kc)
      for (int64_t t = 0; t < taps; ++t) gw[kc * taps + t] = wt[t * ldm + kc];
  });
}

}  // namespace fastml
