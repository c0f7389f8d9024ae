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

constexpr int64_t kBlockBytes = int64_t(4) << 20;  // one thread's V + M buffers: >= ~64 tiles per GEMM at C = K = 256

// U[e][k][c] = (G g G^T)[e] for the filters g = w[k, c] (kernel wino_filter, vectorised over k*C + c on
// the filters transposed to (9, K*C)), spread over the threads (each filter is independent).
void transform_filters(const ConvFastKernels& kt, int64_t m, int64_t KC, const float* w, float* wt, float* U) {
  constexpr int64_t kChunk = 1024;  // filters per work item
  parallel_for((KC + kChunk - 1) / kChunk, 8, 1, [&](int64_t b, int64_t e) {
    const int64_t lo = b * kChunk, hi = std::min(KC, e * kChunk);
    for (int64_t kc = lo; kc < hi; ++kc)
      for (int t = 0; t < 9; ++t) wt[t * KC + kc] = w[kc * 9 + t];
    kt.wino_filter(m, hi - lo, KC, wt + lo, U + lo);
  });
}

}  // namespace

void winograd_conv2d_forward(const Conv2dArgs& a, int64_t m, const float* x, const float* w, const float* bias,
                             GemmAct act, float* y) {
  const ConvFastKernels& kt = select_kernels(conv_fast_tables);
  const GemmActFn actf = select_kernels(gemm_tables).act;
  const int64_t A = m + 2, E = A * A, C = a.C, K = a.K, p = a.ph;
  const int64_t Ho = a.H + 2 * p - 2, Wo = a.W + 2 * p - 2;
  WinoGeom wg{m, A, (Ho + m - 1) / m, (Wo + m - 1) / m, 0};
  wg.wq = (wg.tw + 16 + 15) / 16 * 16;  // j + l/m < tw + 1, plus whole-vector loads of up to 16 lanes
  ConvGeom pg{};                        // the padded rows of one channel, split into m phases
  pg.H = a.H;
  pg.W = a.W;
  pg.ph = p;
  pg.pw = p;
  pg.sh = 1;
  pg.sw = m;
  pg.wq = wg.wq;

  float* U = t_wino_u.get(2 * E * K * C);  // U (E x K x C), then the filters transposed (9 x K*C)
  transform_filters(kt, m, K * C, w, U + E * K * C, U);

  const int64_t R = a.N * wg.th;  // tile rows of the whole batch
  const int64_t per_tile = E * (C + K) * int64_t(sizeof(float));
  // Blocks of rb tile rows: within the workspace budget, and at least 8 blocks (load balance over the
  // threads) as long as each keeps >= 64 tiles. Depends on the shape only, never on the thread count
  // (the block size is the GEMMs' N, which fixes their summation order).
  // The block count is rounded up to a multiple of 8 (while blocks keep >= 32 tiles): 13 blocks on two
  // threads left one thread a block more than the other (C64 56x56 N8: 5.5-6.2 -> 4.6-5.1 ms measured with
  // 16), 4 blocks of 18, 18, 18 and 2 tile rows at C256 14x14 likewise.
  const int64_t rb_mem = std::max<int64_t>(1, std::min<int64_t>(R, kBlockBytes / per_tile / wg.tw));
  int64_t want = std::max<int64_t>((R + rb_mem - 1) / rb_mem, std::min<int64_t>(8, R * wg.tw / 64));
  const int64_t want8 = (want + 7) / 8 * 8;
  if (want8 > 0 && want8 <= R && R * wg.tw / want8 >= 32) want = want8;
  const int64_t rb = std::max<int64_t>(1, (R + want - 1) / std::max<int64_t>(1, want));
  const int64_t ldv = rb * wg.tw, nblk = (R + rb - 1) / rb;
  const int64_t row_floats = m * wg.wq;
  parallel_for_guarded(nblk, 1, [&](int64_t b, int64_t e) {
    float* V = t_wino_v.get(E * C * ldv);
    float* Mk = t_wino_m.get(E * K * ldv);
    float* pbuf = t_wino_pad.get((rb * m + 2) * row_floats);
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t g0 = blk * rb, g1 = std::min(R, g0 + rb), T = (g1 - g0) * wg.tw;
      // input transform: per image segment of the block and channel, the padded rows of all its tile
      // rows are made once (tile rows overlap by 2 input rows), then each tile row is transformed
      for (int64_t s0 = g0; s0 < g1;) {
        const int64_t n = s0 / wg.th, ti0 = s0 % wg.th, s1 = std::min(g1, (n + 1) * wg.th);
        for (int64_t c = 0; c < C; ++c) {
          kt.pad_rows(pg, x + (n * C + c) * a.H * a.W, ti0 * m, (s1 - s0) * m + 2, pbuf);
          for (int64_t gr = s0; gr < s1; ++gr)
            kt.wino_input(wg, pbuf + (gr - s0) * m * row_floats, V + c * ldv + (gr - g0) * wg.tw, C * ldv);
        }
        s0 = s1;
      }
      for (int64_t ee = 0; ee < E; ++ee)  // M[e] (K x T) = U[e] (K x C) V[e] (C x T)
        sgemm(Trans::none, Trans::none, K, T, C, 1.0f, U + ee * K * C, C, V + ee * C * ldv, ldv, 0.0f,
              Mk + ee * K * T, T);
      for (int64_t gr = g0; gr < g1; ++gr) {
        const int64_t n = gr / wg.th, ti = gr % wg.th, ra = std::min(m, Ho - ti * m);
        for (int64_t k = 0; k < K; ++k) {
          float* yk = y + ((n * K + k) * Ho + ti * m) * Wo;
          kt.wino_output(wg, Mk + k * T + (gr - g0) * wg.tw, K * T, bias ? bias[k] : 0.0f, yk, Wo, ra);
          if (act != GemmAct::none) actf(act, ra * Wo, yk);
        }
      }
    }
  });
}

}  // namespace fastml
