// Entries of the depthwise and direct (tiny C_in) convolutions: geometry, per-thread workspaces,
// threading over independent output planes / row blocks, the fused activation, and the fixed-order
// batch reductions of grad_weight / grad_bias. Maths and layouts: conv_fast.h.
// Test: pytest tests/test_conv_fast.py. Bench: python -m fastml.bench --ops conv_fast
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/parallel.h"
#include "gemm/gemm_kernels.h"
#include "ops/conv_fast/conv_fast.h"
#include "ops/conv_fast/conv_fast_scratch.h"

namespace fastml {

namespace {

constexpr int64_t kSlack = 32;     // zero floats after each phase row: whole-vector loads past the row end
constexpr int64_t kWorkGrain = 65536;  // multiply-adds per thread below which a call stays on one thread
constexpr int64_t kDirectKB = 8;   // output-channel register block of direct_rows
constexpr int64_t kDirectRows = 4; // output rows per direct work item
constexpr int64_t kScatterKB = 8;  // grad_output planes per scatter call (one gbuf update per 8 FMAs)
constexpr int64_t kCorrKB = 4;     // grad_output planes per corr_taps call (its register block)

thread_local ConvScratch t_buf;    // this thread's padded plane(s)
thread_local ConvScratch t_buf2;   // a second padded plane (depthwise backward: grad_output)
thread_local ConvScratch t_shared; // the calling thread's per-call buffers, read by the whole team

int64_t grain_items(int64_t work_per_item) {
  return std::max<int64_t>(1, kWorkGrain / std::max<int64_t>(1, work_per_item));
}

ConvGeom geom_of(const Conv2dArgs& a) {
  return make_conv_geom(a.H, a.W, a.kh, a.kw, a.sh, a.sw, a.ph, a.pw, a.dh, a.dw);
}

// Per-sample partials part[(n*K + k)*stride + t] summed over n in sample order (thread-count invariant).
void reduce_over_batch(int64_t N, int64_t K, int64_t stride, const float* part, int64_t taps, float* gw, float* gb) {
  parallel_for(K, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, N * stride)), 1, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      for (int64_t t = 0; t < stride; ++t) {
        float s = 0.0f;
        for (int64_t n = 0; n < N; ++n) s += part[(n * K + k) * stride + t];
        if (t < taps) {
          if (gw) gw[k * taps + t] = s;
        } else if (gb) {
          gb[k] = s;
        }
      }
    }
  });
}

}  // namespace

ConvGeom make_conv_geom(int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                        int64_t dh, int64_t dw) {
  ConvGeom g{H, W, kh, kw, sh, sw, ph, pw, dh, dw, 0, 0, 0};
  g.Ho = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
  g.Wo = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  g.wq = ((W + 2 * pw + sw - 1) / sw + kSlack + 15) / 16 * 16;
  return g;
}

namespace {

// Depthwise forward, multiplier 1, on small planes: `lanes` channels of an image at once, one per vector lane
// (dw_lanes). Items (channel block, image), so that a thread's consecutive items share the block's taps; each
// transposes its channels' planes into one interleaved padded plane (pixels of `lanes` floats; the border zeros
// stay from the item before, as only the interior is rewritten), runs dw_lanes and transposes the result back into
// the output planes. On a 7 x 7 or 14 x 14 plane the per-plane kernels fill few lanes (a 7-wide row uses 7 of the
// 32 lanes of a two-vector block, and dw_forward_grid 49 of 80); here every lane is a channel. Same FMA chain per
// output as dw_forward (the taps in the order dw_taps_qp names), so the same bits.
// Where dw_lanes beats the per-plane kernels (paired, 2 threads, Zen 4, N8, against dw_forward):
// - AVX-512 (16 lanes): output planes up to 20 wide at stride 1 (7x7 k5 2.2x, k7 2.5x, 14x14 k5 1.5x, 20x20
//   k5 1.13x; 28x28 0.79-0.83x), up to 8 for 3x3 stride 1 (7x7 2.0x; at 14x14 0.85-1.0x: that kernel fills
//   14 of 16 lanes and shares its row loads), up to 28 at stride 2 (14 -> 7 3.1x, 56 -> 28 k3 1.2x);
// - AVX2 (8 lanes): up to 8 (7x7 k5 1.75x, k3 1.18x, 14 -> 7 stride 2 1.84x; 14x14 k5 1.03x, 16x16 k5 0.49x,
//   28 -> 14 stride 2 0.95x).
bool use_lanes(const ConvGeom& g, int lanes) {
  if (lanes < 8) return false;
  const int64_t side = std::max(g.Ho, g.Wo);
  if (lanes < 16) return side <= 8;
  if (g.sh >= 2 || g.sw >= 2) return side <= 28;
  if (g.kh == 3 && g.kw == 3 && g.dh == 1 && g.dw == 1) return side <= 8;
  return side <= 20;
}

// Channels [c0, c0 + cb) of the planes at src (plane floats apart) into xb: xt gets them transposed (pixels
// of L floats; lanes past cb 0), then each row goes to its place inside the padded interleaved plane (Hp x Wp
// pixels; its border is left as it is: zeros).
void pack_lanes(const GemmKernels& gk, const ConvGeom& g, int64_t L, const float* src, int64_t cb, float* xt,
                float* xb) {
  const int64_t plane = g.H * g.W, Wp = g.W + 2 * g.pw;
  if (cb < L) std::memset(xt, 0, sizeof(float) * static_cast<size_t>(plane * L));
  gk.transpose(cb, plane, src, plane, xt, L);
  for (int64_t r = 0; r < g.H; ++r)
    std::memcpy(xb + ((r + g.ph) * Wp + g.pw) * L, xt + r * g.W * L, sizeof(float) * static_cast<size_t>(g.W * L));
}

// Where dw_lanes_wgrad beats the per-plane corr_taps (weight gradient alone, paired, 2 threads, Zen 4, N8):
// - AVX-512: every size measured, up to 56 x 56 (k5: 14x14 4.7x, 28x28 3.2x, 56x56 2.2x; k3: 14x14 1.77x,
//   28x28 1.17x, 56x56 1.03x); input planes up to 64 (the interleaved plane stays in L2);
// - AVX2: 3x3 up to 8 (7x7 1.38x; 14x14 0.90x, 28x28 0.58x), larger kernels up to 28 (14x14 k5 1.96x, 28x28
//   1.30x; 56x56 0.98x).
bool use_lanes_wgrad(const ConvGeom& g, int lanes) {
  if (lanes < 8) return false;
  const int64_t side = std::max(g.Ho, g.Wo);
  if (lanes < 16) return side <= (g.kh * g.kw <= 9 ? 8 : 28);
  return side <= 56 && std::max(g.H, g.W) <= 64;
}

// N images of C planes (geometry g), one tap set per channel (multiplier 1).
void depthwise_lanes_forward(int64_t N, int64_t C, const ConvGeom& g, const float* x, const float* w,
                             const float* bias, GemmAct act, float* y) {
  const ConvFastKernels& kt = select_kernels(conv_fast_tables);
  const GemmKernels& gk = select_kernels(gemm_tables);
  const int64_t L = kt.lanes, taps = g.kh * g.kw, in_plane = g.H * g.W, out_plane = g.Ho * g.Wo;
  const int64_t Hp = g.H + 2 * g.ph, Wp = g.W + 2 * g.pw, nb = (C + L - 1) / L;
  const bool qp = dw_taps_qp(g);
  parallel_for_guarded(N * nb, grain_items(out_plane * taps * L), [&](int64_t b, int64_t e) {
    // per thread: the padded interleaved plane, the compact transposed planes, the taps, the bias, the output
    float* xb = t_buf.get(Hp * Wp * L + in_plane * L + (taps + 1) * L + out_plane * L);
    float* xt = xb + Hp * Wp * L;
    float* wt = xt + in_plane * L;
    float* bl = wt + taps * L;
    float* ob = bl + L;
    std::memset(xb, 0, sizeof(float) * static_cast<size_t>(Hp * Wp * L));
    int64_t c_prev = -1;
    for (int64_t it = b; it < e; ++it) {
      const int64_t n = it % N, c0 = it / N * L, cb = std::min(L, C - c0);  // images of a block in a row
      pack_lanes(gk, g, L, x + (n * C + c0) * in_plane, cb, xt, xb);
      if (c0 != c_prev) {  // this block's taps and bias (the items of a range often share them)
        if (cb < L) std::memset(wt, 0, sizeof(float) * static_cast<size_t>((taps + 1) * L));
        gk.transpose(cb, taps, w + c0 * taps, taps, wt, L);
        if (bias) std::memcpy(bl, bias + c0, sizeof(float) * static_cast<size_t>(cb));
        c_prev = c0;
      }
      kt.dw_lanes(g, xb, wt, bias ? bl : nullptr, qp, ob);
      float* yp = y + (n * C + c0) * out_plane;
      gk.transpose(out_plane, cb, ob, L, yp, out_plane);
      if (act != GemmAct::none)
        for (int64_t c = 0; c < cb; ++c) gk.act(act, out_plane, yp + c * out_plane);
    }
  });
}

// Weight and bias gradients of N images of C planes (multiplier 1) on small planes, the channels in the
// lanes: per item (channel block, image) the input planes packed as in the forward and the grad_output
// planes transposed (pixels of L floats), dw_lanes_wgrad sums each tap's products over the pixels (along
// each output row, then over the rows), and the
// sums go to part[(n K + c) stride + t] (bias at t = taps), which reduce_over_batch adds up over the images.
// Each channel's sums run the same way whatever its block and the thread: thread-count invariant (the
// per-plane kernels sum in vector lanes first: different last bits from these).
void depthwise_lanes_wgrad(const Conv2dArgs& a, const ConvGeom& g, const float* x, const float* gy, bool with_bias,
                           int64_t stride, float* part) {
  const ConvFastKernels& kt = select_kernels(conv_fast_tables);
  const GemmKernels& gk = select_kernels(gemm_tables);
  const int64_t L = kt.lanes, taps = a.kh * a.kw, in_plane = a.H * a.W, out_plane = g.Ho * g.Wo;
  const int64_t Hp = a.H + 2 * a.ph, Wp = a.W + 2 * a.pw, nb = (a.C + L - 1) / L;
  parallel_for_guarded(a.N * nb, grain_items(out_plane * taps * L), [&](int64_t b, int64_t e) {
    float* xb = t_buf.get(Hp * Wp * L + in_plane * L + out_plane * L + (taps + 1) * L);
    float* xt = xb + Hp * Wp * L;
    float* gyt = xt + in_plane * L;
    float* sums = gyt + out_plane * L;  // taps x L, then the bias sums
    std::memset(xb, 0, sizeof(float) * static_cast<size_t>(Hp * Wp * L));
    for (int64_t it = b; it < e; ++it) {
      const int64_t n = it % a.N, c0 = it / a.N * L, cb = std::min(L, a.C - c0);
      pack_lanes(gk, g, L, x + (n * a.C + c0) * in_plane, cb, xt, xb);
      if (cb < L) std::memset(gyt, 0, sizeof(float) * static_cast<size_t>(out_plane * L));  // lanes past C: 0
      gk.transpose(cb, out_plane, gy + (n * a.C + c0) * out_plane, out_plane, gyt, L);
      kt.dw_lanes_wgrad(g, xb, gyt, sums, with_bias ? sums + taps * L : nullptr);
      float* pc = part + (n * a.C + c0) * stride;
      gk.transpose(taps, cb, sums, L, pc, stride);
      if (with_bias)
        for (int64_t c = 0; c < cb; ++c) pc[c * stride + taps] = sums[taps * L + c];
    }
  });
}

}  // namespace

void depthwise_conv2d_forward(const Conv2dArgs& a, const float* x, const float* w, const float* bias, GemmAct act,
                              float* y) {
  const ConvFastKernels& kt = select_kernels(conv_fast_tables);
  const GemmActFn actf = select_kernels(gemm_tables).act;
  const ConvGeom g = geom_of(a);
  const int64_t m = a.K / a.C, taps = a.kh * a.kw, in_plane = a.H * a.W, out_plane = g.Ho * g.Wo;
  if (m == 1 && use_lanes(g, kt.lanes)) return depthwise_lanes_forward(a.N, a.C, g, x, w, bias, act, y);
  const int64_t hp = a.H + 2 * a.ph, buf_floats = hp * g.row_floats();
  parallel_for_guarded(a.N * a.K, grain_items(out_plane * taps), [&](int64_t b, int64_t e) {
    float* buf = t_buf.get(buf_floats);
    int64_t padded = -1;  // the input plane now in buf (k / m repeats m times in a row)
    for (int64_t pl = b; pl < e; ++pl) {
      const int64_t n = pl / a.K, k = pl % a.K, src = n * a.C + k / m;
      if (src != padded) {  // the first plane of this range pads, the others rewrite the input cells
        (padded < 0 ? kt.pad_rows : kt.pad_interior)(g, x + src * in_plane, 0, hp, buf);
        padded = src;
      }
      float* yp = y + pl * out_plane;
      kt.dw_forward(g, buf, w + k * taps, bias ? bias[k] : 0.0f, yp);
      if (act != GemmAct::none) actf(act, out_plane, yp);  // while the plane is still in cache
    }
  });
}

void depthwise_conv2d_backward(const Conv2dArgs& a, const float* gy, const float* x, const float* w, float* gx,
                               float* gw, float* gb) {
  const ConvFastKernels& kt = select_kernels(conv_fast_tables);
  const ConvGeom g = geom_of(a);
  const int64_t m = a.K / a.C, taps = a.kh * a.kw, in_plane = a.H * a.W, out_plane = g.Ho * g.Wo;
  const int64_t hp = a.H + 2 * a.ph, buf_floats = hp * g.row_floats();
  // Stride 1, m = 1, padding within the dilated kernel: grad_input is itself a depthwise correlation,
  // gx = corr(gy padded by (dh(kh-1) - ph, dw(kw-1) - pw), w flipped), run by the forward kernel (sums
  // in registers instead of read-modify-writes). Otherwise the scatter below.
  const bool gather = gx && m == 1 && a.sh == 1 && a.sw == 1 && a.ph <= a.dh * (a.kh - 1) &&
                      a.pw <= a.dw * (a.kw - 1);
  const ConvGeom gt = make_conv_geom(g.Ho, g.Wo, a.kh, a.kw, 1, 1, a.dh * (a.kh - 1) - a.ph,
                                     a.dw * (a.kw - 1) - a.pw, a.dh, a.dw);
  const int64_t gt_hp = g.Ho + 2 * gt.ph, gt_floats = gather ? gt_hp * gt.row_floats() : 0;
  if (gx && !gather) {  // gx[n, c] = sum_{j < m} transposed conv of gy[n, c*m + j] through w[c*m + j]
    parallel_for_guarded(a.N * a.C, grain_items(out_plane * taps * m), [&](int64_t b, int64_t e) {
      float* gbuf = t_buf.get(buf_floats);
      for (int64_t pl = b; pl < e; ++pl) {
        const int64_t n = pl / a.C, c = pl % a.C;
        std::memset(gbuf, 0, sizeof(float) * static_cast<size_t>(buf_floats));
        for (int64_t j = 0; j < m; j += kScatterKB) {  // the m output channels of input channel c
          const int64_t k = c * m + j;
          kt.scatter(g, gy + (n * a.K + k) * out_plane, out_plane, w + k * taps, taps, std::min(kScatterKB, m - j),
                     gbuf);
        }
        kt.unpad(g, gbuf, gx + pl * in_plane);
      }
    });
  }
  if (!gw && !gb && !gather) return;
  const int64_t stride = taps + 1;  // per (n, k): taps partials, then the bias partial
  float* part = t_shared.get(a.N * a.K * stride + (gather ? a.K * taps : 0));
  float* wf = part + a.N * a.K * stride;  // flipped taps for the gather
  if (gather)
    for (int64_t k = 0; k < a.K; ++k)
      for (int64_t t = 0; t < taps; ++t) wf[k * taps + t] = w[k * taps + taps - 1 - t];
  // small planes: grad_input in its own pass with the channels in the lanes (the same sums as dw_forward);
  // the weight and bias gradients with the channels in the lanes where use_lanes_wgrad says (multiplier 1)
  const bool gather_planes = gather && !use_lanes(gt, kt.lanes);
  if (gather && !gather_planes) depthwise_lanes_forward(a.N, a.C, gt, gy, wf, nullptr, GemmAct::none, gx);
  const bool wgrad_lanes = (gw || gb) && m == 1 && use_lanes_wgrad(g, kt.lanes);
  if (wgrad_lanes) depthwise_lanes_wgrad(a, g, x, gy, gb != nullptr, stride, part);
  if (!gather_planes && (wgrad_lanes || (!gw && !gb))) {
    if (gw || gb) reduce_over_batch(a.N, a.K, stride, part, taps, gw, gb);
    return;
  }
  // one pass over the (n, k) planes: each grad_output plane is read from memory once for all three
  const int64_t grain = grain_items(out_plane * taps * (gather_planes ? 2 : 1));
  parallel_for_guarded(a.N * a.K, grain, [&](int64_t b, int64_t e) {
    float* buf = t_buf.get(buf_floats);
    float* gbuf = gather_planes ? t_buf2.get(gt_floats) : nullptr;
    int64_t padded = -1;
    for (int64_t pl = b; pl < e; ++pl) {
      const int64_t n = pl / a.K, k = pl % a.K, src = n * a.C + k / m;
      const float* gp = gy + pl * out_plane;
      if (gw && !wgrad_lanes) {
        if (src != padded) {
          (padded < 0 ? kt.pad_rows : kt.pad_interior)(g, x + src * in_plane, 0, hp, buf);
          padded = src;
        }
        kt.corr_taps(g, buf, gp, 0, 1, part + pl * stride, 0);
      }
      if (gb && !wgrad_lanes) part[pl * stride + taps] = kt.sum(out_plane, gp);
      if (gather_planes) {  // m == 1: plane pl of gx
        (pl == b ? kt.pad_rows : kt.pad_interior)(gt, gp, 0, gt_hp, gbuf);
        kt.dw_forward(gt, gbuf, wf + k * taps, 0.0f, gx + pl * in_plane);
      }
    }
  });
  if (gw || gb) reduce_over_batch(a.N, a.K, stride, part, taps, gw, gb);
}

void direct_conv2d_forward(const Conv2dArgs& a, const float* x, const float* w, const float* bias, GemmAct act,
                           float* y) {
  const ConvFastKernels& kt = select_kernels(conv_fast_tables);
  const GemmActFn actf = select_kernels(gemm_tables).act;
  const ConvGeom g = geom_of(a);
  const int64_t taps = a.kh * a.kw, in_plane = a.H * a.W, out_plane = g.Ho * g.Wo, C = a.C, K = a.K;
  const int64_t Kp = (K + kDirectKB - 1) / kDirectKB * kDirectKB;
  // weights transposed to (C, kh, kw, Kp) (zero columns past K) and the bias padded to Kp
  float* wt = t_shared.get(C * taps * Kp + Kp);
  float* bp = wt + C * taps * Kp;
  std::memset(wt, 0, sizeof(float) * static_cast<size_t>(C * taps * Kp + Kp));
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < taps; ++t) wt[(c * taps + t) * Kp + k] = w[(k * C + c) * taps + t];
    if (bias) bp[k] = bias[k];
  }
  const int64_t nblk = (g.Ho + kDirectRows - 1) / kDirectRows;
  // input rows one block of output rows reads (fewer blocks than rows: a huge stride must not size it)
  const int64_t rows_per_c = (std::min<int64_t>(kDirectRows, g.Ho) - 1) * a.sh + (a.kh - 1) * a.dh + 1;
  const int64_t buf_floats = C * rows_per_c * g.row_floats();
  const int64_t grain = grain_items(kDirectRows * g.Wo * K * C * taps);
  parallel_for_guarded(a.N * nblk, grain, [&](int64_t b, int64_t e) {
    float* buf = t_buf.get(buf_floats);
    for (int64_t it = b; it < e; ++it) {
      const int64_t n = it / nblk, oh0 = (it % nblk) * kDirectRows, oh1 = std::min(g.Ho, oh0 + kDirectRows);
      const int64_t rows = (oh1 - oh0 - 1) * a.sh + (a.kh - 1) * a.dh + 1;
      for (int64_t c = 0; c < C; ++c)
        kt.pad_rows(g, x + (n * C + c) * in_plane, oh0 * a.sh, rows, buf + c * rows_per_c * g.row_floats());
      float* yn = y + n * K * out_plane;
      kt.direct_rows(g, C, K, buf, rows_per_c, wt, bp, oh0, oh1, yn, out_plane);
      if (act != GemmAct::none)
        for (int64_t k = 0; k < K; ++k) actf(act, (oh1 - oh0) * g.Wo, yn + k * out_plane + oh0 * g.Wo);
    }
  });
}

void direct_conv2d_backward(const Conv2dArgs& a, const float* gy, const float* x, const float* w, float* gx,
                            float* gw, float* gb) {
  const ConvFastKernels& kt = select_kernels(conv_fast_tables);
  const ConvGeom g = geom_of(a);
  const int64_t taps = a.kh * a.kw, in_plane = a.H * a.W, out_plane = g.Ho * g.Wo, C = a.C, K = a.K;
  const int64_t hp = a.H + 2 * a.ph, plane_floats = hp * g.row_floats();
  if (gx) {  // gx[n, c] = sum_k transposed conv of gy[n, k] through w[k, c]
    parallel_for_guarded(a.N * C, grain_items(out_plane * taps * K), [&](int64_t b, int64_t e) {
      float* gbuf = t_buf.get(plane_floats);
      for (int64_t pl = b; pl < e; ++pl) {
        const int64_t n = pl / C, c = pl % C;
        std::memset(gbuf, 0, sizeof(float) * static_cast<size_t>(plane_floats));
        for (int64_t k = 0; k < K; k += kScatterKB)
          kt.scatter(g, gy + (n * K + k) * out_plane, out_plane, w + (k * C + c) * taps, C * taps,
                     std::min(kScatterKB, K - k), gbuf);
        kt.unpad(g, gbuf, gx + pl * in_plane);
      }
    });
  }
  if (!gw && !gb) return;
  const int64_t stride = C * taps + 1;  // per (n, k): C*taps partials, then the bias partial
  float* part = t_shared.get(a.N * K * stride);
  const int64_t nkb = (K + kCorrKB - 1) / kCorrKB;  // items: (sample, block of kCorrKB output channels)
  parallel_for_guarded(a.N * nkb, grain_items(out_plane * taps * C * kCorrKB), [&](int64_t b, int64_t e) {
    float* buf = t_buf.get(C * plane_floats);
    int64_t padded = -1;  // the sample whose C planes are in buf
    for (int64_t it = b; it < e; ++it) {
      const int64_t n = it / nkb, k0 = (it % nkb) * kCorrKB, nk = std::min(kCorrKB, K - k0);
      const float* gp = gy + (n * K + k0) * out_plane;
      float* pp = part + (n * K + k0) * stride;
      if (gw) {
        if (n != padded) {
          const ConvPadRowsFn pad = padded < 0 ? kt.pad_rows : kt.pad_interior;
          for (int64_t c = 0; c < C; ++c) pad(g, x + (n * C + c) * in_plane, 0, hp, buf + c * plane_floats);
          padded = n;
        }
        for (int64_t c = 0; c < C; ++c)
          kt.corr_taps(g, buf + c * plane_floats, gp, out_plane, nk, pp + c * taps, stride);
      }
      if (gb)
        for (int64_t kb = 0; kb < nk; ++kb) pp[kb * stride + C * taps] = kt.sum(out_plane, gp + kb * out_plane);
    }
  });
  reduce_over_batch(a.N, K, stride, part, C * taps, gw, gb);
}

}  // namespace fastml
