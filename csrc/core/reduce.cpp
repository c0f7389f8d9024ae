#include "core/reduce.h"

#include <algorithm>

#include "core/parallel.h"

namespace fastml {

void column_sums(const float* a, int64_t rows, int64_t cols, int64_t lda, float* out) {
  constexpr int64_t kStrip = 512;  // columns per strip: 4 KiB of double sums stay in L1
  const int64_t strips = (cols + kStrip - 1) / kStrip;
  parallel_for(strips, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, rows * kStrip)), 1,
               [&](int64_t s0, int64_t s1) {
    double d[kStrip];
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t j0 = s * kStrip, n = std::min(kStrip, cols - j0);
      std::fill(d, d + n, 0.0);
      for (int64_t i = 0; i < rows; ++i) {
        const float* r = a + i * lda + j0;
        for (int64_t j = 0; j < n; ++j) d[j] += r[j];
      }
      for (int64_t j = 0; j < n; ++j) out[j0 + j] = static_cast<float>(d[j]);
    }
  });
}

}  // namespace fastml
