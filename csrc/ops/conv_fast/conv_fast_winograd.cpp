// Winograd F(m x m, 3x3) forward (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
// CVPR 2016), m = 4 (alpha = 6, 36 products) or m = 2 (alpha = 4, 16 products), stride 1, dilation 1,
// groups 1, zero padding p in {0, 1}:
//
//   U[e][k][c] = (G g[k,c] G^T)[e]            filter transform, once per call, in float64 (then rounded)
//   V[e][c][t] = (B^T d[c,t] B)[e]            input transform of tile t (alpha x alpha input patch)
//   M[e][t][k] = sum_c V[e][c][t] U[e][k][c]  alpha^2 GEMMs (tiles x C) x (C x K) on the SGEMM engine,
//                                             U^T packed once per call (PackedB), V read transposed
//   Y[t][k]    = A^T M[.][t][k] A + bias[k] -> activation   (m x m outputs of tile t, clipped at the edge)
//
//  G (F(2x2,3x3)) = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//  G (F(4x4,3x3)) = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
// (B^T and A^T: conv_fast_wino_impl.h.) Tiles are processed in blocks of whole tile rows, sized so the
// per-thread V and M buffers stay around 1 MiB; blocks run in parallel, each thread calling the engine
// serially, so results are bitwise identical for any thread count.
//
// Accuracy: F(4x4,3x3) multiplies the input by coefficients up to 5 and the products by up to 8 (A^T),
// so its rounding error is larger than a direct sum's; tests/test_conv_fast.py measures it against the
// float64 reference (see fastml/functional/_conv_fast.py winograd_conv2d for the figures).
// Test: pytest tests/test_conv_fast.py -k winograd. Bench: python -m fastml.bench --ops conv_fast
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "core/parallel.h"
#include "gemm/gemm_kernels.h"
#include "ops/conv_fast/conv_fast.h"
#include "ops/conv_fast/conv_fast_scratch.h"

namespace fastml {

namespace {

thread_local ConvScratch t_wino_v, t_wino_m, t_wino_pad, t_wino_tmp;
thread_local ConvScratch t_wino_u;  // calling thread: transformed filters and the padded bias

constexpr double kG2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
constexpr double kG4[6][3] = {{1.0 / 4, 0, 0},
                              {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                              {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                              {1.0 / 24, 1.0 / 12, 1.0 / 6},
                              {1.0 / 24, -1.0 / 12, 1.0 / 6},
                              {0, 0, 1}};
constexpr int64_t kBlockBytes = int64_t(1) << 20;  // target size of one thread's V + M buffers

// U[e][k][c] = (G g G^T)[e] for filters g = w[k, c] (3x3), computed in float64 over each filter.
void filter_transform(int64_t m, int64_t K, int64_t C, const float* w, float* U) {
  const int64_t A = m + 2, KC = K * C;
  parallel_for(KC, 2048, 1, [&](int64_t b, int64_t e) {
    for (int64_t kc = b; kc < e; ++kc) {
      const float* g = w + kc * 9;
      double t[6][3];  // G g
      for (int64_t i = 0; i < A; ++i)
        for (int j = 0; j < 3; ++j) {
          double s = 0.0;
          for (int r = 0; r < 3; ++r) s += (m == 4 ? kG4[i][r] : kG2[i][r]) * double(g[r * 3 + j]);
          t[i][j] = s;
        }
      for (int64_t i = 0; i < A; ++i)
        for (int64_t j = 0; j < A; ++j) {
          double s = 0.0;
          for (int r = 0; r < 3; ++r) s += t[i][r] * (m == 4 ? kG4[j][r] : kG2[j][r]);
          U[(i * A + j) * KC + kc] = static_cast<float>(s);
        }
    }
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

  float* U = t_wino_u.get(E * K * C + K);
  float* bvec = U + E * K * C;
  filter_transform(m, K, C, w, U);
  for (int64_t k = 0; k < K; ++k) bvec[k] = bias ? bias[k] : 0.0f;
  std::vector<std::unique_ptr<PackedB>> packed(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e)  // op(B) = U[e]^T (C x K): stored K x C, i.e. tb = trans
    packed[static_cast<size_t>(e)] = std::make_unique<PackedB>(Trans::trans, C, K, U + e * K * C, C);

  const int64_t R = a.N * wg.th;  // tile rows of the whole batch
  const int64_t per_tile = E * (C + K) * int64_t(sizeof(float));
  const int64_t rb = std::max<int64_t>(1, std::min<int64_t>(R, kBlockBytes / per_tile / wg.tw));
  const int64_t ldv = rb * wg.tw, nblk = (R + rb - 1) / rb;
  const int64_t row_floats = m * wg.wq;
  parallel_for(nblk, 1, 1, [&](int64_t b, int64_t e) {
    float* V = t_wino_v.get(E * C * ldv);
    float* Mt = t_wino_m.get(E * ldv * K);
    float* pbuf = t_wino_pad.get(A * row_floats);
    float* tmp = t_wino_tmp.get(m * m * 16);
    std::memset(tmp, 0, sizeof(float) * static_cast<size_t>(m * m * 16));
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t g0 = blk * rb, g1 = std::min(R, g0 + rb), T = (g1 - g0) * wg.tw;
      for (int64_t gr = g0; gr < g1; ++gr) {
        const int64_t n = gr / wg.th, ti = gr % wg.th, to = (gr - g0) * wg.tw;
        for (int64_t c = 0; c < C; ++c) {
          kt.pad_rows(pg, x + (n * C + c) * a.H * a.W, ti * m, A, pbuf);
          kt.wino_input(wg, pbuf, V + c * ldv + to, C * ldv);
        }
      }
      for (int64_t ee = 0; ee < E; ++ee)
        sgemm_packed(Trans::trans, T, 1.0f, V + ee * C * ldv, ldv, *packed[static_cast<size_t>(ee)], 0.0f,
                     Mt + ee * T * K, K);
      for (int64_t gr = g0; gr < g1; ++gr) {
        const int64_t n = gr / wg.th, ti = gr % wg.th;
        const int64_t ra = std::min(m, Ho - ti * m);
        for (int64_t tj = 0; tj < wg.tw; ++tj) {
          const int64_t t = (gr - g0) * wg.tw + tj, cb = std::min(m, Wo - tj * m);
          for (int64_t k0 = 0; k0 < K; k0 += 16) {
            const int64_t kv = std::min<int64_t>(16, K - k0);
            kt.wino_output(m, Mt + t * K + k0, T * K, bvec + k0, kv, tmp);
            if (act != GemmAct::none) actf(act, m * m * 16, tmp);
            for (int64_t kk = 0; kk < kv; ++kk) {
              float* yk = y + ((n * K + k0 + kk) * Ho + ti * m) * Wo + tj * m;
              for (int64_t r = 0; r < ra; ++r)
                for (int64_t s = 0; s < cb; ++s) yk[r * Wo + s] = tmp[(r * m + s) * 16 + kk];
            }
          }
        }
      }
    }
  });
}

}  // namespace fastml
