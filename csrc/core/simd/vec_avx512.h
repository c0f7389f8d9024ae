// 16-lane float vector for AVX-512F/DQ/BW/VL. Include only from *_avx512.cpp files: everything here is
// in namespace fastml::cpu::avx512 so nothing can be merged with code compiled for another ISA.
// Semantics shared by vec_{scalar,avx2,avx512}.h: max(a, b)/min(a, b) return b when either is NaN
// (x86 MAXPS/MINPS), so clamp(x) as max(lo, x) keeps a NaN x; tails are masked, never over-read.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace fastml::cpu::avx512 {

struct VecF {
  static constexpr int N = 16;
  using Mask = __mmask16;
  __m512 v;

  static VecF load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static VecF load_tail(const float* p, int n, float fill = 0.f) {
    return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), tail_mask(n), p)};
  }
  // p[0:m) (m <= 2N, the rest read as 0) split into even = p[0], p[2], ... and odd = p[1], p[3], ...
  static void load2_deinterleave(const float* p, int m, VecF& even, VecF& odd) {
    __m512 a, b;
    if (m >= 2 * N) {
      a = _mm512_loadu_ps(p);
      b = _mm512_loadu_ps(p + N);
    } else {
      a = _mm512_maskz_loadu_ps(tail_mask(m < N ? m : N), p);
      b = _mm512_maskz_loadu_ps(tail_mask(m > N ? m - N : 0), p + N);
    }
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    even.v = _mm512_permutex2var_ps(a, ie, b);
    odd.v = _mm512_permutex2var_ps(a, io, b);
  }
  // p[0:2N) split as load2_deinterleave does, but each half's lanes in the order one in-lane shuffle leaves
  // them: 128-bit block k of the even half holds p[4k], p[4k + 2], p[4k + 16], p[4k + 18]. in_order() (one
  // cross-lane permute) restores p's order; lane-wise arithmetic commutes with it, so a chain of it pays for
  // one permute instead of two two-source ones per load (as vec_avx2.h).
  static void load2_deinterleave_lanes(const float* p, VecF& even, VecF& odd) {
    split_lanes(_mm512_loadu_ps(p), _mm512_loadu_ps(p + N), even, odd);
  }
  // the same of p[0:m), 0 < m <= 2N (the rest reads as 0, never touched in memory)
  static void load2_deinterleave_lanes(const float* p, int m, VecF& even, VecF& odd) {
    split_lanes(_mm512_maskz_loadu_ps(tail_mask(m < N ? m : N), p),
                _mm512_maskz_loadu_ps(tail_mask(m > N ? m - N : 0), p + N), even, odd);
  }
  // the same of p[first:m), 0 < first < N, first < m <= 2N: p[0:first) reads as `fill`, p[m:2N) as 0
  static void load2_deinterleave_lanes_from(const float* p, int first, float fill, VecF& even, VecF& odd,
                                            int m = 2 * N) {
    const Mask pad = tail_mask(first);
    const Mask lo = static_cast<Mask>(tail_mask(m < N ? m : N) & ~pad);
    const __m512 a = _mm512_mask_loadu_ps(_mm512_maskz_mov_ps(pad, _mm512_set1_ps(fill)), lo, p);
    split_lanes(a, _mm512_maskz_loadu_ps(tail_mask(m > N ? m - N : 0), p + N), even, odd);
  }
  // the even half of load2_deinterleave_lanes(p, m), m <= 2N - 1, read as p[0:N) and p[N-1:2N-1) (masked to
  // p[0:m); the rest reads as 0) joined by one shuffle, nothing read past the last even element
  static VecF load_even_lanes(const float* p, int m) {
    const int hi = m - (N - 1);
    return {_mm512_shuffle_ps(_mm512_maskz_loadu_ps(tail_mask(m < N ? m : N), p),
                              _mm512_maskz_loadu_ps(tail_mask(hi > 0 ? hi : 0), p + N - 1), 0xD8)};
  }
  // the even lanes of p[2:2N+1) (load2_deinterleave_lanes' order) from even = those of p[0:2N) and extra =
  // p[2N]: each lane takes the next even element's lane (one two-source permute instead of two more loads)
  static VecF next_even_lanes(VecF even, float extra) {
    const __m512i idx = _mm512_setr_epi32(1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 2, 15, 16);
    return {_mm512_permutex2var_ps(even.v, idx, _mm512_set1_ps(extra))};
  }
  // the lanes of load2_deinterleave_lanes in p's order: 64-bit pair h of block j (slot 2j + h) moves to pair 4h + j
  VecF in_order() const {
    const __m512i idx = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
    return {_mm512_castpd_ps(_mm512_permutexvar_pd(idx, _mm512_castps_pd(v)))};
  }
  static void split_lanes(__m512 a, __m512 b, VecF& even, VecF& odd) {
    even.v = _mm512_shuffle_ps(a, b, 0x88);
    odd.v = _mm512_shuffle_ps(a, b, 0xDD);
  }
  // as load2_deinterleave, but only p[first:m) is read (the rest is `fill`, never touched in memory)
  static void load2_deinterleave_from(const float* p, int first, int m, float fill, VecF& even, VecF& odd) {
    const __mmask16 lo = static_cast<__mmask16>(tail_mask(m < N ? m : N) & ~tail_mask(first < N ? first : N));
    const __mmask16 hi = static_cast<__mmask16>(tail_mask(m > N ? m - N : 0) & ~tail_mask(first > N ? first - N : 0));
    const __m512 f = _mm512_set1_ps(fill);
    const __m512 a = _mm512_mask_loadu_ps(f, lo, p);
    const __m512 b = _mm512_mask_loadu_ps(f, hi, p + N);
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    even.v = _mm512_permutex2var_ps(a, ie, b);
    odd.v = _mm512_permutex2var_ps(a, io, b);
  }
  // lanes l where the byte p[l] == value (p[0:N) is read)
  static Mask eq_u8(const uint8_t* p, uint8_t value) { return eq_code(load_codes(p), value); }
  // the bytes p[0:N), tested against several values by eq_code
  using Codes = __m128i;
  static Codes load_codes(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
  static Mask eq_code(Codes c, uint8_t value) {
    return _mm_cmpeq_epi8_mask(c, _mm_set1_epi8(static_cast<char>(value)));
  }
  // p[0], p[stride], ..., p[(n-1) stride] (lanes past n are 0 and read nothing); stride * N < 2^31
  static VecF load_strided(const float* p, int64_t stride, int n) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(static_cast<int>(stride)));
    return {_mm512_mask_i32gather_ps(_mm512_setzero_ps(), tail_mask(n < N ? n : N), idx, p, 4)};
  }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void store_tail(float* p, int n) const { _mm512_mask_storeu_ps(p, tail_mask(n), v); }
  void stream(float* p) const { _mm512_stream_ps(p, v); }
  static VecF set1(float x) { return {_mm512_set1_ps(x)}; }
  static VecF zero() { return {_mm512_setzero_ps()}; }
  static Mask tail_mask(int n) { return static_cast<Mask>((1u << n) - 1u); }  // n in [0, 16]

  friend VecF operator+(VecF a, VecF b) { return {_mm512_add_ps(a.v, b.v)}; }
  friend VecF operator-(VecF a, VecF b) { return {_mm512_sub_ps(a.v, b.v)}; }
  friend VecF operator*(VecF a, VecF b) { return {_mm512_mul_ps(a.v, b.v)}; }
  friend VecF operator/(VecF a, VecF b) { return {_mm512_div_ps(a.v, b.v)}; }
  friend VecF operator-(VecF a) { return {_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(INT32_MIN)))}; }
  friend VecF fmadd(VecF a, VecF b, VecF c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }   // a*b + c
  friend VecF fnmadd(VecF a, VecF b, VecF c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; } // c - a*b
  friend VecF fmsub(VecF a, VecF b, VecF c) { return {_mm512_fmsub_ps(a.v, b.v, c.v)}; }   // a*b - c
  friend VecF max(VecF a, VecF b) { return {_mm512_max_ps(a.v, b.v)}; }
  friend VecF min(VecF a, VecF b) { return {_mm512_min_ps(a.v, b.v)}; }
  friend VecF abs(VecF a) { return {_mm512_abs_ps(a.v)}; }
  friend VecF sqrt(VecF a) { return {_mm512_sqrt_ps(a.v)}; }
  // 1/a within ~1 ulp for |a| in [2^-125, 2^125] (RCP14 + one Newton step; VDIVPS is 16x slower).
  friend VecF recip(VecF a) {
    const __m512 r = _mm512_rcp14_ps(a.v);
    return {_mm512_mul_ps(r, _mm512_fnmadd_ps(a.v, r, _mm512_set1_ps(2.0f)))};
  }
  friend VecF round_nearest(VecF a) { return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
  friend VecF trunc(VecF a) { return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)}; }
  // a * 2^n for integer-valued n, exact in the normal range, correctly rounded into denormals / inf.
  friend VecF ldexp(VecF a, VecF n) { return {_mm512_scalef_ps(a.v, n.v)}; }
  // a * 2^n for integer-valued n when the result is a normal float (the same instruction: one op already)
  friend VecF ldexp_normal(VecF a, VecF n) { return {_mm512_scalef_ps(a.v, n.v)}; }
  // copy the sign bit of s onto |a|
  friend VecF copysign(VecF a, VecF s) {
    return {_mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(a.v), _mm512_castps_si512(s.v),
                                                          _mm512_set1_epi32(INT32_MIN), 0xd8))};
  }

  friend Mask cmp_lt(VecF a, VecF b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ); }
  friend Mask cmp_le(VecF a, VecF b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ); }
  friend Mask cmp_gt(VecF a, VecF b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ); }
  friend Mask cmp_ge(VecF a, VecF b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ); }
  friend Mask cmp_eq(VecF a, VecF b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ); }
  friend Mask cmp_ne(VecF a, VecF b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_NEQ_UQ); }
  // a > b or a is NaN (the max-pooling scan rule: a later NaN replaces the running maximum)
  friend Mask cmp_gt_or_nan(VecF a, VecF b) { return static_cast<Mask>(_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ) | _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q)); }
  friend Mask is_nan(VecF a) { return _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q); }
  // masks are not VecF, so argument-dependent lookup cannot find friends taking them: V::mask_or(...)
  static Mask mask_and(Mask a, Mask b) { return static_cast<Mask>(a & b); }
  static Mask mask_or(Mask a, Mask b) { return static_cast<Mask>(a | b); }
  static bool mask_any(Mask m) { return m != 0; }
  static bool mask_all(Mask m) { return m == 0xFFFF; }
  friend VecF select(Mask m, VecF a, VecF b) { return {_mm512_mask_blend_ps(m, b.v, a.v)}; }  // m ? a : b
  friend VecF add_if(Mask m, VecF a, VecF b) { return {_mm512_mask_add_ps(a.v, m, a.v, b.v)}; }  // m ? a + b : a

  // 32-entry tables held in two registers (piecewise polynomials, simd/math.h): lane l of
  // lookup32(lo, hi, i) is entry (i_l mod 32) of lo:hi. Index: truncated non-negative floats.
  static constexpr bool kTable32 = true;
  struct Index {
    __m512i v;
  };
  friend Index trunc_index(VecF t) { return {_mm512_cvttps_epi32(t.v)}; }
  friend VecF lookup32(VecF lo, VecF hi, Index i) { return {_mm512_permutex2var_ps(lo.v, i.v, hi.v)}; }

  // lanes moved down by one, `last` into the top lane: a1 a2 ... a15 last
  friend VecF shift_down(VecF a, float last) {
    return {_mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(_mm512_set1_ps(last)),
                                                    _mm512_castps_si512(a.v), 1))};
  }

  // the inverse of load2_deinterleave: lo = a0 b0 a1 b1 ..., hi = the second half of that sequence
  friend void interleave2(VecF a, VecF b, VecF& lo, VecF& hi) {
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ih = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    lo.v = _mm512_permutex2var_ps(a.v, il, b.v);
    hi.v = _mm512_permutex2var_ps(a.v, ih, b.v);
  }

  // lanes l < n where p[l] == base + l * step (int64 indices against their expected positions)
  static Mask eq_i64_ramp(const int64_t* p, int64_t base, int64_t step, int n) {
    const __m512i step2 = _mm512_set1_epi64(step);
    const __m512i ramp = _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), step2);
    const __m512i e0 = _mm512_add_epi64(_mm512_set1_epi64(base), ramp);
    const __m512i e1 = _mm512_add_epi64(e0, _mm512_set1_epi64(8 * step));
    const __mmask8 k0 = static_cast<__mmask8>(n >= 8 ? 0xFF : (1u << (n > 0 ? n : 0)) - 1u);
    const __mmask8 k1 = static_cast<__mmask8>(n >= 16 ? 0xFF : n > 8 ? (1u << (n - 8)) - 1u : 0u);
    const __mmask8 m0 = _mm512_mask_cmpeq_epi64_mask(k0, _mm512_maskz_loadu_epi64(k0, p), e0);
    const __mmask8 m1 = _mm512_mask_cmpeq_epi64_mask(k1, _mm512_maskz_loadu_epi64(k1, p + 8), e1);
    return static_cast<Mask>(m0 | (static_cast<unsigned>(m1) << 8));
  }

  // p[l] = base + (int64) v[l] for every lane; v integer-valued with |v| < 2^31 (flat indices from float
  // offsets)
  void store_i64(int64_t* p, int64_t base) const {
    const __m512i i = _mm512_cvttps_epi32(v);
    const __m512i b = _mm512_set1_epi64(base);
    _mm512_storeu_si512(p, _mm512_add_epi64(b, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(i))));
    _mm512_storeu_si512(p + 8, _mm512_add_epi64(b, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(i, 1))));
  }

  // _mm512_reduce_add_ps / _mm512_reduce_max_ps step for step (lanes l + 8, l + 4, l + 2, l + 1, with their
  // operand order, so the same bits), but the halves taken by zero-masked extracts: GCC 12's reduce
  // intrinsics (and the plain extract, shuffle and cast) pass an undefined operand and warn once inlined.
  float hsum() const {
    const __m256 t = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xFF, v, 1), _mm512_maskz_extractf32x8_ps(0xFF, v, 0));
    const __m128 h = _mm_add_ps(_mm256_extractf128_ps(t, 1), _mm256_castps256_ps128(t));
    const __m128 q = _mm_add_ps(h, _mm_shuffle_ps(h, h, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtss_f32(q) + _mm_cvtss_f32(_mm_shuffle_ps(q, q, 1));
  }
  // out[t] = scale * (a[t]'s lane sum) for t < n <= 8: each vector's halves added (lane l + lane l + 8), then
  // the eight 8-lane sums in one tree (six HADDs, a lane swap and an add) and one masked store.
  static void hsum8(const VecF* a, float scale, float* out, int n) {
    __m256 h[8];
    for (int t = 0; t < 8; ++t)
      h[t] = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xFF, a[t].v, 0),
                           _mm512_maskz_extractf32x8_ps(0xFF, a[t].v, 1));
    const __m256 t0 = _mm256_hadd_ps(h[0], h[1]), t1 = _mm256_hadd_ps(h[2], h[3]);
    const __m256 t2 = _mm256_hadd_ps(h[4], h[5]), t3 = _mm256_hadd_ps(h[6], h[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);  // [a0..a3 lanes 0-3 | lanes 4-7]
    const __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
    _mm256_mask_storeu_ps(out, static_cast<__mmask8>(n >= 8 ? 0xFF : (1u << n) - 1u),
                          _mm256_mul_ps(sum, _mm256_set1_ps(scale)));
  }
  float hmax() const {
    const __m256 t = _mm256_max_ps(_mm512_maskz_extractf32x8_ps(0xFF, v, 1), _mm512_maskz_extractf32x8_ps(0xFF, v, 0));
    const __m128 h = _mm_max_ps(_mm256_extractf128_ps(t, 1), _mm256_castps256_ps128(t));
    const __m128 q = _mm_max_ps(h, _mm_shuffle_ps(h, h, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtss_f32(_mm_max_ps(q, _mm_shuffle_ps(q, q, _MM_SHUFFLE(0, 1, 0, 1))));
  }
};

}  // namespace fastml::cpu::avx512
