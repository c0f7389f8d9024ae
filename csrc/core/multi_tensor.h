// Multi-tensor elementwise work: the parameters of one optimizer step (a list of ParamSlot, view.h) are
// treated as one concatenated range of elements and split across threads in ONE parallel region, so a
// step over 200 small tensors costs one fork-join, not 200. Each element is computed by exactly one
// thread with the same arithmetic whatever the split, so results do not depend on the thread count.
#pragma once
#include <cstdint>
#include <vector>

#include "core/parallel.h"
#include "core/view.h"

namespace fastml {

inline int64_t total_size(const std::vector<ParamSlot>& slots) {
  int64_t n = 0;
  for (const ParamSlot& s : slots) n += s.size;
  return n;
}

// Optimizer updates stream 4-7 arrays at several elements/ns per core: below ~16K elements per thread a
// fork-join costs more than it saves. Chunks start on 16-element (64-byte) boundaries of the concatenation.
inline constexpr int64_t kMultiTensorGrain = 16384;
inline constexpr int64_t kMultiTensorAlign = 16;

// fn(slot, begin, end) for every piece [begin, end) of every slot; pieces of one thread are visited in
// order. Chunk boundaries are aligned to `align` elements of the concatenation.
template <class F>
void parallel_over_slots(const std::vector<ParamSlot>& slots, F&& fn, int64_t grain = kMultiTensorGrain,
                         int64_t align = kMultiTensorAlign) {
  const int64_t total = total_size(slots);
  parallel_for(total, grain, align, [&](int64_t b, int64_t e) {
    int64_t start = 0;
    for (const ParamSlot& s : slots) {
      const int64_t end = start + s.size;
      if (end > b && start < e) {
        const int64_t lo = b > start ? b - start : 0;
        const int64_t hi = (e < end ? e : end) - start;
        fn(s, lo, hi);
      }
      if (end >= e) break;
      start = end;
    }
  });
}

}  // namespace fastml
