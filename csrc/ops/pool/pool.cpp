// Pooling entry (maths and contract: pool.h): picks the kernel table of the active ISA and splits the
// N*C planes across threads in chunks handed out dynamically. Every plane is computed by one thread from
// its own input and written only to its own output (backward scatters stay inside the plane), so results
// do not depend on the thread count or on which thread takes a chunk, and no atomics are needed. Adaptive
// pooling is scalar here (its windows vary per output; the global-average case uses the vectorised plane
// sum). Max backward with given indices encodes and checks each plane's indices (pool.h), then writes the
// plane (gather, or the scatter for indices outside their own window). Into a fresh grad_input, each
// thread does both for a plane in turn, so one plane's index reads overlap another's grad_input stores;
// into a caller's buffer (out=), in two passes, every plane encoded before any is written, so an invalid
// index anywhere is reported before anything is written.
// Test: pytest tests/test_pool.py. Bench: python -m fastml.bench --ops pool.
#include "ops/pool/pool.h"

#include <algorithm>
#include <cmath>
#include <atomic>
#include <cstring>
#include <limits>
#include <vector>

#include "core/parallel.h"

namespace fastml {

namespace {

constexpr int64_t kGrain = 32768;  // elements (input + output) per thread below which one thread runs
constexpr int64_t kPlaneChunkBytes = 256 << 10;  // planes per dynamically scheduled chunk: input + output bytes

int64_t in_size(const PoolGeom& g) { return g.in[0] * g.in[1] * g.in[2]; }
int64_t out_size(const PoolGeom& g) { return g.out[0] * g.out[1] * g.out[2]; }

template <class F>
void for_planes(const PoolGeom& g, F&& fn) {
  const int64_t per = std::max<int64_t>(1, in_size(g) + out_size(g));
  const int64_t grain = std::max<int64_t>(1, kGrain / per);
  // chunks of up to kPlaneChunkBytes, at least 16 of them, handed out dynamically (parallel_chunks): every
  // plane is still one thread's work, whichever thread takes it
  const int64_t chunk = std::clamp<int64_t>(kPlaneChunkBytes / (4 * per), 1, std::max<int64_t>(1, g.planes / 16));
  parallel_chunks(g.planes, grain, chunk, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) fn(i);
  });
}

// Per-thread scratch, grown on demand and reused across calls (no allocation in the steady state).
template <class T>
T* scratch(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}
thread_local std::vector<float> t_row;
thread_local std::vector<float> t_val;
thread_local std::vector<int64_t> t_idx;
thread_local std::vector<uint8_t> t_codes;
thread_local std::vector<int> t_flags;

// True when every index of a plane outside [0, plane) belongs to a window with no tap inside the input
// (regular max pooling only: torch reports such an index there, and its gradient goes nowhere).
bool outside_indices_ok(const PoolGeom& g, const int64_t* idx, bool adaptive) {
  const int64_t plane = g.in[0] * g.in[1] * g.in[2], oW = g.out[2], oH = g.out[1];
  auto empty = [&](int i, int64_t o) {
    for (int64_t t = 0; t < g.k[i]; ++t) {
      const int64_t pos = o * g.s[i] - g.p[i] + t * g.d[i];
      if (pos >= 0 && pos < g.in[i]) return false;
    }
    return true;
  };
  const int64_t n = g.out[0] * oH * oW;
  for (int64_t j = 0; j < n; ++j) {
    if (idx[j] >= 0 && idx[j] < plane) continue;
    if (adaptive || !(empty(0, j / (oW * oH)) || empty(1, (j / oW) % oH) || empty(2, j % oW))) return false;
  }
  return true;
}

// Adaptive windows of a dim whose size is a multiple of the output size are [i k, (i + 1) k) with
// k = L / out: exactly max/avg pooling with kernel = stride = k and no padding (same scan order, same
// initial index, divisor k^3). Fills `r` and returns true in that case.
bool adaptive_as_regular(const PoolGeom& g, PoolGeom& r) {
  r = g;
  for (int i = 0; i < 3; ++i) {
    if (g.out[i] <= 0 || g.in[i] % g.out[i] != 0) return false;
    r.k[i] = r.s[i] = g.in[i] / g.out[i];
    r.p[i] = 0;
    r.d[i] = 1;
  }
  return true;
}

inline int64_t adaptive_start(int64_t i, int64_t L, int64_t out) { return i * L / out; }
inline int64_t adaptive_end(int64_t i, int64_t L, int64_t out) { return ((i + 1) * L + out - 1) / out; }

// An adaptive window of one output: [d0, d1) x [h0, h1) x [w0, w1) of the plane, o its plane offset.
struct AdaptiveWindow {
  int64_t o, d0, d1, h0, h1, w0, w1;
  int64_t count() const { return (d1 - d0) * (h1 - h0) * (w1 - w0); }
};

// fn(window) for every output of a plane, in output order (torch's adaptive bounds).
template <class F>
void for_adaptive_windows(const PoolGeom& g, F&& fn) {
  const int64_t D = g.in[0], H = g.in[1], W = g.in[2];
  for (int64_t od = 0; od < g.out[0]; ++od) {
    const int64_t d0 = adaptive_start(od, D, g.out[0]), d1 = adaptive_end(od, D, g.out[0]);
    for (int64_t oh = 0; oh < g.out[1]; ++oh) {
      const int64_t h0 = adaptive_start(oh, H, g.out[1]), h1 = adaptive_end(oh, H, g.out[1]);
      for (int64_t ow = 0; ow < g.out[2]; ++ow) {
        const int64_t w0 = adaptive_start(ow, W, g.out[2]), w1 = adaptive_end(ow, W, g.out[2]);
        fn(AdaptiveWindow{(od * g.out[1] + oh) * g.out[2] + ow, d0, d1, h0, h1, w0, w1});
      }
    }
  }
}

}  // namespace

void max_pool_forward(const PoolGeom& g, const float* x, float* y, int64_t* idx) {
  const MaxPlaneFn fn = select_kernels(pool_tables).max_plane;
  const int64_t is = in_size(g), os = out_size(g);
  for_planes(g, [&](int64_t i) { fn(g, x + i * is, y + i * os, idx ? idx + i * os : nullptr); });
}

void avg_pool_forward(const PoolGeom& g, const AvgMode& m, const float* x, float* y) {
  const AvgPlaneFn fn = select_kernels(pool_tables).avg_plane;
  const int64_t is = in_size(g), os = out_size(g);
  for_planes(g, [&](int64_t i) { fn(g, m, x + i * is, y + i * os); });
}

// Where the gather (each gx element written once) beats the scatter into a zeroed plane. Paired, 2 threads,
// Zen 3, gather time / scatter time: 1-D rows (k2 s2, k3 s2 p1 over 1000 columns) 0.92-0.95; 2-D 2x2 s2 and
// 3x3 s2 p1 (the pair kernels) 0.58-0.81 from W = 80 up (112, 224) but 1.09-1.45 at W = 56 and 2.3 at 28
// (short rows: the per-row work outweighs the zero fill the scatter pays, which stays in cache); 2-D stride
// 1 at W = 112 0.78-0.98, at W = 56 1.23; 3-D 2x2x2 1.12-1.56 and other 2-D strides 1.3-2.7 (the generic
// gather rows), so those scatter.
static bool max_backward_gather_pays(const PoolGeom& g) {
  if (!max_backward_gather_ok(g)) return false;
  if (g.in[0] == 1 && g.in[1] == 1) return true;  // 1-D
  if (g.in[0] != 1 || g.k[0] != 1 || g.in[2] < 64) return false;
  return max_backward_pairs_k(g) != 0 || g.s[2] == 1;
}

bool max_pool_backward(const PoolGeom& g, const float* gy, const int64_t* idx, const float* x, float* gx,
                       bool adaptive, bool gx_fresh) {
  const PoolKernels& t = select_kernels(pool_tables);
  const int64_t is = in_size(g), os = out_size(g);
  const bool gather = !adaptive && max_backward_gather_pays(g);
  // pass 2 of one plane: gather when its indices are all taps of their own windows, else scatter
  auto write_plane = [&](int64_t i, const int64_t* ip, const uint8_t* codes, int flags) {
    if (gather && !(flags & kMaxBwdForeign))
      t.max_backward_gather(g, gy + i * os, codes, gx + i * is, scratch(t_row, max_backward_scratch_floats(g)));
    else
      t.max_backward_plane(g, gy + i * os, ip, gx + i * is);
  };
  if (!idx) {  // recompute the argmax of each plane (torch's rule) into per-thread scratch: always valid
    for_planes(g, [&](int64_t i) {
      int64_t* s = scratch(t_idx, os);
      t.max_plane(g, x + i * is, scratch(t_val, os), s);
      uint8_t* codes = gather ? scratch(t_codes, max_backward_codes_bytes(g)) : nullptr;
      const int flags = gather ? t.max_backward_encode(g, s, codes) : kMaxBwdForeign;
      write_plane(i, s, codes, flags);
    });
    return true;
  }
  std::atomic<bool> bad{false};
  // pass 1 of plane i: its codes (gather) and flags; false (and `bad` set) for an invalid index
  auto encode = [&](int64_t i, uint8_t* codes, int& flags) {
    const int64_t* ip = idx + i * os;
    flags = t.max_backward_encode(g, ip, codes);
    if (!(flags & kMaxBwdOutside) || outside_indices_ok(g, ip, adaptive)) return true;
    bad.store(true, std::memory_order_relaxed);
    return false;
  };
  if (gx_fresh) {  // each plane encoded into the thread's scratch and written at once (a bad plane: left as is)
    // 8x64x112x112 2x2 s2 on 2 threads, A/B: +9% (3x3 s2 p1: +5%) over the two passes
    for_planes(g, [&](int64_t i) {
      uint8_t* codes = gather ? scratch(t_codes, max_backward_codes_bytes(g)) : nullptr;
      int flags = 0;
      if (encode(i, codes, flags)) write_plane(i, idx + i * os, codes, flags);
    });
    return !bad.load();
  }
  // Pass 1 (every plane's codes and flags, in the calling thread's scratch shared by the team), then pass 2
  // once pass 1 is done everywhere: an invalid index anywhere stops the call before anything is written.
  // Both passes hand out chunks of planes dynamically (for_planes), like the other pooling kernels.
  const int64_t cb = gather ? max_backward_codes_bytes(g) : 0;
  uint8_t* codes = gather ? scratch(t_codes, g.planes * cb) : nullptr;
  int* flags = scratch(t_flags, g.planes);
  for_planes(g, [&](int64_t i) { encode(i, gather ? codes + i * cb : nullptr, flags[i]); });
  if (bad.load()) return false;
  for_planes(g, [&](int64_t i) { write_plane(i, idx + i * os, gather ? codes + i * cb : nullptr, flags[i]); });
  return true;
}

void avg_pool_backward(const PoolGeom& g, const AvgMode& m, const float* gy, float* gx) {
  const AvgBackwardPlaneFn fn = select_kernels(pool_tables).avg_backward_plane;
  const int64_t is = in_size(g), os = out_size(g);
  for_planes(g, [&](int64_t i) { fn(g, m, gy + i * os, gx + i * is, scratch(t_row, avg_backward_row_floats(g))); });
}

void adaptive_avg_pool_forward(const PoolGeom& g, const float* x, float* y) {
  const int64_t is = in_size(g), os = out_size(g);
  if (os == 1) {  // global average pooling: ranges of planes to the kernel (16 at a time on avx512)
    const MeanPlanesFn mean = select_kernels(pool_tables).mean_planes;
    const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, is + 1));
    parallel_for(g.planes, grain, 1, [&](int64_t b, int64_t e) { mean(e - b, is, x + b * is, y + b); });
    return;
  }
  PoolGeom r;
  if (adaptive_as_regular(g, r)) return avg_pool_forward(r, AvgMode{true, 0}, x, y);
  const int64_t H = g.in[1], W = g.in[2];
  for_planes(g, [&](int64_t i) {
    const float* xp = x + i * is;
    for_adaptive_windows(g, [&](const AdaptiveWindow& w) {
      float s = 0.f;
      for (int64_t a = w.d0; a < w.d1; ++a)
        for (int64_t b = w.h0; b < w.h1; ++b)
          for (int64_t c = w.w0; c < w.w1; ++c) s += xp[(a * H + b) * W + c];
      y[i * os + w.o] = s / static_cast<float>(w.count());
    });
  });
}

void adaptive_max_pool_forward(const PoolGeom& g, const float* x, float* y, int64_t* idx) {
  PoolGeom r;
  if (adaptive_as_regular(g, r)) return max_pool_forward(r, x, y, idx);
  const int64_t is = in_size(g), os = out_size(g);
  const int64_t H = g.in[1], W = g.in[2];
  for_planes(g, [&](int64_t i) {
    const float* xp = x + i * is;
    for_adaptive_windows(g, [&](const AdaptiveWindow& w) {
      float best = -std::numeric_limits<float>::infinity();
      int64_t bi = (w.d0 * H + w.h0) * W + w.w0;
      for (int64_t a = w.d0; a < w.d1; ++a)
        for (int64_t b = w.h0; b < w.h1; ++b)
          for (int64_t c = w.w0; c < w.w1; ++c) {
            const int64_t k = (a * H + b) * W + c;
            const float v = xp[k];
            if (v > best || std::isnan(v)) {
              best = v;
              bi = k;
            }
          }
      y[i * os + w.o] = best;
      if (idx) idx[i * os + w.o] = bi;
    });
  });
}

void adaptive_avg_pool_backward(const PoolGeom& g, const float* gy, float* gx) {
  PoolGeom r;
  if (adaptive_as_regular(g, r)) return avg_pool_backward(r, AvgMode{true, 0}, gy, gx);
  const int64_t is = in_size(g), os = out_size(g);
  const int64_t H = g.in[1], W = g.in[2];
  for_planes(g, [&](int64_t i) {
    float* xp = gx + i * is;
    std::memset(xp, 0, sizeof(float) * static_cast<size_t>(is));
    const float* gp = gy + i * os;
    for_adaptive_windows(g, [&](const AdaptiveWindow& w) {
      const float q = gp[w.o] / static_cast<float>(w.count());
      for (int64_t a = w.d0; a < w.d1; ++a)
        for (int64_t b = w.h0; b < w.h1; ++b)
          for (int64_t c = w.w0; c < w.w1; ++c) xp[(a * H + b) * W + c] += q;
    });
  });
}

}  // namespace fastml
