// Pooling kernels, avx2 variant: the generic bodies of pool_impl.h over the avx2 VecF, and an avx2
// mean_planes (below). Maths and contract: pool.h. Test: FASTML_ISA=avx2 pytest tests/test_pool.py
#include <immintrin.h>

#include "core/simd/vec_avx2.h"
#include "ops/pool/pool_impl.h"

namespace fastml::cpu::avx2 {
namespace {

// Global average pooling, 8 planes at a time: each plane's lane sums (plane_lanes' order), the 8 chains
// advancing together instead of one plane's single chain of dependent adds (a 56x56 plane is 392 adds in a
// row), then the 8 horizontal sums together by a transposing tree in the halving order of VecF::hsum
// (lanes l + 4, then l + 2, then l + 1), so every mean is bitwise the generic kernel's. Slot s holds plane
// s / 2 (s even) or 4 + s / 2 (s odd): lane k of the tree's result is then plane k.
inline __m256 transpose_sum8(const __m256* a) {
  __m256 b[4];
  for (int j = 0; j < 4; ++j)  // [slot 2j's l + (l + 4) | slot 2j+1's], l < 4
    b[j] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * j], a[2 * j + 1], 0x20),
                         _mm256_permute2f128_ps(a[2 * j], a[2 * j + 1], 0x31));
  __m256 e[2];
  for (int j = 0; j < 2; ++j)  // [s4[0] + s4[2], s4[1] + s4[3]] of slots 4j, 4j + 2 | of slots 4j + 1, 4j + 3
    e[j] = _mm256_add_ps(_mm256_shuffle_ps(b[2 * j], b[2 * j + 1], 0x44),
                         _mm256_shuffle_ps(b[2 * j], b[2 * j + 1], 0xEE));
  // s2[0] + s2[1]: lanes (slots) 0 2 4 6 | 1 3 5 7
  return _mm256_add_ps(_mm256_shuffle_ps(e[0], e[1], 0x88), _mm256_shuffle_ps(e[0], e[1], 0xDD));
}

void mean_planes(int64_t planes, int64_t n, const float* x, float* y) {
  const __m256 fn = _mm256_set1_ps(static_cast<float>(n));
  int64_t p = 0;
  for (; p + 8 <= planes; p += 8) {
    const float* src[8];
    __m256 a[8];
    for (int s = 0; s < 8; ++s) {
      src[s] = x + (p + (s % 2 == 0 ? s / 2 : 4 + s / 2)) * n;
      a[s] = _mm256_setzero_ps();
    }
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
      for (int s = 0; s < 8; ++s) a[s] = _mm256_add_ps(a[s], _mm256_loadu_ps(src[s] + j));
    if (j < n)
      for (int s = 0; s < 8; ++s) a[s] = _mm256_add_ps(a[s], VecF::load_tail(src[s] + j, static_cast<int>(n - j)).v);
    _mm256_storeu_ps(y + p, _mm256_div_ps(transpose_sum8(a), fn));
  }
  pool_impl::mean_planes<VecF>(planes - p, n, x + p * n, y + p);
}

constexpr PoolKernels make_avx2_kernels() {
  PoolKernels k = pool_impl::make_kernels<VecF>();
  k.mean_planes = &mean_planes;
  return k;
}

}  // namespace

extern const PoolKernels pool_kernels_avx2;
constexpr PoolKernels pool_kernels_avx2 = make_avx2_kernels();
}  // namespace fastml::cpu::avx2
