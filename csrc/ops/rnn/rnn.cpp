// Recurrent layer entry: input-projection GEMM, the time loop (the forward paths of rnn.h: GEMV split of
// hidden units, unit blocks of a cell step, unit blocks with L2-resident W_hh slices (large LSTM), or row
// blocks; the two directions of a bidirectional layer on one thread each), and the backward recurrence
// followed by the weight-gradient GEMMs. Contract and maths: rnn.h.
// Test: pytest tests/test_rnn.py. Bench: python -m fastml.bench --ops rnn
#include "ops/rnn/rnn.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "core/parallel.h"
#include "core/reduce.h"
#include "core/scratch.h"
#include "gemm/gemm.h"
#include "gemm/gemm_kernels.h"

namespace fastml {

namespace {

// Per-thread scratch reused across calls (no allocation once warm, hence no page faults on first touch).
// Slot 1: every thread's gate tile; slot 2: every thread's reversed-pass rows in forward_gemv; slots
// used by the calling thread per direction d: 4 + 2d GRU input projection, 5 + 2d bias, 8 + 3d backward
// dA, 9 + 3d backward GRU dA_h, 10 + 3d backward dH (projection); packed weights: 14 + 2d W_hh^T,
// 15 + 2d W_hr^T (forward), 18 + 2d W_hh, 19 + 2d W_hr (backward); forward_cols: 22 + b the claimant's
// W_hh^T slice of block b (b < 2), 24 its gathered rows; forward_trans: 25 + d x^T, 27 + d h^T, 29 + d c^T.
// 64-byte aligned (core/scratch.h): packed weights are read by the microkernels in whole cache lines.
float* scratch(int slot, int64_t n) {
  thread_local Scratch bufs[31];
  return bufs[slot].get(n);
}

// Rows per block: a function of N and of the number of directions run together (never of the thread
// count, so results do not depend on it). One direction: two blocks at least so that two threads have
// work; two directions (one thread each): whole batches up to 32 rows, so each thread streams only its
// own W_hh with the largest M. At most 32 rows so a block's gate tile stays small.
int64_t row_block(int64_t N, int count) {
  const int64_t want = count == 2 ? N : (N + 1) / 2;
  return std::min<int64_t>(32, std::max<int64_t>(4, want));
}

inline void copy(float* d, const float* s, int64_t n) { std::memcpy(d, s, static_cast<size_t>(n) * sizeof(float)); }
inline void zero(float* d, int64_t n) { std::memset(d, 0, static_cast<size_t>(n) * sizeof(float)); }

struct Ctx {
  const RnnLayer& L;
  const RnnSaved& s;
  int64_t T, N, I, H, P, G, GH, SW;
  bool lstm, gru, proj;
  Ctx(const RnnLayer& l, const RnnSaved& sv)
      : L(l), s(sv), T(l.T), N(l.N), I(l.I), H(l.H), P(l.P), G(l.gates()), GH(l.gates() * l.H),
        SW(l.saved_width()), lstm(l.mode == RnnMode::lstm), gru(l.mode == RnnMode::gru), proj(l.w_hr != nullptr) {}
  int64_t time(int64_t k) const { return L.reverse ? T - 1 - k : k; }
  // Forward: where step t's state (hprev, cprev), m (ms) and GRU saved gates live: all T steps, or two
  // slots (t & 1) when nothing is kept for a backward (RnnSaved::ring).
  int64_t slot(int64_t t) const { return s.ring ? (t & 1) : t; }
  float* hp(int64_t t) const { return s.hprev + slot(t) * N * P; }
  float* cp(int64_t t) const { return s.cprev + slot(t) * N * H; }
  float* mp(int64_t t) const { return s.ms + slot(t) * N * H; }
  bool active(int64_t n, int64_t t) const { return L.lengths == nullptr || t < L.lengths[n]; }
};

// Forward fused pass of units [j0, j0 + cnt) of row n at time t (tn: next time or -1), gate stride H.
// `rec` is the row's recurrent product h W_hh^T at unit j0 of its first gate, gates `rs` apart (a
// per-thread tile), or null when it was accumulated into the saved gates already (LSTM / RNN; the GRU
// always has it apart). Writes out / hn / cn and the next step's hprev / cprev slices; inactive rows keep
// their state and output zeros.
void forward_row(const Ctx& c, const RnnKernels& kt, const float* gin, const float* rec, int64_t rs, int64_t n,
                 int64_t t, int64_t tn, int64_t j0, int64_t cnt, float* out, float* hn, float* cn) {
  const RnnSaved& s = c.s;
  const int64_t P = c.P, H = c.H, N = c.N;
  float* orow = out + (t * N + n) * P;
  if (!c.active(n, t)) {
    if (c.proj) zero(c.mp(t) + n * H + j0, cnt);  // the block zeroes the (P-wide) output row
    else zero(orow + j0, cnt);
    if (tn >= 0) {
      if (!c.proj) copy(c.hp(tn) + n * P + j0, hn + n * P + j0, cnt);
      if (c.lstm) copy(c.cp(tn) + n * H + j0, cn + n * H + j0, cnt);
    }
    return;
  }
  // the row's gates: the input projection of step t (LSTM, RNN), or the GRU's saved gates (their slot)
  float* g = s.gates + ((c.gru ? c.slot(t) : t) * N + n) * c.SW;
  if (c.lstm) {
    float* m = c.proj ? c.mp(t) + n * H : orow;
    kt.lstm_fwd(cnt, H, g + j0, rec, rs, c.cp(t) + n * H + j0, cn + n * H + j0, m + j0, s.ring ? 0 : 1);
    if (tn >= 0) copy(c.cp(tn) + n * H + j0, cn + n * H + j0, cnt);
    if (c.proj) return;  // h comes from the projection GEMM of the whole block
  } else if (c.gru) {
    const float* b_hn = c.L.b_hh ? c.L.b_hh + 2 * H + j0 : nullptr;
    kt.gru_fwd(cnt, H, gin + (t * N + n) * c.GH + j0, rec, rs, b_hn, c.hp(t) + n * P + j0, g + j0, orow + j0);
  } else {
    // kept for a backward: h' in place of the gates, then copied out; else straight into the output row
    kt.rnn_fwd(cnt, g + j0, rec, s.ring ? orow + j0 : g + j0, c.L.relu ? 1 : 0);
    if (!s.ring) copy(orow + j0, g + j0, cnt);
  }
  copy(hn + n * P + j0, orow + j0, cnt);
  if (tn >= 0) copy(c.hp(tn) + n * P + j0, orow + j0, cnt);
}

// Rows [r0, r1) through all T steps (one thread, no synchronisation).
void forward_block(const Ctx& c, const RnnKernels& kt, const PackedB& pk_hh, const PackedB* pk_hr, const float* gin,
                   int64_t r0, int64_t r1, float* out, float* hn, float* cn) {
  const RnnSaved& s = c.s;
  const int64_t m = r1 - r0, N = c.N, P = c.P, H = c.H, GH = c.GH;
  float* tile = scratch(1, m * std::max(GH, P));
  for (int64_t k = 0; k < c.T; ++k) {
    const int64_t t = c.time(k), tn = k + 1 < c.T ? c.time(k + 1) : -1;
    const float* A = c.hp(t) + r0 * P;
    if (c.gru) {
      sgemm_packed(Trans::none, m, 1.0f, A, P, pk_hh, 0.0f, tile, GH);
    } else {
      sgemm_packed(Trans::none, m, 1.0f, A, P, pk_hh, 1.0f, s.gates + (t * N + r0) * GH, GH);
    }
    for (int64_t n = r0; n < r1; ++n)
      forward_row(c, kt, gin, c.gru ? tile + (n - r0) * GH : nullptr, H, n, t, tn, 0, H, out, hn, cn);
    if (c.proj) {
      sgemm_packed(Trans::none, m, 1.0f, c.mp(t) + r0 * H, H, *pk_hr, 0.0f, tile, P);
      for (int64_t n = r0; n < r1; ++n) {
        float* orow = out + (t * N + n) * P;
        if (c.active(n, t)) {
          copy(orow, tile + (n - r0) * P, P);
          copy(hn + n * P, orow, P);
        } else {
          zero(orow, P);
        }
        if (tn >= 0) copy(c.hp(tn) + n * P, hn + n * P, P);
      }
    }
  }
}

// Batch <= kGemvRows, no projection: threads split the hidden units; W rows are streamed once per step
// and batch row; with T == 1 (a cell step) the input projection is computed here too (no GEMM call).
// Every other pass over the weights (one per batch row and step, counted across calls) runs backwards:
// gates, W_hh before W_ih, and rows in reverse. Each thread's weights (3 MiB for an LSTM cell
// 256 -> 512 on two threads) exceed its 2 MiB L2, and a pass in a fixed order finds none of them there
// (the lines it needs first are the ones it evicted last), while the reversed pass starts with the most
// recently used ones: 98 -> 57 us per pass in a two-thread model of that cell. No sum changes: the LSTM /
// RNN cell's reversed pass sums h W_hh^T apart and adds it after x W_ih^T + b, as the forward pass does.
std::atomic<unsigned> g_gemv_passes{0};

void forward_gemv(const Ctx& c, const RnnKernels& kt, const float* bias, float* gin, bool fuse_in, float* out,
                  float* hn, float* cn, int nt) {
  const unsigned pass0 = g_gemv_passes.fetch_add(static_cast<unsigned>(c.T * c.N), std::memory_order_relaxed);
  const int64_t H = c.H, P = c.P, N = c.N, I = c.I, GH = c.GH, G = c.G;
  float* ghbuf = c.gru ? scratch(1, N * GH) : nullptr;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    int64_t chunk = (H + nth - 1) / nth;
    chunk = (chunk + 7) / 8 * 8;
    const int64_t j0 = std::min<int64_t>(H, chunk * tid), j1 = std::min<int64_t>(H, j0 + chunk), cnt = j1 - j0;
    // LSTM / RNN cell, reversed pass: h W_hh^T is summed here first, then added after x W_ih^T + b
    float* rec = fuse_in && !c.gru && cnt > 0 ? scratch(2, cnt) : nullptr;
    for (int64_t k = 0; k < c.T; ++k) {
      const int64_t t = c.time(k), tn = k + 1 < c.T ? c.time(k + 1) : -1;
      for (int64_t n = 0; n < N && cnt > 0; ++n) {
        if (c.active(n, t)) {
          const float* h = c.hp(t) + n * P;
          float* grow = gin + (t * N + n) * GH;
          const int rev = static_cast<int>((pass0 + static_cast<unsigned>(k * N + n)) & 1u);
          for (int64_t qi = 0; qi < G; ++qi) {
            const int64_t q = rev ? G - 1 - qi : qi;
            float* y = grow + q * H + j0;
            const float* wi = c.L.w_ih + (q * H + j0) * I;
            const float* wh = c.L.w_hh + (q * H + j0) * P;
            auto in = [&] {  // y = x W_ih^T + b (a cell step)
              if (bias) copy(y, bias + q * H + j0, cnt); else zero(y, cnt);
              kt.dot_rows(cnt, I, wi, I, c.L.x + n * I, y, rev);
            };
            if (c.gru) {  // h W_hh^T goes to its own rows: only the order of the two passes changes
              float* yh = ghbuf + n * GH + q * H + j0;
              if (fuse_in && !rev) in();
              zero(yh, cnt);
              kt.dot_rows(cnt, P, wh, P, h, yh, rev);
              if (fuse_in && rev) in();
            } else if (!fuse_in || !rev) {
              if (fuse_in) in();
              kt.dot_rows(cnt, P, wh, P, h, y, rev);
            } else {  // -0 is the identity of +: rec[r] is exactly the dot that forward adds
              std::fill(rec, rec + cnt, -0.0f);
              kt.dot_rows(cnt, P, wh, P, h, rec, rev);
              in();
              for (int64_t r = 0; r < cnt; ++r) y[r] += rec[r];
            }
          }
        }
        forward_row(c, kt, gin, c.gru ? ghbuf + n * GH + j0 : nullptr, H, n, t, tn, j0, cnt, out, hn, cn);
      }
#pragma omp barrier
    }
  }
}

// Hidden units per block of forward_units, forward_cols and forward_trans: two fixed blocks, multiples of
// 16 units.
inline int64_t unit_block(int64_t H) { return std::max<int64_t>(16, ((H + 1) / 2 + 15) / 16 * 16); }

// One step at batch > kGemvRows without projection or caller's packs (a cell call): the hidden units are
// cut into two fixed blocks (all G gates of a unit in one block; never a function of the thread count);
// per block, G column slices of x W_ih^T (+ bias) and h W_hh^T run as serial GEMMs on one thread and the
// fused gate pass consumes them while they are cache-hot: one fork-join per step instead of three.
void forward_units(const Ctx& c, const RnnKernels& kt, const float* bias, float* gin, float* out, float* hn,
                   float* cn, bool serial) {
  const int64_t N = c.N, I = c.I, H = c.H, P = c.P, G = c.G, GH = c.GH;
  const int64_t ub = unit_block(H), nb = (H + ub - 1) / ub;
  const float* h0 = c.hp(0);  // step 0's state (copied from h0 by prepare)
  auto blocks = [&](int64_t b, int64_t e) {
    float* rec = c.gru ? scratch(1, N * GH) : nullptr;  // this thread's h W_hh^T tile (GRU)
    for (int64_t i = b; i < e; ++i) {
      const int64_t j0 = i * ub, cnt = std::min(ub, H - j0);
      for (int64_t q = 0; q < G; ++q) {
        const int64_t col = q * H + j0;
        GemmEpilogue ep;
        ep.bias = bias ? bias + col : nullptr;
        ep.bias_kind = GemmBias::col;
        sgemm(Trans::none, Trans::trans, N, cnt, I, 1.0f, c.L.x, I, c.L.w_ih + col * I, I, 0.0f, gin + col, GH,
              bias ? &ep : nullptr);
        if (c.gru)
          sgemm(Trans::none, Trans::trans, N, cnt, P, 1.0f, h0, P, c.L.w_hh + col * P, P, 0.0f, rec + col, GH);
        else
          sgemm(Trans::none, Trans::trans, N, cnt, P, 1.0f, h0, P, c.L.w_hh + col * P, P, 1.0f, gin + col, GH);
      }
      for (int64_t n = 0; n < N; ++n)
        forward_row(c, kt, gin, c.gru ? rec + n * GH + j0 : nullptr, H, n, 0, -1, j0, cnt, out, hn, cn);
    }
  };
  if (serial) blocks(0, nb); else parallel_for(nb, 1, 1, blocks);
}


// LSTM without projection whose W_hh does not fit one core's L2 (G H P floats >= kColsMinWeights), T > 1,
// one direction: the hidden units are cut into two fixed blocks (never a function of the thread count);
// block b owns all 4 gates of its units, so its slice of W_hh^T (packed once per call from the gathered
// rows [q H + j0, q H + j0 + cnt) of each gate q) stays in the L2 of the thread that runs it, and every
// step of a block is one GEMM of the whole batch (M = N) into a per-thread tile, consumed at once by the
// fused gate pass. Step k of any block starts once all blocks of step k - 1 are done (a monotonic atomic
// count; h of step k - 1 is in hprev before its block is counted). Each thread claims its own block of a
// step first, then any block of that step nobody claimed yet: on a quiet machine every block stays on its
// thread (L2-resident weights); when a thread is descheduled (loaded machine) the running one takes its
// blocks instead of waiting for it (spin_until: core/parallel.h).
// Every block is computed by the same serial kernels whichever thread runs it: same bits for any count.
inline constexpr int64_t kColsMinWeights = int64_t(1) << 19;  // 2 MiB of float32 weights
inline constexpr int64_t kTransMaxBatch = 256;                  // forward_trans: h^T, c^T of <= 256 columns
inline constexpr int64_t kTransKc = 512;  // forward_trans: K blocks (one at K 512; blocks of 256 were 2-4% slower)

bool use_cols(const Ctx& c) {
  return c.lstm && !c.proj && c.T > 1 && c.N > kGemvRows && c.GH * c.P >= kColsMinWeights;
}

// Runs step(b, k) for every block b < nb of every step k < T in the order forward_cols describes: step k of
// any block once all blocks of step k - 1 are done, each thread its own block first, then any unclaimed one.
template <class Step>
void unit_block_steps(int64_t T, int64_t nb, bool serial, Step&& step) {
  std::unique_ptr<std::atomic<int64_t>[]> claimed(new std::atomic<int64_t>[static_cast<size_t>(nb)]);
  for (int64_t b = 0; b < nb; ++b) claimed[b].store(-1, std::memory_order_relaxed);  // last step claimed
  std::atomic<int64_t> done{0};  // blocks finished over all steps
  const int nt = serial ? 1 : static_cast<int>(std::min<int64_t>(get_num_threads(), nb));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num();
    for (int64_t k = 0; k < T; ++k) {
      spin_until([&] { return done.load(std::memory_order_acquire) >= k * nb; });
      for (int64_t i = 0; i < nb; ++i) {
        const int64_t b = (tid + i) % nb;  // own block first
        int64_t prev = k - 1;
        if (claimed[b].load(std::memory_order_relaxed) != prev ||
            !claimed[b].compare_exchange_strong(prev, k, std::memory_order_acq_rel))
          continue;
        step(b, k);
        done.fetch_add(1, std::memory_order_release);
      }
    }
  }
}

void forward_cols(const Ctx& c, const RnnKernels& kt, float* out, float* hn, float* cn, bool serial) {
  const int64_t N = c.N, H = c.H, P = c.P, G = c.G, T = c.T;
  const int64_t ub = unit_block(H), nb = (H + ub - 1) / ub;
  std::vector<std::unique_ptr<PackedB>> pk(static_cast<size_t>(nb));
  // pk[b] is written at step 0 by the block's claimant and read at later steps after `done` covers it
  unit_block_steps(T, nb, serial, [&](int64_t b, int64_t k) {
    const int64_t t = c.time(k), tn = k + 1 < T ? c.time(k + 1) : -1;
    const int64_t j0 = b * ub, cnt = std::min(ub, H - j0);
    float* tile = scratch(1, N * G * ub);
    if (k == 0) {  // the block's first claimant packs its W_hh^T slice (into its own caches)
      float* rows = scratch(24, G * cnt * P);
      for (int64_t q = 0; q < G; ++q) copy(rows + q * cnt * P, c.L.w_hh + (q * H + j0) * P, cnt * P);
      pk[b] = std::make_unique<PackedB>(Trans::trans, P, G * cnt, rows, P,
                                        scratch(22 + static_cast<int>(b), PackedB::storage_floats(P, G * cnt)));
    }
    sgemm_packed(Trans::none, N, 1.0f, c.hp(t), P, *pk[b], 0.0f, tile, G * cnt);
    for (int64_t n = 0; n < N; ++n)
      forward_row(c, kt, nullptr, tile + n * G * cnt, cnt, n, t, tn, j0, cnt, out, hn, cn);
  });
}

// LSTM without projection, T > 1, batch > kGemvRows that fills the microkernel's columns, W_ih no larger
// than W_hh, W_hh of >= 2 MiB (use_trans): the whole time loop in transposed layout, the input projection
// fused into the steps. Units are rows, batch rows are columns: x_t^T (I x N, all steps transposed up
// front), h^T and c^T (H x N, two slots: step k reads slot k & 1 and writes the other). Per group of MR
// units and gate q, one C tile (MR x N) gets x_t W_ih^T + b, then h W_hh^T added, both by the direct-A
// microkernel on W_ih's and W_hh's rows in place: no packing of either, no input-projection pass over a
// T N x G H array, and the fused gate pass reads the group's four tiles from L1. The weights stream from
// L3 once per step, x_t^T and h^T (the B operands) stay in L2. h reaches the output by a transpose per
// block. Hidden units are cut into the fixed blocks of forward_cols (all 4 gates of a unit in one block),
// steps ordered as there. Ended sequences (lengths) carry their state: their columns are restored after
// the gate pass. Kept for a backward: the activated gates and the next step's c and h are transposed
// into the saved layout. Paired against the paths it replaces, 2 threads, 2-core Zen 4 VM, T50 N32 256 -> 512:
// AVX-512 1.05-1.07x one direction (caller's packs or not: they are not used), 1.01-1.02x two layers
// bidirectional, forward + backward 1.00-1.01x. With W_ih larger than W_hh (a second bidirectional layer,
// I = 2H) the weights of two concurrent directions outgrow L3 (all-fused 0.99x there), so that case keeps
// the other paths. AVX2 (6 x 16 tiles) measured 1.03-1.06x for one direction but 0.95-0.98x for two and
// for forward + backward, so the path is the 32-column (AVX-512) kernel's only.
struct TransBufs {
  float* xT = nullptr;  // T x I x N
  float* h = nullptr;   // 2 slots of H x N
  float* c = nullptr;   // 2 slots of H x N
};

bool use_trans(const Ctx& c, int64_t nr) {
  if (nr < 32) return false;  // see above: AVX-512 only
  if (!c.lstm || c.proj || c.T <= 1 || c.N <= kGemvRows || c.N > kTransMaxBatch || c.I > c.H) return false;
  if (c.GH * c.P < kColsMinWeights) return false;
  const int64_t np = (c.N + nr - 1) / nr * nr;
  return (np - c.N) * 8 <= np;  // at most an eighth of the microkernel's columns idle
}

// bias: b_ih + b_hh (G H), or null
void forward_trans(const Ctx& c, const RnnKernels& kt, const TransBufs& tb, const float* bias, float* out, float* hn,
                   float* cn, bool serial) {
  const GemmKernels& gk = select_kernels(gemm_tables);
  const RnnSaved& s = c.s;
  const int64_t N = c.N, I = c.I, H = c.H, G = c.G, GH = c.GH, T = c.T, MR = gk.mr, NR = gk.nr;
  const int64_t ub = unit_block(H), nb = (H + ub - 1) / ub;
  const int keep = s.ring ? 0 : 1;
  // C tile (MR x N, ld N) += A (m rows of K, in place) B (K x N, ld N) in K blocks of <= kTransKc (one call per
  // block and NR columns: the tile stays in L1 between them); the first call overwrites (beta 0), the bias
  // comes with the last block.
  auto product = [&](bool first, int m, int64_t K, const float* A, const float* B, const float* br, float* C) {
    const int64_t kc = gemm_k_block(K, kTransKc);
    for (int64_t pc = 0; pc < K; pc += kc) {
      const int64_t kb = std::min(kc, K - pc);
      GemmTile tl;
      tl.beta = first && pc == 0 ? 0.0f : 1.0f;
      if (br && pc + kb == K) {
        tl.bias = br;
        tl.bias_kind = GemmBias::row;
      }
      for (int64_t jn = 0; jn < N; jn += NR)
        gk.micro_direct_a(kb, A + pc, K, B + pc * N + jn, N, C + jn, N, m, static_cast<int>(std::min(NR, N - jn)),
                          tl);
    }
  };
  unit_block_steps(T, nb, serial, [&](int64_t b, int64_t k) {
    const int64_t t = c.time(k), tn = k + 1 < T ? c.time(k + 1) : -1;
    const int64_t j0 = b * ub, cnt = std::min(ub, H - j0);
    const float* hc = tb.h + (k & 1) * H * N;
    const float* cc = tb.c + (k & 1) * H * N;
    float* hx = tb.h + ((k + 1) & 1) * H * N;
    float* cx = tb.c + ((k + 1) & 1) * H * N;
    const float* xt = tb.xT + t * I * N;
    // this thread's gate rows of the block (gate q, unit j0 + u at gt + (q ub + u) N); a group's 4 tiles
    // stay in L1 from their products to the gate pass
    float* gt = scratch(1, G * ub * N);
    for (int64_t i = 0; i < cnt; i += MR) {
      const int m = static_cast<int>(std::min(MR, cnt - i));
      for (int64_t q = 0; q < G; ++q) {
        const int64_t r = q * H + j0 + i;
        const float* br = bias ? bias + r : nullptr;
        float* tile = gt + (q * ub + i) * N;
        product(true, m, I, c.L.w_ih + r * I, xt, br, tile);                   // (x_t W_ih^T + b) ...
        product(I == 0, m, H, c.L.w_hh + r * H, hc, I == 0 ? br : nullptr, tile);  // ... + h W_hh^T
      }
      for (int64_t j = j0 + i; j < j0 + i + m; ++j)
        kt.lstm_fwd(N, ub * N, gt + (j - j0) * N, nullptr, 0, cc + j * N, cx + j * N, hx + j * N, keep);
    }
    if (keep)
      for (int64_t q = 0; q < G; ++q) gk.transpose(cnt, N, gt + q * ub * N, N, s.gates + t * N * GH + q * H + j0, GH);
    if (c.L.lengths)
      for (int64_t n = 0; n < N; ++n)
        if (!c.active(n, t))
          for (int64_t j = j0; j < j0 + cnt; ++j) {
            hx[j * N + n] = hc[j * N + n];
            cx[j * N + n] = cc[j * N + n];
          }
    float* o = out + t * N * H;
    gk.transpose(cnt, N, hx + j0 * N, N, o + j0, H);
    if (c.L.lengths)
      for (int64_t n = 0; n < N; ++n)
        if (!c.active(n, t)) zero(o + n * H + j0, cnt);
    if (keep && tn >= 0) {  // the state the next step reads, for the backward
      gk.transpose(cnt, N, hx + j0 * N, N, c.hp(tn) + j0, H);
      gk.transpose(cnt, N, cx + j0 * N, N, c.cp(tn) + j0, H);
    }
    if (tn < 0) {
      gk.transpose(cnt, N, hx + j0 * N, N, hn + j0, H);
      gk.transpose(cnt, N, cx + j0 * N, N, cn + j0, H);
    }
  });
}

}  // namespace

namespace {

// One direction's forward: prepare() runs the engine-threaded parts (input GEMM, packing), recur() the
// time loop, either with the thread team (`serial` false) or on the calling thread only.
struct FwdJob {
  const RnnLayer& L;
  const RnnFwdIO& io;
  int slot;  // direction index (0, 1) for the calling thread's scratch slots
  float* bias = nullptr;
  float* gin = nullptr;
  bool done = false, gemv = false, fuse_in = false, units = false, cols = false, trans = false;
  TransBufs tb;  // forward_trans
  bool alone = true;  // false for the two directions of a bidirectional layer (run concurrently)
  std::unique_ptr<PackedB> own_hh, own_hr;    // packed here when the caller passed no packs
  const PackedB *pk_hh = nullptr, *pk_hr = nullptr;
  FwdJob(const RnnLayer& l, const RnnFwdIO& i, int sl) : L(l), io(i), slot(sl) {}
};


void fwd_prepare(FwdJob& j) {
  const Ctx c(j.L, j.io.s);
  const RnnSaved& s = j.io.s;
  const int64_t T = c.T, N = c.N, I = c.I, H = c.H, P = c.P, GH = c.GH;
  copy(j.io.hn, j.io.h0, N * P);
  if (c.lstm) copy(j.io.cn, j.io.c0, N * H);
  if (T == 0 || N == 0) {
    j.done = true;
    return;
  }
  if (j.L.b_ih) {
    j.bias = scratch(5 + 2 * j.slot, GH);
    for (int64_t k = 0; k < GH; ++k) j.bias[k] = j.L.b_ih[k] + ((c.gru && k >= 2 * H) ? 0.0f : j.L.b_hh[k]);
  }
  j.gemv = N <= kGemvRows && !c.proj;
  j.fuse_in = j.gemv && T == 1;
  j.units = !j.gemv && T == 1 && !c.proj;  // one step without projection: forward_units, nothing to pack
  j.gin = c.gru ? scratch(4 + 2 * j.slot, T * N * GH) : s.gates;  // input projection (+ biases) of every step
  j.trans = !j.gemv && !j.units && use_trans(c, select_kernels(gemm_tables).nr);
  if (j.trans) {  // x^T of every step, h0^T, c0^T (the input projection is part of each step)
    const GemmKernels& gk = select_kernels(gemm_tables);
    j.tb.xT = scratch(25 + j.slot, T * N * I);
    j.tb.h = scratch(27 + j.slot, 2 * H * N);
    j.tb.c = scratch(29 + j.slot, 2 * H * N);
    const float* x = j.L.x;
    float* xT = j.tb.xT;
    parallel_for(T, 1, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) gk.transpose(N, I, x + t * N * I, I, xT + t * I * N, N);
    });
    gk.transpose(N, H, j.io.h0, H, j.tb.h, N);
    gk.transpose(N, H, j.io.c0, H, j.tb.c, N);
  } else if (!j.fuse_in && !j.units) {
    GemmEpilogue ep;
    ep.bias = j.bias;
    ep.bias_kind = GemmBias::col;
    sgemm(Trans::none, Trans::trans, T * N, GH, I, 1.0f, j.L.x, I, j.L.w_ih, I, 0.0f, j.gin, GH,
          j.bias ? &ep : nullptr);
  }
  const int64_t t0 = c.time(0);
  copy(c.hp(t0), j.io.h0, N * P);
  if (c.lstm) copy(c.cp(t0), j.io.c0, N * H);
  j.cols = !j.gemv && !j.units && !j.trans && j.alone && use_cols(c);  // packs its own per-block slices
  if (!j.gemv && !j.units && !j.cols && !j.trans) {
    j.pk_hh = j.L.pk_hh;
    if (!j.pk_hh) {
      j.own_hh = std::make_unique<PackedB>(Trans::trans, P, GH, j.L.w_hh, P,  // op(B) = W_hh^T (P x G H)
                                           scratch(14 + 2 * j.slot, PackedB::storage_floats(P, GH)));
      j.pk_hh = j.own_hh.get();
    }
    if (c.proj) {
      j.pk_hr = j.L.pk_hr;
      if (!j.pk_hr) {
        j.own_hr = std::make_unique<PackedB>(Trans::trans, H, P, j.L.w_hr, H,  // W_hr^T (H x P)
                                             scratch(15 + 2 * j.slot, PackedB::storage_floats(H, P)));
        j.pk_hr = j.own_hr.get();
      }
    }
  }
}

void fwd_recur(FwdJob& j, bool serial, int64_t rb) {
  if (j.done) return;
  const RnnKernels& kt = select_kernels(rnn_tables);
  const Ctx c(j.L, j.io.s);
  const int64_t N = c.N, H = c.H;
  float *out = j.io.out, *hn = j.io.hn, *cn = j.io.cn;
  if (j.gemv) {
    forward_gemv(c, kt, j.bias, j.gin, j.fuse_in, out, hn, cn, serial ? 1 : threads_for(H, 64));
    return;
  }
  if (j.units) {
    forward_units(c, kt, j.bias, j.gin, out, hn, cn, serial);
    return;
  }
  if (j.cols) {
    forward_cols(c, kt, out, hn, cn, serial);
    return;
  }
  if (j.trans) {
    forward_trans(c, kt, j.tb, j.bias, out, hn, cn, serial);
    return;
  }
  const int64_t nb = fixed_blocks(N, rb);
  auto blocks = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      forward_block(c, kt, *j.pk_hh, j.pk_hr, j.gin, i * rb, std::min(N, (i + 1) * rb), out, hn, cn);
  };
  if (serial) blocks(0, nb); else parallel_for(nb, 1, 1, blocks);
}

// Two directions at once on two threads (each runs its recurrence serially) when the team has >= 2
// threads; else one after the other. Every direction computes the same bits either way.
template <class Job, class Prepare, class Recur>
void run_jobs(int count, Job* jobs, int64_t rb, Prepare prepare, Recur recur) {
  for (int d = 0; d < count; ++d) prepare(jobs[d]);
  if (count == 2 && get_num_threads() >= 2) {
#pragma omp parallel num_threads(2)
    {
      // the runtime may give fewer threads (nested region, thread limit): then one runs both
      const int nth = omp_get_num_threads();
      for (int d = omp_get_thread_num(); d < 2; d += nth) recur(jobs[d], true, rb);
    }
  } else {
    for (int d = 0; d < count; ++d) recur(jobs[d], false, rb);
  }
}

}  // namespace

void rnn_layers_forward(int count, const RnnLayer* L, const RnnFwdIO* io) {
  if (count == 1) {
    FwdJob j0(L[0], io[0], 0);
    run_jobs(1, &j0, row_block(L[0].N, 1), fwd_prepare, fwd_recur);
    return;
  }
  FwdJob jobs[2] = {FwdJob(L[0], io[0], 0), FwdJob(L[1], io[1], 1)};
  jobs[0].alone = jobs[1].alone = false;
  run_jobs(2, jobs, row_block(L[0].N, 2), fwd_prepare, fwd_recur);
}

void rnn_layer_forward(const RnnLayer& L, const float* h0, const float* c0, float* out, float* hn, float* cn,
                       const RnnSaved& s) {
  RnnFwdIO io{h0, c0, out, hn, cn, s};
  rnn_layers_forward(1, &L, &io);
}

namespace {

// Backward recurrence of rows [r0, r1): dh (N, P) and dc (N, H) carry the gradients w.r.t. the state.
void backward_block(const Ctx& c, const RnnKernels& kt, const PackedB& pk_hh, const PackedB* pk_hr, const float* dy,
                    float* D, float* Dh, float* dHs, int64_t r0, int64_t r1, float* dh, float* dc) {
  const RnnSaved& s = c.s;
  const int64_t m = r1 - r0, N = c.N, P = c.P, H = c.H, GH = c.GH;
  float* tile = c.proj ? scratch(1, m * H) : nullptr;
  for (int64_t k = c.T - 1; k >= 0; --k) {
    const int64_t t = c.time(k);
    for (int64_t n = r0; n < r1; ++n) {
      const bool act = c.active(n, t);
      float* d = dh + n * P;
      if (act && dy) {
        const float* g = dy + (t * N + n) * P;
        for (int64_t j = 0; j < P; ++j) d[j] += g[j];
      }
      if (c.proj) {
        if (act) copy(dHs + (t * N + n) * P, d, P); else zero(dHs + (t * N + n) * P, P);
      }
    }
    if (c.proj) sgemm_packed(Trans::none, m, 1.0f, dh + r0 * P, P, *pk_hr, 0.0f, tile, H);
    for (int64_t n = r0; n < r1; ++n) {
      float* Drow = D + (t * N + n) * GH;
      float* Dhrow = Dh + (t * N + n) * GH;
      float* d = dh + n * P;
      if (!c.active(n, t)) {
        zero(Drow, GH);
        if (c.gru) zero(Dhrow, GH);
        continue;
      }
      const float* g = s.gates + (t * N + n) * c.SW;
      if (c.lstm) {
        const float* dm = c.proj ? tile + (n - r0) * H : d;
        kt.lstm_bwd(H, H, g, s.cprev + (t * N + n) * H, dm, dc + n * H, Drow);
        zero(d, P);
      } else if (c.gru) {
        kt.gru_bwd(H, H, g, s.hprev + (t * N + n) * P, d, Drow, Dhrow, d);
      } else {
        kt.rnn_bwd(H, g, d, Drow, c.L.relu ? 1 : 0);
        zero(d, P);
      }
    }
    sgemm_packed(Trans::none, m, 1.0f, Dh + (t * N + r0) * GH, GH, pk_hh, 1.0f, dh + r0 * P, P);
  }
}

}  // namespace

namespace {

struct BwdJob {
  const RnnLayer& L;
  const RnnBwdIO& io;
  int slot;
  float *D = nullptr, *Dh = nullptr, *dHs = nullptr;
  std::unique_ptr<PackedB> pk_hh, pk_hr;
  BwdJob(const RnnLayer& l, const RnnBwdIO& i, int sl) : L(l), io(i), slot(sl) {}
};

void bwd_prepare(BwdJob& j) {
  const Ctx c(j.L, j.io.s);
  const int64_t N = c.N, H = c.H, P = c.P, GH = c.GH, TN = c.T * c.N;
  if (j.io.dhn) copy(j.io.dh0, j.io.dhn, N * P); else zero(j.io.dh0, N * P);
  if (c.lstm) {
    if (j.io.dcn) copy(j.io.dc0, j.io.dcn, N * H); else zero(j.io.dc0, N * H);
  }
  j.D = scratch(8 + 3 * j.slot, std::max<int64_t>(1, TN * GH));
  j.Dh = c.gru ? scratch(9 + 3 * j.slot, std::max<int64_t>(1, TN * GH)) : j.D;
  j.dHs = c.proj ? scratch(10 + 3 * j.slot, std::max<int64_t>(1, TN * P)) : nullptr;
  if (TN > 0) {
    j.pk_hh = std::make_unique<PackedB>(Trans::none, GH, P, j.L.w_hh, P,  // dh = dA W_hh
                                        scratch(18 + 2 * j.slot, PackedB::storage_floats(GH, P)));
    if (c.proj)
      j.pk_hr = std::make_unique<PackedB>(Trans::none, P, H, j.L.w_hr, H,  // dm = dh W_hr
                                          scratch(19 + 2 * j.slot, PackedB::storage_floats(P, H)));
  }
}

void bwd_recur(BwdJob& j, bool serial, int64_t rb) {
  if (!j.pk_hh) return;
  const RnnKernels& kt = select_kernels(rnn_tables);
  const Ctx c(j.L, j.io.s);
  const int64_t N = c.N, nb = fixed_blocks(N, rb);
  auto blocks = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      backward_block(c, kt, *j.pk_hh, j.pk_hr.get(), j.io.dy, j.D, j.Dh, j.dHs, i * rb, std::min(N, (i + 1) * rb),
                     j.io.dh0, j.io.dc0);
  };
  if (serial) blocks(0, nb); else parallel_for(nb, 1, 1, blocks);
}

// Weight gradients: big GEMMs over all steps (beta = 0, K = T N may be 0 -> zeros).
void bwd_finish(BwdJob& j) {
  const Ctx c(j.L, j.io.s);
  const RnnBwdIO& o = j.io;
  const int64_t I = c.I, H = c.H, P = c.P, GH = c.GH, TN = c.T * c.N;
  sgemm(Trans::none, Trans::none, TN, I, GH, 1.0f, j.D, GH, j.L.w_ih, I, 0.0f, o.dx, I);
  sgemm(Trans::trans, Trans::none, GH, I, TN, 1.0f, j.D, GH, j.L.x, I, 0.0f, o.dw_ih, I);
  sgemm(Trans::trans, Trans::none, GH, P, TN, 1.0f, j.Dh, GH, o.s.hprev, P, 0.0f, o.dw_hh, P);
  if (o.db_ih) column_sums(j.D, TN, GH, GH, o.db_ih);
  if (o.db_hh) column_sums(j.Dh, TN, GH, GH, o.db_hh);
  if (o.dw_hr) sgemm(Trans::trans, Trans::none, P, H, TN, 1.0f, j.dHs, P, o.s.ms, H, 0.0f, o.dw_hr, H);
}

}  // namespace

void rnn_layers_backward(int count, const RnnLayer* L, const RnnBwdIO* io) {
  if (count == 1) {
    BwdJob j(L[0], io[0], 0);
    run_jobs(1, &j, row_block(L[0].N, 1), bwd_prepare, bwd_recur);
    bwd_finish(j);
    return;
  }
  BwdJob jobs[2] = {BwdJob(L[0], io[0], 0), BwdJob(L[1], io[1], 1)};
  run_jobs(2, jobs, row_block(L[0].N, 2), bwd_prepare, bwd_recur);
  bwd_finish(jobs[0]);
  bwd_finish(jobs[1]);
}

void rnn_layer_backward(const RnnLayer& L, const RnnSaved& s, const float* dy, const float* dhn, const float* dcn,
                        float* dx, float* dh0, float* dc0, float* dw_ih, float* dw_hh, float* db_ih, float* db_hh,
                        float* dw_hr) {
  RnnBwdIO io{s, dy, dhn, dcn, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr};
  rnn_layers_backward(1, &L, &io);
}

}  // namespace fastml
