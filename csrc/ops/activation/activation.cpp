// Activation entry: picks the kernel table of the active ISA and splits the array across threads.
#include "ops/activation/activation.h"

#include "core/parallel.h"

namespace fastml {

namespace {
// Below ~32K elements per thread the fork-join costs more than it saves (these kernels run at
// 1-10 elements/ns per core).
constexpr int64_t kGrain = 32768;
constexpr int64_t kAlign = 64;  // chunk starts on a 256-byte boundary: no shared cache lines
}  // namespace

void activation_forward(ActKind kind, const float* x, float* y, int64_t n, float param) {
  const ActForwardFn fn = select_kernels(activation_tables).forward[static_cast<int>(kind)];
  parallel_for(n, kGrain, kAlign, [&](int64_t b, int64_t e) { fn(e - b, x + b, y + b, param); });
}

void activation_backward(ActKind kind, const float* dy, const float* saved, float* dx, int64_t n, float param) {
  const ActBackwardFn fn = select_kernels(activation_tables).backward[static_cast<int>(kind)];
  parallel_for(n, kGrain, kAlign, [&](int64_t b, int64_t e) { fn(e - b, dy + b, saved + b, dx + b, param); });
}

}  // namespace fastml
