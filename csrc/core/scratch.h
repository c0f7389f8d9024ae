// Per-thread scratch buffers: grow-only, 64-byte aligned float storage reused across calls, so a kernel
// allocates nothing in its hot path once warm (DESIGN.md, "Memory"). Declare them `thread_local` in the
// op's entry file (baseline code: never in an ISA file, whose static initialisers could run on a CPU
// without that ISA). Buffers of 1 MiB or more are 2 MiB aligned and marked for transparent huge pages:
// kernels stream whole packed panels / padded planes through them, and one huge page instead of 256+
// small ones takes the page crossings off the TLB. Users: csrc/gemm/gemm.cpp, csrc/ops/conv/conv.cpp,
// csrc/ops/conv_fast/. Test: any of their test files (pytest tests/test_gemm.py tests/test_conv*.py).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastml {

struct Scratch {
  static constexpr size_t kHugePage = size_t{2} << 20, kHugeMin = size_t{1} << 20;
  float* p = nullptr;
  int64_t cap = 0;  // floats

  // At least n floats; the contents are NOT preserved when the buffer grows.
  float* get(int64_t n) {
    if (n > cap) {
      std::free(p);
      p = nullptr;
      cap = 0;
      size_t bytes = (static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float) + 63) / 64 * 64;
      const bool huge = bytes >= kHugeMin;
      if (huge) bytes = (bytes + kHugePage - 1) / kHugePage * kHugePage;
      p = static_cast<float*>(std::aligned_alloc(huge ? kHugePage : 64, bytes));
      if (!p) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
      if (huge) madvise(p, bytes, MADV_HUGEPAGE);  // advisory: failure is harmless
#endif
      cap = static_cast<int64_t>(bytes / sizeof(float));
    }
    return p;
  }
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(p); }
};

}  // namespace fastml
