// SGEMM kernels, AVX-512 variant. Contract and packed layouts: gemm_kernels.h; driver: gemm.cpp.
//
// Microkernel 14 x 32: 28 zmm accumulators (14 rows x 2 vectors of 16 columns), per k step two zmm
// loads of B and 14 broadcasts of A (embedded-broadcast FMAs), 28 FMAs. 28 + 2 B + 1 spare = 31 of 32
// registers; 28 independent chains hide the 4-cycle FMA latency on 2 FMA ports (needs >= 8), and the
// 16 loads per 14 cycles fit the 2 load ports. The m < 14 edge runs the same loop with fewer rows
// (template instance per m), the n < 32 edge masks the B loads and the C loads/stores, and n <= 16 leaves
// out the second vector's FMAs (HALF). The copy-B variant
// (B read in place by the first row group) also stores the two B vectors of each k step into a packed
// sliver: 2 stores per 28 FMAs, which hides the latency of that first read behind the FMAs.
// Packing: 16x16 in-register transposes for the transposing packs (op(A) no-trans, op(B) trans).
// Test: FASTML_ISA=avx512 pytest tests/test_gemm.py. Bench: python benchmarks/bench_gemm.py
#include <immintrin.h>

#include <array>
#include <utility>

// GCC 12 flags _mm512_reduce_add_ps (its _mm256_undefined_pd) as uninitialised use: a header false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "core/simd/vec_avx512.h"
#include "gemm/gemm_impl.h"

namespace fastml::cpu::avx512 {
namespace {

constexpr int MR = 14;
constexpr int NR = 32;
constexpr int64_t kPrefetchK = 8;  // B rows prefetched this many k steps (~110 cycles) ahead

// The C tile's epilogue: row i's two vectors c0[i], c1[i] to c + i ldc and c + i ldc + off1 (16 for one
// NR-wide tile, nh for micro_dual's halves), C = alpha acc + beta C + bias; MASKED stores through m0 / m1,
// HALF leaves the second vector out.
template <int ROWS, bool MASKED, bool HALF>
inline void store_tile(const __m512* c0, const __m512* c1, float* c, int64_t ldc, int64_t off1, __mmask16 m0,
                       __mmask16 m1, const GemmTile& t) {
  const __m512 va = _mm512_set1_ps(t.alpha);
  const __m512 vb = _mm512_set1_ps(t.beta);
  __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
  if (t.bias_kind == GemmBias::col) {
    bias0 = _mm512_maskz_loadu_ps(m0, t.bias);
    bias1 = _mm512_maskz_loadu_ps(m1, t.bias + off1);
  }
#pragma GCC unroll 14
  for (int i = 0; i < ROWS; ++i) {
    float* ci = c + i * ldc;
    __m512 r0 = _mm512_mul_ps(c0[i], va);
    __m512 r1 = _mm512_mul_ps(c1[i], va);
    if (t.beta != 0.0f) {
      r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
      if (!HALF) r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + off1), r1);
    }
    if (t.bias_kind == GemmBias::row) {
      const __m512 bi = _mm512_set1_ps(t.bias[i]);
      r0 = _mm512_add_ps(r0, bi);
      r1 = _mm512_add_ps(r1, bi);
    } else if (t.bias_kind == GemmBias::col) {
      r0 = _mm512_add_ps(r0, bias0);
      r1 = _mm512_add_ps(r1, bias1);
    }
    if (MASKED) {
      _mm512_mask_storeu_ps(ci, m0, r0);
      if (!HALF) _mm512_mask_storeu_ps(ci + off1, m1, r1);
    } else {
      _mm512_storeu_ps(ci, r0);
      _mm512_storeu_ps(ci + off1, r1);
    }
  }
}

// DIRECT_A: A read in place (row i at a + i*lda), else a packed sliver (a[p*MR + i]).
// COPY_B: b is read in place and every B row loaded is also stored, zero-padded to NR, at bcopy[p*NR].
// PREFETCH: b rows kPrefetchK steps ahead are prefetched, for B read in place (rows ldb apart: no hardware
// prefetcher follows that stride across pages); a packed sliver (ldb = NR) is one sequential stream the
// hardware prefetchers already follow, and the 2 prefetches per k step cost ~2% there (measured with the
// B panel in L2: 91% vs 89% of the FMA peak).
// HALF (n <= 16, with MASKED): the second column vector is all padding, so its FMAs and stores are left
// out: half the FMAs of a full edge sliver (e.g. N = 80 = 32 + 32 + 16, or a 112-pixel conv tile).
// OFFSETS (micro_offsets, with PREFETCH): nb blocks of k steps, block j reading B in place from b + boff[j]
// and the packed A sliver running on; the C tile stays in registers across the blocks.
template <int ROWS, bool MASKED, bool DIRECT_A, bool COPY_B, bool PREFETCH, bool HALF = false, bool OFFSETS = false>
inline void micro_rows(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* bcopy, float* c,
                       int64_t ldc, int n, const GemmTile& t, const int64_t* boff = nullptr, int64_t nb = 1) {
  static_assert(!HALF || MASKED, "HALF is an edge case of MASKED");
  __m512 c0[ROWS], c1[ROWS];
#pragma GCC unroll 14
  for (int i = 0; i < ROWS; ++i) {
    c0[i] = _mm512_setzero_ps();
    c1[i] = _mm512_setzero_ps();
  }
#pragma GCC unroll 14
  for (int i = 0; i < ROWS; ++i) {  // the C tile is needed only after the k loop: fetch it meanwhile
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
  }
  const __mmask16 m0 = MASKED ? static_cast<__mmask16>(n >= 16 ? 0xffff : (1u << n) - 1u) : 0xffff;
  const __mmask16 m1 = MASKED ? static_cast<__mmask16>(n <= 16 ? 0 : (1u << (n - 16)) - 1u) : 0xffff;
  const int64_t pfd = kPrefetchK * ldb;
  // A packed sliver's row step is the constant NR: the unrolled body then addresses its rows by
  // displacement instead of adding ldb per k step (scalar ALU uops that compete with the FMAs' ports).
  const int64_t bstep = PREFETCH ? ldb : NR;
  static_assert(!OFFSETS || (PREFETCH && !DIRECT_A && !COPY_B), "offset blocks read B in place, A packed");
  auto k_steps = [&](const float* bp) __attribute__((always_inline)) {
#pragma GCC unroll 4
    for (int64_t p = 0; p < k; ++p) {
      __m512 b0, b1;
      if (PREFETCH) {
        _mm_prefetch(reinterpret_cast<const char*>(bp + pfd), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(bp + pfd + 16), _MM_HINT_T0);
      }
      if (HALF) {
        b0 = _mm512_maskz_loadu_ps(m0, bp);
        b1 = _mm512_setzero_ps();
      } else if (MASKED) {
        b0 = _mm512_maskz_loadu_ps(m0, bp);
        b1 = _mm512_maskz_loadu_ps(m1, bp + 16);
      } else {
        b0 = _mm512_loadu_ps(bp);
        b1 = _mm512_loadu_ps(bp + 16);
      }
      if (COPY_B) {
        _mm512_store_ps(bcopy, b0);
        _mm512_store_ps(bcopy + 16, b1);
        bcopy += NR;
      }
#pragma GCC unroll 14
      for (int i = 0; i < ROWS; ++i) {
        const __m512 ai = _mm512_set1_ps(DIRECT_A ? a[i * lda] : a[i]);
        c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
        if (!HALF) c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
      }
      a += DIRECT_A ? 1 : MR;
      bp += bstep;
    }
  };
  if (OFFSETS) {
    for (int64_t j = 0; j < nb; ++j) k_steps(b + boff[j]);
  } else {
    k_steps(b);
  }
  store_tile<ROWS, MASKED, HALF>(c0, c1, c, ldc, 16, m0, m1, t);
}

template <int ROWS, bool DIRECT_A, bool COPY_B, bool PREFETCH>
inline void micro_edge(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* bcopy, float* c,
                       int64_t ldc, int n, const GemmTile& t) {
  if (n == NR) micro_rows<ROWS, false, DIRECT_A, COPY_B, PREFETCH>(k, a, lda, b, ldb, bcopy, c, ldc, n, t);
  else if (n <= 16) micro_rows<ROWS, true, DIRECT_A, COPY_B, PREFETCH, true>(k, a, lda, b, ldb, bcopy, c, ldc, n, t);
  else micro_rows<ROWS, true, DIRECT_A, COPY_B, PREFETCH>(k, a, lda, b, ldb, bcopy, c, ldc, n, t);
}

template <int ROWS, bool DIRECT_A, bool COPY_B>
inline void micro_n(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* bcopy, float* c,
                    int64_t ldc, int n, const GemmTile& t) {
  if (ldb == NR) micro_edge<ROWS, DIRECT_A, COPY_B, false>(k, a, lda, b, ldb, bcopy, c, ldc, n, t);  // packed sliver
  else micro_edge<ROWS, DIRECT_A, COPY_B, true>(k, a, lda, b, ldb, bcopy, c, ldc, n, t);
}

using MicroRowsFn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, float*, int64_t, int,
                            const GemmTile&);

// micro_n<m> for m = 1 .. MR, indexed by m - 1
template <bool DIRECT_A, bool COPY_B, size_t... R>
constexpr std::array<MicroRowsFn, sizeof...(R)> micro_table(std::index_sequence<R...>) {
  return {&micro_n<static_cast<int>(R) + 1, DIRECT_A, COPY_B>...};
}

template <bool DIRECT_A, bool COPY_B = false>
void micro_any(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* bcopy, float* c,
               int64_t ldc, int m, int n, const GemmTile& t) {
  static constexpr auto kTable = micro_table<DIRECT_A, COPY_B>(std::make_index_sequence<MR>{});
  kTable[(m < 1 ? 1 : m) - 1](k, a, lda, b, ldb, bcopy, c, ldc, n, t);
}

template <int ROWS>
void micro_offsets_n(int64_t kb, int64_t nb, const int64_t* boff, const float* a, const float* b, int64_t ldb,
                     float* c, int64_t ldc, int n, const GemmTile& t) {
  if (n == NR)
    micro_rows<ROWS, false, false, false, true, false, true>(kb, a, MR, b, ldb, nullptr, c, ldc, n, t, boff, nb);
  else if (n <= 16)
    micro_rows<ROWS, true, false, false, true, true, true>(kb, a, MR, b, ldb, nullptr, c, ldc, n, t, boff, nb);
  else micro_rows<ROWS, true, false, false, true, false, true>(kb, a, MR, b, ldb, nullptr, c, ldc, n, t, boff, nb);
}

using MicroOffsetsRowsFn = void (*)(int64_t, int64_t, const int64_t*, const float*, const float*, int64_t, float*,
                                    int64_t, int, const GemmTile&);

template <size_t... R>
constexpr std::array<MicroOffsetsRowsFn, sizeof...(R)> micro_offsets_table(std::index_sequence<R...>) {
  return {&micro_offsets_n<static_cast<int>(R) + 1>...};
}

void micro_offsets(int64_t kb, int64_t nb, const int64_t* boff, const float* a, const float* b, int64_t ldb,
                   float* c, int64_t ldc, int m, int n, const GemmTile& t) {
  static constexpr auto kTable = micro_offsets_table(std::make_index_sequence<MR>{});
  kTable[(m < 1 ? 1 : m) - 1](kb, nb, boff, a, b, ldb, c, ldc, n, t);
}

void micro(int64_t k, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int m, int n,
           const GemmTile& t) {
  micro_any<false>(k, a, MR, b, ldb, nullptr, c, ldc, m, n, t);
}

void micro_copy_b(int64_t k, const float* a, const float* b, int64_t ldb, float* bcopy, float* c, int64_t ldc, int m,
                  int n, const GemmTile& t) {
  micro_any<false, true>(k, a, MR, b, ldb, bcopy, c, ldc, m, n, t);
}

// A read in place with rows a multiple of 4 KiB apart: all MR rows map to one L1 set, and 14 of them
// exceed its associativity (8 ways on Zen 4 and on recent Xeons), so each row's line is evicted before its
// next 15 k steps come to it and every broadcast is served from L2. Such tiles run as two calls of at most
// kAliasRows rows each (the same FMAs per element, in the same order: the same bits). Zen 4, paired,
// 2 threads: 4096 x 64 x 4096 1.30x, 4096 x 32 x 4096 1.30x, 2048 x 64 x 1024 1.33x, 1024 x 48 x 4096
// 1.45x, 4096 x 128 x 4096 1.31x (7 rows; 5 rows the same to 2%); AVX2's 6-row tile never exceeds 8 ways.
constexpr int kAliasRows = 7;

void micro_direct_a(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                    int m, int n, const GemmTile& t) {
  if (m > kAliasRows && (lda * int64_t(sizeof(float))) % 4096 == 0) {
    micro_any<true>(k, a, lda, b, ldb, nullptr, c, ldc, kAliasRows, n, t);
    GemmTile rest = t;
    if (t.bias_kind == GemmBias::row) rest.bias = t.bias + kAliasRows;
    micro_any<true>(k, a + kAliasRows * lda, lda, b, ldb, nullptr, c + kAliasRows * ldc, ldc, m - kAliasRows, n,
                    rest);
    return;
  }
  micro_any<true>(k, a, lda, b, ldb, nullptr, c, ldc, m, n, t);
}

// micro_dual (gemm_kernels.h): the C tile's two 16-column halves summed from their own A rows and B rows,
// one broadcast per row and half per k step (the A rows of both halves in place, lda apart).
template <int ROWS>
void micro_dual_rows(int64_t k, const float* a0, const float* a1, int64_t lda, const float* b0, const float* b1,
                     int64_t ldb, float* c, int64_t ldc, int nh, const GemmTile& t) {
  __m512 c0[ROWS], c1[ROWS];
#pragma GCC unroll 14
  for (int i = 0; i < ROWS; ++i) {
    c0[i] = _mm512_setzero_ps();
    c1[i] = _mm512_setzero_ps();
  }
  const __mmask16 m = static_cast<__mmask16>(nh >= 16 ? 0xffff : (1u << nh) - 1u);
#pragma GCC unroll 4
  for (int64_t p = 0; p < k; ++p) {
    const __m512 v0 = _mm512_maskz_loadu_ps(m, b0 + p * ldb), v1 = _mm512_maskz_loadu_ps(m, b1 + p * ldb);
#pragma GCC unroll 14
    for (int i = 0; i < ROWS; ++i) {
      c0[i] = _mm512_fmadd_ps(_mm512_set1_ps(a0[i * lda + p]), v0, c0[i]);
      c1[i] = _mm512_fmadd_ps(_mm512_set1_ps(a1[i * lda + p]), v1, c1[i]);
    }
  }
  store_tile<ROWS, true, false>(c0, c1, c, ldc, nh, m, m, t);
}

using MicroDualFn = void (*)(int64_t, const float*, const float*, int64_t, const float*, const float*, int64_t,
                             float*, int64_t, int, const GemmTile&);

template <size_t... R>
constexpr std::array<MicroDualFn, sizeof...(R)> micro_dual_table(std::index_sequence<R...>) {
  return {&micro_dual_rows<static_cast<int>(R) + 1>...};
}

void micro_dual(int64_t k, const float* a0, const float* a1, int64_t lda, const float* b0, const float* b1,
                int64_t ldb, float* c, int64_t ldc, int m, int nh, const GemmTile& t) {
  static constexpr auto kTable = micro_dual_table(std::make_index_sequence<MR>{});
  kTable[(m < 1 ? 1 : m) - 1](k, a0, a1, lda, b0, b1, ldb, c, ldc, nh, t);
}

// In-register 16x16 transpose: r[i] lane j -> r[j] lane i (unpack ps, unpack pd, two 128-bit shuffles).
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  __m512 u[4][4];  // u[g][c]: rows 4g..4g+3 of columns c, c+4, c+8, c+12 (one per 128-bit lane)
  for (int g = 0; g < 4; ++g) {
    const __m512d x0 = _mm512_castps_pd(t[4 * g]), x1 = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d y0 = _mm512_castps_pd(t[4 * g + 2]), y1 = _mm512_castps_pd(t[4 * g + 3]);
    u[g][0] = _mm512_castpd_ps(_mm512_unpacklo_pd(x0, y0));
    u[g][1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x0, y0));
    u[g][2] = _mm512_castpd_ps(_mm512_unpacklo_pd(x1, y1));
    u[g][3] = _mm512_castpd_ps(_mm512_unpackhi_pd(x1, y1));
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 v = _mm512_shuffle_f32x4(u[0][c], u[1][c], 0x44);
    const __m512 w = _mm512_shuffle_f32x4(u[2][c], u[3][c], 0x44);
    const __m512 v2 = _mm512_shuffle_f32x4(u[0][c], u[1][c], 0xee);
    const __m512 w2 = _mm512_shuffle_f32x4(u[2][c], u[3][c], 0xee);
    r[c] = _mm512_shuffle_f32x4(v, w, 0x88);
    r[c + 4] = _mm512_shuffle_f32x4(v, w, 0xdd);
    r[c + 8] = _mm512_shuffle_f32x4(v2, w2, 0x88);
    r[c + 12] = _mm512_shuffle_f32x4(v2, w2, 0xdd);
  }
}

// dst[p*R + r] = src[r*ld + p] for one group of up to 16 rows (rows < 16 valid) written at column
// offset `off` of an R-wide sliver; 16 p per step through transpose16.
template <int R>
inline void transpose_group(int rows, int64_t k, const float* src, int64_t ld, float* dst, int off) {
  const __mmask16 wmask = static_cast<__mmask16>(R - off >= 16 ? 0xffff : (1u << (R - off)) - 1u);
  int64_t p = 0;
  __m512 r[16];
  for (; p < k; p += 16) {
    const int pb = static_cast<int>(k - p < 16 ? k - p : 16);
    const __mmask16 lm = static_cast<__mmask16>(pb == 16 ? 0xffff : (1u << pb) - 1u);
    for (int i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_maskz_loadu_ps(lm, src + i * ld + p) : _mm512_setzero_ps();
    transpose16(r);
    for (int q = 0; q < pb; ++q) _mm512_mask_storeu_ps(dst + (p + q) * R + off, wmask, r[q]);
  }
}

// dst[c*ldd + r] = src[r*lds + c] in 16 x 16 blocks through transpose16, edges masked.
void transpose(int64_t rows, int64_t cols, const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m512 t[16];
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int rn = static_cast<int>(rows - r0 < 16 ? rows - r0 : 16);
    const __mmask16 wm = static_cast<__mmask16>(rn == 16 ? 0xffff : (1u << rn) - 1u);
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      const int cn = static_cast<int>(cols - c0 < 16 ? cols - c0 : 16);
      const __mmask16 lm = static_cast<__mmask16>(cn == 16 ? 0xffff : (1u << cn) - 1u);
      for (int i = 0; i < 16; ++i)
        t[i] = i < rn ? _mm512_maskz_loadu_ps(lm, src + (r0 + i) * lds + c0) : _mm512_setzero_ps();
      transpose16(t);
      for (int q = 0; q < cn; ++q) _mm512_mask_storeu_ps(dst + (c0 + q) * ldd + r0, wm, t[q]);
    }
  }
}

template <int R>
void pack_transpose(int64_t rows_total, int64_t k, const float* src, int64_t ld, float* dst) {
  gemm_impl::pack_transpose_groups<R, 16>(rows_total, k, src, ld, dst,
                                           [](int g, int64_t kk, const float* s, int64_t l, float* d, int off) {
                                             transpose_group<R>(g, kk, s, l, d, off);
                                           });
}

// dst[p*R + r] = src[p*ld + r] with masked vector copies (R = 14 or 32). Row p of the source is read
// for all slivers at once (one contiguous run per row: the rows are ld apart, usually a page or more, so
// short per-sliver runs would each start a new memory access), and the rows kPackAhead steps ahead are
// prefetched (runs up to kPackPrefetchMax floats: the engine's packing items) since no hardware
// prefetcher follows a stride of a page.
constexpr int64_t kPackAhead = 8;
constexpr int64_t kPackPrefetchMax = 512;

template <int R>
void pack_copy(int64_t rows_total, int64_t k, const float* src, int64_t ld, float* dst) {
  const int64_t nsl = (rows_total + R - 1) / R;
  const bool pf_rows = rows_total <= kPackPrefetchMax;
  for (int64_t p = 0; p < k; ++p) {
    const float* s = src + p * ld;
    if (pf_rows && p + kPackAhead < k) {
      const char* pf = reinterpret_cast<const char*>(s + kPackAhead * ld);
      for (int64_t o = 0; o < rows_total * int64_t(sizeof(float)); o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
    }
    for (int64_t sl = 0; sl < nsl; ++sl) {
      const int64_t r0 = sl * R;
      const int rows = static_cast<int>(rows_total - r0 < R ? rows_total - r0 : R);
      float* d = dst + sl * R * k + p * R;
      for (int off = 0; off < R; off += 16) {
        const int w = R - off < 16 ? R - off : 16;
        const int g = rows - off < 0 ? 0 : (rows - off < w ? rows - off : w);
        const __mmask16 lm = static_cast<__mmask16>((1u << g) - 1u);
        const __mmask16 wm = static_cast<__mmask16>((1u << w) - 1u);
        _mm512_mask_storeu_ps(d + off, wm, _mm512_maskz_loadu_ps(lm, s + r0 + off));
      }
    }
  }
}

void act(GemmAct a, int64_t n, float* x) { gemm_impl::act_with(activation_kernels_avx512, a, n, x); }

}  // namespace

extern const GemmKernels gemm_kernels_avx512;
constexpr GemmKernels gemm_kernels_avx512 = {
    MR, NR, &micro, &micro_direct_a, &micro_copy_b, &gemm_impl::gemv_rows<VecF>, &pack_copy<MR>, &pack_transpose<MR>, &pack_copy<NR>, &pack_transpose<NR>,
    &gemm_impl::dot<VecF>, &act, &transpose, &gemm_impl::shift_rows<VecF>,
    &micro_offsets, &micro_dual};

}  // namespace fastml::cpu::avx512
