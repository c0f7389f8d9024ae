// Vector transcendental functions written once over the VecF contract of vec_<isa>.h, instantiated by
// each ISA translation unit with its own VecF (so every instantiation is a distinct symbol).
//
// Accuracy (float32, measured against float64 in tests/test_activation.py over [-100, 100]):
//   exp       Cody-Waite reduction to |r| <= ln2/2, Cephes expf minimax polynomial: <= 2 ulp.
//             Overflows to +inf above ~88.72, correctly rounded denormals down to ~-103.9, NaN kept.
//   exp2_in_range  2^t for t in [-126, 127]: degree-6 polynomial on |f| <= 1/2, <= 1 ulp (measured over
//             that interval in float32 Horner; the attention softmax's exp, tests/test_attention.py).
//   tanh      d/(d+2), d = expm1(2|x|) (no cancellation near 0): <= 2 ulp.
//   sigmoid   1/(1+e^{-|x|}) (times e^{-|x|} for x < 0), Newton-refined hardware reciprocal: <= 4 ulp.
//   erfc(z)/2 z >= 0, Numerical Recipes' erfcc Chebyshev fit (fractional error < 1.2e-7) with an
//             exact z^2 (FMA split) so the exponent does not amplify rounding for large z.
//   Q(a), phi(a), tanh(a)  0 <= a < 8, piecewise polynomials (poly32, ISAs with a 32-entry register
//             lookup): fits < 1.3e-8 / 1.1e-7 / 3e-9 relative; GELU from Q within 3.7 ulp of float64,
//             tanh within 1.4 ulp (tanh() below uses them for |x| < 8 on those ISAs).
#pragma once
#include <cmath>

#include "core/simd/poly_tables.h"

namespace fastml::simd {

// Horner's rule, coefficients from the highest degree down: ((c[0] x + c[1]) x + c[2]) x + ..., one FMA per
// coefficient after the first. Every polynomial of this file is evaluated this way.
template <class V, int N>
inline V horner(V x, const float (&c)[N]) {
  V p = V::set1(c[0]);
  for (int k = 1; k < N; ++k) p = fmadd(p, x, V::set1(c[k]));
  return p;
}

// e^x for x in [-104, 89] (callers that know their range skip the clamp of exp()).
template <class V>
inline V exp_in_range(V x) {
  const V log2e = V::set1(1.44269504088896341f);
  const V ln2_hi = V::set1(0.693359375f);
  const V ln2_lo = V::set1(-2.12194440e-4f);
  const V n = round_nearest(x * log2e);
  V r = fnmadd(n, ln2_hi, x);
  r = fnmadd(n, ln2_lo, r);
  const V p = horner(r, {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f,
                         5.0000001201e-1f});
  return ldexp(fmadd(p, r * r, r + V::set1(1.0f)), n);
}

// 2^t for t in [-126, 127] (callers clamp): n = round(t), f = t - n (exact, |f| <= 1/2), 2^f by a degree-6
// polynomial (relative-error fit on [-1/2, 1/2]: 1.9e-9; <= 1 ulp in float32 Horner), then n added to the
// exponent field (2^n p is normal over this range). Six FMAs and no multiply for the scaling: exp_in_range
// takes twelve multiplies or FMAs.
template <class V>
inline V exp2_in_range(V t) {
  const V n = round_nearest(t);
  const V f = t - n;
  const V p = horner(f, {1.5345771681e-04f, 1.3399915770e-03f, 9.6184890717e-03f, 5.5503286421e-02f,
                         2.4022646248e-01f, 6.9314718246e-01f, 1.0f});
  return ldexp_normal(p, n);
}

template <class V>
inline V exp(V x) {
  // x <= -104 (its e^x rounds to 0, -inf included) gives 0 by a select, and its lane computes e^0:
  // computing the underflow instead runs a denormal scaling, which Intel cores execute as a microcode
  // assist (a softmax row half masked with -inf measured 8x slower). Same values as the plain clamp.
  // Clamp with x as the second operand so that a NaN x passes through (max/min return b on NaN).
  const auto zero = cmp_le(x, V::set1(-104.0f));  // NaN compares false
  return select(zero, V::zero(), exp_in_range(min(V::set1(89.0f), select(zero, V::zero(), x))));
}

// s = sigmoid(x) and s1 = 1 - s = sigmoid(-x), both without cancellation or overflow:
// with e = e^{-|x|} in (0, 1] and r = 1/(1+e), the pair is (r, e r) for x >= 0 and (e r, r) below.
// The tiny side (e r) underflows gracefully into denormals; NaN propagates to both.
template <class V>
inline void sigmoid_pair(V x, V& s, V& s1) {
  const V e = exp(-abs(x));
  const V r = recip(V::set1(1.0f) + e);
  const V er = e * r;
  const auto pos = cmp_ge(x, V::zero());
  s = select(pos, r, er);
  s1 = select(pos, er, r);
}

template <class V>
inline V sigmoid(V x) {
  const V e = exp(-abs(x));
  const V r = recip(V::set1(1.0f) + e);
  return select(cmp_ge(x, V::zero()), r, e * r);
}

// e^x - 1, accurate in relative terms near 0 (no cancellation): with x = n ln2 + r,
// e^x - 1 = 2^n (e^r - 1) + (2^n - 1), and e^r - 1 = r + r^2 q(r) (Taylor to r^8, error < 2e-8 relative
// for |r| <= ln2/2). x is clamped to [-88, 88] (results -1 and 1.65e38); NaN passes.
template <class V>
inline V expm1(V x) {
  const V log2e = V::set1(1.44269504088896341f);
  x = min(V::set1(88.0f), max(V::set1(-88.0f), x));
  const V n = round_nearest(x * log2e);
  V r = fnmadd(n, V::set1(0.693359375f), x);
  r = fnmadd(n, V::set1(-2.12194440e-4f), r);
  const V q =
      horner(r, {1.0f / 40320.0f, 1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f});
  const V em1_r = fmadd(r * r, q, r);
  const V s = ldexp(V::set1(1.0f), n);  // 2^n, n in [-127, 127]
  return fmadd(s, em1_r, s - V::set1(1.0f));
}

// Piecewise polynomials on [0, 8) (poly_tables.h, written by tools/poly_tables.py): 32 intervals of
// width 1/4, interval i = floor(4 a), s = 4 a - t[0][i], f(a) ~ sum_k t[1 + k][i] s^k (degree 8), the
// rows held as two 16-lane registers each and read with a 32-entry register lookup (ISAs with
// V::kTable32): 10 lookups and 8 FMAs. Lanes with a outside [0, 8) or NaN get garbage (finite, inf or
// NaN): callers select. Tables: the normal's upper tail Q(a) = erfc(a/sqrt 2)/2 with phi(a) = -Q'(a)
// (fit < 1.3e-8 / 1.1e-7 relative), tanh(a) (< 3e-9). Accuracy in float32: tests/test_activation.py.
template <class V>
struct Piece {
  V s;
  typename V::Index i;
};
template <class V>
inline V row32(const float (&t)[32], typename V::Index i) {
  return lookup32(V::load(t), V::load(t + 16), i);
}
template <class V, int R>
inline Piece<V> piece32(const float (&t)[R][32], V a) {
  const V u = a * V::set1(4.0f);
  const auto i = trunc_index(u);
  return {u - row32<V>(t[0], i), i};
}
template <class V, int R>
inline V poly32(const float (&t)[R][32], const Piece<V>& p) {
  V r = row32<V>(t[R - 1], p.i);
  for (int k = R - 2; k >= 1; --k) r = fmadd(r, p.s, row32<V>(t[k], p.i));
  return r;
}
// the polynomial and its derivative in s (Horner for both together)
template <class V, int R>
inline V poly32_slope(const float (&t)[R][32], const Piece<V>& p, V& dds) {
  V r = row32<V>(t[R - 1], p.i), d = V::zero();
  for (int k = R - 2; k >= 1; --k) {
    d = fmadd(d, p.s, r);
    r = fmadd(r, p.s, row32<V>(t[k], p.i));
  }
  dds = d;
  return r;
}

// `fast` where `ok`, slow() elsewhere. slow() runs only for vectors with a lane outside `ok`, and each
// lane's result depends on its own input alone, never on which neighbours share its vector (so thread
// splits and tails cannot change bits). Always inlined: left to GCC, the exact-GELU backward's loop
// came out 12% slower (the fallback's call sites and the register allocation around them moved).
template <class V, class M, class F>
[[gnu::always_inline]] inline V where_else(M ok, V fast, F slow) {
  return V::mask_all(ok) ? fast : select(ok, fast, slow());
}

// tanh|x| = d / (d + 2) with d = e^{2|x|} - 1 >= 0: no cancellation (d + 2 >= 2) and the relative
// error of d is not amplified; d saturates at e^88 where tanh rounds to 1. One expm1, one division.
template <class V>
inline V tanh_by_expm1(V x) {
  const V ax = abs(x);
  const V d = expm1(ax + ax);
  return copysign(d / (d + V::set1(2.0f)), x);
}
template <class V>
inline V tanh(V x) {
  if constexpr (V::kTable32) {  // |x| < 8 by the piecewise polynomial; other lanes (and NaN) as below
    const V a = abs(x);
    const auto ok = cmp_lt(a, V::set1(8.0f));
    const V fast = copysign(poly32(kTanhPoly, piece32(kTanhPoly, a)), x);
    return where_else(ok, fast, [x] { return tanh_by_expm1(x); });
  } else {
    return tanh_by_expm1(x);
  }
}

// erfc(z) / 2 for z >= 0: Numerical Recipes' erfcc (2nd ed., section 6.2), erfc(z) = t exp(-z^2 + P(t))
// with t = 1 / (1 + z/2) and a degree-9 Chebyshev fit P (fractional error < 1.2e-7). Written in
// u = t / 2 = 1 / (2 + z), with P's coefficients scaled by 2^k (exact), so erfc(z)/2 = u exp(-z^2 + P).
// z^2 = hi + lo is split exactly (FMA) so the exponent does not amplify rounding for large z.
template <class V>
inline V half_erfc_nonneg(V z) {
  // erfc(z)/2 < 1e-46 rounds to 0 from z = 10.2 on: those lanes give 0 by a select and compute z = 0
  // (computing the underflow would run denormal steps, microcode assists on Intel cores, as in exp).
  // Below 10.2 exp's argument stays >= -105.4.
  const auto zero = cmp_ge(z, V::set1(10.2f));  // NaN compares false
  z = select(zero, V::zero(), z);
  const V u = recip(V::set1(2.0f) + z);
  const V p = horner(u, {0.17087277f * 512.0f, -0.82215223f * 256.0f, 1.48851587f * 128.0f, -1.13520398f * 64.0f,
                         0.27886807f * 32.0f, -0.18628806f * 16.0f, 0.09678418f * 8.0f, 0.37409196f * 4.0f,
                         1.00002368f * 2.0f, -1.26551223f});
  // exp(p - z^2) = exp(p - hi) * (1 - lo), p - hi in [-105.4, 0]
  const V hi = z * z;
  const V lo = fmsub(z, z, hi);
  const V e = exp_in_range(p - hi);
  return select(zero, V::zero(), u * fnmadd(e, lo, e));
}

// Phi(x) = P(N(0,1) <= x) = erfc(-x/sqrt 2)/2, accurate in relative terms for x < 0 as well.
template <class V>
inline V normal_cdf(V x) {
  const V c = half_erfc_nonneg(abs(x) * V::set1(0.70710678118654752f));
  return select(cmp_lt(x, V::zero()), c, V::set1(1.0f) - c);
}

}  // namespace fastml::simd

namespace fastml::simd {

// log(1 + u) for u in [-0.3, 1] (e.g. u = exp(-|x|) in softplus / log-sigmoid, or r - 1 in log below), no
// range reduction needed: with s = u / (2 + u) in [-0.18, 1/3], log(1 + u) = 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ...); the
// series is cut after s^16 (error < 9^-9 relative) and is within ~2 ulp in float32. NaN passes through.
template <class V>
inline V log1p_unit(V u) {
  const V s = u / (V::set1(2.0f) + u);
  const V z = s * s;
  const V p = horner(z, {1.0f / 17.0f, 1.0f / 15.0f, 1.0f / 13.0f, 1.0f / 11.0f, 1.0f / 9.0f, 1.0f / 7.0f, 1.0f / 5.0f,
                         1.0f / 3.0f});
  const V two_s = s + s;
  return fmadd(two_s * z, p, two_s);  // 2s + 2s z P(z)
}

}  // namespace fastml::simd

namespace fastml::simd {

// Natural log for x > 0, with float-only range reduction (no integer ops, so it needs nothing beyond
// the VecF contract; costs ~30 vector ops, meant for one log per row, not for elementwise use): x is scaled by exact powers of two into [sqrt(1/2), sqrt(2)) by a binary ladder
// (exponents up to +-127), then log x = n ln2 + log1p_unit(r - 1) (the atanh series in u = (r - 1)/(r + 1),
// |u| <= 0.1716). Within ~2 ulp. log(0) = -inf, log(inf) = inf, NaN and x < 0 -> NaN.
template <class V>
inline V log(V x) {
  V n = V::zero();
  V r = x;
  for (int e : {64, 32, 16, 8, 4, 2, 1}) {  // multiplying by 2^-+e is exact here
    const V up = V::set1(std::ldexp(1.0f, e)), down = V::set1(std::ldexp(1.0f, -e));
    const V fe = V::set1(static_cast<float>(e));
    const auto big = cmp_ge(r, up);
    r = select(big, r * down, r);
    n = select(big, n + fe, n);
    const auto small = cmp_lt(r, down);
    r = select(small, r * up, r);
    n = select(small, n - fe, n);
  }
  // now r in [1/2, 2) for normal x (denormals need one more halving step: x < 2^-127 once more)
  const auto tiny = cmp_lt(r, V::set1(0.5f));
  r = select(tiny, r * V::set1(2.0f), r);
  n = select(tiny, n - V::set1(1.0f), n);
  const auto hi = cmp_ge(r, V::set1(1.41421356f));
  r = select(hi, r * V::set1(0.5f), r);
  n = select(hi, n + V::set1(1.0f), n);
  const auto lo = cmp_lt(r, V::set1(0.70710678f));
  r = select(lo, r * V::set1(2.0f), r);
  n = select(lo, n - V::set1(1.0f), n);
  const V lr = log1p_unit(r - V::set1(1.0f));  // log r; r - 1 is exact (Sterbenz) for r in [1/2, 2)
  V out = fmadd(n, V::set1(0.693359375f), fmadd(n, V::set1(-2.12194440e-4f), lr));  // n ln2 (hi + lo) + log r
  out = select(cmp_eq(x, V::set1(__builtin_inff())), x, out);
  out = select(cmp_eq(x, V::zero()), V::set1(-__builtin_inff()), out);
  out = select(cmp_lt(x, V::zero()), V::set1(__builtin_nanf("")), out);
  return out;
}

}  // namespace fastml::simd
