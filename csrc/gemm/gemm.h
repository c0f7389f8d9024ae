// Packed single-precision GEMM (BLIS-style): C = alpha * op(A) * op(B) + beta * C [+ bias] [-> act].
//
// Layout: row-major with leading dimensions (element strides between rows), unit stride along a row.
//   op(A) is M x K: A is M x K (lda >= K) when ta == none, K x M (lda >= M) when ta == trans.
//   op(B) is K x N: B is K x N (ldb >= N) when tb == none, N x K (ldb >= K) when tb == trans.
//   C is M x N (ldc >= N).
// Semantics (as BLAS sgemm): beta == 0 never reads C (NaN/Inf in C are ignored); K == 0 or alpha == 0
// gives beta * C without reading A or B; M == 0 or N == 0 does nothing.
// Epilogue (optional, applied while each finished tile is still in registers/L1, never as a second
// pass over C): C = act(alpha * op(A) op(B) + beta * C + bias), bias along rows (bias[i], length M) or
// along columns (bias[j], length N), act in {none, relu, gelu, gelu_tanh, sigmoid, tanh} with the
// maths of csrc/ops/activation (same kernels, same accuracy).
//
// Determinism: every element's K sum is accumulated in an order fixed by (M, N, K, ISA) alone, so
// results are bitwise identical for any thread count.
//
// Engine: gemm.cpp (blocking, threading, small-shape paths), gemm_kernels.h (kernel table contract),
// gemm_{scalar,avx2,avx512}.cpp (microkernels). Test: pytest tests/test_gemm.py tests/test_linear.py.
// Bench: python benchmarks/bench_gemm.py
#pragma once
#include <cstdint>
#include <memory>

#include "core/isa.h"

namespace fastml {

enum class Trans : int { none = 0, trans = 1 };
enum class GemmAct : int { none = 0, relu, gelu, gelu_tanh, sigmoid, tanh };
enum class GemmBias : int { none = 0, row, col };  // row: bias[i] added to row i; col: bias[j] to column j

struct GemmEpilogue {
  const float* bias = nullptr;  // nullptr: no bias
  GemmBias bias_kind = GemmBias::none;
  GemmAct act = GemmAct::none;
};

void sgemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const GemmEpilogue* ep = nullptr);

// `batch` independent products with the same shapes; matrix b of each operand starts at
// base + b * stride (stride 0 broadcasts one matrix over the batch). Row bias is per row of each C;
// column bias per column. C matrices must not overlap one another.
void sgemm_batched(int64_t batch, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b,
                   float beta, float* C, int64_t ldc, int64_t stride_c, const GemmEpilogue* ep = nullptr);

// The microkernel tile and cache blocking the active ISA uses (tests and benchmarks report them).
struct GemmBlocking {
  int mr, nr;
  int64_t kc, mc, nc;
};
GemmBlocking gemm_blocking();
// The block size that cuts K into ceil(K / kc_max) blocks of nearly equal size (each <= kc_max): the
// engine's K blocks are gemm_k_block(K, gemm_blocking().kc).
int64_t gemm_k_block(int64_t K, int64_t kc_max);
// Process-wide override of KC / NC (0 = derive from the caches again): for tests of the block edges
// and for tuning experiments. Results stay thread-count invariant under any override.
void gemm_set_blocking(int64_t kc, int64_t nc);

// op(B) packed once into the microkernel layout of the ISA active at packing time (weights reused
// across calls: RNN steps, inference). Using it after the active ISA changed raises ValueError.
class PackedB {
 public:
  PackedB(Trans tb, int64_t K, int64_t N, const float* B, int64_t ldb);
  // Packed into caller-owned storage of at least storage_floats(K, N) floats (a buffer reused across calls:
  // a fresh multi-MiB allocation per call costs a page fault per 4 KiB on first touch); not freed here.
  PackedB(Trans tb, int64_t K, int64_t N, const float* B, int64_t ldb, float* storage);
  static int64_t storage_floats(int64_t K, int64_t N);  // for the active ISA
  ~PackedB();
  PackedB(const PackedB&) = delete;
  PackedB& operator=(const PackedB&) = delete;
  int64_t k() const { return K_; }
  int64_t n() const { return N_; }
  Isa isa() const { return isa_; }
  const float* data() const { return data_; }
  int64_t kc() const { return kc_; }

 private:
  void pack(Trans tb, const float* B, int64_t ldb);
  int64_t K_, N_, kc_;
  Isa isa_;
  float* data_ = nullptr;
  bool owned_ = true;
};

// C = alpha * op(A) * B + beta * C with B pre-packed (K x N).
void sgemm_packed(Trans ta, int64_t M, float alpha, const float* A, int64_t lda, const PackedB& B, float beta,
                  float* C, int64_t ldc, const GemmEpilogue* ep = nullptr);

}  // namespace fastml
