// Recurrent layers (Elman RNN, LSTM, GRU): one layer in one direction, forward and backward through
// time, float32. Multi-layer / bidirectional / dropout stacking is done by fastml/functional/rnn.py.
//
// Maths (torch gate order; a = x W_ih^T + b_ih + h W_hh^T + b_hh, gate blocks of H):
//   LSTM  i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g); c' = f c + i g; m = o tanh(c');
//         h' = m (or m W_hr^T with a projection, P = proj_size features)
//   GRU   r, z = sigmoid(.), n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn)); h' = n + z (h - n)
//   RNN   h' = tanh(a) or relu(a)
// Layout: x (T, N, I), out (T, N, P), h (N, P), c (N, H), w_ih (G H, I), w_hh (G H, P), w_hr (P, H),
// row-major contiguous. lengths (N,) in [1, T] or null: row n is updated at step t only while
// t < lengths[n], its output is 0 past its end, reverse runs t = T-1 .. 0 (packed-sequence semantics).
//
// Structure: the input projection of all steps is ONE GEMM (T N x G H, bias epilogue). Per step, the
// recurrent GEMM lands in a per-thread gate tile that the fused gate kernel (rnn_impl.h) consumes at
// once (gate nonlinearities + cell update in one vectorised pass). Paths, chosen from shapes only (never
// from the thread count, so every path gives the same bits for 1 or 2 threads):
//  * batch <= kGemvRows, no projection: threads split the hidden units (all G gates of a unit on one
//    thread); W_hh rows are streamed once per step by dot-product kernels, no packing; one barrier per
//    step. With T == 1 (a cell step) the input projection is computed the same way (no GEMM call).
//  * one step (T == 1, a cell call) at batch > kGemvRows, no projection: the hidden units are cut into two
//    fixed blocks; per block the G column slices of x W_ih^T + b and h W_hh^T are serial GEMMs on one
//    thread, consumed at once by the fused gate pass (one fork-join instead of two engine-threaded GEMMs
//    and a separate pass: ~1.2x torch at N 64, 256 -> 512, against ~0.9x before).
//  * LSTM, T > 1, batch > kGemvRows, no projection, one direction, W_hh of >= 2 MiB (G H P >= 2^19 floats,
//    more than one core's L2): the hidden units are cut into two fixed blocks (all 4 gates of a unit in
//    one block); each block's W_hh^T slice is packed once per call and stays in the L2 of the thread that
//    owns the block; per step one GEMM of the whole batch (M = N: 14 + 14 + 4 row tiles at N 32 instead
//    of 14 + 2 per 16-row block) per block, consumed by the fused gate pass. Steps are ordered by an
//    atomic count of finished blocks (spin with a pause hint, then yield; no OS barrier); each thread
//    claims its own block of a step first and then any unclaimed one, so a descheduled thread's block is
//    taken over rather than waited for. T50 N32 256 -> 512 on the 2-core AVX-512 VM, quiet, min of 15:
//    15.7 ms (torch 16.6) against 19.6 ms for row blocks; under a busy-loop load the medians were
//    ~1.1-1.4x those of row blocks (torch 3-10x slower than both there). Caller packs are not used
//    (the slices are packed per call, ~0.4 ms at that shape).
//    With the AVX-512 kernels, a batch that fills the microkernel's columns (N a multiple of 32 or close
//    to one, N <= 256) and I <= H, the LSTM takes the transposed variant instead (forward_trans in
//    rnn.cpp): units as rows and batch as columns, the input projection fused into each step, W_ih and
//    W_hh read in place by the direct-A microkernel (nothing packed), the gate pass on L1-resident tiles;
//    one direction alone or each of two concurrent directions on its own thread. 1.05-1.07x the path
//    above at T50 N32 256 -> 512.
//  * otherwise: batch rows are independent in the recurrence, so they are cut into fixed row blocks
//    that threads run through all T steps without any synchronisation (per step one sgemm_packed on
//    W_hh^T packed once per call); the two directions of a bidirectional layer run concurrently, one
//    thread each (rnn_layers_forward with count 2). A column split with an OpenMP barrier per step
//    was measured 2-4x slower on a loaded 2-core VM, hence the atomic, work-taking scheme above and row
//    blocks everywhere else. W_hh^T (and W_hr^T) may
//    come pre-packed by the caller (RnnLayer::pk_hh, fastml.nn modules in eval mode): same bits.
// Backward: row blocks as the last path (directions concurrently), the recurrence stores
// d(pre-activation) for all steps (T N x G H); weight gradients are then big GEMMs over all steps and
// fixed-order column sums: bitwise identical for any thread count.
//
// Saved (forward -> backward): gates (T, N, S) with S = 4H (LSTM i f g o activated; GRU r z n ghn),
// H (RNN h'); hprev (T, N, P) the state each step read; cprev (T, N, H) LSTM; ms (T, N, H) LSTM with
// projection (m before projection). Test: pytest tests/test_rnn.py. Bench: python -m fastml.bench --ops rnn
#pragma once
#include <cstdint>

#include "core/dispatch.h"

namespace fastml {

class PackedB;

enum class RnnMode : int { rnn = 0, lstm = 1, gru = 2 };
inline constexpr int64_t kGemvRows = 4;

// Fused per-row gate kernels; `gs` is the stride between gate blocks (H for whole rows, or larger when
// a thread handles a slice of the hidden units), n the number of units handled.
struct RnnKernels {
  // g: pre-activations (4 blocks) -> activated gates in place when `keep` (r: null, or a recurrent-product
  // tile with gate stride rs added first); cn = f cp + i g; m = o tanh(cn).
  void (*lstm_fwd)(int64_t n, int64_t gs, float* g, const float* r, int64_t rs, const float* cp, float* cn, float* m,
                   int keep);
  // dm: gradient w.r.t. m; dc: in = gradient w.r.t. cn, out = gradient w.r.t. cp; da: 4 blocks.
  void (*lstm_bwd)(int64_t n, int64_t gs, const float* g, const float* cp, const float* dm, float* dc, float* da);
  // gi: x W_ih^T + b (3 blocks, r z with both biases); gh: h W_hh^T (3 blocks hs apart, no bias);
  // b_hn or null; s: saved r z n ghn (4 blocks, gs apart); h: new state.
  void (*gru_fwd)(int64_t n, int64_t gs, const float* gi, const float* gh, int64_t hs, const float* b_hn,
                  const float* hp, float* s, float* h);
  // dh: gradient w.r.t. h'; dgi, dgh: 3 blocks; dhd = dh z (the direct path to h; may alias dh).
  void (*gru_bwd)(int64_t n, int64_t gs, const float* s, const float* hp, const float* dh, float* dgi, float* dgh,
                  float* dhd);
  // a (+ r) -> h' into h (which may be a: in place)
  void (*rnn_fwd)(int64_t n, const float* a, const float* r, float* h, int relu);
  void (*rnn_bwd)(int64_t n, const float* h, const float* dh, float* da, int relu);
  // y[r] += dot(W[r, 0:K], x) for r < rows (rows of W ldw apart); per-row order independent of `rows`;
  // rev != 0 visits the rows from the last one (same results).
  void (*dot_rows)(int64_t rows, int64_t K, const float* W, int64_t ldw, const float* x, float* y, int rev);
};

FASTML_DECLARE_KERNEL_TABLES(RnnKernels, rnn)

struct RnnLayer {
  RnnMode mode = RnnMode::lstm;
  int64_t T = 0, N = 0, I = 0, H = 0, P = 0;
  bool reverse = false, relu = false;
  const float *x = nullptr, *w_ih = nullptr, *w_hh = nullptr, *b_ih = nullptr, *b_hh = nullptr, *w_hr = nullptr;
  const int64_t* lengths = nullptr;
  // Optional, forward only: W_hh^T (P x G H) and W_hr^T (H x P) packed by the caller from exactly these
  // weights (PackedB(Trans::trans, ...) of w_hh / w_hr, active ISA), used wherever the forward would
  // otherwise pack them itself (T > 1 or a projection, batch > kGemvRows): same bits, no O(H^2) repack.
  const PackedB *pk_hh = nullptr, *pk_hr = nullptr;
  int64_t gates() const { return mode == RnnMode::lstm ? 4 : (mode == RnnMode::gru ? 3 : 1); }
  int64_t saved_width() const { return mode == RnnMode::rnn ? H : 4 * H; }
};

struct RnnSaved {
  float* gates = nullptr;  // (T, N, saved_width)
  float* hprev = nullptr;  // (T, N, P)
  float* cprev = nullptr;  // (T, N, H), LSTM
  float* ms = nullptr;     // (T, N, H), LSTM with projection
  // Forward only, nothing kept for a backward (inference): hprev, cprev, ms and the GRU's gates hold two
  // steps (step t in slot t & 1), and the LSTM's and RNN's gates (T, N, G H: the input projection) are
  // not overwritten by the activations. Same outputs, bit for bit.
  bool ring = false;
};

struct RnnFwdIO {
  const float *h0, *c0;   // (N, P), (N, H) (LSTM; else null)
  float *out, *hn, *cn;   // (T, N, P), (N, P), (N, H)
  RnnSaved s;
};
struct RnnBwdIO {
  RnnSaved s;
  const float *dy, *dhn, *dcn;  // any may be null (zeros)
  float *dx, *dh0, *dc0, *dw_ih, *dw_hh, *db_ih, *db_hh, *dw_hr;  // db_* / dw_hr null when absent
};

// count = 1, or 2 for the two directions of a bidirectional layer (same x, N, T, lengths): with >= 2
// threads each direction's recurrence runs on its own thread (no per-step synchronisation), with the
// same results as running them one after the other.
void rnn_layers_forward(int count, const RnnLayer* L, const RnnFwdIO* io);
void rnn_layers_backward(int count, const RnnLayer* L, const RnnBwdIO* io);

// h0 (N, P), c0 (N, H) (LSTM) -> out (T, N, P), hn (N, P), cn (N, H).
void rnn_layer_forward(const RnnLayer& L, const float* h0, const float* c0, float* out, float* hn, float* cn,
                       const RnnSaved& s);

// dy (T, N, P), dhn (N, P), dcn (N, H): any may be null (zeros). Outputs: dx (T, N, I), dh0, dc0, dw_ih,
// dw_hh, db_ih, db_hh (null when the layer has no bias), dw_hr (null without projection).
void rnn_layer_backward(const RnnLayer& L, const RnnSaved& s, const float* dy, const float* dhn, const float* dcn,
                        float* dx, float* dh0, float* dc0, float* dw_ih, float* dw_hh, float* db_ih, float* db_hh,
                        float* dw_hr);

}  // namespace fastml
