// Grow-only, 64-byte aligned float workspace, one per thread (thread_local) and reused across calls, so
// the convolution entries allocate nothing in the hot path once warm. Baseline code (entries only).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <new>

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

}  // namespace fastml
