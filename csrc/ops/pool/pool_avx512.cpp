// Pooling kernels, avx512 variant: the generic bodies of pool_impl.h over the avx512 VecF, and an avx512
// mean_planes (below). Maths and contract: pool.h. Test: FASTML_ISA=avx512 pytest tests/test_pool.py
// GCC 12 flags the undefined pass-through operand of the unmasked max / alignr intrinsics
// (_mm512_undefined_*) as an uninitialised use once the max-pool chunk scans are inlined: a header false
// positive (as in activation_avx512.cpp).
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "core/simd/vec_avx512.h"
#include "ops/pool/pool_impl.h"

// Max backward pass 1 (pool_backward_impl.h): the codes of a run of output rows with the same valid tap rows,
// 16 windows a step with masked loads and byte stores (the generic loop stages int32 codes and leaves each
// row's last partial vector to a scalar epilogue: ~1.5x the work here).
namespace fastml::pool_impl {
namespace {
template <>
struct EncodeRows<cpu::avx512::VecF> {
  static constexpr bool kColumnCheck = true;  // the border windows too: no scalar pass after
  // CHECK: also require the tap's column, the window start l * sw - pw plus c, to lie in [0, W)
  template <int NB, bool CHECK>
  static uint64_t run(const int64_t* __restrict ip, int64_t rows, int64_t oW, int64_t base, int64_t step,
                      int32_t sw, int32_t kw, uint64_t plane, const int32_t* off, const int32_t* tap,
                      uint8_t* __restrict cp, int64_t CR, int32_t pw, int32_t W) {
    __m512i o[NB > 0 ? NB : 1], t[NB > 0 ? NB : 1];
    for (int i = 0; i < NB; ++i) {
      o[i] = _mm512_set1_epi32(off[i]);
      t[i] = _mm512_set1_epi32(tap[i]);
    }
    const __m512i ukw = _mm512_set1_epi32(kw), uplane = _mm512_set1_epi32(static_cast<int32_t>(plane));
    const __m512i outside = _mm512_set1_epi32(kCodeOutside), foreign = _mm512_set1_epi32(kCodeForeign);
    // lane l's window start within the row, l * sw, and the step to the next 16 lanes
    const __m512i ramp = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(sw));
    const __m512i next = _mm512_set1_epi32(16 * sw), uW = _mm512_set1_epi32(W);
    __m512i any = _mm512_setzero_si512();
    // the low 32 bits of the 16 int64 indices of lo and hi, in order: the even 32-bit elements of both
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    // chunks [0, c_lo) hold windows that start left of the input, chunks from c_hi windows that end past it:
    // only those check columns (CHECK), whole chunks load and store unmasked, the row's last one is masked
    const int64_t full = oW / 16;
    int64_t c_lo = 0, c_hi = full;
    if (CHECK) {
      while (c_lo < full && c_lo * 16 * sw - pw < 0) ++c_lo;
      while (c_hi > c_lo && ((c_hi - 1) * 16 + 15) * sw - pw + kw > W) --c_hi;
    }
    auto chunk = [&](const int64_t* src, uint8_t* dst, __m512i org, __m512i st, int n, auto whole, auto check)
        __attribute__((always_inline)) {
      constexpr bool WHOLE = decltype(whole)::value, CK = decltype(check)::value;
      const __mmask16 k = WHOLE ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
      const __m512i lo = WHOLE ? _mm512_loadu_si512(src) : _mm512_maskz_loadu_epi64(static_cast<__mmask8>(k), src);
      const __m512i hi =
          WHOLE ? _mm512_loadu_si512(src + 8) : _mm512_maskz_loadu_epi64(static_cast<__mmask8>(k >> 8), src + 8);
      any = _mm512_or_si512(any, _mm512_or_si512(lo, hi));
      const __m512i v = _mm512_permutex2var_epi32(lo, even, hi);
      const __m512i r = _mm512_sub_epi32(v, org);
      // in the plane by its low 32 bits: kCodeForeign, else kCodeOutside
      __m512i code = _mm512_mask_blend_epi32(_mm512_cmplt_epu32_mask(v, uplane), outside, foreign);
      for (int i = 0; i < NB; ++i) {  // tap row i: the code of column c = r - o when c is inside the window
        const __m512i c = _mm512_sub_epi32(r, o[i]);
        __mmask16 hit = _mm512_cmplt_epu32_mask(c, ukw);
        if (CK) hit = _mm512_mask_cmplt_epu32_mask(hit, _mm512_add_epi32(st, c), uW);
        code = _mm512_mask_add_epi32(code, hit, c, t[i]);
      }
      const __m128i bytes = _mm512_cvtepi32_epi8(code);
      if (WHOLE) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), bytes);
      else _mm_mask_storeu_epi8(dst, k, bytes);
    };
    using T = std::true_type;
    using F = std::false_type;
    for (int64_t q = 0; q < rows; ++q) {
      const int64_t* iq = ip + q * oW;
      uint8_t* cq = cp + q * CR;
      // read-prefetch the indices kEncodePrefetchRows rows ahead (past the array's end too: prefetches never fault)
      for (int64_t l = 0; l < oW; l += 8) __builtin_prefetch(iq + kEncodePrefetchRows * oW + l, 0, 3);
      // window starts mod 2^32 (the differences below are exact for indices in [0, 2^30), plane < 2^30)
      __m512i org = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(base + q * step)), ramp);
      __m512i st = _mm512_sub_epi32(ramp, _mm512_set1_epi32(pw));  // window starts in W
      int64_t c = 0;
      for (; c < c_lo; ++c, org = _mm512_add_epi32(org, next), st = _mm512_add_epi32(st, next))
        chunk(iq + 16 * c, cq + 16 * c, org, st, 16, T{}, std::integral_constant<bool, CHECK>{});
      for (; c < c_hi; ++c, org = _mm512_add_epi32(org, next), st = _mm512_add_epi32(st, next))
        chunk(iq + 16 * c, cq + 16 * c, org, st, 16, T{}, F{});
      for (; c < full; ++c, org = _mm512_add_epi32(org, next), st = _mm512_add_epi32(st, next))
        chunk(iq + 16 * c, cq + 16 * c, org, st, 16, T{}, std::integral_constant<bool, CHECK>{});
      if (full * 16 < oW)
        chunk(iq + 16 * full, cq + 16 * full, org, st, static_cast<int>(oW - 16 * full), F{},
              std::integral_constant<bool, CHECK>{});
    }
    alignas(64) uint64_t lanes[8];  // not _mm512_reduce_or_epi64: GCC 12 warns on its undefined operand
    _mm512_store_si512(lanes, any);
    return lanes[0] | lanes[1] | lanes[2] | lanes[3] | lanes[4] | lanes[5] | lanes[6] | lanes[7];
  }
};
}  // namespace
}  // namespace fastml::pool_impl

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
    // slot i holds plane 4 (i % 4) + i / 4, so lane r of the sum is plane r; the 16 planes' lane sums
    // advance together (16 independent add chains; each plane's own adds in plane_lanes' order)
    const float* src[16];
    __m512 a[16];
    for (int i = 0; i < 16; ++i) {
      src[i] = x + (p + 4 * (i % 4) + i / 4) * n;
      a[i] = _mm512_setzero_ps();
    }
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
      for (int i = 0; i < 16; ++i) a[i] = _mm512_add_ps(a[i], _mm512_loadu_ps(src[i] + j));
    if (j + 1 == n) {  // one element left (7x7 planes): a scalar load into lane 0, never a line split
      for (int i = 0; i < 16; ++i)
        a[i] = _mm512_add_ps(a[i], _mm512_maskz_broadcastss_ps(1, _mm_load_ss(src[i] + j)));
    } else if (j < n) {
      const __mmask16 k = static_cast<__mmask16>((1u << (n - j)) - 1u);
      for (int i = 0; i < 16; ++i) a[i] = _mm512_add_ps(a[i], _mm512_maskz_loadu_ps(k, src[i] + j));
    }
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
