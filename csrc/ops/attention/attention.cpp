// Attention entry (baseline flags): blocking, work items, threading, masking and dropout; the block
// products run on the SGEMM microkernels (gemm/gemm_kernels.h, chosen for the active ISA), the row
// softmax on the AttentionKernels of the same ISA. Maths, layouts and determinism: attention.h.
//
// Blocks: forward BR = ~64 query rows (a multiple of the microkernel's MR; without a causal / window band
// equal blocks of up to ~80) x BC = 256 keys (a multiple of NR); backward BK = ~64 keys (rows, MR) x
// BQ = 256 queries (columns, NR; 64 under causal / window masks). Extra memory: O(BR x BC) per thread plus
// one packed copy of K and V (forward; one K block per thread when few query blocks read each kv head) or,
// per thread, of Q, dO, Q^T and dO^T of one kv-head group (backward: every product reads packed B
// slivers); never L x S.
// Decode: chunks of kDecodeChunk keys, partials (m, l, o) merged in chunk order.
#include "ops/attention/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "core/scratch.h"
#include "gemm/gemm_kernels.h"

namespace fastml {
namespace {

// Query rows up to which the decode path (row kernels on K and V in place) runs: up to kDecodeMaxL when
// S is long enough for the split over keys to matter, and for output-only calls (AttentionPath) up to
// kDecodeShortL whatever S, since packing K and V costs more than a few rows of products (B2 H8 S512
// E64: L=1 0.24 -> 0.055 ms, L=8 0.34 -> 0.20 ms; at L=12-16 the packed path is level or 10-20% faster).
constexpr int64_t kDecodeShortL = 8;
constexpr int64_t kDecodeMaxL = 16;
constexpr int64_t kDecodeChunk = 512;
// Keys per decode block (scores, softmax update, PV): the whole chunk. Against 256, 4% less time per call at
// B1 H8 L1 S4096 E64, 2 threads (interleaved in one process, Zen 3); 1024-key chunks and blocks were level.
constexpr int64_t kDecodeBlockKeys = 512;
constexpr int64_t kBackwardMinItems = 8;  // backward work items wanted (key split below this many (b, kv head))
// Keys per forward block: 256 halves the rescales of the output rows per key against 128 and gives
// longer PV products; on the (shared, noisy) 2-core VM at B4 H8 L=S=2048 E64 it was at least as fast as
// 64 or 128, and 512 was no faster.
constexpr int64_t kBlockKeys = 256;
// Forward: up to this many query blocks per kv head (its query heads x query blocks), K is packed block
// by block inside the items and V read in place, instead of both packed up front (forward_general).
constexpr int64_t kStreamMaxReaders = 2;
constexpr int64_t kKChunk = 256;  // microkernel k steps per call (the engine's KC bound)
constexpr int64_t kPackedKFloats = int64_t{4} << 20;  // bound (16 MiB) of the packed K / decode partials per call
constexpr float kNegInf = -__builtin_inff();

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Per-thread buffers reused across calls, 64-byte aligned (core/scratch.h): the packed K / Q slivers and
// the score blocks are read by the GEMM microkernels in whole cache lines.
thread_local std::vector<uint32_t> t_rowkeys;
thread_local Scratch t_qpack, t_kpack, t_kblk, t_s, t_p, t_m, t_l, t_a, t_qt, t_dot, t_d, t_dp, t_apack, t_part;
thread_local Scratch t_qb, t_dob, t_kpa;  // backward: Q and dO as B slivers, K_j / V_j as A and K_j as B slivers

// fn(item) for item in [0, n), items handed out one at a time (causal items differ in cost: the last
// query blocks see the most keys). Each item is computed by one thread in a fixed order, so which thread
// takes it never changes the result.
template <class F>
void dynamic_for(int64_t n, int64_t grain, F&& fn) {
  const int nt = threads_for(n, grain);
  if (nt <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) fn(i);
}

struct Ctx {
  const AttentionParams& p;
  const GemmKernels& gk;
  const AttentionKernels& ak;
  int64_t group;  // Hq / Hkv
};

// Allowed key range [lo, hi) of query row i (empty when hi <= lo: a fully masked row).
inline void band(const AttentionParams& p, int64_t i, int64_t& lo, int64_t& hi) {
  lo = p.window > 0 ? std::max<int64_t>(0, i + p.diag - p.window + 1) : 0;
  hi = (p.causal || p.window > 0) ? std::clamp<int64_t>(i + p.diag + 1, 0, p.S) : p.S;
}

// True when no (i, j) with i in [i0, i1), j in [j0, j1) is allowed.
inline bool block_empty(const AttentionParams& p, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  if ((p.causal || p.window > 0) && j0 > i1 - 1 + p.diag) return true;
  if (p.window > 0 && j1 - 1 <= i0 + p.diag - p.window) return true;
  return false;
}

// True when every (i, j) with i in [i0, i1), j in [j0, j1) is allowed (no -inf to write): the band's
// ends grow with i, so the first row must reach past j1 - 1 and the last row's window start j0.
inline bool block_full(const AttentionParams& p, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  if (!(p.causal || p.window > 0)) return true;
  if (j1 - 1 > i0 + p.diag) return false;
  return p.window <= 0 || i1 + p.diag - p.window <= j0;
}

// c (rows x n, ldc) = alpha * a * b + beta c (the attention blocks' products on the GEMM microkernels):
// a is rows x k read in place with row stride lda, or (a_packed) MR-row slivers of k steps; b is NR-column
// slivers (sliver s at b + s*bs with bs = b_sliver_stride, or NR*k when that is 0; element (p, j) at
// [p*NR + j]) or, if ldb_direct > 0, a k x n matrix read in place with row stride ldb_direct.
void block_product(const GemmKernels& gk, bool a_packed, int64_t rows, int64_t n, int64_t k, float alpha, float beta,
                   const float* a, int64_t lda, const float* b, int64_t ldb_direct, float* c, int64_t ldc,
                   int64_t b_sliver_stride = 0) {
  const int MR = gk.mr, NR = gk.nr;
  if (k == 0) {  // empty products (E == 0 or Ev == 0): c = beta c
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  for (int64_t pc = 0; pc < k; pc += kKChunk) {
    const int64_t kb = std::min(kKChunk, k - pc);
    GemmTile t;
    t.alpha = alpha;
    t.beta = pc == 0 ? beta : 1.0f;
    for (int64_t i = 0; i < rows; i += MR) {
      const int m = static_cast<int>(std::min<int64_t>(MR, rows - i));
      for (int64_t j = 0; j < n; j += NR) {
        const int nn = static_cast<int>(std::min<int64_t>(NR, n - j));
        const int64_t bs = b_sliver_stride > 0 ? b_sliver_stride : NR * k;
        const float* bj = ldb_direct > 0 ? b + pc * ldb_direct + j : b + (j / NR) * bs + pc * NR;
        const int64_t ldb = ldb_direct > 0 ? ldb_direct : NR;
        if (a_packed) gk.micro(kb, a + (i / MR) * MR * k + pc * MR, bj, ldb, c + i * ldc + j, ldc, m, nn, t);
        else gk.micro_direct_a(kb, a + i * lda + pc, lda, bj, ldb, c + i * ldc + j, ldc, m, nn, t);
      }
    }
  }
}

void gemm_a_direct(const GemmKernels& gk, int64_t rows, int64_t n, int64_t k, float alpha, float beta, const float* a,
                   int64_t lda, const float* b, int64_t ldb_direct, float* c, int64_t ldc) {
  block_product(gk, false, rows, n, k, alpha, beta, a, lda, b, ldb_direct, c, ldc);
}

// c (rows x n) = alpha * A * B + beta c with both operands packed: A in MR-row slivers of k steps
// (sliver g at a + g*MR*k, element (p, i) at [p*MR + i]), B in NR-column slivers (as gemm_a_direct).
void gemm_packed(const GemmKernels& gk, int64_t rows, int64_t n, int64_t k, float alpha, float beta, const float* a,
                 const float* b, float* c, int64_t ldc) {
  block_product(gk, true, rows, n, k, alpha, beta, a, 0, b, 0, c, ldc);
}

// Scores of query rows [i0, i0 + rows) against keys [j0, j0 + cols) into s (ld lds): scale q.k + mask,
// -inf outside the band. kblock: these keys of K packed in NR slivers for the GEMM microkernel (nullptr:
// the decode row kernels on K in place).
void scores_block(const Ctx& c, int64_t b, int64_t h, const float* q, const float* k, const float* kblock,
                  const float* qpack, int64_t i0, int64_t rows, int64_t j0, int64_t cols, float* s, int64_t lds) {
  const AttentionParams& p = c.p;
  const int64_t E = p.E;
  if (kblock) {
    if (qpack) gemm_packed(c.gk, rows, cols, E, p.scale, 0.0f, qpack, kblock, s, lds);
    else gemm_a_direct(c.gk, rows, cols, E, p.scale, 0.0f, q + i0 * p.qsl, p.qsl, kblock, 0, s, lds);
  } else {
    c.ak.scores_rows(rows, cols, E, p.scale, q + i0 * p.qsl, p.qsl, k + j0 * p.ksl, p.ksl, s, lds);
  }
  if (p.mask) {
    const float* mb = p.mask + b * p.msb + h * p.msh + i0 * p.msl + j0;
    c.ak.add_rows(rows, cols, s, lds, mb, p.msl);
  }
  if (!block_full(p, i0, i0 + rows, j0, j0 + cols)) {
    for (int64_t r = 0; r < rows; ++r) {
      int64_t lo, hi;
      band(p, i0 + r, lo, hi);
      float* sr = s + r * lds;
      for (int64_t j = j0; j < std::min(j0 + cols, lo); ++j) sr[j - j0] = kNegInf;
      for (int64_t j = std::max(j0, hi); j < j0 + cols; ++j) sr[j - j0] = kNegInf;
    }
  }
}

// Dropout on probabilities of rows [i0, i0 + rows) x keys [j0, j0 + cols) (row stride lds).
void dropout_block(const Ctx& c, int64_t bh, int64_t i0, int64_t rows, int64_t j0, int64_t cols, float* s,
                   int64_t lds) {
  const AttentionParams& p = c.p;
  if (static_cast<int64_t>(t_rowkeys.size()) < rows) t_rowkeys.resize(static_cast<size_t>(rows));
  uint32_t* rk = t_rowkeys.data();
  for (int64_t r = 0; r < rows; ++r)
    rk[r] = attention_dropout_row_key(p.seed, static_cast<uint64_t>(bh), static_cast<uint64_t>(i0 + r));
  c.ak.dropout_rows(rows, cols, s, lds, rk, static_cast<uint32_t>(j0), p.drop_threshold, p.drop_scale);
}

// Where accumulate() reads K and V: packed once per kv head (kpack, vpack: NR slivers over all S keys),
// K packed block by block as the products reach it and V read in place (few query blocks per kv head:
// the packed copy would go out to memory and back for one or two readers), or K and V read in place by
// the decode row kernels.
enum class KvFrom { packed, k_per_block, rows };

// Online-softmax accumulation of query rows [i0, i0 + rows) over keys [k0, k1): o (rows x Ev, ld Ev)
// receives sum_j p_ij v_j relative to the running max m; l the running sum. o, m, l initialised by caller.
// The same sums in the same order whichever KvFrom (the packed slivers hold the same values, and a product
// reading B in place runs the same FMAs), so the results are bitwise the same.
void accumulate(const Ctx& c, int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t k0, int64_t k1, int64_t BC,
                KvFrom from, const float* kpack, const float* vpack, float* o, float* m, float* l) {
  const AttentionParams& p = c.p;
  const int64_t hk = h / c.group;
  const int64_t bh = b * p.Hq + h;
  const float* q = p.q + b * p.qsb + h * p.qsh;
  const float* k = p.k + b * p.ksb + hk * p.ksh;
  const float* v = p.v + b * p.vsb + hk * p.vsh;
  // Row stride padded by one cache line: with BC = 256 floats the PV product's A rows (read in place)
  // would sit 1 KiB apart and share a few L1 sets.
  const int64_t lds = BC + 16;
  float* s = t_s.get(rows * lds);
  float* alpha = t_a.get(rows);
  // The query block is packed once (MR-row slivers) for all its key blocks: contiguous broadcasts in the
  // microkernel instead of MR rows E apart (measured ~3% faster forward at L = S = 2048, E = 64).
  float* qpack = nullptr;
  float* kblk = from == KvFrom::k_per_block ? t_kblk.get(round_up(BC, c.gk.nr) * p.E) : nullptr;
  if (from != KvFrom::rows) {
    qpack = t_qpack.get(round_up(rows, c.gk.mr) * p.E);
    c.gk.pack_a_transpose(rows, p.E, q + i0 * p.qsl, p.qsl, qpack);
  }
  // Keys no row of the block may see are not computed: under causal / window the range ends where the
  // block's last row's band ends, and under a window it starts at the first row's window (rounded down to
  // NR, the packed K sliver width).
  int64_t ks = k0, ke = k1;
  if (p.causal || p.window > 0) ke = std::min(ke, i0 + rows + p.diag);
  if (p.window > 0) ks = std::max(ks, (i0 + p.diag - p.window + 1) / c.gk.nr * c.gk.nr);
  for (int64_t j0 = ks; j0 < ke; j0 += BC) {
    const int64_t cols = std::min(BC, ke - j0);
    if (block_empty(p, i0, i0 + rows, j0, j0 + cols)) continue;
    const float* kblock = nullptr;
    if (from == KvFrom::packed) {
      kblock = kpack + j0 * p.E;  // the slivers of keys j0.. (j0 is a multiple of NR)
    } else if (from == KvFrom::k_per_block) {
      c.gk.pack_b_transpose(cols, p.E, k + j0 * p.ksl, p.ksl, kblk);
      kblock = kblk;
    }
    scores_block(c, b, h, q, k, kblock, qpack, i0, rows, j0, cols, s, lds);
    c.ak.softmax_update(rows, cols, s, lds, m, l, alpha);
    c.ak.scale_rows(rows, p.Ev, o, p.Ev, alpha);
    if (p.dropout) dropout_block(c, bh, i0, rows, j0, cols, s, lds);
    if (from == KvFrom::packed) {
      const int64_t NR = c.gk.nr;  // V's slivers run over all S keys: this block's rows start at j0
      block_product(c.gk, false, rows, p.Ev, cols, 1.0f, 1.0f, s, lds, vpack + j0 * NR, 0, o, p.Ev,
                    NR * p.S);
    } else if (from == KvFrom::k_per_block) {
      gemm_a_direct(c.gk, rows, p.Ev, cols, 1.0f, 1.0f, s, lds, v + j0 * p.vsl, p.vsl, o, p.Ev);
    } else {
      c.ak.pv_rows(rows, cols, p.Ev, s, lds, v + j0 * p.vsl, p.vsl, o, p.Ev);
    }
  }
}

void finish_rows(const AttentionParams& p, int64_t rows, float* o, const float* m, const float* l, float* lse) {
  for (int64_t r = 0; r < rows; ++r) {
    const bool dead = l[r] == 0.0f;  // no allowed key (a NaN sum is not dead: it propagates)
    const float inv = dead ? 0.0f : 1.0f / l[r];
    float* orow = o + r * p.Ev;
    for (int64_t c = 0; c < p.Ev; ++c) orow[c] = dead ? 0.0f : orow[c] * inv;
    lse[r] = dead ? kNegInf : m[r] + std::log(l[r]);
  }
}

void forward_general(const Ctx& c, float* out, float* lse) {
  const AttentionParams& p = c.p;
  const int MR = c.gk.mr, NR = c.gk.nr;
  // Query blocks of ~64 rows (a multiple of MR). Without a causal / window band the L rows are split into
  // equal blocks of up to 1.25x that, so that no block is a thin tail: every block streams all of K and V
  // for its rows, and L = 64 on AVX2 (MR 6) was a 60-row and a 4-row block. Paired A/B (2 threads, Zen 3,
  // E64): B1 H8 L64 S4096 +4-19%, B8 L64 S1024 +4-11%, L128 +1-3%, B4 L = S = 512 / 2048 level. Under a
  // band the blocks stay at ~64 rows: larger ones were 2-8% slower on causal L 256-2048. A causal band
  // whose diagonal offset is at least L (bottom-right with S >= 2L: new queries against a KV cache) masks
  // at most a quarter of the scores and counts as none: B1 H8 L64 S4096 +5.5%, L128 -3 / +6%, L256 / L512
  // level (two paired runs).
  const int64_t br0 = MR * std::max<int64_t>(1, 64 / MR);
  const bool banded = (p.causal || p.window > 0) && !(p.window == 0 && p.diag >= p.L);
  const int64_t BR = banded ? br0 : round_up(ceil_div(p.L, ceil_div(p.L, br0 * 5 / 4)), MR);
  const int64_t nqb = ceil_div(p.L, BR);
  const int64_t BC = NR * std::max<int64_t>(1, kBlockKeys / NR);
  const int64_t per_kv = c.group * nqb;  // items of one kv head: its query heads x query blocks
  const int64_t work = std::max<int64_t>(1, BR * p.S * (p.E + p.Ev));
  // Packed K and V of one kv head (used when packed up front, below).
  const int64_t kstride = round_up(p.S, NR) * p.E, vstride = round_up(p.Ev, NR) * p.S;
  // Item `it`: query rows [i0, i0 + rows) of head bh = it / nqb. kp, vp: the packed K and V of kv heads
  // [x0, ..), or nullptr (K packed block by block, V read in place).
  auto item = [&](int64_t it, const float* kp, const float* vp, int64_t x0) {
    const int64_t bh = it / nqb, qb = it % nqb;  // bh = (b Hkv + kv head) g + head in group
    const int64_t b = bh / p.Hq, h = bh % p.Hq;
    const int64_t i0 = qb * BR, rows = std::min(BR, p.L - i0);
    float* o = out + (bh * p.L + i0) * p.Ev;
    float* m = t_m.get(rows);
    float* l = t_l.get(rows);
    std::fill(o, o + rows * p.Ev, 0.0f);
    std::fill(m, m + rows, kNegInf);
    std::fill(l, l + rows, 0.0f);
    if (kp)
      accumulate(c, b, h, i0, rows, 0, p.S, BC, KvFrom::packed, kp + (bh / c.group - x0) * kstride,
                 vp + (bh / c.group - x0) * vstride, o, m, l);
    else
      accumulate(c, b, h, i0, rows, 0, p.S, BC, KvFrom::k_per_block, nullptr, nullptr, o, m, l);
    finish_rows(p, rows, o, m, l, lse + bh * p.L + i0);
  };
  // Few readers per kv head (a short query block against long keys: a chunk of new queries against a KV
  // cache, cross-attention from a short target): each item packs the K block its products reach into an
  // L2-resident buffer and reads V in place, instead of a packed copy of all of K and V written out to
  // memory and read back by one or two items (paired A/B, 2 threads, Zen 3, E64: B1 H8 L64 S4096 +9%,
  // B8 H8 L64 S1024 +10%, B1 H8 L120 S4096 (two readers) +1.5%; the packing had been ~20% of the time).
  if (per_kv <= kStreamMaxReaders) {
    dynamic_for(p.B * p.Hq * nqb, std::max<int64_t>(1, (1 << 18) / work),
                [&](int64_t it) { item(it, nullptr, nullptr, 0); });
    return;
  }
  // K and V packed once per (b, kv head) into NR slivers shared by all query blocks of the heads using
  // them, a chunk of kv heads at a time so the packed copies stay bounded (<= kPackedKFloats, or one
  // head). Packed V slivers run over all S keys: the PV products read them as contiguous sliver rows
  // instead of V rows Ev apart (B read in place: 2 prefetches per k step and 2 of every Ev/16 lines);
  // the products and their sums are the same, so the results are bitwise those of V read in place.
  const int64_t nkv = p.B * p.Hkv;
  const int64_t chunk = std::clamp<int64_t>(kPackedKFloats / std::max<int64_t>(1, kstride + vstride), 1, nkv);
  float* kp = t_kpack.get(chunk * (kstride + vstride));
  float* vp = kp + chunk * kstride;
  for (int64_t x0 = 0; x0 < nkv; x0 += chunk) {
    const int64_t x1 = std::min(nkv, x0 + chunk);
    parallel_for(x1 - x0, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, p.S * p.E)), 1,
                 [&](int64_t b0, int64_t b1) {
                   for (int64_t x = x0 + b0; x < x0 + b1; ++x) {
                     c.gk.pack_b_transpose(p.S, p.E, p.k + x / p.Hkv * p.ksb + x % p.Hkv * p.ksh, p.ksl,
                                           kp + (x - x0) * kstride);
                     c.gk.pack_b_copy(p.Ev, p.S, p.v + x / p.Hkv * p.vsb + x % p.Hkv * p.vsh, p.vsl,
                                      vp + (x - x0) * vstride);
                   }
                 });
    dynamic_for((x1 - x0) * per_kv, std::max<int64_t>(1, (1 << 18) / work), [&](int64_t local) {
      item(x0 * per_kv + local, kp, vp, x0);
    });
  }
}

// Split-K over fixed chunks of keys; partial (m, l, o) per (b, h, chunk), merged in chunk order.
void forward_decode(const Ctx& c, float* out, float* lse) {
  const AttentionParams& p = c.p;
  const int NR = c.gk.nr;
  const int64_t BC = NR * std::max<int64_t>(1, kDecodeBlockKeys / NR);
  const int64_t chunk = round_up(kDecodeChunk, BC);
  const int64_t nch = std::max<int64_t>(1, ceil_div(p.S, chunk));
  const int64_t BH = p.B * p.Hq, L = p.L, Ev = p.Ev;
  const int64_t per = L * (Ev + 2);  // o, m, l of one partial
  // (b, h) rows a chunk at a time so the partials stay bounded (<= kPackedKFloats, or one (b, h)).
  const int64_t hc = std::clamp<int64_t>(kPackedKFloats / std::max<int64_t>(1, nch * per), 1, BH);
  float* part = t_part.get(hc * nch * per);
  const int64_t work = std::max<int64_t>(1, L * chunk * (p.E + Ev));
  for (int64_t h0 = 0; h0 < BH; h0 += hc) {
    const int64_t h1 = std::min(BH, h0 + hc);
    dynamic_for((h1 - h0) * nch, std::max<int64_t>(1, (1 << 18) / work), [&](int64_t it) {
      const int64_t bh = h0 + it / nch, ch = it % nch;
      float* o = part + it * per;
      float* m = o + L * Ev;
      float* l = m + L;
      std::fill(o, o + L * Ev, 0.0f);
      std::fill(m, m + L, kNegInf);
      std::fill(l, l + L, 0.0f);
      const int64_t k0 = ch * chunk, k1 = std::min(p.S, k0 + chunk);
      if (k0 < k1) accumulate(c, bh / p.Hq, bh % p.Hq, 0, L, k0, k1, BC, KvFrom::rows, nullptr, nullptr, o, m, l);
    });
    // the merge: on the calling thread when it is small (B1 H8 S4096: 8 x 8 partials of 66 floats), where a
    // second fork-join would cost more than it saves
    const int64_t merge_grain = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, nch * per));
    parallel_for(h1 - h0, merge_grain, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t u = b0; u < b1; ++u) {
        const int64_t bh = h0 + u;
        for (int64_t r = 0; r < L; ++r) {
          float mx = kNegInf;
          for (int64_t ch = 0; ch < nch; ++ch) {
            const float mc = part[(u * nch + ch) * per + L * Ev + r];
            if (mc > mx || mc != mc) mx = mc;  // a NaN partial keeps the row NaN
          }
          float* orow = out + (bh * L + r) * Ev;
          std::fill(orow, orow + Ev, 0.0f);
          float lsum = 0.0f;
          if (mx != kNegInf) {
            for (int64_t ch = 0; ch < nch; ++ch) {
              const float* pp = part + (u * nch + ch) * per;
              const float mc = pp[L * Ev + r];
              if (mc == kNegInf) continue;
              const float w = std::exp(mc - mx);
              lsum += pp[L * Ev + L + r] * w;
              for (int64_t e = 0; e < Ev; ++e) orow[e] += pp[r * Ev + e] * w;
            }
          }
          finish_rows(p, 1, orow, &mx, &lsum, lse + bh * L + r);
        }
      }
    });
  }
}

// GQA: the `group` query heads of a kv head read the same K and V. Folded into one head of group x L rows
// (row (h - h0) L + i), the decode items stream each K and V chunk once per kv head instead of once per
// query head, and the general path's query blocks span the heads of a group (fewer, fuller blocks per kv
// head: B1 Hq32 Hkv8 S4096 E128, L24 +5.7%, L64 +1.8%, L = S = 512 / 1024 level, paired). Out (B, Hq, L, Ev)
// and lse (B, Hq, L) are the same memory as (B, Hkv, group L, Ev) and (B, Hkv, group L). Possible when a
// row's scores depend on its query and mask row only (no causal or window band, which depends on the row
// index, no dropout, whose hash does) and the folded rows are evenly strided in q and in the mask (L = 1:
// rows one head apart; else the heads' rows contiguous). Each row's sums are the same as unfolded (the row
// kernels and the microkernels treat rows independently, and without a band every row's key blocks are the
// same), so the results are bitwise those of the per-head items.
bool fold_query_heads(const AttentionParams& p, int64_t group, AttentionParams& f) {
  if (group <= 1 || p.causal || p.window > 0 || p.dropout) return false;
  if (p.L > 1 && (p.qsh != p.L * p.qsl || (p.mask && p.msh != p.L * p.msl))) return false;
  f = p;
  f.Hq = p.Hkv;
  f.L = group * p.L;
  f.qsl = p.L == 1 ? p.qsh : p.qsl;
  f.qsh = group * p.qsh;
  f.msl = p.L == 1 ? p.msh : p.msl;
  f.msh = group * p.msh;
  return true;
}

}  // namespace

void attention_forward(const AttentionParams& p, float* out, float* lse, AttentionPath path) {
  const int64_t BH = p.B * p.Hq;
  if (BH == 0 || p.L == 0) return;
  if (p.S == 0) {  // no keys: every row fully masked
    std::fill(out, out + BH * p.L * p.Ev, 0.0f);
    std::fill(lse, lse + BH * p.L, kNegInf);
    return;
  }
  const Ctx c{p, select_kernels(gemm_tables), select_kernels(attention_tables), p.Hq / std::max<int64_t>(1, p.Hkv)};
  bool decode = path == AttentionPath::decode;
  if (path == AttentionPath::automatic || path == AttentionPath::automatic_output)
    decode = (p.L <= kDecodeMaxL && p.S >= 2 * kDecodeChunk) ||
             (path == AttentionPath::automatic_output && p.L <= kDecodeShortL);
  AttentionParams folded;
  const bool fold = fold_query_heads(p, c.group, folded);
  const Ctx& cf = fold ? Ctx{folded, c.gk, c.ak, 1} : c;
  if (decode)
    forward_decode(cf, out, lse);
  else
    forward_general(cf, out, lse);
}

}  // namespace fastml

namespace fastml {
namespace {


// One (b, kv head) item of the backward pass: dK / dV of the kv head and dQ of its group's query heads.
// Transposed blocks (rows = BK keys, columns = BQ queries) so that dK_j and dV_j are row blocks:
//   St = scale K_j Q_i^T (+ mask^T), Pt = exp(St - lse_i), dPt = V_j dO_i^T,
//   dV_j += Pdt dO_i, dSt = Pt o (dPdt - D_i), dK_j += scale dSt Q_i, dQ_i += scale dSt^T K_j,
// with D_i = rowsum(dO_i o O_i) and, under dropout, Pdt = Pt o Z / (1-p), dPdt = dPt o Z / (1-p).
// Key blocks [kb0, kb1) only (a fixed split of the keys when there are few (b, kv head) items); the
// group's dQ contribution goes to dqg (g heads x L x E, overwritten), dK / dV rows of those keys to dk / dv.
// Operands: Q^T, dO^T, Q and dO of each head are packed once per item as B slivers, K_j and V_j once per
// key block as A slivers and K_j as B slivers, so no product reads B (or, in St and dPt, A) in place
// (paired A/B: 2.6-4.1% faster backward than K, V, Q and dO read in place; the same sums in the same order).
void backward_item(const Ctx& c, int64_t b, int64_t hk, int64_t kb0, int64_t kb1, const float* go, const float* out,
                   const float* lse, float* dqg, float* dk, float* dv) {
  const AttentionParams& p = c.p;
  const GemmKernels& gk = c.gk;
  const int MR = gk.mr, NR = gk.nr;
  const int64_t BK = MR * std::max<int64_t>(1, 64 / MR);
  // Query blocks of 256 (the k of the dV and dK products): 5-6% faster than 64 at B4 H8 L = S = 512 and 2048
  // E64 (paired A/B, 2 threads, Zen 3). Under causal / window masks 64: the blocks the diagonal crosses are
  // computed whole, and 256 lost ~3% there.
  const int64_t BQ = NR * std::max<int64_t>(1, (p.causal || p.window > 0 ? 64 : 256) / NR);
  const int64_t g = c.group, L = p.L, S = p.S, E = p.E, Ev = p.Ev;
  const int64_t Lp = round_up(L, NR);
  const int64_t Ep = round_up(E, NR), Evp = round_up(Ev, NR);
  float* qt = t_qt.get(g * Lp * E);
  float* dot = t_dot.get(g * Lp * Ev);
  float* qb = t_qb.get(g * Ep * L);
  float* dob = t_dob.get(g * Evp * L);
  float* D = t_d.get(g * L);
  for (int64_t hh = 0; hh < g; ++hh) {
    const int64_t bh = b * p.Hq + hk * g + hh;
    gk.pack_b_transpose(L, E, p.q + bh * L * E, E, qt + hh * Lp * E);
    gk.pack_b_transpose(L, Ev, go + bh * L * Ev, Ev, dot + hh * Lp * Ev);
    gk.pack_b_copy(E, L, p.q + bh * L * E, E, qb + hh * Ep * L);
    gk.pack_b_copy(Ev, L, go + bh * L * Ev, Ev, dob + hh * Evp * L);
    for (int64_t i = 0; i < L; ++i) D[hh * L + i] = c.ak.dot(Ev, go + (bh * L + i) * Ev, out + (bh * L + i) * Ev);
  }
  std::fill(dqg, dqg + g * L * E, 0.0f);
  const int64_t bhk = b * p.Hkv + hk;
  const float* k = p.k + bhk * S * E;
  const float* v = p.v + bhk * S * Ev;
  float* dkh = dk + bhk * S * E;
  float* dvh = dv + bhk * S * Ev;
  const int64_t k_lo = kb0 * BK, k_hi = std::min(S, kb1 * BK);
  std::fill(dkh + k_lo * E, dkh + k_hi * E, 0.0f);
  std::fill(dvh + k_lo * Ev, dvh + k_hi * Ev, 0.0f);
  // Row stride of the score blocks padded by one cache line: the dV and dK products read their rows in place
  // as A, MR rows at a time, which at BQ = 256 floats would sit 1 KiB apart and share a few L1 sets.
  const int64_t LDS = BQ + 16;
  float* st = t_s.get(BK * LDS);
  float* dpt = t_dp.get(BK * LDS);
  float* pd = p.dropout ? t_p.get(BK * LDS) : nullptr;
  float* apack = t_apack.get(round_up(BQ, MR) * BK);
  if (p.dropout && static_cast<int64_t>(t_rowkeys.size()) < BQ) t_rowkeys.resize(static_cast<size_t>(BQ));
  GemmTile tq;
  tq.alpha = p.scale;
  tq.beta = 1.0f;
  float* kpa = t_kpa.get(round_up(BK, MR) * (E + Ev) + Ep * BK);
  float* vpa = kpa + round_up(BK, MR) * E;
  float* kbp = vpa + round_up(BK, MR) * Ev;
  for (int64_t j0 = k_lo; j0 < k_hi; j0 += BK) {
    const int64_t bk = std::min(BK, S - j0);
    gk.pack_a_transpose(bk, E, k + j0 * E, E, kpa);
    gk.pack_a_transpose(bk, Ev, v + j0 * Ev, Ev, vpa);
    gk.pack_b_copy(E, bk, k + j0 * E, E, kbp);
    for (int64_t hh = 0; hh < g; ++hh) {
      const int64_t h = hk * g + hh, bh = b * p.Hq + h;
      const float* lseh = lse + bh * L;
      const float* Dh = D + hh * L;
      float* dqh = dqg + hh * L * E;
      for (int64_t i0 = 0; i0 < L; i0 += BQ) {
        const int64_t bq = std::min(BQ, L - i0);
        if (block_empty(p, i0, i0 + bq, j0, j0 + bk)) continue;
        gemm_packed(gk, bk, bq, E, p.scale, 0.0f, kpa, qt + hh * Lp * E + i0 * E, st, LDS);
        if (p.mask) {  // the mask block transposed (keys as rows), then added row by row
          const float* mb = p.mask + b * p.msb + h * p.msh + i0 * p.msl + j0;
          gk.transpose(bq, bk, mb, p.msl, dpt, LDS);
          c.ak.add_rows(bk, bq, st, LDS, dpt, LDS);
        }
        if (!block_full(p, i0, i0 + bq, j0, j0 + bk)) {
          // key j is seen by the queries i in [j - diag, j - diag + window - 1] (band()): the columns outside
          // get -inf
          for (int64_t r = 0; r < bk; ++r) {
            const int64_t j = j0 + r - p.diag;
            const int64_t first = std::clamp<int64_t>(j - i0, 0, bq);
            const int64_t end = p.window > 0 ? std::clamp<int64_t>(j + p.window - i0, first, bq) : bq;
            float* row = st + r * LDS;
            std::fill(row, row + first, kNegInf);
            std::fill(row + end, row + bq, kNegInf);
          }
        }
        c.ak.exp_minus_cols(bk, bq, st, LDS, lseh + i0);
        gemm_packed(gk, bk, bq, Ev, 1.0f, 0.0f, vpa, dot + hh * Lp * Ev + i0 * Ev, dpt, LDS);
        const float* pv = st;
        if (p.dropout) {
          uint32_t* rk = t_rowkeys.data();
          for (int64_t q_ = 0; q_ < bq; ++q_)
            rk[q_] = attention_dropout_row_key(p.seed, static_cast<uint64_t>(bh), static_cast<uint64_t>(i0 + q_));
          c.ak.dropout_cols(bk, bq, st, pd, dpt, LDS, rk, static_cast<uint32_t>(j0), p.drop_threshold, p.drop_scale);
          pv = pd;
        }
        block_product(gk, false, bk, Ev, bq, 1.0f, 1.0f, pv, LDS, dob + hh * Evp * L + i0 * NR, 0, dvh + j0 * Ev, Ev,
                      NR * L);
        c.ak.ds_cols(bk, bq, st, LDS, dpt, LDS, Dh + i0);
        block_product(gk, false, bk, E, bq, p.scale, 1.0f, dpt, LDS, qb + hh * Ep * L + i0 * NR, 0, dkh + j0 * E, E,
                      NR * L);
        gk.pack_a_copy(bq, bk, dpt, LDS, apack);
        for (int64_t r = 0; r < bq; r += MR) {
          const int m = static_cast<int>(std::min<int64_t>(MR, bq - r));
          for (int64_t n0 = 0; n0 < E; n0 += NR) {
            const int nn = static_cast<int>(std::min<int64_t>(NR, E - n0));
            gk.micro(bk, apack + (r / MR) * MR * bk, kbp + n0 * bk, NR, dqh + (i0 + r) * E + n0, E, m, nn, tq);
          }
        }
      }
    }
  }
}

}  // namespace

void attention_backward(const AttentionParams& p, const float* grad_out, const float* out, const float* lse, float* dq,
                        float* dk, float* dv) {
  const int64_t nkv = p.B * p.Hkv;
  if (nkv == 0) return;
  if (p.L == 0 || p.S == 0) {
    std::fill(dq, dq + p.B * p.Hq * p.L * p.E, 0.0f);
    std::fill(dk, dk + nkv * p.S * p.E, 0.0f);
    std::fill(dv, dv + nkv * p.S * p.Ev, 0.0f);
    return;
  }
  const Ctx c{p, select_kernels(gemm_tables), select_kernels(attention_tables), p.Hq / p.Hkv};
  const int64_t g = c.group;
  // Few (b, kv head) items: the keys are also split into ns fixed groups (a function of the shape only,
  // so the result does not depend on the thread count); each writes its own dQ partial, summed in order.
  const int64_t BK = c.gk.mr * std::max<int64_t>(1, 64 / c.gk.mr);
  const int64_t nkb = ceil_div(p.S, BK);
  const int64_t ns = std::min(nkb, ceil_div(kBackwardMinItems, nkv));
  const int64_t per = g * p.L * p.E;
  float* part = ns > 1 ? t_part.get(nkv * ns * per) : nullptr;
  const int64_t work = std::max<int64_t>(1, g * p.L * (p.S / ns) * (p.E + p.Ev));
  dynamic_for(nkv * ns, std::max<int64_t>(1, (1 << 18) / work), [&](int64_t it) {
    const int64_t x = it / ns, sp = it % ns;
    float* dqg = ns > 1 ? part + it * per : dq + x * per;
    backward_item(c, x / p.Hkv, x % p.Hkv, nkb * sp / ns, nkb * (sp + 1) / ns, grad_out, out, lse, dqg, dk, dv);
  });
  if (ns > 1) {
    parallel_for(nkv * per, 16384, 16, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) {
        const int64_t x = e / per, r = e % per;
        float acc = part[x * ns * per + r];
        for (int64_t sp = 1; sp < ns; ++sp) acc += part[(x * ns + sp) * per + r];
        dq[e] = acc;
      }
    });
  }
}

}  // namespace fastml
