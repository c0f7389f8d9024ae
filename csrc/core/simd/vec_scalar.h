// One-lane "vector" so that the generic kernels compile to plain C++ for the scalar variant.
// Same contract as vec_avx512.h (max/min return b on NaN, like x86).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace fastml::cpu::scalar {

struct VecF {
  static constexpr int N = 1;
  static constexpr bool kTable32 = false;  // no 32-entry register lookup (simd/math.h)
  using Mask = bool;
  float v;

  static VecF load(const float* p) { return {*p}; }
  static VecF load_tail(const float* p, int n, float fill = 0.f) { return {n > 0 ? *p : fill}; }
  // p[0:m) (m <= 2) split into even = p[0] and odd = p[1] (missing ones read as 0)
  static void load2_deinterleave(const float* p, int m, VecF& even, VecF& odd) {
    even.v = m > 0 ? p[0] : 0.f;
    odd.v = m > 1 ? p[1] : 0.f;
  }
  // load2_deinterleave of p[0:2N) in the lane order in_order() restores (the natural one here: see vec_avx2.h)
  static void load2_deinterleave_lanes(const float* p, VecF& even, VecF& odd) { load2_deinterleave(p, 2 * N, even, odd); }
  static void load2_deinterleave_lanes(const float* p, int m, VecF& even, VecF& odd) { load2_deinterleave(p, m, even, odd); }
  static void load2_deinterleave_lanes_from(const float* p, int first, float fill, VecF& even, VecF& odd,
                                            int m = 2 * N) {
    load2_deinterleave_from(p, first, m, fill, even, odd);
  }
  // the even half of load2_deinterleave_lanes(p, m), reading only p[0:m); next_even_lanes: see vec_avx2.h
  static VecF load_even_lanes(const float* p, int m) { return {m > 0 ? p[0] : 0.f}; }
  static VecF next_even_lanes(VecF, float extra) { return {extra}; }
  VecF in_order() const { return *this; }
  // as load2_deinterleave, but only p[first:m) is read (the rest is `fill`, never touched in memory)
  static void load2_deinterleave_from(const float* p, int first, int m, float fill, VecF& even, VecF& odd) {
    even.v = first <= 0 && m > 0 ? p[0] : fill;
    odd.v = first <= 1 && m > 1 ? p[1] : fill;
  }
  // lanes l where the byte p[l] == value (p[0:N) is read)
  static Mask eq_u8(const uint8_t* p, uint8_t value) { return p[0] == value; }
  // the byte p[0], tested against several values by eq_code
  using Codes = uint8_t;
  static Codes load_codes(const uint8_t* p) { return p[0]; }
  static Mask eq_code(Codes c, uint8_t value) { return c == value; }
  // p[0], p[stride], ..., p[(n-1) stride] (lanes past n are 0 and read nothing); stride * N < 2^31
  static VecF load_strided(const float* p, int64_t stride, int n) {
    (void)stride;
    return {n > 0 ? p[0] : 0.f};
  }
  void store(float* p) const { *p = v; }
  void store_tail(float* p, int n) const { if (n > 0) *p = v; }
  void stream(float* p) const { *p = v; }
  static VecF set1(float x) { return {x}; }
  static VecF zero() { return {0.f}; }

  friend VecF operator+(VecF a, VecF b) { return {a.v + b.v}; }
  friend VecF operator-(VecF a, VecF b) { return {a.v - b.v}; }
  friend VecF operator*(VecF a, VecF b) { return {a.v * b.v}; }
  friend VecF operator/(VecF a, VecF b) { return {a.v / b.v}; }
  friend VecF operator-(VecF a) { return {-a.v}; }
  friend VecF fmadd(VecF a, VecF b, VecF c) { return {a.v * b.v + c.v}; }
  friend VecF fnmadd(VecF a, VecF b, VecF c) { return {c.v - a.v * b.v}; }
  friend VecF fmsub(VecF a, VecF b, VecF c) { return {a.v * b.v - c.v}; }
  friend VecF max(VecF a, VecF b) { return {a.v > b.v ? a.v : b.v}; }
  friend VecF min(VecF a, VecF b) { return {a.v < b.v ? a.v : b.v}; }
  friend VecF abs(VecF a) { return {std::fabs(a.v)}; }
  friend VecF sqrt(VecF a) { return {std::sqrt(a.v)}; }
  friend VecF recip(VecF a) { return {1.0f / a.v}; }
  friend VecF round_nearest(VecF a) { return {std::nearbyint(a.v)}; }
  friend VecF trunc(VecF a) { return {std::trunc(a.v)}; }
  friend VecF ldexp(VecF a, VecF n) { return {std::ldexp(a.v, static_cast<int>(n.v))}; }
  friend VecF ldexp_normal(VecF a, VecF n) { return {std::ldexp(a.v, static_cast<int>(n.v))}; }
  friend VecF copysign(VecF a, VecF s) { return {std::copysign(a.v, s.v)}; }

  friend Mask cmp_lt(VecF a, VecF b) { return a.v < b.v; }
  friend Mask cmp_le(VecF a, VecF b) { return a.v <= b.v; }
  friend Mask cmp_gt(VecF a, VecF b) { return a.v > b.v; }
  friend Mask cmp_ge(VecF a, VecF b) { return a.v >= b.v; }
  friend Mask cmp_eq(VecF a, VecF b) { return a.v == b.v; }
  friend Mask cmp_ne(VecF a, VecF b) { return !(a.v == b.v); }
  // a > b or a is NaN (the max-pooling scan rule: a later NaN replaces the running maximum)
  friend Mask cmp_gt_or_nan(VecF a, VecF b) { return a.v > b.v || a.v != a.v; }
  friend Mask is_nan(VecF a) { return a.v != a.v; }
  // masks are not VecF, so argument-dependent lookup cannot find friends taking them: V::mask_or(...)
  static Mask mask_and(Mask a, Mask b) { return a && b; }
  static Mask mask_or(Mask a, Mask b) { return a || b; }
  static bool mask_any(Mask m) { return m; }
  static bool mask_all(Mask m) { return m; }
  friend VecF select(Mask m, VecF a, VecF b) { return m ? a : b; }
  friend VecF add_if(Mask m, VecF a, VecF b) { return m ? a + b : a; }

  // lanes moved down by one, `last` into the top lane (one lane: just `last`)
  friend VecF shift_down(VecF a, float last) {
    (void)a;
    return {last};
  }

  // the inverse of load2_deinterleave: lo = a0 b0 a1 b1 ..., hi = the second half of that sequence
  friend void interleave2(VecF a, VecF b, VecF& lo, VecF& hi) {
    lo = a;
    hi = b;
  }

  // lanes l < n where p[l] == base + l * step (int64 indices against their expected positions)
  static Mask eq_i64_ramp(const int64_t* p, int64_t base, int64_t step, int n) {
    (void)step;
    return n > 0 && p[0] == base;
  }

  // p[0] = base + (int64) v (an integer-valued v, |v| < 2^31)
  void store_i64(int64_t* p, int64_t base) const { p[0] = base + static_cast<int64_t>(v); }
  float hsum() const { return v; }
  static void hsum8(const VecF* a, float scale, float* out, int n) {
    for (int t = 0; t < n && t < 8; ++t) out[t] = a[t].v * scale;
  }
  float hmax() const { return v; }
};

}  // namespace fastml::cpu::scalar
