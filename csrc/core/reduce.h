// Reductions shared by several ops (baseline flags; the compiler vectorises the row loops).
#pragma once
#include <cstdint>

namespace fastml {

// out[j] = sum over rows i of a[i * lda + j], j < cols (a bias gradient: grad_output summed over the batch),
// accumulated in float64 row after row (as NumPy's a.sum(axis=0, dtype=float64), the same bits) and rounded
// once: a float32 sum over a large batch would drift by ~rows eps. Strips of columns are split across
// threads, so the result never depends on the thread count.
void column_sums(const float* a, int64_t rows, int64_t cols, int64_t lda, float* out);

}  // namespace fastml
