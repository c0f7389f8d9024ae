// Pooling kernels, avx2 variant: the generic bodies of pool_impl.h over the avx2 VecF, an avx2 max backward
// encode and mean_planes (below). Maths and contract: pool.h. Test: FASTML_ISA=avx2 pytest tests/test_pool.py
#include <immintrin.h>

#include "core/simd/vec_avx2.h"
#include "ops/pool/pool_impl.h"

// Max backward pass 1 (pool_backward_impl.h): the codes of a run of output rows with the same valid tap rows,
// 8 windows a step, the border windows' column check included (no scalar pass after), as pool_avx512.cpp
// does with 16. The 8 indices' low halves come out of one shuffle in the lane order [0 1 4 5 | 2 3 6 7]; the
// window starts are laid out in that order too, and the two packs to bytes then put the codes back in order.
// Unsigned a < b is min(a, b - 1) == a (b >= 1).
namespace fastml::pool_impl {
namespace {
template <>
struct EncodeRows<cpu::avx2::VecF> {
  static constexpr bool kColumnCheck = true;
  static __m256i below(__m256i a, __m256i bm1) { return _mm256_cmpeq_epi32(_mm256_min_epu32(a, bm1), a); }
  // CHECK: also require the tap's column, the window start l * sw - pw plus c, to lie in [0, W)
  template <int NB, bool CHECK>
  static uint64_t run(const int64_t* __restrict ip, int64_t rows, int64_t oW, int64_t base, int64_t step,
                      int32_t sw, int32_t kw, uint64_t plane, const int32_t* off, const int32_t* tap,
                      uint8_t* __restrict cp, int64_t CR, int32_t pw, int32_t W) {
    __m256i o[NB > 0 ? NB : 1], t[NB > 0 ? NB : 1];
    for (int i = 0; i < NB; ++i) {
      o[i] = _mm256_set1_epi32(off[i]);
      t[i] = _mm256_set1_epi32(tap[i]);
    }
    const __m256i kwm1 = _mm256_set1_epi32(kw - 1), planem1 = _mm256_set1_epi32(static_cast<int32_t>(plane) - 1);
    const __m256i Wm1 = _mm256_set1_epi32(W - 1);
    const __m256i outside = _mm256_set1_epi32(kCodeOutside), foreign = _mm256_set1_epi32(kCodeForeign);
    // lane j's window (l + [0 1 4 5 2 3 6 7][j]) start within the row, and the step to the next 8 windows
    const __m256i ramp = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7), _mm256_set1_epi32(sw));
    const __m256i next = _mm256_set1_epi32(8 * sw), lanes64 = _mm256_setr_epi64x(0, 1, 2, 3);
    __m256i any = _mm256_setzero_si256(), org, st;  // the windows' origins (mod 2^32) and starts in W
    auto row = [&](int32_t org0) {
      org = _mm256_add_epi32(_mm256_set1_epi32(org0), ramp);
      st = _mm256_sub_epi32(ramp, _mm256_set1_epi32(pw));
    };
    encode_rows_frame<8>(ip, rows, oW, base, step, cp, CR, row, [&](const int64_t* iq, int n, uint8_t* cq) {
      __m256i lo, hi;
      if (n == 8) {
        lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(iq));
        hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(iq + 4));
      } else {  // lanes past n read nothing (zero)
        const long long* src = reinterpret_cast<const long long*>(iq);
        lo = _mm256_maskload_epi64(src, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), lanes64));
        hi = _mm256_maskload_epi64(src + 4, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n - 4), lanes64));
      }
      any = _mm256_or_si256(any, _mm256_or_si256(lo, hi));
      // the low halves: [lo0 lo1 hi0 hi1 | lo2 lo3 hi2 hi3], windows [0 1 4 5 | 2 3 6 7]
      const __m256i v = _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(lo), _mm256_castsi256_ps(hi), 0x88));
      const __m256i r = _mm256_sub_epi32(v, org);
      // in the plane by its low 32 bits: kCodeForeign, else kCodeOutside
      __m256i code = _mm256_blendv_epi8(outside, foreign, below(v, planem1));
      for (int i = 0; i < NB; ++i) {  // tap row i: the code of column c = r - o when c is inside the window
        const __m256i c = _mm256_sub_epi32(r, o[i]);
        __m256i hit = below(c, kwm1);
        if (CHECK) hit = _mm256_and_si256(hit, below(_mm256_add_epi32(st, c), Wm1));
        code = _mm256_blendv_epi8(code, _mm256_add_epi32(c, t[i]), hit);
      }
      // bytes: lane 0 [w0 w1 w4 w5], lane 1 [w2 w3 w6 w7]; interleaving their 16-bit pairs gives w0 ... w7
      const __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(code, code), _mm256_setzero_si256());
      const __m128i bytes = _mm_unpacklo_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
      if (n == 8) {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(cq), bytes);
      } else {  // the row's right margin past n keeps its kCodeMargin
        alignas(16) uint8_t tmp[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
        std::memcpy(cq, tmp, static_cast<size_t>(n));
      }
      org = _mm256_add_epi32(org, next);
      st = _mm256_add_epi32(st, next);
    });
    alignas(32) uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), any);
    return lanes[0] | lanes[1] | lanes[2] | lanes[3];
  }
};
}  // namespace
}  // namespace fastml::pool_impl

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
