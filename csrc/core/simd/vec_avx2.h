// 8-lane float vector for AVX2 + FMA. Include only from *_avx2.cpp files (namespace fastml::cpu::avx2).
// Same contract as vec_avx512.h.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace fastml::cpu::avx2 {

struct VecF {
  static constexpr int N = 8;
  static constexpr bool kTable32 = false;  // no 32-entry register lookup (simd/math.h)
  using Mask = __m256;
  __m256 v;

  static __m256i tail_mask(int n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
  }
  static VecF load(const float* p) { return {_mm256_loadu_ps(p)}; }
  // load_tail / store_tail of a whole vector (n >= N) take the plain load / store: AMD's masked stores are
  // microcoded (the Winograd filter transform, which masked every store, went from 20% to 7% of a batch-1
  // C256 14x14 convolution on Zen 3), and callers often pass the full width on every step but the last.
  static VecF load_tail(const float* p, int n, float fill = 0.f) {
    if (n >= N) return load(p);
    const __m256i m = tail_mask(n);
    return {_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m))};
  }
  // p[0:m) (m <= 2N, the rest read as 0) split into even = p[0], p[2], ... and odd = p[1], p[3], ...
  static void load2_deinterleave(const float* p, int m, VecF& even, VecF& odd) {
    __m256 a, b;
    if (m >= 2 * N) {
      a = _mm256_loadu_ps(p);
      b = _mm256_loadu_ps(p + N);
    } else {
      a = _mm256_maskload_ps(p, tail_mask(m < N ? m : N));
      b = _mm256_maskload_ps(p + N, tail_mask(m > N ? m - N : 0));
    }
    // [a0 a2 b0 b2 | a4 a6 b4 b6] -> lanes (0, 2, 1, 3) of 64 bits -> [a0 a2 a4 a6 b0 b2 b4 b6]
    const __m256 e = _mm256_shuffle_ps(a, b, 0x88);
    const __m256 o = _mm256_shuffle_ps(a, b, 0xDD);
    even.v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
    odd.v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8));
  }
  // p[0:2N) split as load2_deinterleave does, but each half's lanes in the order one shuffle leaves them
  // ([0 2 8 10 | 4 6 12 14] of the even half); in_order() restores p's order. Lane-wise arithmetic
  // commutes with that order, so a chain of it pays for one permute instead of one per load.
  static void load2_deinterleave_lanes(const float* p, VecF& even, VecF& odd) {
    const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + N);
    even.v = _mm256_shuffle_ps(a, b, 0x88);
    odd.v = _mm256_shuffle_ps(a, b, 0xDD);
  }
  // the same of p[first:m), 0 < first < N, first < m <= 2N: p[0:first) reads as `fill`, p[m:2N) as 0
  static void load2_deinterleave_lanes_from(const float* p, int first, float fill, VecF& even, VecF& odd,
                                            int m = 2 * N) {
    const __m256i pad = tail_mask(first);
    const __m256i lo = _mm256_andnot_si256(pad, tail_mask(m < N ? m : N));
    const __m256 f = _mm256_and_ps(_mm256_set1_ps(fill), _mm256_castsi256_ps(pad));
    const __m256 a = _mm256_blendv_ps(f, _mm256_maskload_ps(p, lo), _mm256_castsi256_ps(lo));
    const __m256 b = m >= 2 * N ? _mm256_loadu_ps(p + N) : _mm256_maskload_ps(p + N, tail_mask(m > N ? m - N : 0));
    even.v = _mm256_shuffle_ps(a, b, 0x88);
    odd.v = _mm256_shuffle_ps(a, b, 0xDD);
  }
  // the same of p[0:m), 0 < m <= 2N (the rest reads as 0, never touched in memory)
  static void load2_deinterleave_lanes(const float* p, int m, VecF& even, VecF& odd) {
    const __m256 a = m >= N ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, tail_mask(m));
    const __m256 b = m >= 2 * N ? _mm256_loadu_ps(p + N) : _mm256_maskload_ps(p + N, tail_mask(m > N ? m - N : 0));
    even.v = _mm256_shuffle_ps(a, b, 0x88);
    odd.v = _mm256_shuffle_ps(a, b, 0xDD);
  }
  // the even half of load2_deinterleave_lanes(p, m), m <= 2N - 1: p[0:N) and p[N-1:2N-1) (masked to p[0:m);
  // the rest reads as 0) give [p0 p2 p8 p10 | p4 p6 p12 p14] in one shuffle, nothing read past the last even one
  static VecF load_even_lanes(const float* p, int m) {
    const int hi = m - (N - 1);
    const __m256 a = m >= N ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, tail_mask(m));
    return {_mm256_shuffle_ps(a, _mm256_maskload_ps(p + N - 1, tail_mask(hi > 0 ? hi : 0)), 0xD8)};
  }
  // the even lanes of p[2:2N+1) (load2_deinterleave_lanes' order) from even = those of p[0:2N) and extra =
  // p[2N]: each lane takes the next even element's lane, the last one `extra`
  static VecF next_even_lanes(VecF even, float extra) {
    const __m256 moved = _mm256_permutevar8x32_ps(even.v, _mm256_setr_epi32(1, 4, 3, 6, 5, 2, 7, 7));
    return {_mm256_blend_ps(moved, _mm256_set1_ps(extra), 0x80)};
  }
  VecF in_order() const { return {_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xD8))}; }
  // as load2_deinterleave, but only p[first:m) is read (the rest is `fill`, never touched in memory)
  static void load2_deinterleave_from(const float* p, int first, int m, float fill, VecF& even, VecF& odd) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i ia = idx, ib = _mm256_add_epi32(idx, _mm256_set1_epi32(N));
    const __m256i ma = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(first), ia),
                                           _mm256_cmpgt_epi32(_mm256_set1_epi32(m), ia));
    const __m256i mb = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(first), ib),
                                           _mm256_cmpgt_epi32(_mm256_set1_epi32(m), ib));
    const __m256 f = _mm256_set1_ps(fill);
    const __m256 a = _mm256_blendv_ps(f, _mm256_maskload_ps(p, ma), _mm256_castsi256_ps(ma));
    const __m256 b = _mm256_blendv_ps(f, _mm256_maskload_ps(p + N, mb), _mm256_castsi256_ps(mb));
    const __m256 e = _mm256_shuffle_ps(a, b, 0x88);
    const __m256 o = _mm256_shuffle_ps(a, b, 0xDD);
    even.v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
    odd.v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8));
  }
  // lanes l where the byte p[l] == value (p[0:N) is read)
  static Mask eq_u8(const uint8_t* p, uint8_t value) { return eq_code(load_codes(p), value); }
  // the bytes p[0:N), one per lane (widened once, then tested against several values by eq_code)
  using Codes = __m256i;
  static Codes load_codes(const uint8_t* p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  static Mask eq_code(Codes c, uint8_t value) {
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(c, _mm256_set1_epi32(value)));
  }
  // p[0], p[stride], ..., p[(n-1) stride] (lanes past n are 0 and read nothing); stride * N < 2^31
  static VecF load_strided(const float* p, int64_t stride, int n) {
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm256_set1_epi32(static_cast<int>(stride)));
    return {_mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, idx, _mm256_castsi256_ps(tail_mask(n < N ? n : N)), 4)};
  }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  void store_tail(float* p, int n) const {
    if (n >= N) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, tail_mask(n), v);
  }
  void stream(float* p) const { _mm256_stream_ps(p, v); }
  static VecF set1(float x) { return {_mm256_set1_ps(x)}; }
  static VecF zero() { return {_mm256_setzero_ps()}; }

  friend VecF operator+(VecF a, VecF b) { return {_mm256_add_ps(a.v, b.v)}; }
  friend VecF operator-(VecF a, VecF b) { return {_mm256_sub_ps(a.v, b.v)}; }
  friend VecF operator*(VecF a, VecF b) { return {_mm256_mul_ps(a.v, b.v)}; }
  friend VecF operator/(VecF a, VecF b) { return {_mm256_div_ps(a.v, b.v)}; }
  friend VecF operator-(VecF a) { return {_mm256_xor_ps(a.v, _mm256_set1_ps(-0.f))}; }
  friend VecF fmadd(VecF a, VecF b, VecF c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
  friend VecF fnmadd(VecF a, VecF b, VecF c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
  friend VecF fmsub(VecF a, VecF b, VecF c) { return {_mm256_fmsub_ps(a.v, b.v, c.v)}; }
  friend VecF max(VecF a, VecF b) { return {_mm256_max_ps(a.v, b.v)}; }
  friend VecF min(VecF a, VecF b) { return {_mm256_min_ps(a.v, b.v)}; }
  friend VecF abs(VecF a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.f), a.v)}; }
  friend VecF sqrt(VecF a) { return {_mm256_sqrt_ps(a.v)}; }
  // 1/a within ~1 ulp for |a| in [2^-125, 2^125]: RCPPS (12 bits) and two Newton steps r += r (1 - a r).
  // One step leaves ~2^-24 relative error, enough to give 1 - 2^-24 for a = 1: sigmoid(large x) was then
  // 1 ulp below 1 and gelu_tanh(x) 1 ulp below x for large x (the AVX-512 RCP14 has 14 bits to start from).
  friend VecF recip(VecF a) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 r = _mm256_rcp_ps(a.v);
    r = _mm256_fmadd_ps(r, _mm256_fnmadd_ps(a.v, r, one), r);
    return {_mm256_fmadd_ps(r, _mm256_fnmadd_ps(a.v, r, one), r)};
  }
  friend VecF round_nearest(VecF a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
  friend VecF trunc(VecF a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)}; }
  // a * 2^n for integer-valued n in [-252, 254]: two exact power-of-two steps, so only the last
  // multiply rounds (correct denormals and overflow to inf).
  friend VecF ldexp(VecF a, VecF n) {
    const __m256i ni = _mm256_cvtps_epi32(n.v);
    const __m256i n1 = _mm256_srai_epi32(ni, 1);
    const __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return {_mm256_mul_ps(_mm256_mul_ps(a.v, s1), s2)};
  }
  // a * 2^n for integer-valued n when the result is a normal float (or a is NaN): n added to a's exponent
  // field, no multiply (ldexp's two exact steps cover denormals and overflow too).
  friend VecF ldexp_normal(VecF a, VecF n) {
    const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n.v), 23);
    return {_mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(a.v), e))};
  }
  friend VecF copysign(VecF a, VecF s) {
    const __m256 sign = _mm256_set1_ps(-0.f);
    return {_mm256_or_ps(_mm256_andnot_ps(sign, a.v), _mm256_and_ps(sign, s.v))};
  }

  friend Mask cmp_lt(VecF a, VecF b) { return _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ); }
  friend Mask cmp_le(VecF a, VecF b) { return _mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ); }
  friend Mask cmp_gt(VecF a, VecF b) { return _mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ); }
  friend Mask cmp_ge(VecF a, VecF b) { return _mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ); }
  friend Mask cmp_eq(VecF a, VecF b) { return _mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ); }
  friend Mask cmp_ne(VecF a, VecF b) { return _mm256_cmp_ps(a.v, b.v, _CMP_NEQ_UQ); }
  // a > b or a is NaN (the max-pooling scan rule: a later NaN replaces the running maximum)
  friend Mask cmp_gt_or_nan(VecF a, VecF b) { return _mm256_or_ps(_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ), _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q)); }
  friend Mask is_nan(VecF a) { return _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q); }
  // masks are not VecF, so argument-dependent lookup cannot find friends taking them: V::mask_or(...)
  static Mask mask_and(Mask a, Mask b) { return _mm256_and_ps(a, b); }
  static Mask mask_or(Mask a, Mask b) { return _mm256_or_ps(a, b); }
  static bool mask_any(Mask m) { return _mm256_movemask_ps(m) != 0; }
  static bool mask_all(Mask m) { return _mm256_movemask_ps(m) == 0xFF; }
  friend VecF select(Mask m, VecF a, VecF b) { return {_mm256_blendv_ps(b.v, a.v, m)}; }
  friend VecF add_if(Mask m, VecF a, VecF b) { return {_mm256_blendv_ps(a.v, _mm256_add_ps(a.v, b.v), m)}; }  // m ? a + b : a

  // lanes moved down by one, `last` into the top lane: a1 a2 ... a7 last
  friend VecF shift_down(VecF a, float last) {
    const __m256 s = _mm256_permutevar8x32_ps(a.v, _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7));
    return {_mm256_blend_ps(s, _mm256_set1_ps(last), 0x80)};
  }

  // the inverse of load2_deinterleave: lo = a0 b0 a1 b1 ..., hi = the second half of that sequence
  friend void interleave2(VecF a, VecF b, VecF& lo, VecF& hi) {
    const __m256 u0 = _mm256_unpacklo_ps(a.v, b.v);  // a0 b0 a1 b1 | a4 b4 a5 b5
    const __m256 u1 = _mm256_unpackhi_ps(a.v, b.v);  // a2 b2 a3 b3 | a6 b6 a7 b7
    lo.v = _mm256_permute2f128_ps(u0, u1, 0x20);
    hi.v = _mm256_permute2f128_ps(u0, u1, 0x31);
  }

  // lanes l < n where p[l] == base + l * step (int64 indices against their expected positions)
  static Mask eq_i64_ramp(const int64_t* p, int64_t base, int64_t step, int n) {
    const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
    const __m256i e0 = _mm256_add_epi64(_mm256_set1_epi64x(base),
                                        _mm256_mul_epu32(lanes, _mm256_set1_epi64x(step)));  // step >= 0, < 2^32
    const __m256i e1 = _mm256_add_epi64(e0, _mm256_set1_epi64x(4 * step));
    const __m256i live0 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), lanes);
    const __m256i live1 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n - 4), lanes);
    const __m256i v0 = _mm256_maskload_epi64(reinterpret_cast<const long long*>(p), live0);
    const __m256i v1 = _mm256_maskload_epi64(reinterpret_cast<const long long*>(p + 4), live1);
    const __m256i q0 = _mm256_and_si256(_mm256_cmpeq_epi64(v0, e0), live0);
    const __m256i q1 = _mm256_and_si256(_mm256_cmpeq_epi64(v1, e1), live1);
    // the low dword of each 64-bit lane, in lane order: [q0 lanes 0..3 | q1 lanes 0..3]
    const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256i r0 = _mm256_permutevar8x32_epi32(q0, pick), r1 = _mm256_permutevar8x32_epi32(q1, pick);
    return _mm256_castsi256_ps(_mm256_permute2x128_si256(r0, r1, 0x20));
  }

  // p[l] = base + (int64) v[l] for every lane; v integer-valued with |v| < 2^31 (flat indices from float
  // offsets)
  void store_i64(int64_t* p, int64_t base) const {
    const __m256i i = _mm256_cvttps_epi32(v);
    const __m256i b = _mm256_set1_epi64x(base);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm256_add_epi64(b, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(i))));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 4),
                        _mm256_add_epi64(b, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(i, 1))));
  }

  float hsum() const {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // out[t] = scale * (a[t]'s lane sum) for t < n <= 8: the eight sums in one tree (six HADDs, a lane swap and
  // an add; per sum ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))) and one store, not eight hsum()s.
  static void hsum8(const VecF* a, float scale, float* out, int n) {
    const __m256 t0 = _mm256_hadd_ps(a[0].v, a[1].v), t1 = _mm256_hadd_ps(a[2].v, a[3].v);
    const __m256 t2 = _mm256_hadd_ps(a[4].v, a[5].v), t3 = _mm256_hadd_ps(a[6].v, a[7].v);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);  // [a0..a3 lanes 0-3 | lanes 4-7]
    const __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
    const VecF s{_mm256_mul_ps(sum, _mm256_set1_ps(scale))};
    if (n >= 8) s.store(out);
    else s.store_tail(out, n);
  }
  float hmax() const {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

}  // namespace fastml::cpu::avx2
