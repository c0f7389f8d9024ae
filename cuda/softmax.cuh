// CUDA softmax / log_softmax: parameters, launch constants and entry points (plain C++: included by
// cuda/bind_softmax_cuda.cpp and cuda/softmax.cu). Layout: a C-contiguous tensor viewed as
// (outer, dim, inner), softmax over the middle axis; element (o, d, i) is at (o * dim + d) * inner + i.
#pragma once
#include <cstdint>

namespace fastml::cuda {

inline constexpr int kSoftmaxWarpMaxDim = 1024;    // rows up to this length: one warp per row
inline constexpr int kSoftmaxWarpsPerBlock = 4;    // warp-per-row kernel: 4 rows per 128-thread block
inline constexpr int kSoftmaxBlockSize = 512;      // longer rows: one 512-thread block per row
inline constexpr int kSoftmaxColumnThreads = 1024;     // inner > 1: up to 32 x 32 threads per tile of 32 columns
inline constexpr int64_t kSoftmaxColumnFill = 8192;     // ... halving the rows while tiles x rows exceeds this (~ an H100 full)
inline constexpr int64_t kSoftmaxMaxBlocks = 65535;
inline constexpr int kSoftmaxSplitRowsPerSm = 2;         // fewer rows than this per SM: rows split in chunks
inline constexpr int kSoftmaxSplitBlocksPerSm = 4;       // ... into about this many blocks per SM in all
inline constexpr int64_t kSoftmaxSplitMinChunk = 8192;   // ... of at least this many elements   // grid-stride beyond this

struct SoftmaxParams {
  const float* x;   // forward: input; backward: grad_output
  const float* y;   // backward: the forward output (softmax or log_softmax); forward: unused
  float* out;       // forward: output; backward: grad_input (may alias x or y exactly)
  int64_t outer, dim, inner;
};

void softmax_forward_cuda(std::uintptr_t input, std::uintptr_t out, int64_t outer, int64_t dim, int64_t inner,
                          bool log, int device, std::uintptr_t stream);
void softmax_backward_cuda(std::uintptr_t grad_output, std::uintptr_t output, std::uintptr_t grad_input,
                           int64_t outer, int64_t dim, int64_t inner, bool log, int device, std::uintptr_t stream);

}  // namespace fastml::cuda
