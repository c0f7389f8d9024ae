// parallel_for over OpenMP with a serial fast path: work below `grain` items per thread runs on the
// calling thread (no fork-join). Chunk boundaries depend only on (n, thread count, align) and every
// item is computed by exactly one thread, so elementwise results never depend on the thread count.
// Reductions that must be thread-count invariant use fixed_blocks() instead (see below).
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace fastml {

int get_num_threads();
void set_num_threads(int n);
int physical_cores();

// Threads to use for n items when each thread should get at least `grain` of them.
inline int threads_for(int64_t n, int64_t grain) {
  const int nt = get_num_threads();
  if (nt <= 1 || n <= grain) return 1;
  return static_cast<int>(std::min<int64_t>(nt, (n + grain - 1) / grain));
}

// fn(begin, end) over [0, n) in contiguous chunks aligned to `align` items.
template <class F>
void parallel_for(int64_t n, int64_t grain, int64_t align, F&& fn) {
  if (n <= 0) return;
  const int nt = threads_for(n, grain);
  if (nt <= 1) {
    fn(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    const int T = omp_get_num_threads();
    int64_t chunk = (n + T - 1) / T;
    chunk = (chunk + align - 1) / align * align;
    const int64_t b = std::min<int64_t>(n, chunk * t);
    const int64_t e = std::min<int64_t>(n, b + chunk);
    if (b < e) fn(b, e);
  }
}

// A reduction split that does not depend on the thread count: [0, n) is cut into fixed blocks of
// `block` items, each block's partial is computed independently (by any thread), and the caller
// combines the partials in block order. Returns the number of blocks.
inline int64_t fixed_blocks(int64_t n, int64_t block) { return n <= 0 ? 0 : (n + block - 1) / block; }

template <class F>
void parallel_blocks(int64_t nblocks, int64_t items_per_block, int64_t grain, F&& fn) {
  const int64_t min_blocks = std::max<int64_t>(1, grain / std::max<int64_t>(1, items_per_block));
  parallel_for(nblocks, min_blocks, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) fn(i);
  });
}

}  // namespace fastml
