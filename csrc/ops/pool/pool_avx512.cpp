// Pooling kernels, avx512 variant: the generic bodies of pool_impl.h over the avx512 VecF, and an avx512
// mean_planes (below). Maths and contract: pool.h. Test: FASTML_ISA=avx512 pytest tests/test_pool.py
#include "core/simd/vec_avx512.h"
#include "ops/pool/pool_impl.h"

namespace fastml::cpu::avx512 {
namespace {

// Global average pooling, 16 planes at a time: each plane's lane sums (plane_lanes, as the generic kernel),
// then the 16 horizontal sums together by a transposing tree (~2 shuffles and adds per plane instead of a
// full reduction each: 8x512 planes of 7x7 were bound by those). Lane l of the result is plane
// 4 (l % 4) + l / 4's sum, added in the halving order of VecF::hsum (_mm512_reduce_add_ps: lanes l + 8,
// then l + 4, l + 2, l + 1), so every mean is bitwise the generic kernel's.
inline __m512 transpose_sum16(const __m512* a) {
  __m512 b[8], c[4], d[2];
  for (int i = 0; i < 8; ++i)
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
  for (int i = 0; i < 4; ++i)
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
  for (int i = 0; i < 2; ++i)
    d[i] = _mm512_add_ps(_mm512_unpacklo_ps(c[2 * i], c[2 * i + 1]), _mm512_unpackhi_ps(c[2 * i], c[2 * i + 1]));
  const __m512d d0 = _mm512_castps_pd(d[0]), d1 = _mm512_castps_pd(d[1]);
  return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(d0, d1)), _mm512_castpd_ps(_mm512_unpackhi_pd(d0, d1)));
}

void mean_planes(int64_t planes, int64_t n, const float* x, float* y) {
  const __m512 fn = _mm512_set1_ps(static_cast<float>(n));
  int64_t p = 0;
  for (; p + 16 <= planes; p += 16) {
    __m512 a[16];
    for (int i = 0; i < 16; ++i)  // slot i holds plane 4 (i % 4) + i / 4, so lane r of the sum is plane r
      a[i] = pool_impl::plane_lanes<VecF>(n, x + (p + 4 * (i % 4) + i / 4) * n).v;
    _mm512_storeu_ps(y + p, _mm512_div_ps(transpose_sum16(a), fn));
  }
  pool_impl::mean_planes<VecF>(planes - p, n, x + p * n, y + p);
}

constexpr PoolKernels make_avx512_kernels() {
  PoolKernels k = pool_impl::make_kernels<VecF>();
  k.mean_planes = &mean_planes;
  return k;
}

}  // namespace

extern const PoolKernels pool_kernels_avx512;
constexpr PoolKernels pool_kernels_avx512 = make_avx512_kernels();
}  // namespace fastml::cpu::avx512
