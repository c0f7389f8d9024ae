// parallel_for over OpenMP with a serial fast path: work below `grain` items per thread runs on the
// calling thread (no fork-join). Chunk boundaries depend only on (n, thread count, align) and every
// item is computed by exactly one thread, so elementwise results never depend on the thread count.
// Reductions that must be thread-count invariant use fixed_blocks() instead (see below). run_phases()
// runs dependent phases of tasks without barriers (the GEMM driver), spin_until() is its wait.
#pragma once
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

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

// fn(begin, end) over [0, n) in chunks of `chunk` items handed out one at a time (OpenMP dynamic
// schedule): a thread that runs slower (a shared VM's vCPU taken away for a while) takes fewer chunks
// instead of holding the others at the closing barrier. Which thread runs a chunk never changes what it
// computes, so results are those of parallel_for. Serial below `grain` items per thread, as parallel_for.
template <class F>
void parallel_chunks(int64_t n, int64_t grain, int64_t chunk, F&& fn) {
  if (n <= 0) return;
  const int nt = threads_for(n, grain);
  if (nt <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  chunk = std::max<int64_t>(1, chunk);
  const int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t c = 0; c < nchunks; ++c) fn(c * chunk, std::min(n, (c + 1) * chunk));
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

// Waits until ready() holds: spins with a pause hint for a bounded time, then yields the core (on a busy
// machine the thread being waited for may be the one that needs it).
inline constexpr int kSpinIters = 4096;

template <class Ready>
void spin_until(Ready ready) {
  int spins = 0;
  while (!ready()) {
    if (spins < kSpinIters) {
      ++spins;
#if defined(__x86_64__) || defined(_M_X64)
      _mm_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }
}

// Phased work without barriers. Phase i has `tasks` independent tasks; tasks are claimed in flat order
// (all of phase 0, then phase 1, ...) by whichever thread is free, and a task of phase i starts once every
// task of the (earlier) phases in its `dep` list is done. Where a worksharing loop's barrier makes every
// thread wait for the slowest to arrive, here a thread that a busy machine has descheduled holds up the
// others only while it holds a task something later needs: the running threads take all other tasks. A
// thread that finishes its part of one phase goes on with the next phase's tasks whose dependencies are
// met (e.g. packing the next operand panel while the last tiles of the current one are computed).
// run(i, t) runs task t of phase i; which thread runs it must not change its result.
struct Phase {
  int64_t tasks = 0;
  int64_t dep[3] = {-1, -1, -1};  // phases that must be complete first (-1: none)
};

template <class Run>
void run_phases(int nt, const std::vector<Phase>& ph, Run&& run) {
  const int64_t np = static_cast<int64_t>(ph.size());
  std::vector<int64_t> start(np + 1, 0);
  for (int64_t i = 0; i < np; ++i) start[i + 1] = start[i] + ph[i].tasks;
  const int64_t total = start[np];
  if (nt <= 1 || total <= 1) {
    for (int64_t i = 0; i < np; ++i)
      for (int64_t t = 0; t < ph[i].tasks; ++t) run(i, t);
    return;
  }
  std::unique_ptr<std::atomic<int64_t>[]> done(new std::atomic<int64_t>[np]());
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(nt)
  {
    int64_t i = 0;
    for (;;) {
      const int64_t g = next.fetch_add(1, std::memory_order_relaxed);
      if (g >= total) break;
      while (g >= start[i + 1]) ++i;
      for (const int64_t d : ph[i].dep)
        if (d >= 0) spin_until([&] { return done[d].load(std::memory_order_acquire) == ph[d].tasks; });
      run(i, g - start[i]);
      done[i].fetch_add(1, std::memory_order_release);
    }
  }
}

}  // namespace fastml
