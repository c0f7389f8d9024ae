// parallel_for_guarded: a parallel loop whose body may throw (a workspace allocation failing): the first
// exception is carried out of the OpenMP team and rethrown on the calling thread instead of terminating.
//
// ConvScratch: the per-thread workspace of core/scratch.h (grow-only, reused across calls), so the
// convolution entries allocate nothing in the hot path once warm. Baseline code (entries only).
// Test: pytest tests/test_conv_fast.py
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>

#include "core/parallel.h"
#include "core/scratch.h"

namespace fastml {

using ConvScratch = Scratch;  // core/scratch.h

// Items go to the threads in chunks handed out dynamically (parallel_chunks, about 32 of them): every
// caller computes each item on its own (results never depend on the split, as for any thread count), and
// a thread slowed down by the machine no longer holds the others at the end.
template <class F>
void parallel_for_guarded(int64_t n, int64_t grain, F&& fn) {
  std::exception_ptr first;
  std::mutex mu;
  parallel_chunks(n, grain, std::max<int64_t>(1, (n + 31) / 32), [&](int64_t b, int64_t e) {
    try {
      fn(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!first) first = std::current_exception();
    }
  });
  if (first) std::rethrow_exception(first);
}

}  // namespace fastml
