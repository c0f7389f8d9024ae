// parallel_for_guarded: parallel_for whose body may throw (a workspace allocation failing): the first
// exception is carried out of the OpenMP team and rethrown on the calling thread instead of terminating.
//
// Grow-only, 64-byte aligned float workspace, one per thread (thread_local) and reused across calls, so
// the convolution entries allocate nothing in the hot path once warm. Baseline code (entries only).
// Test: pytest tests/test_conv_fast.py
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>

#include "core/parallel.h"

namespace fastml {

struct ConvScratch {
  float* p = nullptr;
  int64_t cap = 0;
  float* get(int64_t n) {
    if (n > cap) {
      std::free(p);
      p = nullptr;
      cap = 0;
      const int64_t bytes = (std::max<int64_t>(n, 1) * int64_t(sizeof(float)) + 63) / 64 * 64;
      p = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(bytes)));
      if (!p) throw std::bad_alloc();
      cap = bytes / int64_t(sizeof(float));
    }
    return p;
  }
  ~ConvScratch() { std::free(p); }
};

template <class F>
void parallel_for_guarded(int64_t n, int64_t grain, F&& fn) {
  std::exception_ptr first;
  std::mutex mu;
  parallel_for(n, grain, 1, [&](int64_t b, int64_t e) {
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
