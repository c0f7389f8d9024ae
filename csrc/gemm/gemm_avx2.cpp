// SGEMM kernels, AVX2 + FMA variant. Contract and packed layouts: gemm_kernels.h; driver: gemm.cpp.
//
// Microkernel 6 x 16: 12 ymm accumulators (6 rows x 2 vectors of 8 columns), per k step two ymm loads
// of B, 6 broadcasts of A, 12 FMAs; 12 + 2 + 1 = 15 of 16 registers (the classic Haswell shape: 12
// independent chains cover the 5-cycle FMA latency on 2 ports, needing >= 10). The m < 6 edge runs a
// template instance with fewer rows; the n < 16 edge masks the B loads and C loads/stores (vmaskmov).
// The C tile is prefetched before the k loop; B read in place is prefetched a few rows ahead. In-process
// A/B against the plain loop (persistent workers called in turn, 2 threads, Zen 3): 1024^3 +6%,
// 2048^3 +5%, 32 x 2048 x 768 +4%, 4096 x 64 x 4096 and attention +-1%.
// A slivers (and B slivers of a transposed B) are packed through 8 x 8 register transposes; the other
// packing and the dot kernel are the generic ones of gemm_impl.h compiled for AVX2.
// Test: FASTML_ISA=avx2 pytest tests/test_gemm.py. Bench: FASTML_ISA=avx2 python benchmarks/bench_gemm.py
#include <immintrin.h>

#include "core/simd/vec_avx2.h"
#include "gemm/gemm_impl.h"

namespace fastml::cpu::avx2 {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;

inline __m256i lane_mask(int n) {  // lanes < n set (n may be <= 0 or >= 8)
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

constexpr int64_t kPrefetchK = 8;  // B rows read in place are prefetched this many k steps ahead

// DIRECT: A read in place (row i at a + i * lda, its k-th element at + p) instead of the packed sliver
// (a[p * MR + i]); the same FMAs in the same order.
// PACKED: b is a packed sliver (ldb == NR): its row step is a constant, so the unrolled body addresses
// rows by displacement. Otherwise B is read in place, rows ldb apart, and is prefetched kPrefetchK rows
// ahead (no hardware prefetcher follows a stride of a page).
// OFFSETS (micro_offsets): nb blocks of k steps, block j reading B in place from b + boff[j].
// HALF (n <= 8): only the first vector of columns is loaded, multiplied and stored (half the FMAs of a
// masked whole-width tile for an edge of 1-8 columns; each element's chain is the same).
template <int ROWS, bool MASKED, bool DIRECT = false, bool PACKED = true, bool OFFSETS = false, bool HALF = false>
inline void micro_rows(int64_t k, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int n,
                       const GemmTile& t, int64_t lda = MR, const int64_t* boff = nullptr, int64_t nb = 1) {
  static_assert(!HALF || MASKED, "a half tile is an edge tile");
  __m256 c0[ROWS], c1[ROWS];
#pragma GCC unroll 6
  for (int i = 0; i < ROWS; ++i) {
    c0[i] = _mm256_setzero_ps();
    c1[i] = _mm256_setzero_ps();
  }
#pragma GCC unroll 6
  for (int i = 0; i < ROWS; ++i) {  // the C tile is needed only after the k loop: fetch it meanwhile
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
  const __m256i m0 = lane_mask(n), m1 = lane_mask(n - 8);
  const int64_t bstep = PACKED ? NR : ldb;
  auto step = [&](const float* bp, const float* ap) __attribute__((always_inline)) {
    __m256 b0, b1;
    if (!PACKED) {
      _mm_prefetch(reinterpret_cast<const char*>(bp + kPrefetchK * ldb), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(bp + kPrefetchK * ldb + NR - 1), _MM_HINT_T0);
    }
    if (MASKED) {
      b0 = _mm256_maskload_ps(bp, m0);
      b1 = HALF ? b0 : _mm256_maskload_ps(bp + 8, m1);
    } else {
      b0 = _mm256_loadu_ps(bp);
      b1 = _mm256_loadu_ps(bp + 8);
    }
#pragma GCC unroll 6
    for (int i = 0; i < ROWS; ++i) {
      const __m256 ai = _mm256_broadcast_ss(DIRECT ? ap + i * lda : ap + i);
      c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
      if (!HALF) c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
    }
  };
  if (OFFSETS) {
    for (int64_t j = 0; j < nb; ++j) {
      const float* bp = b + boff[j];
#pragma GCC unroll 4
      for (int64_t p = 0; p < k; ++p, a += MR, bp += ldb) step(bp, a);
    }
  } else if (DIRECT) {  // six A streams: the rolled loop (unrolled it was no faster at 4096 x 64 x 4096)
    for (int64_t p = 0; p < k; ++p, ++a, b += bstep) step(b, a);
  } else {
#pragma GCC unroll 4
    for (int64_t p = 0; p < k; ++p, a += MR, b += bstep) step(b, a);
  }
  const __m256 va = _mm256_set1_ps(t.alpha);
  const __m256 vb = _mm256_set1_ps(t.beta);
  __m256 bias0 = _mm256_setzero_ps(), bias1 = _mm256_setzero_ps();
  if (t.bias_kind == GemmBias::col) {
    bias0 = _mm256_maskload_ps(t.bias, m0);
    bias1 = _mm256_maskload_ps(t.bias + 8, m1);
  }
#pragma GCC unroll 6
  for (int i = 0; i < ROWS; ++i) {
    float* ci = c + i * ldc;
    __m256 r0 = _mm256_mul_ps(c0[i], va);
    __m256 r1 = _mm256_mul_ps(c1[i], va);
    if (t.beta != 0.0f) {
      const __m256 x0 = MASKED ? _mm256_maskload_ps(ci, m0) : _mm256_loadu_ps(ci);
      r0 = _mm256_fmadd_ps(vb, x0, r0);
      if (!HALF) {
        const __m256 x1 = MASKED ? _mm256_maskload_ps(ci + 8, m1) : _mm256_loadu_ps(ci + 8);
        r1 = _mm256_fmadd_ps(vb, x1, r1);
      }
    }
    if (t.bias_kind == GemmBias::row) {
      const __m256 bi = _mm256_set1_ps(t.bias[i]);
      r0 = _mm256_add_ps(r0, bi);
      r1 = _mm256_add_ps(r1, bi);
    } else if (t.bias_kind == GemmBias::col) {
      r0 = _mm256_add_ps(r0, bias0);
      r1 = _mm256_add_ps(r1, bias1);
    }
    if (MASKED) {
      _mm256_maskstore_ps(ci, m0, r0);
      if (!HALF) _mm256_maskstore_ps(ci + 8, m1, r1);
    } else {
      _mm256_storeu_ps(ci, r0);
      _mm256_storeu_ps(ci + 8, r1);
    }
  }
}

template <int ROWS, bool DIRECT>
inline void micro_n(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                    int n, const GemmTile& t) {
  if (ldb == NR) {
    if (n == NR) micro_rows<ROWS, false, DIRECT, true>(k, a, b, ldb, c, ldc, n, t, lda);
    else if (n <= 8) micro_rows<ROWS, true, DIRECT, true, false, true>(k, a, b, ldb, c, ldc, n, t, lda);
    else micro_rows<ROWS, true, DIRECT, true>(k, a, b, ldb, c, ldc, n, t, lda);
  } else {
    if (n == NR) micro_rows<ROWS, false, DIRECT, false>(k, a, b, ldb, c, ldc, n, t, lda);
    else if (n <= 8) micro_rows<ROWS, true, DIRECT, false, false, true>(k, a, b, ldb, c, ldc, n, t, lda);
    else micro_rows<ROWS, true, DIRECT, false>(k, a, b, ldb, c, ldc, n, t, lda);
  }
}

template <int ROWS>
inline void micro_offsets_n(int64_t kb, int64_t nb, const int64_t* boff, const float* a, const float* b,
                            int64_t ldb, float* c, int64_t ldc, int n, const GemmTile& t) {
  if (n == NR) micro_rows<ROWS, false, false, false, true>(kb, a, b, ldb, c, ldc, n, t, MR, boff, nb);
  else if (n <= 8) micro_rows<ROWS, true, false, false, true, true>(kb, a, b, ldb, c, ldc, n, t, MR, boff, nb);
  else micro_rows<ROWS, true, false, false, true>(kb, a, b, ldb, c, ldc, n, t, MR, boff, nb);
}

void micro_offsets(int64_t kb, int64_t nb, const int64_t* boff, const float* a, const float* b, int64_t ldb,
                   float* c, int64_t ldc, int m, int n, const GemmTile& t) {
  switch (m) {
    case 6: micro_offsets_n<6>(kb, nb, boff, a, b, ldb, c, ldc, n, t); break;
    case 5: micro_offsets_n<5>(kb, nb, boff, a, b, ldb, c, ldc, n, t); break;
    case 4: micro_offsets_n<4>(kb, nb, boff, a, b, ldb, c, ldc, n, t); break;
    case 3: micro_offsets_n<3>(kb, nb, boff, a, b, ldb, c, ldc, n, t); break;
    case 2: micro_offsets_n<2>(kb, nb, boff, a, b, ldb, c, ldc, n, t); break;
    default: micro_offsets_n<1>(kb, nb, boff, a, b, ldb, c, ldc, n, t); break;
  }
}

template <bool DIRECT>
void micro_m(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int m,
             int n, const GemmTile& t) {
  switch (m) {
    case 6: micro_n<6, DIRECT>(k, a, lda, b, ldb, c, ldc, n, t); break;
    case 5: micro_n<5, DIRECT>(k, a, lda, b, ldb, c, ldc, n, t); break;
    case 4: micro_n<4, DIRECT>(k, a, lda, b, ldb, c, ldc, n, t); break;
    case 3: micro_n<3, DIRECT>(k, a, lda, b, ldb, c, ldc, n, t); break;
    case 2: micro_n<2, DIRECT>(k, a, lda, b, ldb, c, ldc, n, t); break;
    default: micro_n<1, DIRECT>(k, a, lda, b, ldb, c, ldc, n, t); break;
  }
}

void micro(int64_t k, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int m, int n,
           const GemmTile& t) {
  micro_m<false>(k, a, MR, b, ldb, c, ldc, m, n, t);
}

// A read in place by the broadcasts (its rows are sequential streams in k). It used to be copied into a
// packed sliver on the stack for every B sliver, 256 k at a time (micro_direct_a_via_pack): a scalar
// transpose per tile that held M = 4096, N = 64, K = 4096 at 37 GFLOP/s on one Zen 3 core.
void micro_direct_a(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                    int m, int n, const GemmTile& t) {
  micro_m<true>(k, a, lda, b, ldb, c, ldc, m, n, t);
}

// r[0:8) transposed in place (r[q] lane i = old r[i] lane q): unpacks, 64-bit shuffles, 128-bit lane swaps.
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Up to 8 source rows (rows <= 8; the others read as zero) through transpose8, k in blocks of 8, written
// to columns [off, off + w) of R-wide packed rows. w < 8 (R = 6): each packed row is stored as a whole vector
// whose last 8 - w lanes spill into the next packed row, which is stored right after and overwrites
// them; the sliver's last packed row is stored masked, so nothing past it is touched.
template <int R>
inline void transpose_group(int rows, int64_t k, const float* src, int64_t ld, float* dst, int off) {
  const int w = R - off < 8 ? R - off : 8;
  const __m256i wmask = lane_mask(w);
  __m256 r[8];
  for (int64_t p = 0; p < k; p += 8) {
    const int pb = static_cast<int>(k - p < 8 ? k - p : 8);
    const __m256i lm = lane_mask(pb);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i)
      r[i] = i >= rows  ? _mm256_setzero_ps()
             : pb == 8 ? _mm256_loadu_ps(src + i * ld + p)
                       : _mm256_maskload_ps(src + i * ld + p, lm);
    transpose8(r);
    for (int q = 0; q < pb; ++q) {
      float* d = dst + (p + q) * R + off;
      if (w == 8 || p + q + 1 < k) _mm256_storeu_ps(d, r[q]);
      else _mm256_maskstore_ps(d, wmask, r[q]);
    }
  }
}

// dst[p*R + r] = src[r*ld + p] (R = 6 or 16), rows beyond `rows_total` zero: 8 x 8 vector transposes in
// place of the generic element loop (which held packing at 6% of a 256^3 product on one Zen 3 core).
template <int R>
void pack_transpose(int64_t rows_total, int64_t k, const float* src, int64_t ld, float* dst) {
  gemm_impl::pack_transpose_groups<R, 8>(rows_total, k, src, ld, dst,
                                           [](int g, int64_t kk, const float* s, int64_t l, float* d, int off) {
                                             transpose_group<R>(g, kk, s, l, d, off);
                                           });
}

void act(GemmAct a, int64_t n, float* x) { gemm_impl::act_with(activation_kernels_avx2, a, n, x); }

}  // namespace

extern const GemmKernels gemm_kernels_avx2;
constexpr GemmKernels gemm_kernels_avx2 = {
    MR, NR, &micro, &micro_direct_a,
    &gemm_impl::micro_copy_b_via_pack<NR, &gemm_impl::pack_copy<NR>, &micro>, &gemm_impl::gemv_rows<VecF>,
    &gemm_impl::pack_copy<MR>, &pack_transpose<MR>, &gemm_impl::pack_copy<NR>, &pack_transpose<NR>,
    &gemm_impl::dot<VecF>, &act, &gemm_impl::transpose, &gemm_impl::shift_rows<VecF>, &micro_offsets, nullptr};

}  // namespace fastml::cpu::avx2
