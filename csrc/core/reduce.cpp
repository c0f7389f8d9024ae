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

void channel_sums(const float* a, int64_t outer, int64_t channels, int64_t inner, float* out) {
  constexpr int kLanes = 16;
  const int64_t per = std::max<int64_t>(1, outer * inner);
  parallel_for(channels, std::max<int64_t>(1, 65536 / per), 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double d[kLanes] = {};
      for (int64_t o = 0; o < outer; ++o) {
        const float* r = a + (o * channels + c) * inner;
        int64_t i = 0;
        for (; i + kLanes <= inner; i += kLanes)
          for (int l = 0; l < kLanes; ++l) d[l] += r[i + l];
        for (int l = 0; i + l < inner; ++l) d[l] += r[i + l];
      }
      for (int w = kLanes / 2; w >= 1; w /= 2)  // the fixed tree: lane l += lane l + w
        for (int l = 0; l < w; ++l) d[l] += d[l + w];
      out[c] = static_cast<float>(d[0]);
    }
  });
}

}  // namespace fastml
