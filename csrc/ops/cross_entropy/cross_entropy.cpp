// Cross-entropy entry: target validation, fixed-block forward reduction, threaded backward.
// Maths and layouts: cross_entropy.h.
#include "ops/cross_entropy/cross_entropy.h"

#include <algorithm>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"

namespace fastml {

namespace {
constexpr int64_t kGrain = 32768;      // logits per thread below which one thread does it all
constexpr int64_t kRowsBlock = 256;    // rows per reduction block (inner == 1)
constexpr int64_t kStripCols = 64;     // positions per strip (inner > 1); a multiple of every vector width
}  // namespace

double cross_entropy_check_targets(const CrossEntropyParams& p, int64_t n, const int64_t* t) {
  double denom = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t ti = t[i];
    if (ti == p.ignore_index) continue;
    FASTML_CHECK(ti >= 0 && ti < p.C, "cross_entropy: expected class indices in [0, ", p.C, ") or ignore_index=",
                 p.ignore_index, " in target, got ", ti, " at flat position ", i);
    denom += p.weight ? static_cast<double>(p.weight[ti]) : 1.0;
  }
  return denom;
}

double cross_entropy_forward(const CrossEntropyParams& p, int64_t N, const float* x, const int64_t* t,
                             float* loss_none) {
  const CrossEntropyKernels& k = select_kernels(cross_entropy_tables);
  const int64_t C = p.C, inner = p.inner;
  if (N == 0 || inner == 0) return 0.0;
  // One block = kRowsBlock rows, or one strip of one batch item; each block's losses are summed in double.
  const int64_t nstrips = inner == 1 ? 0 : (inner + kStripCols - 1) / kStripCols;
  const int64_t nblocks = inner == 1 ? fixed_blocks(N, kRowsBlock) : N * nstrips;
  const int64_t per_block = (inner == 1 ? kRowsBlock : kStripCols) * C;
  std::vector<double> partial(static_cast<size_t>(nblocks), 0.0);
  parallel_blocks(nblocks, per_block, kGrain, [&](int64_t b) {
    float buf[kRowsBlock];
    int64_t pos, cnt;
    if (inner == 1) {
      pos = b * kRowsBlock;
      cnt = std::min(kRowsBlock, N - pos);
      float* out = loss_none ? loss_none + pos : buf;
      k.forward_rows(p, cnt, x + pos * C, t + pos, out);
      double acc = 0.0;
      for (int64_t i = 0; i < cnt; ++i) acc += out[i];
      partial[b] = acc;
    } else {
      const int64_t n = b / nstrips;
      const int64_t j0 = (b % nstrips) * kStripCols;
      cnt = std::min(kStripCols, inner - j0);
      pos = n * inner + j0;
      float* out = loss_none ? loss_none + pos : buf;
      k.forward_strip(p, cnt, x + n * C * inner + j0, t + pos, out);
      double acc = 0.0;
      for (int64_t i = 0; i < cnt; ++i) acc += out[i];
      partial[b] = acc;
    }
  });
  double total = 0.0;
  for (double v : partial) total += v;
  return total;
}

void cross_entropy_backward(const CrossEntropyParams& p, int64_t N, const float* x, const int64_t* t,
                            const float* g, int64_t gstride, float* dx) {
  const CrossEntropyKernels& k = select_kernels(cross_entropy_tables);
  const int64_t C = p.C, inner = p.inner;
  if (N == 0 || inner == 0 || C == 0) return;
  if (inner == 1) {
    parallel_for(N, std::max<int64_t>(1, kGrain / C), 1, [&](int64_t b, int64_t e) {
      k.backward_rows(p, e - b, x + b * C, t + b, g + b * gstride, gstride, dx + b * C);
    });
    return;
  }
  const int64_t nstrips = (inner + kStripCols - 1) / kStripCols;
  parallel_for(N * nstrips, std::max<int64_t>(1, kGrain / (C * kStripCols)), 1, [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const int64_t n = it / nstrips;
      const int64_t j0 = (it % nstrips) * kStripCols;
      const int64_t pos = n * inner + j0;
      const int64_t off = n * C * inner + j0;
      k.backward_strip(p, std::min(kStripCols, inner - j0), x + off, t + pos, g + pos * gstride, gstride, dx + off);
    }
  });
}

}  // namespace fastml
