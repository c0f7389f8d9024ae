// Generic (ISA-independent) parts of the SGEMM kernel tables, written once over VecF and included by
// gemm_<isa>.cpp after that ISA's vec header: sliver packing, the small-M dot kernel, the epilogue
// activation, and the scalar-store helper. Contract: gemm_kernels.h. The microkernels themselves are
// hand-written per ISA in gemm_<isa>.cpp.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/simd/math.h"
#include "gemm/gemm_kernels.h"
#include "ops/activation/activation.h"

namespace fastml::gemm_impl {

// dst[p*R + r] = src[p*ld + r], rows beyond `rows_total` zero; consecutive R-row slivers.
template <int R>
void pack_copy(int64_t rows_total, int64_t k, const float* src, int64_t ld, float* dst) {
  for (int64_t r0 = 0; r0 < rows_total; r0 += R, dst += R * k) {
    const int rows = static_cast<int>(rows_total - r0 < R ? rows_total - r0 : R);
    const float* s = src + r0;
    if (rows == R) {
      for (int64_t p = 0; p < k; ++p) std::memcpy(dst + p * R, s + p * ld, sizeof(float) * R);
    } else {
      for (int64_t p = 0; p < k; ++p) {
        float* d = dst + p * R;
        for (int r = 0; r < rows; ++r) d[r] = s[p * ld + r];
        for (int r = rows; r < R; ++r) d[r] = 0.0f;
      }
    }
  }
}

// dst[p*R + r] = src[r*ld + p], rows beyond `rows_total` zero; consecutive R-row slivers. Blocked by
// 8 p so that each source row is read in cache-line sized runs.
template <int R>
void pack_transpose(int64_t rows_total, int64_t k, const float* src, int64_t ld, float* dst) {
  for (int64_t r0 = 0; r0 < rows_total; r0 += R, dst += R * k) {
    const int rows = static_cast<int>(rows_total - r0 < R ? rows_total - r0 : R);
    const float* s = src + r0 * ld;
    for (int64_t p0 = 0; p0 < k; p0 += 8) {
      const int pb = static_cast<int>(k - p0 < 8 ? k - p0 : 8);
      for (int r = 0; r < rows; ++r) {
        const float* sr = s + r * ld + p0;
        for (int q = 0; q < pb; ++q) dst[(p0 + q) * R + r] = sr[q];
      }
      for (int q = 0; q < pb; ++q)
        for (int r = rows; r < R; ++r) dst[(p0 + q) * R + r] = 0.0f;
    }
  }
}

// The sliver walk of a vector transposing pack (dst[p*R + r] = src[r*ld + p], consecutive R-row slivers):
// each sliver is cut into groups of W source rows (W = the ISA's transpose width), and
// group(rows, k, src, ld, dst, off) writes a group's rows (rows <= W, fewer at the edge, 0 past it: those
// columns come out zero) to columns [off, off + W) of the sliver.
template <int R, int W, class Group>
inline void pack_transpose_groups(int64_t rows_total, int64_t k, const float* src, int64_t ld, float* dst,
                                  Group group) {
  for (int64_t r0 = 0; r0 < rows_total; r0 += R, dst += R * k) {
    const int rows = static_cast<int>(rows_total - r0 < R ? rows_total - r0 : R);
    for (int off = 0; off < R; off += W) {
      const int g = rows - off < 0 ? 0 : (rows - off < W ? rows - off : W);
      group(g, k, src + (r0 + off) * ld, ld, dst, off);
    }
  }
}

// dst[c*ldd + r] = src[r*lds + c] in 8 x 8 blocks (each source row read in runs of 8).
inline void transpose(int64_t rows, int64_t cols, const float* src, int64_t lds, float* dst, int64_t ldd) {
  for (int64_t r0 = 0; r0 < rows; r0 += 8)
    for (int64_t c0 = 0; c0 < cols; c0 += 8) {
      const int64_t r1 = r0 + 8 < rows ? r0 + 8 : rows, c1 = c0 + 8 < cols ? c0 + 8 : cols;
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) dst[c * ldd + r] = src[r * lds + c];
    }
}

// GemmShiftRowsFn: per offset e, zeros up to the first column inside the row, the row's columns, zeros after
// its end. No masked vector ops (AVX2's masked stores are slow on Zen 3: a first version with them measured
// 0.8x the libc memcpy per run on 14-wide rows): a part of at least one vector ends with a whole vector that
// overlaps the previous one, a shorter part is copied by scalars.
template <class V>
inline void fill_or_copy(float* d, const float* s, int64_t m) {  // d[0, m) = s ? s[0, m) : 0
  constexpr int N = V::N;
  if (m < N) {
    for (int64_t j = 0; j < m; ++j) d[j] = s ? s[j] : 0.0f;
    return;
  }
  int64_t j = 0;
  if (s) {
    for (; j + N <= m; j += N) V::load(s + j).store(d + j);
    if (j < m) V::load(s + m - N).store(d + m - N);
  } else {
    for (; j + N <= m; j += N) V::zero().store(d + j);
    if (j < m) V::zero().store(d + m - N);
  }
}

template <class V>
void shift_rows(int64_t ke, int64_t n, const float* row, int64_t x0, int64_t w, float* dst, int64_t ldd) {
  for (int64_t e = 0; e < ke; ++e) {
    float* d = dst + e * ldd;
    const int64_t xs = x0 + e;
    const int64_t lo = xs >= 0 ? 0 : (-xs < n ? -xs : n);
    const int64_t hi = w - xs < lo ? lo : (w - xs < n ? w - xs : n);
    fill_or_copy<V>(d, nullptr, lo);
    fill_or_copy<V>(d + lo, row + (xs + lo), hi - lo);  // row[xs + lo, xs + hi)
    fill_or_copy<V>(d + hi, nullptr, n - hi);
  }
}

// The scalar store shared by the dot kernel (mirrors the microkernels' vector store).
inline void store_one(float* c, float acc, const GemmTile& t, int i, int j) {
  float v = acc * t.alpha;
  if (t.beta != 0.0f) v = t.beta * *c + v;
  if (t.bias_kind == GemmBias::row) v += t.bias[i];
  else if (t.bias_kind == GemmBias::col) v += t.bias[j];
  *c = v;
}

// U independent accumulator sets along K when the tile is small (registers to spare): more lanes share
// the sum, which both hides the FMA latency and shortens each sequential run (accuracy of a BLAS dot).
template <class V, int RM, int RN>
inline void dot_tile(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                     const GemmTile& t, int j0) {
  constexpr int N = V::N;
  constexpr int U = RM * RN <= 2 ? 4 : (RM * RN <= 4 ? 2 : 1);
  V acc[U][RM][RN];
  for (int u = 0; u < U; ++u)
    for (int i = 0; i < RM; ++i)
      for (int j = 0; j < RN; ++j) acc[u][i][j] = V::zero();
  int64_t p = 0;
  for (; p + U * N <= k; p += U * N) {
    for (int u = 0; u < U; ++u) {
      V av[RM];
      for (int i = 0; i < RM; ++i) av[i] = V::load(a + i * lda + p + u * N);
      for (int j = 0; j < RN; ++j) {
        const V bv = V::load(b + j * ldb + p + u * N);
        for (int i = 0; i < RM; ++i) acc[u][i][j] = fmadd(av[i], bv, acc[u][i][j]);
      }
    }
  }
  for (int u = 0; p < k; p += N, u = (u + 1) % U) {
    const int r = static_cast<int>(k - p < N ? k - p : N);
    V av[RM];
    for (int i = 0; i < RM; ++i) av[i] = V::load_tail(a + i * lda + p, r);
    for (int j = 0; j < RN; ++j) {
      const V bv = V::load_tail(b + j * ldb + p, r);
      for (int i = 0; i < RM; ++i) acc[u][i][j] = fmadd(av[i], bv, acc[u][i][j]);
    }
  }
  for (int i = 0; i < RM; ++i)
    for (int j = 0; j < RN; ++j) {
      V s = acc[0][i][j];
      if constexpr (U == 2) s = s + acc[1][i][j];
      if constexpr (U == 4) s = (s + acc[2][i][j]) + (acc[1][i][j] + acc[3][i][j]);
      store_one(c + i * ldc + j, s.hsum(), t, i, j0 + j);
    }
}

// Columns are processed in groups of 4 (of 8 when m == 1, where fewer rows leave registers free);
// every element's value depends only on its own (row, column) dot product, never on the grouping.
template <class V>
void dot(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int m, int n,
         const GemmTile& t) {
  int j = 0;
  if (m == 1) {
    for (; j + 8 <= n; j += 8) dot_tile<V, 1, 8>(k, a, lda, b + j * ldb, ldb, c + j, ldc, t, j);
  }
  for (; j < n; ++j) {
    const float* bj = b + j * ldb;
    float* cj = c + j;
    if (j + 4 <= n) {
      switch (m) {
        case 4: dot_tile<V, 4, 4>(k, a, lda, bj, ldb, cj, ldc, t, j); break;
        case 3: dot_tile<V, 3, 4>(k, a, lda, bj, ldb, cj, ldc, t, j); break;
        case 2: dot_tile<V, 2, 4>(k, a, lda, bj, ldb, cj, ldc, t, j); break;
        default: dot_tile<V, 1, 4>(k, a, lda, bj, ldb, cj, ldc, t, j); break;
      }
      j += 3;
      continue;
    }
    switch (m) {
      case 4: dot_tile<V, 4, 1>(k, a, lda, bj, ldb, cj, ldc, t, j); break;
      case 3: dot_tile<V, 3, 1>(k, a, lda, bj, ldb, cj, ldc, t, j); break;
      case 2: dot_tile<V, 2, 1>(k, a, lda, bj, ldb, cj, ldc, t, j); break;
      default: dot_tile<V, 1, 1>(k, a, lda, bj, ldb, cj, ldc, t, j); break;
    }
  }
}

// GEMV with op(B) = B read row by row (M = 1): t[j] += sum_{p<k} a[p] * b[p*ldb + j]. Four rows per
// sweep over t keep every read of B a long contiguous run; their four products are summed as a small
// tree before joining the running sum, which shortens the sequential chain (accuracy) 4x.
template <class V>
void gemv_rows(int64_t k, const float* a, const float* b, int64_t ldb, int64_t n, float* t) {
  constexpr int N = V::N;
  int64_t p = 0;
  for (; p + 4 <= k; p += 4) {
    const V a0 = V::set1(a[p]), a1 = V::set1(a[p + 1]), a2 = V::set1(a[p + 2]), a3 = V::set1(a[p + 3]);
    const float* b0 = b + p * ldb;
    const float* b1 = b0 + ldb;
    const float* b2 = b1 + ldb;
    const float* b3 = b2 + ldb;
    int64_t j = 0;
    for (; j + N <= n; j += N) {
      const V u = fmadd(a1, V::load(b1 + j), a0 * V::load(b0 + j));
      const V v = fmadd(a3, V::load(b3 + j), a2 * V::load(b2 + j));
      (V::load(t + j) + (u + v)).store(t + j);
    }
    if (j < n) {
      const int r = static_cast<int>(n - j);
      const V u = fmadd(a1, V::load_tail(b1 + j, r), a0 * V::load_tail(b0 + j, r));
      const V v = fmadd(a3, V::load_tail(b3 + j, r), a2 * V::load_tail(b2 + j, r));
      (V::load_tail(t + j, r) + (u + v)).store_tail(t + j, r);
    }
  }
  for (; p < k; ++p) {
    const V ap = V::set1(a[p]);
    const float* bp = b + p * ldb;
    int64_t j = 0;
    for (; j + N <= n; j += N) fmadd(ap, V::load(bp + j), V::load(t + j)).store(t + j);
    if (j < n) {
      const int r = static_cast<int>(n - j);
      fmadd(ap, V::load_tail(bp + j, r), V::load_tail(t + j, r)).store_tail(t + j, r);
    }
  }
}

// Microkernel over A read in place (op(A) = A, rows lda apart), for products whose A is used by too few
// B slivers to repay packing: the A sliver is gathered on the stack (k <= KC) and the packed kernel runs.
template <int MR, int KCMAX>
void micro_direct_a_via_pack(GemmMicroFn micro, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                             float* c, int64_t ldc, int m, int n, const GemmTile& t) {
  alignas(64) float buf[MR * KCMAX];
  for (int64_t p0 = 0; p0 < k; p0 += KCMAX) {
    const int64_t kb = k - p0 < KCMAX ? k - p0 : KCMAX;
    for (int64_t p = 0; p < kb; ++p)
      for (int i = 0; i < MR; ++i) buf[p * MR + i] = i < m ? a[i * lda + p0 + p] : 0.0f;
    GemmTile tt = t;
    if (p0 > 0) tt.beta = 1.0f;
    if (p0 + kb < k) tt.bias_kind = GemmBias::none;
    micro(kb, buf, b + p0 * ldb, ldb, c, ldc, m, n, tt);
  }
}

// Offsets microkernel for ISAs without a fused one: one microkernel call per block, each after the first
// adding to C (each element's sum is then a chain of block sums).
template <int MR, GemmMicroFn MICRO>
void micro_offsets_via_micro(int64_t kb, int64_t nb, const int64_t* boff, const float* a, const float* b,
                             int64_t ldb, float* c, int64_t ldc, int m, int n, const GemmTile& t) {
  GemmTile tt = t;
  for (int64_t j = 0; j < nb; ++j) {
    MICRO(kb, a + j * kb * MR, b + boff[j], ldb, c, ldc, m, n, tt);
    tt.beta = 1.0f;
    tt.bias_kind = GemmBias::none;
  }
}

// Copy-while-computing microkernel for ISAs without a fused one: the sliver is copied, then computed on.
template <int NR, GemmPackFn PACK, GemmMicroFn MICRO>
void micro_copy_b_via_pack(int64_t k, const float* a, const float* b, int64_t ldb, float* bcopy, float* c,
                           int64_t ldc, int m, int n, const GemmTile& t) {
  PACK(n, k, b, ldb, bcopy);
  MICRO(k, a, bcopy, NR, c, ldc, m, n, t);
}

// The activation epilogue reuses the activation op's kernels of the same ISA (same maths, same accuracy).
inline void act_with(const ActivationKernels& kt, GemmAct act, int64_t n, float* x) {
  static constexpr ActKind kMap[] = {ActKind::relu, ActKind::relu, ActKind::gelu, ActKind::gelu_tanh,
                                     ActKind::sigmoid, ActKind::tanh};
  if (act == GemmAct::none) return;
  kt.forward[static_cast<int>(kMap[static_cast<int>(act)])](n, x, x, 0.0f);
}

}  // namespace fastml::gemm_impl
