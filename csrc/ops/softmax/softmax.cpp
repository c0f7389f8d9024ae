// Softmax entry: picks the kernel table of the active ISA, the row variant, and splits the rows (or the
// (outer, column strip) items of a strided axis) across threads. Maths and layouts: softmax.h.
#include "ops/softmax/softmax.h"

#include <algorithm>

#include "core/isa.h"
#include "core/parallel.h"

namespace fastml {

namespace {
constexpr int64_t kGrain = 32768;   // elements per thread below which one thread does it all
constexpr int64_t kStripCols = 64;  // columns per strided work item: a multiple of every vector width

// Rows longer than this do not stay cached between the passes of the three-pass kernel.
int64_t online_threshold_elems() {
  int64_t l2 = cpu_info().l2_bytes;
  if (l2 <= 0) l2 = int64_t{1} << 20;
  return l2 / 2 / static_cast<int64_t>(sizeof(float));
}

template <class RowFn, class StripFn>
void run(const AxisView& v, RowFn&& row_fn, StripFn&& strip_fn) {
  const int64_t D = v.dim;
  if (v.outer == 0 || D == 0 || v.inner == 0) return;
  if (v.inner == 1) {
    parallel_for(v.outer, std::max<int64_t>(1, kGrain / D), 1, [&](int64_t b, int64_t e) { row_fn(b, e); });
    return;
  }
  const int64_t nstrips = (v.inner + kStripCols - 1) / kStripCols;
  const int64_t items = v.outer * nstrips;
  parallel_for(items, std::max<int64_t>(1, kGrain / (D * kStripCols)), 1, [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const int64_t o = it / nstrips;
      const int64_t j0 = (it % nstrips) * kStripCols;
      strip_fn(o * D * v.inner + j0, std::min(kStripCols, v.inner - j0));
    }
  });
}
}  // namespace

void softmax_forward(const AxisView& v, const float* x, float* y, bool log, SoftmaxRowVariant variant) {
  const SoftmaxKernels& k = select_kernels(softmax_tables);
  const int li = log ? 1 : 0;
  bool online = variant == SoftmaxRowVariant::online;
  if (variant == SoftmaxRowVariant::automatic) online = v.dim > online_threshold_elems();
  const SoftmaxRowsFn rows = online ? k.forward_rows__online[li] : k.forward_rows[li];
  const SoftmaxStripFn strip = k.forward_strip[li];
  const int64_t D = v.dim, inner = v.inner;
  run(
      v, [&](int64_t b, int64_t e) { rows(e - b, D, x + b * D, y + b * D); },
      [&](int64_t off, int64_t w) { strip(D, inner, w, x + off, y + off); });
}

void softmax_backward(const AxisView& v, const float* g, const float* y, float* dx, bool log) {
  const SoftmaxKernels& k = select_kernels(softmax_tables);
  const int li = log ? 1 : 0;
  const SoftmaxBackwardRowsFn rows = k.backward_rows[li];
  const SoftmaxBackwardStripFn strip = k.backward_strip[li];
  const int64_t D = v.dim, inner = v.inner;
  run(
      v, [&](int64_t b, int64_t e) { rows(e - b, D, g + b * D, y + b * D, dx + b * D); },
      [&](int64_t off, int64_t w) { strip(D, inner, w, g + off, y + off, dx + off); });
}

}  // namespace fastml
