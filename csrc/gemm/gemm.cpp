// SGEMM driver (baseline flags): blocking, packing schedule, threading and the small-shape paths.
// Contract: gemm.h; kernels: gemm_kernels.h. Loops after BLIS (Van Zee & van de Geijn, 2015), with the
// operands' roles swapped because here A is the broadcast operand and B the vector operand:
//   jc (NC columns) -> pc (KC of K: the KC x NC panel of op(B) is packed by all threads, kept in L2)
//   -> row group (an MR x KC sliver of op(A), packed by the thread that takes it, kept in L1)
//   -> B slivers of the panel (NR columns each, streamed from L2) -> MR x NR microkernel.
// With several column panels the two outer loops swap (pc -> jc) and op(A)'s whole K block is packed
// once per pc by all threads, instead of once per sliver and panel (the transposing copy of A otherwise
// costs ~2-4% of a large product per panel).
// Block sizes come from the caches the CPU reports: KC = 2/3 L1 / (4 NR) capped at 256 (256 for 48 KiB,
// NR = 32), NC = L2 / 2 / (4 KC) (1024 for 2 MiB), capped at 4096 because the L3 of a shared VM is not ours.
// K blocks depend only on (K, ISA), so every element's sum order, and hence the result, is the same for
// any thread count. With enough rows each thread runs its own share of the rows as a one-thread product
// (run_row_split); otherwise threads take tasks (packing items, row groups x B-sliver ranges) in order from a
// list of phases with no barrier between them (core/parallel.h run_phases): a task waits only for the
// phases it reads (its packed panels, the previous K block of its tiles), the next B panel is packed
// (double-buffered) while the current one's last tiles run, and a thread descheduled by another process
// delays the call only by the task it holds.
// Paths that skip packing what they do not reuse:
//   - op(B) = B with few rows (M <= MC = 10 MR): B read in place, B sliver outer, A's K blocks packed
//     up front; with several row groups the first one's microkernel also copies the sliver into a
//     contiguous L1 buffer that the others read (micro_copy_b); pre-packed B with M <= MC (RNN steps)
//     runs in the same sliver-outer order on its packed slivers;
//   - few B slivers (N <= 4 NR, op(A) = A): the microkernel reads A's rows in place;
//   - M = 1 with op(B) = B or pre-packed B: GEMV streaming B row by row (sliver by sliver);
//   - few rows (M <= 4 NR) with op(A) = A, op(B) = B^T (nn.Linear): C^T = B A^T with B read in place;
//   - N <= 8, a tiny C, or M <= 16 with op(B) = B^T: dot products along K (K split across vector lanes).
#include "gemm/gemm.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

#include "core/check.h"
#include "core/parallel.h"
#include "core/scratch.h"
#include "gemm/gemm_kernels.h"

namespace fastml {
namespace {

constexpr int64_t kDotMaxM = 16;  // dot path: M <= 16 with op(B) = B^T (small-batch linear: no B^T packing) ...
constexpr int64_t kDotMaxN = 8;  // ... or N <= 8 (where a BLAS also switches to K-split dot products)
constexpr int64_t kDotMaxMN = 256;  // ... or a tiny C (<= 16 x 16): no tile to fill, and dot accuracy
constexpr int64_t kParallelMacs = 1 << 20; // below ~1M multiply-adds one thread is faster than fork-join
constexpr int64_t kMaxNc = 4096;
constexpr int64_t kMaxABlock = int64_t{4} << 20;  // floats (16 MiB): largest op(A) K block packed at once
constexpr int64_t kDirectAPanels = 1 << 20;  // bytes: the packed B panels of one direct-A step (run_packed)

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Per-thread packing buffers (core/scratch.h: grow-only, reused across calls, huge pages from 1 MiB).
thread_local Scratch t_apack;  // op(A) packed for one K block (calling thread's, shared by the team)
thread_local Scratch t_bpack;  // the KC x NC panel of op(B) (owned by the calling thread, shared by the team)
thread_local Scratch t_asliver;  // this thread's MR x KC sliver of op(A)
thread_local Scratch t_bsliver;  // this thread's KC x NR sliver of op(B) (B read in place, several row groups)

struct Blocking {
  int64_t kc, mc, nc;
};

std::atomic<int64_t> g_kc_override{0}, g_nc_override{0};  // tests and tuning only (gemm_set_blocking)

// The L2 size the CPU reports (256 KiB when it reports none).
int64_t l2_bytes() { return cpu_info().l2_bytes > 0 ? cpu_info().l2_bytes : 256 * 1024; }

Blocking blocking_for(const GemmKernels& kt) {
  const CpuInfo& ci = cpu_info();
  const int64_t l1 = ci.l1d_bytes > 0 ? ci.l1d_bytes : 32 * 1024;
  const int64_t l2 = l2_bytes();
  // KC: the B sliver (KC x NR) in about 2/3 of L1; <= 256 also bounds the sequential run of each sum.
  int64_t kc = (l1 * 2 / 3) / (4 * kt.nr) / 16 * 16;
  kc = std::clamp<int64_t>(kc, 64, 256);
  // The 32-column AVX-512 sliver would get only 160 steps of a 32 KiB L1, and each of its calls then loads
  // and stores the whole 14 x 32 C tile after few FMAs. It reads 128 B of B per 28 FMAs, which L2 supplies,
  // so it runs at 384 whatever L1 (Zen 4, 32 KiB L1, paired against 160, 2 threads: 256^3 1.16x, 1024^3
  // 1.05x, 2048^3 1.04x, 32x2048x768 1.13x, conv 1x1 C256 28x28 1.08x, 5x5 C64 28x28 1.04x; 320-512 within
  // 2% of each other). The 16-column AVX2 sliver stays at 256 (384 there: 0.89-1.07x on the same machine).
  if (kt.nr >= 32) kc = std::max<int64_t>(kc, 384);
  if (const int64_t o = g_kc_override.load(std::memory_order_relaxed)) kc = o;
  // MC: up to this many rows B is read in place (each B sliver from memory once, reused from L1 by all
  // row groups) and op(A)'s K block is packed once (<= L2 / 4). Measured: beyond ~10 row groups the
  // packed, L2-resident B panel is faster (2 threads at 256 x 256 x 256: 300 vs 270 GFLOP/s).
  int64_t mc = std::min<int64_t>(10 * kt.mr, (l2 / 4) / (4 * kc) / kt.mr * kt.mr);
  mc = std::max<int64_t>(mc, kt.mr);
  // The packed KC x NC panel of B stays in L2 while every A sliver streams over it.
  int64_t nc = std::clamp<int64_t>((l2 / 2) / (4 * kc), kt.nr, kMaxNc);
  if (const int64_t o = g_nc_override.load(std::memory_order_relaxed)) nc = std::max<int64_t>(o, kt.nr);
  return {kc, mc, nc / kt.nr * kt.nr};
}

}  // namespace

int64_t gemm_k_block(int64_t K, int64_t kc_max) {
  const int64_t nk = std::max<int64_t>(1, ceil_div(K, kc_max));
  return ceil_div(K, nk);
}

namespace {

struct Problem {
  Trans ta, tb;
  int64_t M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
  const GemmEpilogue* ep;
  const PackedB* pb;
};

GemmTile tile_for(const Problem& p, bool first, bool last, int64_t i, int64_t j) {
  GemmTile t;
  t.alpha = p.alpha;
  t.beta = first ? p.beta : 1.0f;
  if (last && p.ep && p.ep->bias && p.ep->bias_kind != GemmBias::none) {
    t.bias_kind = p.ep->bias_kind;
    t.bias = p.ep->bias + (t.bias_kind == GemmBias::row ? i : j);
  }
  return t;
}

bool has_act(const Problem& p) { return p.ep && p.ep->act != GemmAct::none; }

// K == 0 or alpha == 0: C = beta * C (+ bias, act) without reading A or B.
void run_scale(const Problem& p, const GemmKernels& kt) {
  for (int64_t i = 0; i < p.M; ++i) {
    float* c = p.C + i * p.ldc;
    for (int64_t j = 0; j < p.N; ++j) c[j] = p.beta == 0.0f ? 0.0f : p.beta * c[j];
    if (p.ep && p.ep->bias && p.ep->bias_kind != GemmBias::none) {
      for (int64_t j = 0; j < p.N; ++j) c[j] += p.ep->bias_kind == GemmBias::row ? p.ep->bias[i] : p.ep->bias[j];
    }
    if (has_act(p)) kt.act(p.ep->act, p.N, c);
  }
}

// Few rows or few columns: each C element is a dot product of a row of op(A) and a column of op(B),
// both read contiguously along K (copied once into scratch when the layout is not already so; only the
// small operand is ever copied). The dot kernel splits K across vector lanes and reduces them in a fixed
// tree, which is also what keeps these sums as accurate as a BLAS dot product.
void run_dot(const Problem& p, const GemmKernels& kt, int nt) {
  constexpr int64_t kColBlock = 64, kRowBlock = 16;
  const float* A = p.A;
  int64_t lda = p.lda;
  const float* B = p.B;
  int64_t ldb = p.ldb;
  const int64_t K = p.K;
  float* scratch = nullptr;
  if (p.ta == Trans::trans || p.tb == Trans::none) {
    scratch = t_bpack.get((p.ta == Trans::trans ? p.M * K : 0) + (p.tb == Trans::none ? p.N * K : 0));
    float* dst = scratch;
    if (p.ta == Trans::trans) {  // A is K x M: rows of op(A) are its columns
      for (int64_t i = 0; i < p.M; ++i)
        for (int64_t k = 0; k < K; ++k) dst[i * K + k] = p.A[k * p.lda + i];
      A = dst;
      lda = K;
      dst += p.M * K;
    }
    if (p.tb == Trans::none) {  // B is K x N: columns of op(B) become rows
      for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < p.N; ++j) dst[j * K + k] = p.B[k * p.ldb + j];
      B = dst;
      ldb = K;
    }
  }
  const int64_t ncb = ceil_div(p.N, kColBlock), nrb = ceil_div(p.M, kRowBlock);
  auto block = [&](int64_t blk) {
    const int64_t jb = blk % ncb, ib = blk / ncb;
    const int64_t j0 = jb * kColBlock, j1 = std::min(p.N, j0 + kColBlock);
    const int64_t i0 = ib * kRowBlock, i1 = std::min(p.M, i0 + kRowBlock);
    for (int64_t j = j0; j < j1; j += 8) {
      const int n = static_cast<int>(std::min<int64_t>(8, j1 - j));
      for (int64_t i = i0; i < i1; i += 4) {
        const int m = static_cast<int>(std::min<int64_t>(4, i1 - i));
        kt.dot(K, A + i * lda, lda, B + j * ldb, ldb, p.C + i * p.ldc + j, p.ldc, m, n, tile_for(p, true, true, i, j));
      }
    }
    if (has_act(p))
      for (int64_t i = i0; i < i1; ++i) kt.act(p.ep->act, j1 - j0, p.C + i * p.ldc + j0);
  };
  const int64_t nblocks = ncb * nrb;
  if (nt <= 1 || nblocks < 2) {
    for (int64_t b = 0; b < nblocks; ++b) block(b);
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t b = 0; b < nblocks; ++b) block(b);
}

// M = 1 with op(B) = B: stream B row by row (long contiguous reads; a tile kernel would read 32 columns
// of each row, one row per 4 KiB page or more apart). Each K block's partial sums t_b (sum in k order
// within the block, gemv_rows' 4-row tree) are then added into C in block order: c = t_0 alpha
// (+ beta c), c = c + t_b alpha, ..., + bias; the same operations in the same order whichever thread
// computes a block. With several threads the K blocks are the tasks (each reads whole rows of B: one
// long run per row, and a late thread only means the others take more blocks), their partials kept in
// scratch (<= kMaxGemvPartials floats, else column chunks per thread). Pre-packed B (M = 1 against packed
// weights) runs the same sums sliver by sliver (each sliver's K block is an NR-wide row-major block).
constexpr int64_t kMaxGemvPartials = int64_t{4} << 20;
thread_local Scratch t_gemv;  // K-block partials of the threaded GEMV (calling thread's, shared by the team)

void run_gemv(const Problem& p, const GemmKernels& kt, int nt) {
  const int64_t kc = p.pb ? p.pb->kc() : gemm_k_block(p.K, blocking_for(kt).kc);
  const int64_t NR = kt.nr, n_pad = round_up(p.N, NR), nkb = ceil_div(p.K, kc);
  const float* a = p.A;
  if (p.ta == Trans::trans && p.lda != 1) {  // A is K x 1: gather it
    float* g = t_apack.get(p.K);
    for (int64_t k = 0; k < p.K; ++k) g[k] = p.A[k * p.lda];
    a = g;
  }
  // t[0, n) = partial sums of K block pc over columns [j0, j0 + n)
  auto block_sums = [&](int64_t pc, int64_t j0, int64_t n, float* t) {
    const int64_t kb = std::min(kc, p.K - pc);
    std::fill(t, t + n, 0.0f);
    if (p.pb) {  // j0 is a multiple of NR
      for (int64_t j = j0; j < j0 + n; j += NR)
        kt.gemv_rows(kb, a + pc, p.pb->data() + pc * n_pad + j * kb, NR, std::min(NR, j0 + n - j), t + (j - j0));
    } else {
      kt.gemv_rows(kb, a + pc, p.B + pc * p.ldb + j0, p.ldb, n, t);
    }
  };
  // C[j0, j0 + n) += block b's partial t (the first block applies beta, the last the bias)
  auto add_block = [&](int64_t b, int64_t j0, int64_t n, const float* t) {
    float* c = p.C + j0;
    const bool first = b == 0, last = b == nkb - 1;
    for (int64_t j = 0; j < n; ++j) {
      float v = t[j] * p.alpha;
      if (!first) v = c[j] + v;
      else if (p.beta != 0.0f) v = p.beta * c[j] + v;
      if (last && p.ep && p.ep->bias && p.ep->bias_kind != GemmBias::none)
        v += p.ep->bias_kind == GemmBias::row ? p.ep->bias[0] : p.ep->bias[j0 + j];
      c[j] = v;
    }
  };
  if (nt > 1 && nkb > 1 && nkb * p.N <= kMaxGemvPartials) {
    float* part = t_gemv.get(nkb * p.N);
    constexpr int64_t kColChunk = 1024;  // columns per task of the summing pass
    const int64_t ncc = ceil_div(p.N, kColChunk);
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(dynamic, 1)
      for (int64_t b = 0; b < nkb; ++b) block_sums(b * kc, 0, p.N, part + b * p.N);
#pragma omp for schedule(dynamic, 1)
      for (int64_t cc = 0; cc < ncc; ++cc) {
        const int64_t j0 = cc * kColChunk, n = std::min(kColChunk, p.N - j0);
        for (int64_t b = 0; b < nkb; ++b) add_block(b, j0, n, part + b * p.N + j0);
        if (has_act(p)) kt.act(p.ep->act, n, p.C + j0);
      }
    }
    return;
  }
  // Column chunks: one per thread, at most 4096 columns (16 KiB of sums stay in L1), multiples of 64.
  const int64_t kChunk = std::min<int64_t>(4096, round_up(ceil_div(p.N, std::max(nt, 1)), 64));
  const int64_t nchunks = ceil_div(p.N, kChunk);
  auto chunk = [&](int64_t cb) {
    const int64_t j0 = cb * kChunk, n = std::min(kChunk, p.N - j0);
    float* t = t_bpack.get(kChunk);
    for (int64_t b = 0; b < nkb; ++b) {
      block_sums(b * kc, j0, n, t);
      add_block(b, j0, n, t);
    }
    if (has_act(p)) kt.act(p.ep->act, n, p.C + j0);
  };
  if (nt <= 1 || nchunks < 2) {
    for (int64_t cb = 0; cb < nchunks; ++cb) chunk(cb);
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t cb = 0; cb < nchunks; ++cb) chunk(cb);
}

void run_packed(const Problem& p, const GemmKernels& kt, int nt) {
  const int MR = kt.mr, NR = kt.nr;
  const Blocking bl = blocking_for(kt);
  const int64_t M = p.M, N = p.N, K = p.K;
  const int64_t kc = p.pb ? p.pb->kc() : gemm_k_block(K, bl.kc);
  // Direct B: with one row block each B sliver would be packed, then read once; read it in place instead.
  const bool direct_b = !p.pb && p.tb == Trans::none && M <= bl.mc;
  const bool pack_b = !p.pb && !direct_b;
  // Few B slivers (N <= 4 NR): each A element is used by at most 4 tiles, too few to repay packing A
  // (a transposing copy of all of A); the microkernel reads A's rows in place instead.
  const bool direct_a = p.ta == Trans::none && N <= 4 * NR;
  // Loop order. A sliver outer (packed or pre-packed B panel): the A sliver stays in L1 while the B panel
  // streams from L2 (BLIS's order with the operands' roles swapped: here A is broadcast, B the vector
  // operand). B read in place, or pre-packed with few row groups (an RNN step, batched inference): B
  // sliver outer, each sliver comes from memory (or L2) once and is reused from L1 by all A slivers, which
  // are packed up front into a shared buffer (the A-outer order would stream the whole B panel once per
  // row group).
  const bool b_outer = direct_b || (p.pb && M <= bl.mc);
  // Column panels of NC (their KC x NC block of packed B stays in L2) for packed and pre-packed B alike.
  const int64_t nc = b_outer ? round_up(N, NR) : std::min(bl.nc, round_up(N, NR));
  const int64_t n_pad = round_up(N, NR);
  const int64_t ng = ceil_div(M, MR);  // row groups (A slivers)
  // A packed once per K block for all column panels (rather than per sliver and per panel, which
  // repeats the transposing copy of A N / NC times) when there are several panels and the block fits.
  const int64_t npanels = ceil_div(N, nc);
  const bool hoist_a = !b_outer && !direct_a && npanels > 1 && ng * MR * kc <= kMaxABlock;
  // B read in place: A's K blocks packed a super-block (as many K blocks as fit in kMaxABlock) at a time.
  const int64_t a_super = b_outer ? std::max<int64_t>(1, kMaxABlock / (ng * MR * kc)) * kc : kc;
  float* ablock = ((b_outer || hoist_a) && !direct_a) ? t_apack.get(ng * MR * std::min(a_super, round_up(K, kc))) : nullptr;
  // K blocks per step: one, except with direct A (few columns: every row group reads its A rows in place
  // against the whole, narrow panel). There each step covers as many K blocks as keep their packed panels
  // within kDirectAPanels, so that a row group reads runs of several K blocks of its A rows (all 16 KiB of
  // a row at 4096 x 64 x 4096) instead of one (1 KiB at K blocks of 256): longer streams for the hardware
  // prefetchers, A read from memory once either way; the panels, re-read by every row group, come from L2
  // or L3. The tiles still receive their K blocks in order, each as one microkernel call (the same sums).
  // Paired, Zen 3, against one K block per step, 2 threads (1 thread): 4096 x 4096 x N at N = 64 1.10-1.26x
  // (1.16x), N = 32 1.29x (1.34x), N = 16 1.57x (1.72x); 2048 x 1024 x 64 and 1024 x 4096 x 48 level. With
  // a budget of 256 KiB (a quarter of K per step at N = 64) the three took 1.07-1.26x the time of 1 MiB.
  const int64_t spb =
      direct_a && !b_outer ? std::clamp<int64_t>(kDirectAPanels / (4 * kc * nc), 1, ceil_div(K, kc)) : 1;
  // Two B panel buffers (of spb K blocks each): the panels of step k + 1 are packed while step k's last
  // tiles are computed.
  float* bpanel = pack_b ? t_bpack.get(2 * spb * kc * nc) : nullptr;

  // C(i.., j..) tile of K block [pc, pc + kb). bcopy: b is read in place and left packed there
  // (micro_copy_b; packed A only).
  auto tile = [&](int64_t pc, int64_t kb, int64_t i, int64_t j, const float* a, const float* b, int64_t ldb,
                  float* bcopy) {
    const bool last = pc + kb == K;
    const int n = static_cast<int>(std::min<int64_t>(NR, N - j));
    const int m = static_cast<int>(std::min<int64_t>(MR, M - i));
    float* c = p.C + i * p.ldc + j;
    const GemmTile t = tile_for(p, pc == 0, last, i, j);
    if (direct_a) kt.micro_direct_a(kb, p.A + i * p.lda + pc, p.lda, b, ldb, c, p.ldc, m, n, t);
    else if (bcopy) kt.micro_copy_b(kb, a, b, ldb, bcopy, c, p.ldc, m, n, t);
    else kt.micro(kb, a, b, ldb, c, p.ldc, m, n, t);
    if (last && has_act(p))
      for (int r = 0; r < m; ++r) kt.act(p.ep->act, n, c + r * p.ldc);
  };
  // Packing task `it` of op(A)'s K blocks [pc0, pc1) (block pc at ablock + (pc - pc0) * ng * MR).
  constexpr int64_t kGr = 4;  // row groups per A packing task
  const int64_t a_tasks_per_block = ceil_div(ng, kGr);
  auto pack_a_task = [&](int64_t pc0, int64_t it) {  // ablock holds K blocks from pc0 on
    const int64_t pc = pc0 + it / a_tasks_per_block * kc, kb = std::min(kc, K - pc);
    const int64_t i = it % a_tasks_per_block * kGr * MR, rows = std::min<int64_t>(kGr * MR, M - i);
    float* dst = ablock + (pc - pc0) * ng * MR + i * kb;
    if (p.ta == Trans::none) kt.pack_a_transpose(rows, kb, p.A + i * p.lda + pc, p.lda, dst);
    else kt.pack_a_copy(rows, kb, p.A + pc * p.lda + i, p.lda, dst);
  };

  // The work as phases (core/parallel.h run_phases: no barriers; which thread runs a task never changes a
  // result). Each C tile receives its K blocks in pc order: a step's tiles start only after the previous
  // step's are all done.
  enum Kind { kPackA, kPackB, kTiles };
  struct Step {
    Kind kind;
    int64_t jc, pc;  // column panel, K block (A packing: the first K block packed)
    int64_t pc_end;  // B read in place: the tiles run K blocks [pc, pc_end) per sliver ...
    int64_t a0;      // ... on A packed from K block a0 on
    int64_t buf = 0;  // packed B: the panel buffer (0, 1) of this step (panels alternate in step order)
  };
  std::vector<Phase> phases;
  std::vector<Step> steps;
  auto add = [&](Step st, int64_t tasks, int64_t d0, int64_t d1, int64_t d2) {
    Phase ph;
    ph.tasks = tasks;
    ph.dep[0] = d0;
    ph.dep[1] = d1;
    ph.dep[2] = d2;
    phases.push_back(ph);
    steps.push_back(st);
    return static_cast<int64_t>(phases.size()) - 1;
  };
  if (b_outer) {
    // B read in place (or pre-packed: its slivers are contiguous already, nothing is copied), K block
    // outer: each block's rows of B are read whole, sliver after sliver (measured 5-12% faster at
    // 32 x 768 x 2048 than one sliver at a time, 128-byte pieces ldb apart, through all K). With one
    // thread the K blocks are phases of one task per sliver; with several, one task per thread takes a
    // contiguous range of slivers through every K block of a super-block (each thread then reads
    // ranges of B rows, 1.5 KiB at 768 columns: 0.87x -> 0.97x torch at 32 x 2048 x 768 against one task
    // per sliver). With several row groups the sliver's K block is copied into a contiguous per-thread
    // buffer: read in place, its kb rows lie ldb apart, and for a ldb that is a multiple of 1 KiB they all
    // fall into the same few L1 sets, so the reuse by the next row group would come from L2 instead of L1.
    // Without direct A, the first row group's microkernel makes that copy while it computes (the latency
    // of reading B in place overlaps its FMAs).
    const int64_t ns = ceil_div(N, NR);
    int64_t prev = -1;
    for (int64_t pc0 = 0; pc0 < K; pc0 += a_super) {
      const int64_t pc1 = std::min(K, pc0 + a_super);
      const int64_t pa = ablock ? add({kPackA, 0, pc0, pc1, pc0}, ceil_div(pc1 - pc0, kc) * a_tasks_per_block, prev, -1, -1) : -1;
      if (nt <= 1) {
        for (int64_t pc = pc0; pc < pc1; pc += kc) prev = add({kTiles, 0, pc, pc + kc, pc0}, ns, pa, prev, -1);
      } else {
        prev = add({kTiles, 0, pc0, pc1, pc0}, std::min<int64_t>(ns, nt), pa, prev, -1);
      }
    }
  } else {
    // Steps in (pc, jc) order when A is hoisted (its K block packed once for all panels), else (jc, pc).
    int64_t prev = -1, prev2 = -1, pa = -1, nstep = 0;
    auto step = [&](int64_t jc, int64_t pc) {
      const int64_t buf = nstep++ % 2;
      if (hoist_a && jc == 0) pa = add({kPackA, 0, pc, pc + kc, pc}, a_tasks_per_block, prev, -1, -1);
      const int64_t ns = ceil_div(std::min(nc, N - jc), NR);
      // the packing buffer of this step was last read by the step before the previous one
      const int64_t pc_end = std::min(K, pc + spb * kc);
      const int64_t pack_tasks = ceil_div(pc_end - pc, kc) * ceil_div(ns, int64_t{4});
      const int64_t pb = pack_b ? add({kPackB, jc, pc, pc_end, pc, buf}, pack_tasks, prev2, -1, -1) : -1;
      // Tasks: an A sliver against a range of the panel's B slivers (ranges only when there are too few row
      // groups to keep every thread busy).
      const int64_t q = ng >= 4 * nt ? 1 : std::min<int64_t>(ns, ceil_div(4 * nt, ng));
      prev2 = prev;
      prev = add({kTiles, jc, pc, pc_end, pc, buf}, ng * q, pb, pa, prev);
    };
    if (hoist_a) {
      for (int64_t pc = 0; pc < K; pc += kc)
        for (int64_t jc = 0; jc < N; jc += nc) step(jc, pc);
    } else {
      for (int64_t jc = 0; jc < N; jc += nc)
        for (int64_t pc = 0; pc < K; pc += spb * kc) step(jc, pc);
    }
  }

  run_phases(nt, phases, [&](int64_t ph, int64_t task) {
    const Step& st = steps[ph];
    if (st.kind == kPackA) {
      pack_a_task(st.pc, task);
      return;
    }
    if (b_outer) {
      const int64_t nsl = ceil_div(N, NR), R = phases[ph].tasks;
      const int64_t sl0 = nsl * task / R, sl1 = nsl * (task + 1) / R;  // this task's slivers, K block outer
      float* bsl = ng > 1 && !p.pb ? t_bsliver.get(NR * kc) : nullptr;
      for (int64_t pc = st.pc; pc < st.pc_end && pc < K; pc += kc) {
        const int64_t kb = std::min(kc, K - pc);
        const float* ablk = ablock ? ablock + (pc - st.a0) * ng * MR : nullptr;
        for (int64_t sl = sl0; sl < sl1; ++sl) {
          const int64_t j = sl * NR;
          const float* b = p.pb ? p.pb->data() + pc * n_pad + j * kb : p.B + pc * p.ldb + j;
          int64_t ldb = p.pb ? NR : p.ldb;
          int64_t g0 = 0;
          if (bsl) {
            if (direct_a) {
              kt.pack_b_copy(std::min<int64_t>(NR, N - j), kb, b, ldb, bsl);
            } else {
              tile(pc, kb, 0, j, ablk, b, ldb, bsl);
              g0 = 1;
            }
            b = bsl;
            ldb = NR;
          }
          for (int64_t g = g0; g < ng; ++g)
            tile(pc, kb, g * MR, j, ablk ? ablk + g * MR * kb : nullptr, b, ldb, nullptr);
        }
      }
      return;
    }
    const int64_t jc = st.jc, nb = std::min(nc, N - jc), ns = ceil_div(nb, NR);
    // the step's K blocks: block pc (kb = its length) has its packed panel at panel(pc)
    auto packed_panel = [&](int64_t pc) { return bpanel + (st.buf * spb + (pc - st.pc) / kc) * kc * nc; };
    auto panel = [&](int64_t pc, int64_t kb) -> const float* {
      return pack_b ? packed_panel(pc) : p.pb->data() + pc * n_pad + jc * kb;
    };
    if (st.kind == kPackB) {  // task: up to 4 slivers of one K block
      const int64_t per = ceil_div(ns, int64_t{4}), pc = st.pc + task / per * kc, kb = std::min(kc, K - pc);
      const int64_t s0 = task % per * 4, j = jc + s0 * NR, rows = std::min<int64_t>(4 * NR, jc + nb - j);
      float* dst = packed_panel(pc) + s0 * NR * kb;
      if (p.tb == Trans::none) kt.pack_b_copy(rows, kb, p.B + pc * p.ldb + j, p.ldb, dst);
      else kt.pack_b_transpose(rows, kb, p.B + j * p.ldb + pc, p.ldb, dst);
      return;
    }
    if (direct_a) {  // A's rows read in place: each row group runs the step's K blocks in order
      const int64_t q = phases[ph].tasks / ng;
      const int64_t g = task / q, r = task % q;
      const int64_t s0 = ns * r / q, s1 = ns * (r + 1) / q;
      for (int64_t pc = st.pc; pc < st.pc_end; pc += kc) {
        const int64_t kb = std::min(kc, K - pc);
        const float* bp = panel(pc, kb);
        for (int64_t s = s0; s < s1; ++s) tile(pc, kb, g * MR, jc + s * NR, nullptr, bp + s * NR * kb, NR, nullptr);
      }
      return;
    }
    const int64_t pc = st.pc, kb = std::min(kc, K - pc);
    const float* bp = panel(pc, kb);
    const int64_t q = phases[ph].tasks / ng;
    const int64_t g = task / q, r = task % q;
    const int64_t s0 = ns * r / q, s1 = ns * (r + 1) / q;
    const float* a = nullptr;
    if (hoist_a) {
      a = ablock + g * MR * kb;
    } else {  // this task's A sliver, packed by the thread that runs it
      float* asl = t_asliver.get(MR * kc);
      const int64_t i = g * MR, rows = std::min<int64_t>(MR, M - i);
      if (p.ta == Trans::none) kt.pack_a_transpose(rows, kb, p.A + i * p.lda + pc, p.lda, asl);
      else kt.pack_a_copy(rows, kb, p.A + pc * p.lda + i, p.lda, asl);
      a = asl;
    }
    for (int64_t s = s0; s < s1; ++s) tile(pc, kb, g * MR, jc + s * NR, a, bp + s * NR * kb, NR, nullptr);
  });
}

thread_local Scratch t_ctrans;  // C^T of the swapped small-M path

// Few rows of op(A) = A against a wide op(B) = B^T (a batch of inputs times a weight matrix: nn.Linear's
// x W^T). The packed path would transpose-copy all of B per call and then use each packed sliver for at
// most 4 row groups (~2x the bytes of the product itself). Computed as C^T = B A^T instead: B becomes
// the operand the microkernel reads in place (direct A), the few rows of A the packed one, and C^T,
// formed in scratch, is transposed into C. Every element is the same chain of FMAs over the same K
// blocks (a*b == b*a), with alpha, beta and the bias applied by the same formula.
bool swap_small_m(const Problem& p, const GemmKernels& kt) {
  return !p.pb && p.ta == Trans::none && p.tb == Trans::trans && p.M <= 4 * kt.nr && p.N > 4 * kt.nr;
}

void run_swapped(const Problem& p, const GemmKernels& kt, int nt) {
  constexpr int64_t kJb = 64;                    // columns of C per transpose block (their C^T rows stay in L1)
  constexpr int64_t kMaxCt = int64_t{4} << 20;   // floats of C^T in scratch at once (16 MiB): wider C in chunks
  const int64_t M = p.M, N = p.N;
  const int64_t chunk = std::max<int64_t>(kJb, kMaxCt / M / kJb * kJb);
  float* ct = t_ctrans.get(M * std::min(N, chunk));
  for (int64_t j0 = 0; j0 < N; j0 += chunk) {
    const int64_t nb = std::min(chunk, N - j0);
    auto transpose = [&](bool to_c, int64_t b) {  // columns [j0 + b kJb, ...) of C <-> rows of C^T
      const int64_t u0 = b * kJb, u1 = std::min(nb, u0 + kJb);
      for (int64_t i = 0; i < M; ++i) {
        float* c = p.C + i * p.ldc + j0;
        if (to_c) for (int64_t u = u0; u < u1; ++u) c[u] = ct[u * M + i];
        else for (int64_t u = u0; u < u1; ++u) ct[u * M + i] = c[u];
      }
    };
    auto transpose_all = [&](bool to_c) {
      const int64_t blocks = ceil_div(nb, kJb);
      if (nt <= 1) {
        for (int64_t b = 0; b < blocks; ++b) transpose(to_c, b);
        return;
      }
#pragma omp parallel for num_threads(nt) schedule(static)
      for (int64_t b = 0; b < blocks; ++b) transpose(to_c, b);
    };
    if (p.beta != 0.0f) transpose_all(false);
    GemmEpilogue ep;
    if (p.ep) {  // C's column bias is C^T's row bias and vice versa
      ep = *p.ep;
      if (ep.bias_kind == GemmBias::row) {
        ep.bias_kind = GemmBias::col;
      } else if (ep.bias_kind == GemmBias::col) {
        ep.bias_kind = GemmBias::row;
        if (ep.bias) ep.bias += j0;
      }
    }
    const Problem q{Trans::none, Trans::trans, nb, M, p.K, p.alpha, p.B + j0 * p.ldb, p.ldb, p.A, p.lda, p.beta, ct, M,
                    p.ep ? &ep : nullptr, nullptr};
    run_packed(q, kt, nt);
    transpose_all(true);
  }
}

// Several threads, a packed product with enough rows: each thread computes its own contiguous share of
// the rows as an independent one-thread product (its own packed panels of B, no synchronisation but the
// final join) instead of the team sharing packed B panels. Measured at 2 threads against the shared
// schedule (A/B, torch in the same process): 192^3 0.87x -> 1.11x torch, 256^3 0.92x -> 1.06x (each half,
// 128 rows, then reads B in place), 384^3 0.88x -> 0.97x, 768^3 0.93x -> 0.98x, 4096 x 64 x 4096 +15%,
// 1024^3 to 4096^3 level or better: the shared schedule lost to the imbalance of whole row groups (19 of
// them at 256 rows), to the wait for the packed panel, and to reading half of every panel from the other
// core's cache. Each thread reads all of op(B), so the shares must be large enough to amortise it (>= 4
// row groups), and op(B) = B with few rows and more than an L2 of it (the B-outer path, whose threads split
// B's columns and read each element once) is left to run_packed; 128^3 (B in L2) splits: 0.99x -> 1.06x.
// Every C row is the same chain of FMAs whichever share it falls in: the result does not depend on the
// thread count.
bool split_rows(const Problem& p, const GemmKernels& kt, int nt) {
  if (nt <= 1 || p.pb || p.M < int64_t{4} * kt.mr * nt) return false;
  return !(p.tb == Trans::none && p.M <= blocking_for(kt).mc && p.K * p.N * 4 > l2_bytes());
}

void run_row_split(const Problem& p, const GemmKernels& kt, int nt) {
#pragma omp parallel num_threads(nt)
  {
    const int T = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t r0 = p.M * t / T, r1 = p.M * (t + 1) / T;
    Problem q = p;
    q.M = r1 - r0;
    q.A = p.ta == Trans::none ? p.A + r0 * p.lda : p.A + r0;
    q.C = p.C + r0 * p.ldc;
    GemmEpilogue e;
    if (p.ep) {
      e = *p.ep;
      if (e.bias && e.bias_kind == GemmBias::row) e.bias += r0;
      q.ep = &e;
    }
    if (q.M > 0) run_packed(q, kt, 1);
  }
}

void run_one(const Problem& p, const GemmKernels& kt, int nt) {
  if (p.M == 0 || p.N == 0) return;
  if (p.K == 0 || p.alpha == 0.0f) {
    run_scale(p, kt);
    return;
  }
  const bool dot = p.N <= kDotMaxN || p.M * p.N <= kDotMaxMN || (p.tb == Trans::trans && p.M <= kDotMaxM);
  if (!p.pb && dot) {
    run_dot(p, kt, nt);
    return;
  }
  if (p.M == 1 && (p.pb || p.tb == Trans::none)) {
    run_gemv(p, kt, nt);
    return;
  }
  if (swap_small_m(p, kt)) {
    run_swapped(p, kt, nt);
    return;
  }
  if (split_rows(p, kt, nt)) {
    run_row_split(p, kt, nt);
    return;
  }
  run_packed(p, kt, nt);
}

int threads_for_gemm(int64_t M, int64_t N, int64_t K) {
  const int nt = get_num_threads();
  if (nt <= 1 || omp_in_parallel()) return 1;
  return M * N * K >= kParallelMacs ? nt : 1;
}

void check_shapes(const char* op, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                  int64_t ldc) {
  FASTML_CHECK(M >= 0 && N >= 0 && K >= 0, op, ": expected non-negative M, N, K, got ", M, ", ", N, ", ", K);
  const int64_t wa = ta == Trans::none ? K : M, wb = tb == Trans::none ? N : K;
  FASTML_CHECK(lda >= std::max<int64_t>(1, wa), op, ": expected lda >= ", std::max<int64_t>(1, wa), ", got ", lda);
  FASTML_CHECK(ldb >= std::max<int64_t>(1, wb), op, ": expected ldb >= ", std::max<int64_t>(1, wb), ", got ", ldb);
  FASTML_CHECK(ldc >= std::max<int64_t>(1, N), op, ": expected ldc >= ", std::max<int64_t>(1, N), ", got ", ldc);
}

}  // namespace

void sgemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const GemmEpilogue* ep) {
  check_shapes("sgemm", ta, tb, M, N, K, lda, ldb, ldc);
  const Problem p{ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, nullptr};
  run_one(p, select_kernels(gemm_tables), threads_for_gemm(M, N, K));
}

void sgemm_batched(int64_t batch, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta, float* C,
                   int64_t ldc, int64_t stride_c, const GemmEpilogue* ep) {
  check_shapes("sgemm_batched", ta, tb, M, N, K, lda, ldb, ldc);
  FASTML_CHECK(batch >= 0, "sgemm_batched: expected batch >= 0, got ", batch);
  if (batch == 0) return;
  const GemmKernels& kt = select_kernels(gemm_tables);
  auto item = [&](int64_t b, int nt) {
    const Problem p{ta, tb, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb, beta, C + b * stride_c,
                    ldc, ep, nullptr};
    run_one(p, kt, nt);
  };
  const int nt = threads_for_gemm(M * batch, N, K);
  // Many small products: one thread per product; otherwise each product uses all threads. Either way
  // every product is computed by the same kernels in the same order, so results do not depend on nt.
  if (nt > 1 && batch >= nt && M * N * K < 8 * kParallelMacs) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t b = 0; b < batch; ++b) item(b, 1);
    return;
  }
  const int nt_item = threads_for_gemm(M, N, K);
  for (int64_t b = 0; b < batch; ++b) item(b, nt_item);
}

void gemm_set_blocking(int64_t kc, int64_t nc) {
  FASTML_CHECK(kc >= 0 && nc >= 0, "gemm_set_blocking: expected kc, nc >= 0 (0 = from the caches), got ", kc, ", ",
               nc);
  g_kc_override.store(kc, std::memory_order_relaxed);
  g_nc_override.store(nc, std::memory_order_relaxed);
}

GemmBlocking gemm_blocking() {
  const GemmKernels& kt = select_kernels(gemm_tables);
  const Blocking bl = blocking_for(kt);
  return {kt.mr, kt.nr, bl.kc, bl.mc, bl.nc};
}

namespace {
void check_pack_args(Trans tb, int64_t K, int64_t N, int64_t ldb) {
  FASTML_CHECK(K >= 0 && N >= 0, "pack_b: expected non-negative K, N, got ", K, ", ", N);
  const int64_t wb = tb == Trans::none ? N : K;
  FASTML_CHECK(ldb >= std::max<int64_t>(1, wb), "pack_b: expected ldb >= ", std::max<int64_t>(1, wb), ", got ", ldb);
}
}  // namespace

PackedB::PackedB(Trans tb, int64_t K, int64_t N, const float* B, int64_t ldb) : K_(K), N_(N) {
  check_pack_args(tb, K, N, ldb);
  const int64_t bytes = round_up(storage_floats(K, N) * int64_t(sizeof(float)), 64);
  data_ = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(bytes)));
  if (!data_) throw std::bad_alloc();
  pack(tb, B, ldb);
}

PackedB::PackedB(Trans tb, int64_t K, int64_t N, const float* B, int64_t ldb, float* storage)
    : K_(K), N_(N), data_(storage), owned_(false) {
  check_pack_args(tb, K, N, ldb);
  pack(tb, B, ldb);
}

int64_t PackedB::storage_floats(int64_t K, int64_t N) {
  return std::max<int64_t>(1, K * round_up(N, select_kernels(gemm_tables).nr));
}

void PackedB::pack(Trans tb, const float* B, int64_t ldb) {
  const int64_t K = K_, N = N_;
  isa_ = active_isa();
  const GemmKernels& kt = select_kernels(gemm_tables);
  kc_ = gemm_k_block(K, blocking_for(kt).kc);
  const int64_t n_pad = round_up(N, kt.nr);
  for (int64_t pc = 0; pc < K; pc += kc_) {
    const int64_t kb = std::min(kc_, K - pc);
    float* dst = data_ + pc * n_pad;
    if (N == 0) continue;
    if (tb == Trans::none) kt.pack_b_copy(N, kb, B + pc * ldb, ldb, dst);
    else kt.pack_b_transpose(N, kb, B + pc, ldb, dst);
  }
}

PackedB::~PackedB() {
  if (owned_) std::free(data_);
}

void sgemm_packed(Trans ta, int64_t M, float alpha, const float* A, int64_t lda, const PackedB& B, float beta,
                  float* C, int64_t ldc, const GemmEpilogue* ep) {
  const int64_t N = B.n(), K = B.k();
  check_shapes("sgemm_packed", ta, Trans::none, M, N, K, lda, std::max<int64_t>(1, N), ldc);
  FASTML_CHECK(B.isa() == active_isa(), "sgemm_packed: expected B packed for the active ISA ",
               isa_name(active_isa()), ", got one packed for ", isa_name(B.isa()), " (pack it again)");
  const Problem p{ta, Trans::none, M, N, K, alpha, A, lda, nullptr, 0, beta, C, ldc, ep, &B};
  run_one(p, select_kernels(gemm_tables), threads_for_gemm(M, N, K));
}

}  // namespace fastml
