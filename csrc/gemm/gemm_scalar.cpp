// SGEMM kernels, scalar variant (any CPU; baseline flags). Contract and packed layouts: gemm_kernels.h.
//
// Microkernel 4 x 8: 32 scalar accumulators in a fixed-size array the compiler keeps in registers
// (SSE2 at baseline), one multiply-add chain per element in k order. Edge tiles loop over m x n only.
// Packing, the dot kernel (over 8 emulated lanes) and the epilogue are the generic ones of gemm_impl.h.
// Test: FASTML_ISA=scalar pytest tests/test_gemm.py
#include "core/simd/vec_scalar.h"
#include "gemm/gemm_impl.h"

namespace fastml::cpu::scalar {
namespace {

constexpr int MR = 4;
constexpr int NR = 8;

template <bool FULL>
inline void micro_tile(int64_t k, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int m, int n,
                       const GemmTile& t) {
  float acc[MR][NR] = {};
  const int nn = FULL ? NR : n;
  for (int64_t p = 0; p < k; ++p) {
    for (int i = 0; i < MR; ++i) {
      const float ai = a[i];
      for (int j = 0; j < nn; ++j) acc[i][j] += ai * b[j];
    }
    a += MR;
    b += ldb;
  }
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < nn; ++j) gemm_impl::store_one(c + i * ldc + j, acc[i][j], t, i, j);
}

void micro(int64_t k, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int m, int n,
           const GemmTile& t) {
  if (n == NR) micro_tile<true>(k, a, b, ldb, c, ldc, m, n, t);
  else micro_tile<false>(k, a, b, ldb, c, ldc, m, n, t);
}

// Eight scalar lanes for the dot kernel: K is split across them and reduced pairwise, as in the vector ISAs
// (a single running sum would be several times less accurate than a BLAS dot product for long K).
struct Lanes8 {
  static constexpr int N = 8;
  float v[8];
  static Lanes8 zero() { return Lanes8{}; }
  static Lanes8 load(const float* p) {
    Lanes8 r;
    for (int i = 0; i < 8; ++i) r.v[i] = p[i];
    return r;
  }
  static Lanes8 load_tail(const float* p, int n) {
    Lanes8 r{};
    for (int i = 0; i < n; ++i) r.v[i] = p[i];
    return r;
  }
  friend Lanes8 fmadd(const Lanes8& a, const Lanes8& b, const Lanes8& c) {
    Lanes8 r;
    for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] * b.v[i] + c.v[i];
    return r;
  }
  friend Lanes8 operator+(const Lanes8& a, const Lanes8& b) {
    Lanes8 r;
    for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] + b.v[i];
    return r;
  }
  float hsum() const { return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7])); }
};

void micro_direct_a(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                    int m, int n, const GemmTile& t) {
  gemm_impl::micro_direct_a_via_pack<MR, 256>(&micro, k, a, lda, b, ldb, c, ldc, m, n, t);
}

void act(GemmAct a, int64_t n, float* x) { gemm_impl::act_with(activation_kernels_scalar, a, n, x); }

}  // namespace

extern const GemmKernels gemm_kernels_scalar;
constexpr GemmKernels gemm_kernels_scalar = {
    MR, NR, &micro, &micro_direct_a,
    &gemm_impl::micro_copy_b_via_pack<NR, &gemm_impl::pack_copy<NR>, &micro>, &gemm_impl::gemv_rows<VecF>, &gemm_impl::pack_copy<MR>, &gemm_impl::pack_transpose<MR>, &gemm_impl::pack_copy<NR>,
    &gemm_impl::pack_transpose<NR>, &gemm_impl::dot<Lanes8>, &act, &gemm_impl::transpose, &gemm_impl::shift_rows<VecF>,
    &gemm_impl::micro_offsets_via_micro<MR, &micro>, nullptr};

}  // namespace fastml::cpu::scalar
