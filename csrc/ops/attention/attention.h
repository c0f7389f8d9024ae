// Scaled dot-product attention, float32: tiled online-softmax forward and backward (FlashAttention-2,
// Dao 2023, "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning"), plus a
// split-K decode path (flash-decoding) for short queries against a long KV.
//
//   S = scale * Q K^T + mask,  P = softmax_rows(S),  O = (P o Z / (1 - p)) V,  lse = logsumexp_rows(S)
// with Z the dropout keep mask (counter-based hash of (seed, batch*head, row, col), see attention_dropout_keep).
// Allowed keys of query row i: j < S, causal: j <= i + diag, sliding window w: i + diag - w < j <= i + diag.
// diag = 0 is the top-left aligned triangle (torch's is_causal, tril(ones(L, S))); diag = S - L the
// bottom-right aligned one (torch's causal_lower_right: the last query row sees every key, as a KV-cache
// query block at the end of the sequence does); any other offset works too. A masked score is -inf; a row
// whose scores are all -inf has O = 0, lse = -inf and zero gradients (torch's math path gives NaN there).
//
// Layout (C-contiguous, element offsets): q (B, Hq, L, E), k (B, Hkv, S, E), v (B, Hkv, S, Ev),
// out (B, Hq, L, Ev), lse (B, Hq, L); query head h reads kv head h / (Hq / Hkv) (GQA). The additive
// float mask is indexed mask[b*msb + h*msh + i*msl + j] (strides 0 broadcast; unit stride along keys).
//
// Forward (attention.cpp): K is packed once per (b, kv head) into GEMM B-slivers (block by block inside
// the items when a kv head has at most two query blocks reading it, V then read in place); work items are
// (b, h, query block of BR rows); per key block of BC keys the block products run on the SGEMM
// microkernels (gemm_kernels.h, A read in place), the row softmax on the VecF kernels of attention_impl.h.
// Key blocks wholly outside the causal / window band are skipped; boundary blocks are masked per element.
// Decode (L <= 16): items are (b, h, key chunk of kDecodeChunk keys); each writes (m, l, o) partials that
// are merged per row in chunk order. Backward: items are (b, kv head) (and, when there are fewer than 8
// of them, a fixed split of the key blocks into groups); each owns its dK / dV rows and walks key blocks
// (outer) x heads of the group x query blocks, so dQ accumulates in a fixed order; the dQ partials of
// key groups are summed in group order.
// Every result is therefore bitwise identical for any thread count.
// Test: pytest tests/test_attention.py. Bench: python -m fastml.bench --ops attention
#pragma once
#include <cstdint>

#include "core/dispatch.h"

namespace fastml {

struct AttentionParams {
  int64_t B = 0, Hq = 0, Hkv = 0, L = 0, S = 0, E = 0, Ev = 0;
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  // Element strides of query / key / value along (batch, head, row); each row (E or Ev floats) is contiguous.
  // The forward reads any such layout (e.g. (B, L, H, E) memory viewed as (B, H, L, E)); the backward
  // takes contiguous (B, H, L, E) arrays (strides B: H L E, H: L E, row: E).
  int64_t qsb = 0, qsh = 0, qsl = 0, ksb = 0, ksh = 0, ksl = 0, vsb = 0, vsh = 0, vsl = 0;
  const float* mask = nullptr;  // additive, or nullptr
  int64_t msb = 0, msh = 0, msl = 0;
  bool causal = false;
  int64_t window = 0;  // 0: none
  int64_t diag = 0;    // diagonal offset of the causal / window band (see above)
  float scale = 1.0f;
  // dropout: keep iff (mix32(...) >> 8) >= drop_threshold = floor(p * 2^24) (hash below); kept values * drop_scale
  bool dropout = false;
  uint64_t seed = 0;
  uint32_t drop_threshold = 0;
  float drop_scale = 1.0f;
};

// Row kernels over VecF (attention_impl.h), one table per ISA.
struct AttentionKernels {
  // Online softmax step on a rows x cols block s (row stride lds): m, l running max / sum per row; s
  // becomes p = exp(s - m_new) (0 for masked entries and rows masked so far); alpha[r] = exp(m_old - m_new)
  // is the factor the caller applies to the row's accumulated output.
  void (*softmax_update)(int64_t rows, int64_t cols, float* s, int64_t lds, float* m, float* l, float* alpha);
  // o[r*ldo + c] *= alpha[r], c < n
  void (*scale_rows)(int64_t rows, int64_t n, float* o, int64_t ldo, const float* alpha);
  // s[r*lds + c] += add[r*ldadd + c], c < n
  void (*add_rows)(int64_t rows, int64_t n, float* s, int64_t lds, const float* add, int64_t ldadd);
  // Backward, transposed block (rows = keys, cols = queries): s[r][c] = exp(s[r][c] - lse[c]), 0 where
  // lse[c] = -inf (a fully masked query row) or the result underflows.
  void (*exp_minus_cols)(int64_t rows, int64_t cols, float* s, int64_t lds, const float* lse);
  // dp[r][c] = p[r][c] * (dp[r][c] - d[c])
  void (*ds_cols)(int64_t rows, int64_t cols, const float* p, int64_t ldp, float* dp, int64_t lddp, const float* d);
  // sum_c a[c] * b[c]
  float (*dot)(int64_t n, const float* a, const float* b);
  // Decode path (few query rows, K and V read in place): s[r][j] = scale * q_r . k_j, and
  // o[r][c] += sum_j p[r][j] v[j][c]; FMA chains kept independent (rows alone cannot fill a GEMM tile).
  void (*scores_rows)(int64_t rows, int64_t cols, int64_t E, float scale, const float* q, int64_t ldq,
                      const float* k, int64_t ldk, float* s, int64_t lds);
  void (*pv_rows)(int64_t rows, int64_t cols, int64_t Ev, const float* p, int64_t ldp, const float* v, int64_t ldv,
                  float* o, int64_t ldo);
  // Dropout (hash above). Forward block: s[r][j] = keep(rowkey[r], col0 + j) ? s[r][j] * scale : 0.
  void (*dropout_rows)(int64_t rows, int64_t cols, float* s, int64_t lds, const uint32_t* rowkey, uint32_t col0,
                       uint32_t threshold, float scale);
  // Backward transposed block (rows = keys col0 + r, columns = query rows with keys rowkey[c]):
  // pd = keep ? p * scale : 0, dp = keep ? dp * scale : 0.
  void (*dropout_cols)(int64_t rows, int64_t cols, const float* p, float* pd, float* dp, int64_t ld,
                       const uint32_t* rowkey, uint32_t col0, uint32_t threshold, float scale);
};

FASTML_DECLARE_KERNEL_TABLES(AttentionKernels, attention)

// automatic: the decode path where splitting the keys pays (L <= 16, S >= 1024), the general one elsewhere.
// automatic_output: for a caller that keeps only the output (no backward will recompute the scores from
// this lse): also the decode path for L <= 8, where packing K and V costs more than the products. A
// backward recomputes the scores with the microkernels; the decode path's row kernels sum them in
// another order, which the lse then carries into P = exp(s - lse) (over 16 small cases the gradients'
// error was mostly the same, in a few up to 2.5x that with the general path's lse), so calls that return
// the lse keep the general path there.
enum class AttentionPath : int { automatic = 0, general = 1, decode = 2, automatic_output = 3 };

// out (B, Hq, L, Ev), lse (B, Hq, L). Shapes are validated by the binding.
void attention_forward(const AttentionParams& p, float* out, float* lse, AttentionPath path = AttentionPath::automatic);
// grad_out, out (B, Hq, L, Ev), lse (B, Hq, L) -> dq (B, Hq, L, E), dk (B, Hkv, S, E), dv (B, Hkv, S, Ev).
void attention_backward(const AttentionParams& p, const float* grad_out, const float* out, const float* lse, float* dq,
                        float* dk, float* dv);

// The dropout hash (also written in NumPy in fastml/reference/attention.py). Per (batch*head, row) a 32-bit
// key from splitmix64 finalisers: rowkey = mix64(mix64(mix64(seed ^ golden) + bh) + row) >> 32; per key
// column the murmur3 32-bit finaliser: keep iff mix32(rowkey ^ (col * 0x9E3779B9)) >> 8 >= threshold.
// 32-bit element arithmetic so the ISA kernels vectorise it (there is no 64-bit multiply in AVX2).
inline uint64_t attention_mix64(uint64_t z) {
  z ^= z >> 30;
  z *= 0xBF58476D1CE4E5B9ULL;
  z ^= z >> 27;
  z *= 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return z;
}
inline uint32_t attention_dropout_row_key(uint64_t seed, uint64_t bh, uint64_t row) {
  const uint64_t a = attention_mix64(seed ^ 0x9E3779B97F4A7C15ULL);
  return static_cast<uint32_t>(attention_mix64(attention_mix64(a + bh) + row) >> 32);
}
inline uint32_t attention_mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}
inline bool attention_dropout_keep(uint32_t row_key, uint32_t col, uint32_t threshold) {
  return (attention_mix32(row_key ^ (col * 0x9E3779B9u)) >> 8) >= threshold;
}

}  // namespace fastml
