// Kernel-table contract of the SGEMM engine: one signature per kernel family, one table per ISA
// (gemm_kernels_{scalar,avx2,avx512} in gemm_<isa>.cpp), chosen by gemm.cpp through select_kernels.
//
// Packed layouts (BLIS): an A sliver holds MR rows of op(A) for kc steps, element (i, p) at a[p*MR + i];
// a B sliver holds NR columns of op(B) for kc steps, element (p, j) at b[p*NR + j]. Rows/columns past
// the matrix edge are zero in the packed buffers.
//
// Microkernel (register-blocked MR x NR tile, all ISAs the same contract):
//   acc(i, j) = sum_{p < k} a[p*MR + i] * b[p*ldb + j]   (summed in p order, one FMA chain per element)
//   C(i, j)   = alpha * acc + (beta == 0 ? 0 : beta * C(i, j)) [+ bias]     for i < m, j < n
// b is either a packed sliver (ldb = NR) or op(B) read in place (tb == none, ldb = the matrix's ld).
// Columns j >= n of b are never read and C is written only inside the m x n edge tile (masked).
//
// Dot kernel (small M with op(B) = B^T): C(i, j) = alpha * sum_p a[i*lda + p] * b[j*ldb + p] + ...
// for i < m <= 4, j < n <= 8, full K per call (vector partial sums, fixed-order horizontal reduction).
#pragma once
#include <cstdint>

#include "core/dispatch.h"
#include "gemm/gemm.h"

namespace fastml {

struct GemmTile {
  float alpha = 1.0f;
  float beta = 0.0f;             // 0: C is not read
  const float* bias = nullptr;   // this tile's bias: bias[i] (row) or bias[j] (col); nullptr for none
  GemmBias bias_kind = GemmBias::none;
};

using GemmMicroFn = void (*)(int64_t k, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int m,
                             int n, const GemmTile& t);
// Copy-pack: dst[p*R + r] = src[p*ld + r] for r < rows (rows..R-1 zero), p < k. (op(A) with ta == trans,
// op(B) with tb == none.)  Transpose-pack: dst[p*R + r] = src[r*ld + p] (op(A) with ta == none, op(B)
// with tb == trans). R is MR for A slivers and NR for B slivers; `count` slivers of R rows each are
// packed from consecutive row groups (rows_total rows in all), sliver s at dst + s*R*k.
// Same contract with A read in place: a[i*lda + p] (op(A) = A). k <= KC.
using GemmMicroDirectAFn = void (*)(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                                    int64_t ldc, int m, int n, const GemmTile& t);
// Same contract as the microkernel with b read in place (ldb = the matrix's ld), which in passing also leaves
// the NR-wide packed copy of the sliver in bcopy (bcopy[p*NR + j], columns j >= n zero): the first row group
// pays the memory latency of B while computing; the other row groups then read the copy from L1.
using GemmMicroCopyBFn = void (*)(int64_t k, const float* a, const float* b, int64_t ldb, float* bcopy, float* c,
                                  int64_t ldc, int m, int n, const GemmTile& t);
// t[j] += sum_{p<k} a[p] * b[p*ldb + j] for j < n (M = 1 with op(B) = B), each sum in p order.
using GemmGemvFn = void (*)(int64_t k, const float* a, const float* b, int64_t ldb, int64_t n, float* t);
using GemmPackFn = void (*)(int64_t rows_total, int64_t k, const float* src, int64_t ld, float* dst);
using GemmDotFn = void (*)(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                           int64_t ldc, int m, int n, const GemmTile& t);
using GemmActFn = void (*)(GemmAct act, int64_t n, float* x);  // in place, activation maths of ops/activation
// dst[c*ldd + r] = src[r*lds + c] for r < rows, c < cols: an out-of-place transpose (the layout changes of
// the convolutions' channels-last paths).
using GemmTransposeFn = void (*)(int64_t rows, int64_t cols, const float* src, int64_t lds, float* dst, int64_t ldd);
// dst[e*ldd + j] = row[x0 + e + j] where 0 <= x0 + e + j < w, else 0, for e < ke, j < n: the ke rows of an
// im2col tile that one input row segment feeds under kernel column offsets 0..ke-1 (stride 1 along W). Only
// row[0, w) is read.
using GemmShiftRowsFn = void (*)(int64_t ke, int64_t n, const float* row, int64_t x0, int64_t w, float* dst,
                                 int64_t ldd);

// The microkernel contract (C = alpha * A B + beta * C, bias) over a K made of nb blocks of kb steps each: the
// packed sliver a holds them in order (block j's step q at a[(j * kb + q) * mr + i]) and block j reads its B
// rows in place at b + boff[j] + q * ldb. The stride-1 convolution without a column buffer: one block per
// kernel offset (boff[j] its shift in the padded input, ldb the channel stride), the C tile summed in
// registers across the offsets instead of stored and reloaded after each one.
using GemmMicroOffsetsFn = void (*)(int64_t kb, int64_t nb, const int64_t* boff, const float* a, const float* b,
                                    int64_t ldb, float* c, int64_t ldc, int m, int n, const GemmTile& t);

// Two products side by side in one C tile, A read in place: C[:, 0:nh] from (a0, b0) and C[:, nh:2 nh] from
// (a1, b1), each with the direct-A contract (A(i, p) = a[i lda + p], B(p, j) = b[p ldb + j]) and the same
// alpha / beta / bias (a column bias spans the 2 nh columns); nh <= nr / 2. Two groups of a grouped
// convolution with nr / 2 output channels each fill one nr-wide vector sliver (conv_shifted.h). AVX-512 only
// (nullptr in the other tables): its one caller, the grouped pixel rows, runs on AVX-512 only.
using GemmMicroDualFn = void (*)(int64_t k, const float* a0, const float* a1, int64_t lda, const float* b0,
                                 const float* b1, int64_t ldb, float* c, int64_t ldc, int m, int nh,
                                 const GemmTile& t);

struct GemmKernels {
  int mr, nr;                 // microkernel tile
  GemmMicroFn micro;
  GemmMicroDirectAFn micro_direct_a;
  GemmMicroCopyBFn micro_copy_b;
  GemmGemvFn gemv_rows;
  GemmPackFn pack_a_copy, pack_a_transpose;  // R = mr
  GemmPackFn pack_b_copy, pack_b_transpose;  // R = nr
  GemmDotFn dot;
  GemmActFn act;
  GemmTransposeFn transpose;
  GemmShiftRowsFn shift_rows;
  GemmMicroOffsetsFn micro_offsets;
  GemmMicroDualFn micro_dual;
};

FASTML_DECLARE_KERNEL_TABLES(GemmKernels, gemm)

}  // namespace fastml
