// Row kernels of scaled dot-product attention written once over VecF (vec_<isa>.h), instantiated by
// attention_{scalar,avx2,avx512}.cpp. Contract: attention.h (AttentionKernels). Tails are masked loads /
// stores; exp(x) is 2^(x log2 e) (exp_flush below). exp(x) for x < -87 is flushed to 0: such a term is below
// 1e-38 of the row maximum's term (which is 1), so the row sum and the products do not change, and masked
// entries (-inf) give exactly 0 without relying on exp's clamp. NaN scores propagate to their rows.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/simd/math.h"
#include "ops/attention/attention.h"

namespace fastml::attention_impl {

// exp(x) for the softmax's x = score - max (or - logsumexp), as 2^t with t = x log2 e rounded
// (simd::exp2_in_range: six FMAs, the 2^n scaling an exponent add). simd::exp, with its two-FMA Cody-Waite
// reduction, its polynomial and its two-multiply scaling, takes twelve multiplies or FMAs per vector of
// scores, against the sixteen FMAs that the score and PV products spend on that vector at E = Ev = 64, and
// on the same two ports (Zen 3): 2^t takes seven. Forward +4-7%, backward +1.5-3% (paired A/B, B4 H8 E64,
// L 512 and 2048, 2 threads, Zen 3). Accuracy: the rounding of t adds a relative error of up to |x| 2^-24
// to each term (the polynomial <= 1 ulp), an absolute error of at most 2^-24 / e (e^x |x| <= 1/e) against
// the row maximum's term of 1, so row sums and outputs keep the float32 error of a NumPy softmax
// (tests/test_attention.py).
// The argument is raised to -87 first (x as max's second operand: NaN passes) so that no lane computes a
// denormal: masked entries (-inf) would otherwise each run a denormal scaling, which Intel cores execute
// as a microcode assist (B4 H8 causal L = S = 512 forward: 6.7 -> 5.6 ms).
template <class V>
inline V exp_flush(V x) {
  const V lo = V::set1(-87.0f);
  const V xc = min(V::set1(88.0f), max(lo, x));                                 // NaN passes both
  const V t = xc * V::set1(1.44269504088896341f);                   // in [-125.6, 127]
  return select(cmp_lt(x, lo), V::zero(), simd::exp2_in_range(t));  // NaN compares false: stays NaN
}

template <class V>
void softmax_update(int64_t rows, int64_t cols, float* s, int64_t lds, float* m, float* l, float* alpha) {
  constexpr int W = V::N;
  const float ninf = -__builtin_inff();
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    // four independent max chains (the max of finite values does not depend on the order)
    V vm = V::set1(ninf), vm1 = vm, vm2 = vm, vm3 = vm;
    int64_t c = 0;
    for (; c + 4 * W <= cols; c += 4 * W) {
      vm = max(vm, V::load(sr + c));
      vm1 = max(vm1, V::load(sr + c + W));
      vm2 = max(vm2, V::load(sr + c + 2 * W));
      vm3 = max(vm3, V::load(sr + c + 3 * W));
    }
    for (; c + W <= cols; c += W) vm = max(vm, V::load(sr + c));
    if (c < cols) vm = max(vm, V::load_tail(sr + c, static_cast<int>(cols - c), ninf));
    vm = max(max(vm, vm1), max(vm2, vm3));
    const float bm = vm.hmax();
    const float mnew = (bm > m[r] || bm != bm) ? bm : m[r];  // a NaN score makes the row NaN (as torch)
    // Nothing allowed so far: keep p = 0 (exp(-inf - 0)), alpha irrelevant (output still 0).
    const float mu = mnew == ninf ? 0.0f : mnew;
    const V vmu = V::set1(mu);
    // four independent sum chains as well: a quarter of the rounding chain's length (the scalar build's
    // one lane summed a block's 64 terms in one chain, 1.28x the rms error of NumPy's pairwise sum at
    // S = 65), and four adds in flight instead of one
    V vs = V::zero(), vs1 = vs, vs2 = vs, vs3 = vs;
    c = 0;
    for (; c + 4 * W <= cols; c += 4 * W) {
      const V p0 = exp_flush(V::load(sr + c) - vmu);
      const V p1 = exp_flush(V::load(sr + c + W) - vmu);
      const V p2 = exp_flush(V::load(sr + c + 2 * W) - vmu);
      const V p3 = exp_flush(V::load(sr + c + 3 * W) - vmu);
      p0.store(sr + c);
      p1.store(sr + c + W);
      p2.store(sr + c + 2 * W);
      p3.store(sr + c + 3 * W);
      vs = vs + p0;
      vs1 = vs1 + p1;
      vs2 = vs2 + p2;
      vs3 = vs3 + p3;
    }
    for (; c + W <= cols; c += W) {
      const V p = exp_flush(V::load(sr + c) - vmu);
      p.store(sr + c);
      vs = vs + p;
    }
    if (c < cols) {
      const int n = static_cast<int>(cols - c);
      const V p = exp_flush(V::load_tail(sr + c, n, ninf) - vmu);
      p.store_tail(sr + c, n);
      vs = vs + p;
    }
    vs = (vs + vs1) + (vs2 + vs3);
    const float a = m[r] == ninf ? 0.0f : std::exp(m[r] - mu);
    alpha[r] = a;
    l[r] = l[r] * a + vs.hsum();
    m[r] = mnew;
  }
}

template <class V>
void scale_rows(int64_t rows, int64_t n, float* o, int64_t ldo, const float* alpha) {
  constexpr int W = V::N;
  for (int64_t r = 0; r < rows; ++r) {
    if (alpha[r] == 1.0f) continue;
    float* orow = o + r * ldo;
    const V a = V::set1(alpha[r]);
    int64_t c = 0;
    for (; c + W <= n; c += W) (V::load(orow + c) * a).store(orow + c);
    if (c < n) (V::load_tail(orow + c, static_cast<int>(n - c)) * a).store_tail(orow + c, static_cast<int>(n - c));
  }
}

template <class V>
void add_rows(int64_t rows, int64_t n, float* s, int64_t lds, const float* add, int64_t ldadd) {
  constexpr int W = V::N;
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    const float* ar = add + r * ldadd;
    int64_t c = 0;
    for (; c + W <= n; c += W) (V::load(sr + c) + V::load(ar + c)).store(sr + c);
    if (c < n) {
      const int t = static_cast<int>(n - c);
      (V::load_tail(sr + c, t) + V::load_tail(ar + c, t)).store_tail(sr + c, t);
    }
  }
}

template <class V>
void exp_minus_cols(int64_t rows, int64_t cols, float* s, int64_t lds, const float* lse) {
  constexpr int W = V::N;
  const V ninf = V::set1(-__builtin_inff());
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    int64_t c = 0;
    for (; c + W <= cols; c += W) {
      const V x = V::load(lse + c);
      const V p = exp_flush(V::load(sr + c) - x);
      select(cmp_eq(x, ninf), V::zero(), p).store(sr + c);
    }
    if (c < cols) {
      const int t = static_cast<int>(cols - c);
      const V x = V::load_tail(lse + c, t);
      const V p = exp_flush(V::load_tail(sr + c, t) - x);
      select(cmp_eq(x, ninf), V::zero(), p).store_tail(sr + c, t);
    }
  }
}

template <class V>
void ds_cols(int64_t rows, int64_t cols, const float* p, int64_t ldp, float* dp, int64_t lddp, const float* d) {
  constexpr int W = V::N;
  for (int64_t r = 0; r < rows; ++r) {
    const float* pr = p + r * ldp;
    float* dr = dp + r * lddp;
    int64_t c = 0;
    for (; c + W <= cols; c += W) (V::load(pr + c) * (V::load(dr + c) - V::load(d + c))).store(dr + c);
    if (c < cols) {
      const int t = static_cast<int>(cols - c);
      (V::load_tail(pr + c, t) * (V::load_tail(dr + c, t) - V::load_tail(d + c, t))).store_tail(dr + c, t);
    }
  }
}

template <class V>
float dot(int64_t n, const float* a, const float* b) {
  constexpr int W = V::N;
  V acc = V::zero();
  int64_t c = 0;
  for (; c + W <= n; c += W) acc = fmadd(V::load(a + c), V::load(b + c), acc);
  if (c < n) {
    const int t = static_cast<int>(n - c);
    acc = fmadd(V::load_tail(a + c, t), V::load_tail(b + c, t), acc);
  }
  return acc.hsum();
}

template <class V>
inline V load_n(const float* p, int64_t n) {
  return n >= V::N ? V::load(p) : V::load_tail(p, static_cast<int>(n));
}

// Decode scores: s[r*lds + j] = scale * q_r . k_j. Eight keys at a time: eight independent FMA chains along
// E (one per key, each FMA reading its key row from memory, one load of q per step), the eight sums reduced
// together by V::hsum8; the eight key rows stay in L1 while every query row uses them. A last group of
// fewer keys repeats its last row in the unused chains and stores only its own sums. Each group prefetches
// the next group's rows: a group reads its eight rows a line of each at a time (a stride of ldk), which
// the hardware prefetcher follows poorly (paired, 2 threads, Zen 3: GQA B1 Hq32 Hkv8 S4096 E128 +35-39%,
// B1 H8 S4096 E64 +2-9%, S2048 and the DRAM-bound S32768 level; two groups ahead was no better).
template <class V>
void scores_rows(int64_t rows, int64_t cols, int64_t E, float scale, const float* q, int64_t ldq, const float* k,
                 int64_t ldk, float* s, int64_t lds) {
  constexpr int W = V::N;
  const int64_t Ew = E - E % W;  // whole vectors of E
  const int et = static_cast<int>(E % W);
  for (int64_t j = 0; j < cols; j += 8) {
    const int nk = static_cast<int>(cols - j < 8 ? cols - j : 8);
    const float* kr[8];
    for (int t = 0; t < 8; ++t) kr[t] = k + (j + (t < nk ? t : nk - 1)) * ldk;
    if (j + 16 <= cols)  // the next group's rows (see above)
      for (int t = 0; t < 8; ++t)
        for (int64_t e = 0; e < E; e += 16) __builtin_prefetch(k + (j + 8 + t) * ldk + e, 0, 3);
    for (int64_t r = 0; r < rows; ++r) {
      const float* qr = q + r * ldq;
      V a[8];
#pragma GCC unroll 8
      for (int t = 0; t < 8; ++t) a[t] = V::zero();
      for (int64_t e = 0; e < Ew; e += W) {
        const V qv = V::load(qr + e);
#pragma GCC unroll 8
        for (int t = 0; t < 8; ++t) a[t] = fmadd(qv, V::load(kr[t] + e), a[t]);
      }
      if (et) {
        const V qv = V::load_tail(qr + Ew, et);
#pragma GCC unroll 8
        for (int t = 0; t < 8; ++t) a[t] = fmadd(qv, V::load_tail(kr[t] + Ew, et), a[t]);
      }
      V::hsum8(a, scale, s + r * lds + j, nk);
    }
  }
}

// One row of the decode PV over `cols` keys: orow[c] += sum_j pr[j] * v[j*ldv + c]. Columns in chunks of eight
// vectors while whole ones remain (one key a step: eight independent FMA chains, each V row read once per
// chunk), the rest in chunks of up to four vectors where even and odd keys go to two accumulator sets
// (again eight chains instead of four dependent ones), added at the end in a fixed order.
template <class V>
void pv_row(int64_t cols, int64_t Ev, const float* pr, const float* v, int64_t ldv, float* orow) {
  constexpr int W = V::N;
  int64_t c0 = 0;
  for (; c0 + 8 * W <= Ev; c0 += 8 * W) {
    V x[8];
#pragma GCC unroll 8
    for (int u = 0; u < 8; ++u) x[u] = V::zero();
    const float* vj = v + c0;
    for (int64_t j = 0; j < cols; ++j, vj += ldv) {
      const V pj = V::set1(pr[j]);
#pragma GCC unroll 8
      for (int u = 0; u < 8; ++u) x[u] = fmadd(pj, V::load(vj + u * W), x[u]);
    }
#pragma GCC unroll 8
    for (int u = 0; u < 8; ++u) (V::load(orow + c0 + u * W) + x[u]).store(orow + c0 + u * W);
  }
  for (; c0 < Ev; c0 += 4 * W) {
    const int64_t n = Ev - c0;  // columns left from c0
    V x0 = V::zero(), x1 = V::zero(), x2 = V::zero(), x3 = V::zero();
    V y0 = V::zero(), y1 = V::zero(), y2 = V::zero(), y3 = V::zero();
    int64_t j = 0;
    for (; j + 2 <= cols; j += 2) {
      const V pa = V::set1(pr[j]), pb = V::set1(pr[j + 1]);
      const float* va = v + j * ldv + c0;
      const float* vb = va + ldv;
      x0 = fmadd(pa, load_n<V>(va, n), x0);
      y0 = fmadd(pb, load_n<V>(vb, n), y0);
      if (n > W) {
        x1 = fmadd(pa, load_n<V>(va + W, n - W), x1);
        y1 = fmadd(pb, load_n<V>(vb + W, n - W), y1);
      }
      if (n > 2 * W) {
        x2 = fmadd(pa, load_n<V>(va + 2 * W, n - 2 * W), x2);
        y2 = fmadd(pb, load_n<V>(vb + 2 * W, n - 2 * W), y2);
      }
      if (n > 3 * W) {
        x3 = fmadd(pa, load_n<V>(va + 3 * W, n - 3 * W), x3);
        y3 = fmadd(pb, load_n<V>(vb + 3 * W, n - 3 * W), y3);
      }
    }
    if (j < cols) {
      const V pa = V::set1(pr[j]);
      const float* va = v + j * ldv + c0;
      x0 = fmadd(pa, load_n<V>(va, n), x0);
      if (n > W) x1 = fmadd(pa, load_n<V>(va + W, n - W), x1);
      if (n > 2 * W) x2 = fmadd(pa, load_n<V>(va + 2 * W, n - 2 * W), x2);
      if (n > 3 * W) x3 = fmadd(pa, load_n<V>(va + 3 * W, n - 3 * W), x3);
    }
    const V acc[4] = {x0 + y0, x1 + y1, x2 + y2, x3 + y3};
    for (int t = 0; t < 4 && n > t * W; ++t) {
      const int64_t m = n - t * W;
      float* dst = orow + c0 + t * W;
      if (m >= W) (V::load(dst) + acc[t]).store(dst);
      else (V::load_tail(dst, static_cast<int>(m)) + acc[t]).store_tail(dst, static_cast<int>(m));
    }
  }
}

// Decode PV: o[r*ldo + c] += sum_j p[r*ldp + j] * v[j*ldv + c]. Keys in groups of about 16 KiB of V rows,
// every row over one group before the next: with several rows (L > 1, or the query heads of a GQA group
// folded into rows) a group's V rows are reused from L1, where the whole block (128-256 KiB at Ev 64-128)
// would stream from L2 or beyond once per row.
template <class V>
void pv_rows(int64_t rows, int64_t cols, int64_t Ev, const float* p, int64_t ldp, const float* v, int64_t ldv,
             float* o, int64_t ldo) {
  const int64_t group = std::max<int64_t>(8, 4096 / std::max<int64_t>(1, Ev));
  for (int64_t j0 = 0; j0 < cols; j0 += group) {
    const int64_t nj = std::min(group, cols - j0);
    for (int64_t r = 0; r < rows; ++r) pv_row<V>(nj, Ev, p + r * ldp + j0, v + j0 * ldv, ldv, o + r * ldo);
  }
}

// Dropout: plain 32-bit integer loops, vectorised by the compiler with this file's ISA flags.
template <class V>
void dropout_rows(int64_t rows, int64_t cols, float* s, int64_t lds, const uint32_t* rowkey, uint32_t col0,
                  uint32_t threshold, float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    const uint32_t rk = rowkey[r];
    for (int64_t j = 0; j < cols; ++j) {
      const bool keep = attention_dropout_keep(rk, col0 + static_cast<uint32_t>(j), threshold);
      sr[j] = keep ? sr[j] * scale : 0.0f;
    }
  }
}

template <class V>
void dropout_cols(int64_t rows, int64_t cols, const float* p, float* pd, float* dp, int64_t ld, const uint32_t* rowkey,
                  uint32_t col0, uint32_t threshold, float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint32_t col = col0 + static_cast<uint32_t>(r);
    for (int64_t c = 0; c < cols; ++c) {
      const bool keep = attention_dropout_keep(rowkey[c], col, threshold);
      pd[r * ld + c] = keep ? p[r * ld + c] * scale : 0.0f;
      dp[r * ld + c] = keep ? dp[r * ld + c] * scale : 0.0f;
    }
  }
}

template <class V>
constexpr AttentionKernels make_kernels() {
  return AttentionKernels{&softmax_update<V>, &scale_rows<V>, &add_rows<V>,     &exp_minus_cols<V>,
                          &ds_cols<V>,        &dot<V>,        &scores_rows<V>,  &pv_rows<V>,
                          &dropout_rows<V>,   &dropout_cols<V>};
}

}  // namespace fastml::attention_impl
