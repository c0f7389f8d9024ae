// Elementwise loss entry: fixed blocks of kBlock elements (thread-count invariant sums, combined in block
// order in double), each block cut at row boundaries when weight / pos_weight broadcast along the last dim.
#include "ops/pointwise_loss/pointwise_loss.h"

#include <algorithm>
#include <vector>

#include "core/parallel.h"

namespace fastml {

namespace {
constexpr int64_t kBlock = 8192;   // elements per reduction block
constexpr int64_t kGrain = 32768;  // elements per thread below which one thread does it all

// fn(i, len, col) over the segments of [b, e) that do not cross a row of C (C <= 0: no rows).
template <class F>
void segments(int64_t b, int64_t e, int64_t C, bool by_row, F&& fn) {
  if (!by_row) {
    fn(b, e - b, int64_t{0});
    return;
  }
  for (int64_t i = b; i < e;) {
    const int64_t col = i % C;
    const int64_t len = std::min(e - i, C - col);
    fn(i, len, col);
    i += len;
  }
}
}  // namespace

double pointwise_loss_forward(PointwiseLoss kind, int64_t n, int64_t C, const float* x, const float* t,
                              const float* w, const float* pw, float* out) {
  if (n <= 0) return 0.0;
  const PointwiseLossForwardFn fn = select_kernels(pointwise_loss_tables).forward[static_cast<int>(kind)];
  const bool by_row = (w || pw) && C > 0;
  const int64_t nb = fixed_blocks(n, kBlock);
  std::vector<double> partial(static_cast<size_t>(nb), 0.0);
  parallel_blocks(nb, kBlock, kGrain, [&](int64_t blk) {
    const int64_t b = blk * kBlock, e = std::min(n, b + kBlock);
    double acc = 0.0;
    segments(b, e, C, by_row, [&](int64_t i, int64_t len, int64_t col) {
      acc += fn(len, x + i, t + i, w ? w + col : nullptr, pw ? pw + col : nullptr, out ? out + i : nullptr);
    });
    partial[blk] = acc;
  });
  double total = 0.0;
  for (double v : partial) total += v;
  return total;
}

void pointwise_loss_backward(PointwiseLoss kind, int64_t n, int64_t C, const float* x, const float* t,
                             const float* w, const float* pw, const float* g, int64_t gstride, float scale,
                             float* dx) {
  if (n <= 0) return;
  const PointwiseLossBackwardFn fn = select_kernels(pointwise_loss_tables).backward[static_cast<int>(kind)];
  const bool by_row = (w || pw) && C > 0;
  parallel_for(n, kGrain, 64, [&](int64_t b, int64_t e) {
    segments(b, e, C, by_row, [&](int64_t i, int64_t len, int64_t col) {
      fn(len, x + i, t + i, w ? w + col : nullptr, pw ? pw + col : nullptr, g + i * gstride, gstride, scale, dx + i);
    });
  });
}

}  // namespace fastml
