// Softmax and log_softmax along one axis on CUDA, forward and backward, float32.
//
//   forward   m = max_d x (NaN propagates), s = sum_d e^{x - m}
//             softmax y = e^{x - m} / s            log_softmax y = (x - m) - log s
//   backward  softmax dx = y (dy - sum_d dy y)     log_softmax dx = dy - e^y sum_d dy
// Semantics as torch: a NaN anywhere in a row makes the row NaN (the max propagates it); an all -inf row
// gives NaN (-inf - -inf); a +inf element gives a NaN row (inf - inf), all without special cases.
//
// Layout: (outer, dim, inner) view of a C-contiguous tensor. Variants (chosen by <pass>_launch):
//   softmax_<pass>_kernel__warp_regs<kPerLane>  inner == 1, dim <= kSoftmaxWarpMaxDim: a warp per row,
//                         the row held in registers (lane l has elements l, l + 32, ...): one read of the
//                         input, one write, and independent loads in flight (no serial online update)
//   softmax_<pass>_kernel__block_per_row       inner == 1, longer rows: a block per row, one pass per
//                         reduction (the row is read again from L2), 16-byte accesses when rows are aligned
//   softmax_<pass>_kernel__split_{partials,write}  inner == 1, few long rows: each row over several blocks
//                         (partial results, then a merge in every block of the row and the write)
//   softmax_<pass>_kernel__column_tiles        inner > 1: a block per tile of 32 consecutive inner columns
//                         (coalesced across the warp), blockDim.y threads splitting the reduced axis
// Test: pytest tests/test_cuda_kernels.py -k softmax.   Bench: python tools/cuda_bench.py.
#include <algorithm>

#include "common.cuh"
#include "softmax.cuh"

namespace fastml::cuda {

namespace {

template <bool Log>
__device__ __forceinline__ float backward_term(float dy, float y) {
  return Log ? dy : dy * y;
}

template <bool Log>
__device__ __forceinline__ float backward_value(float dy, float y, float sum) {
  return Log ? dy - expf(y) * sum : y * (dy - sum);
}

// ---- rows in registers: one warp per row ---------------------------------------------------------------

template <bool Log, int kPerLane>
__global__ void __launch_bounds__(kSoftmaxWarpsPerBlock * kWarpSize)
    softmax_forward_kernel__warp_regs(SoftmaxParams p) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * kSoftmaxWarpsPerBlock;
  const int dim = static_cast<int>(p.dim);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kSoftmaxWarpsPerBlock + threadIdx.x / kWarpSize;
       row < p.outer; row += nwarps) {
    const float* x = p.x + row * p.dim;
    float* y = p.out + row * p.dim;
    float v[kPerLane];
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int j = lane + i * kWarpSize;
      v[i] = j < dim ? x[j] : -INFINITY;
    }
    float m = v[0];
#pragma unroll
    for (int i = 1; i < kPerLane; ++i) m = nan_max(m, v[i]);
    m = warp_reduce_max(m);
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (lane + i * kWarpSize < dim) {
        v[i] -= m;
        const float e = expf(v[i]);
        s += e;
        if (!Log) v[i] = e;
      }
    }
    s = warp_reduce_sum(s);
    const float log_s = Log ? logf(s) : 0.0f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int j = lane + i * kWarpSize;
      if (j < dim) y[j] = Log ? v[i] - log_s : v[i] / s;
    }
  }
}

template <bool Log, int kPerLane>
__global__ void __launch_bounds__(kSoftmaxWarpsPerBlock * kWarpSize)
    softmax_backward_kernel__warp_regs(SoftmaxParams p) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * kSoftmaxWarpsPerBlock;
  const int dim = static_cast<int>(p.dim);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kSoftmaxWarpsPerBlock + threadIdx.x / kWarpSize;
       row < p.outer; row += nwarps) {
    const float* dy = p.x + row * p.dim;
    const float* y = p.y + row * p.dim;
    float* dx = p.out + row * p.dim;
    float g[kPerLane], w[kPerLane];
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int j = lane + i * kWarpSize;
      g[i] = j < dim ? dy[j] : 0.0f;
      w[i] = j < dim ? y[j] : 0.0f;
    }
    float acc = 0.0f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) acc += backward_term<Log>(g[i], w[i]);
    const float sum = warp_reduce_sum(acc);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int j = lane + i * kWarpSize;
      if (j < dim) dx[j] = backward_value<Log>(g[i], w[i], sum);
    }
  }
}

// ---- long rows: one block per row ----------------------------------------------------------------------

// Calls f(j, x[j]) for this thread's elements j of a row of n; Vec: the row is 16-byte aligned and n % 4 == 0.
template <bool Vec, class F>
__device__ __forceinline__ void for_row(const float* __restrict__ x, int64_t n, F&& f) {
  if constexpr (Vec) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
#pragma unroll 4
    for (int64_t q = threadIdx.x; q < n / 4; q += blockDim.x) {
      const float4 v = x4[q];
      f(4 * q, v.x);
      f(4 * q + 1, v.y);
      f(4 * q + 2, v.z);
      f(4 * q + 3, v.w);
    }
  } else {
#pragma unroll 4
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) f(j, x[j]);
  }
}

template <bool Log, bool Vec>
__global__ void __launch_bounds__(kSoftmaxBlockSize) softmax_forward_kernel__block_per_row(SoftmaxParams p) {
  __shared__ float scratch[kWarpSize];
  for (int64_t row = blockIdx.x; row < p.outer; row += gridDim.x) {
    const float* x = p.x + row * p.dim;
    float* y = p.out + row * p.dim;
    float m = -INFINITY;
    for_row<Vec>(x, p.dim, [&](int64_t, float v) { m = nan_max(m, v); });
    m = block_reduce_max(m, scratch);
    float s = 0.0f;
    for_row<Vec>(x, p.dim, [&](int64_t, float v) { s += expf(v - m); });
    s = block_reduce_sum(s, scratch);  // ends with a barrier: scratch is reusable by the next row
    const float log_s = Log ? logf(s) : 0.0f;
    if constexpr (Vec) {
      const float4* x4 = reinterpret_cast<const float4*>(x);
      float4* y4 = reinterpret_cast<float4*>(y);
#pragma unroll 4
      for (int64_t q = threadIdx.x; q < p.dim / 4; q += blockDim.x) {
        const float4 v = x4[q];
        y4[q] = Log ? make_float4(v.x - m - log_s, v.y - m - log_s, v.z - m - log_s, v.w - m - log_s)
                    : make_float4(expf(v.x - m) / s, expf(v.y - m) / s, expf(v.z - m) / s, expf(v.w - m) / s);
      }
    } else {
      for_row<false>(x, p.dim, [&](int64_t j, float v) { y[j] = Log ? (v - m) - log_s : expf(v - m) / s; });
    }
  }
}

template <bool Log>
__global__ void __launch_bounds__(kSoftmaxBlockSize) softmax_backward_kernel__block_per_row(SoftmaxParams p) {
  __shared__ float scratch[kWarpSize];
  for (int64_t row = blockIdx.x; row < p.outer; row += gridDim.x) {
    const float* dy = p.x + row * p.dim;
    const float* y = p.y + row * p.dim;
    float* dx = p.out + row * p.dim;
    float acc = 0.0f;
#pragma unroll 4
    for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) acc += backward_term<Log>(dy[j], y[j]);
    const float sum = block_reduce_sum(acc, scratch);  // ends with a barrier: scratch is reusable
#pragma unroll 4
    for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) dx[j] = backward_value<Log>(dy[j], y[j], sum);
  }
}

// ---- few long rows: each row split into chunks over several blocks, two launches -----------------------
// (e.g. a batch of 8 rows of a 50k vocabulary: one block per row would leave most of the GPU idle)
// Launch 1 writes each chunk's partial result, launch 2 merges a row's partials in every block of the row
// and writes that block's chunk. Forward partial (m_c, s_c): the chunk's max and sum of e^{x - m_c}, with
// s_c = 0 for a chunk of only -inf; merged S = sum_c s_c e^{m_c - M}, M = max_c m_c, and S = NaN when M = -inf.

struct SplitRows {
  int64_t chunk;  // elements per chunk (a multiple of 4: chunks keep the rows' 16-byte alignment)
  int chunks;     // chunks per row (<= kSoftmaxBlockSize: launch 2 merges them with one value per thread)
};

struct SplitChunk {
  int64_t row;  // the row this block works on
  int64_t lo;   // its chunk's first element within the row
  int64_t n;    // the chunk's length (the row's last chunk may be short)
};

__device__ __forceinline__ SplitChunk split_chunk(const SplitRows& sr, int64_t dim) {
  const int64_t row = blockIdx.x / sr.chunks;
  const int64_t lo = (blockIdx.x - row * sr.chunks) * sr.chunk;
  return {row, lo, min(sr.chunk, dim - lo)};
}

template <bool Vec>
__global__ void __launch_bounds__(kSoftmaxBlockSize)
    softmax_forward_kernel__split_partials(SoftmaxParams p, SplitRows sr, float2* part) {
  __shared__ float scratch[kWarpSize];
  const auto [row, lo, n] = split_chunk(sr, p.dim);
  const float* x = p.x + row * p.dim + lo;
  float m = -INFINITY;
  for_row<Vec>(x, n, [&](int64_t, float v) { m = nan_max(m, v); });
  m = block_reduce_max(m, scratch);
  float s = 0.0f;
  if (m != -INFINITY) for_row<Vec>(x, n, [&](int64_t, float v) { s += expf(v - m); });  // m: same in all threads
  s = block_reduce_sum(s, scratch);
  if (threadIdx.x == 0) part[blockIdx.x] = make_float2(m, s);
}

template <bool Log, bool Vec>
__global__ void __launch_bounds__(kSoftmaxBlockSize)
    softmax_forward_kernel__split_write(SoftmaxParams p, SplitRows sr, const float2* part) {
  __shared__ float scratch[kWarpSize];
  const auto [row, lo, n] = split_chunk(sr, p.dim);
  float2 q = make_float2(-INFINITY, 0.0f);
  if (threadIdx.x < sr.chunks) q = part[row * sr.chunks + threadIdx.x];
  const float m = block_reduce_max(q.x, scratch);
  float s = block_reduce_sum(q.y != 0.0f ? q.y * expf(q.x - m) : 0.0f, scratch);  // NaN partials propagate
  if (m == -INFINITY) s = NAN;                                                     // an all -inf row
  const float log_s = Log ? logf(s) : 0.0f;
  const float* x = p.x + row * p.dim + lo;
  float* y = p.out + row * p.dim + lo;
  if constexpr (Vec) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
#pragma unroll 4
    for (int64_t k = threadIdx.x; k < n / 4; k += blockDim.x) {
      const float4 v = x4[k];
      y4[k] = Log ? make_float4(v.x - m - log_s, v.y - m - log_s, v.z - m - log_s, v.w - m - log_s)
                  : make_float4(expf(v.x - m) / s, expf(v.y - m) / s, expf(v.z - m) / s, expf(v.w - m) / s);
    }
  } else {
    for_row<false>(x, n, [&](int64_t j, float v) { y[j] = Log ? (v - m) - log_s : expf(v - m) / s; });
  }
}

template <bool Log>
__global__ void __launch_bounds__(kSoftmaxBlockSize)
    softmax_backward_kernel__split_partials(SoftmaxParams p, SplitRows sr, float* part) {
  __shared__ float scratch[kWarpSize];
  const auto [row, lo, n] = split_chunk(sr, p.dim);
  const float* dy = p.x + row * p.dim + lo;
  const float* y = p.y + row * p.dim + lo;
  float acc = 0.0f;
#pragma unroll 4
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc += backward_term<Log>(dy[j], y[j]);
  acc = block_reduce_sum(acc, scratch);
  if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

template <bool Log>
__global__ void __launch_bounds__(kSoftmaxBlockSize)
    softmax_backward_kernel__split_write(SoftmaxParams p, SplitRows sr, const float* part) {
  __shared__ float scratch[kWarpSize];
  const auto [row, lo, n] = split_chunk(sr, p.dim);
  const float sum = block_reduce_sum(threadIdx.x < sr.chunks ? part[row * sr.chunks + threadIdx.x] : 0.0f, scratch);
  const float* dy = p.x + row * p.dim + lo;
  const float* y = p.y + row * p.dim + lo;
  float* dx = p.out + row * p.dim + lo;
#pragma unroll 4
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) dx[j] = backward_value<Log>(dy[j], y[j], sum);
}

// ---- inner > 1: tiles of 32 columns, blockDim.y threads along the reduced axis --------------------------

// Reduces v over threadIdx.y for each threadIdx.x; every thread gets its column's result. Ends with a barrier.
template <bool Max>
__device__ __forceinline__ float column_reduce(float v, float (*scratch)[kWarpSize + 1]) {
  scratch[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  if (threadIdx.y == 0) {
    for (int r = 1; r < static_cast<int>(blockDim.y); ++r) {
      const float o = scratch[r][threadIdx.x];
      v = Max ? nan_max(v, o) : v + o;
    }
    scratch[0][threadIdx.x] = v;
  }
  __syncthreads();
  v = scratch[0][threadIdx.x];
  __syncthreads();
  return v;
}

struct ColumnTile {
  int64_t base;  // offset of element (o, 0, i)
  bool valid;
};

__device__ __forceinline__ ColumnTile column_tile(const SoftmaxParams& p, int64_t tile, int64_t tiles_per_outer) {
  const int64_t o = tile / tiles_per_outer;
  const int64_t i = (tile - o * tiles_per_outer) * kWarpSize + threadIdx.x;
  return {o * p.dim * p.inner + i, i < p.inner};
}

template <bool Log>
__global__ void __launch_bounds__(kSoftmaxColumnThreads) softmax_forward_kernel__column_tiles(SoftmaxParams p) {
  __shared__ float scratch[kSoftmaxColumnThreads / kWarpSize][kWarpSize + 1];
  const int64_t tiles_per_outer = ceil_div(p.inner, kWarpSize);
  for (int64_t tile = blockIdx.x; tile < p.outer * tiles_per_outer; tile += gridDim.x) {
    const ColumnTile t = column_tile(p, tile, tiles_per_outer);
    const float* x = p.x + t.base;
    float m = -INFINITY;
    if (t.valid) {
#pragma unroll 4
      for (int64_t d = threadIdx.y; d < p.dim; d += blockDim.y) m = nan_max(m, x[d * p.inner]);
    }
    m = column_reduce<true>(m, scratch);
    float s = 0.0f;
    if (t.valid) {
#pragma unroll 4
      for (int64_t d = threadIdx.y; d < p.dim; d += blockDim.y) s += expf(x[d * p.inner] - m);
    }
    s = column_reduce<false>(s, scratch);
    if (!t.valid) continue;
    const float log_s = Log ? logf(s) : 0.0f;
    float* y = p.out + t.base;
#pragma unroll 4
    for (int64_t d = threadIdx.y; d < p.dim; d += blockDim.y) {
      const float v = x[d * p.inner];
      y[d * p.inner] = Log ? (v - m) - log_s : expf(v - m) / s;
    }
  }
}

template <bool Log>
__global__ void __launch_bounds__(kSoftmaxColumnThreads) softmax_backward_kernel__column_tiles(SoftmaxParams p) {
  __shared__ float scratch[kSoftmaxColumnThreads / kWarpSize][kWarpSize + 1];
  const int64_t tiles_per_outer = ceil_div(p.inner, kWarpSize);
  for (int64_t tile = blockIdx.x; tile < p.outer * tiles_per_outer; tile += gridDim.x) {
    const ColumnTile t = column_tile(p, tile, tiles_per_outer);
    const float* dy = p.x + t.base;
    const float* y = p.y + t.base;
    float acc = 0.0f;
    if (t.valid) {
#pragma unroll 4
      for (int64_t d = threadIdx.y; d < p.dim; d += blockDim.y) acc += backward_term<Log>(dy[d * p.inner], y[d * p.inner]);
    }
    const float sum = column_reduce<false>(acc, scratch);
    if (!t.valid) continue;
    float* dx = p.out + t.base;
#pragma unroll 4
    for (int64_t d = threadIdx.y; d < p.dim; d += blockDim.y) {
      const int64_t k = d * p.inner;
      dx[k] = backward_value<Log>(dy[k], y[k], sum);
    }
  }
}

int capped_grid(int64_t blocks) {
  return static_cast<int>(blocks < kSoftmaxMaxBlocks ? blocks : kSoftmaxMaxBlocks);
}

// Column tiles: as many threads along the reduced axis as fill the GPU (at most kSoftmaxColumnThreads / 32),
// fewer when the axis is short.
dim3 column_block(const SoftmaxParams& p) {
  const int64_t tiles = p.outer * ceil_div(p.inner, kWarpSize);
  int rows = kSoftmaxColumnThreads / kWarpSize;
  while (rows > 4 && (rows / 2 >= p.dim || tiles * rows > kSoftmaxColumnFill)) rows /= 2;
  return dim3(kWarpSize, rows);
}

bool aligned_rows(const SoftmaxParams& p) {
  return p.dim % 4 == 0 && reinterpret_cast<std::uintptr_t>(p.x) % 16 == 0 &&
         reinterpret_cast<std::uintptr_t>(p.out) % 16 == 0;
}

// Runs K<kPerLane> for the smallest kPerLane in {1, 2, 4, ..., 32} with 32 * kPerLane >= dim.
template <template <int> class K>
void warp_regs_launch(const SoftmaxParams& p, cudaStream_t stream) {
  const int grid = capped_grid(ceil_div(p.outer, kSoftmaxWarpsPerBlock));
  const int threads = kSoftmaxWarpsPerBlock * kWarpSize;
  if (p.dim <= 32) {
    K<1>::launch(grid, threads, stream, p);
  } else if (p.dim <= 64) {
    K<2>::launch(grid, threads, stream, p);
  } else if (p.dim <= 128) {
    K<4>::launch(grid, threads, stream, p);
  } else if (p.dim <= 256) {
    K<8>::launch(grid, threads, stream, p);
  } else if (p.dim <= 512) {
    K<16>::launch(grid, threads, stream, p);
  } else {
    static_assert(kSoftmaxWarpMaxDim == 32 * 32, "warp_regs_launch covers rows up to 1024");
    K<32>::launch(grid, threads, stream, p);
  }
}

template <bool Log>
struct ForwardWarp {
  template <int N>
  struct K {
    static void launch(int grid, int threads, cudaStream_t stream, const SoftmaxParams& p) {
      softmax_forward_kernel__warp_regs<Log, N><<<grid, threads, 0, stream>>>(p);
    }
  };
};

template <bool Log>
struct BackwardWarp {
  template <int N>
  struct K {
    static void launch(int grid, int threads, cudaStream_t stream, const SoftmaxParams& p) {
      softmax_backward_kernel__warp_regs<Log, N><<<grid, threads, 0, stream>>>(p);
    }
  };
};

// Rows split into chunks when one block per row would leave the GPU mostly idle: fewer rows than
// kSoftmaxSplitRowsPerSm per multiprocessor. Chunks of at least kSoftmaxSplitMinChunk elements, about
// kSoftmaxSplitBlocksPerSm blocks per multiprocessor in all. chunks == 0: do not split. The partials need a
// stream-ordered allocation; without memory-pool support the rows are not split.
SplitRows split_rows(const SoftmaxParams& p) {
  SplitRows sr{0, 0};
  if (p.inner != 1 || p.dim <= kSoftmaxSplitMinChunk) return sr;
  int dev = 0, sms = 0, pools = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, dev) != cudaSuccess) {
    cudaGetLastError();
    return sr;
  }
  if (!pools || p.outer >= static_cast<int64_t>(sms) * kSoftmaxSplitRowsPerSm) return sr;
  int64_t chunks = ceil_div(static_cast<int64_t>(sms) * kSoftmaxSplitBlocksPerSm, p.outer);
  chunks = std::min<int64_t>(chunks, std::min<int64_t>(kSoftmaxBlockSize, p.dim / kSoftmaxSplitMinChunk));
  if (chunks < 2) return sr;
  sr.chunk = ceil_div(ceil_div(p.dim, chunks), 4) * 4;
  sr.chunks = static_cast<int>(ceil_div(p.dim, sr.chunk));
  return sr;
}

// Stream-ordered scratch for the partials, freed after the launches that use it.
class StreamScratch {
 public:
  StreamScratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    FASTML_CUDA_CHECK(cudaMallocAsync(&ptr_, bytes, stream));
  }
  ~StreamScratch() { cudaFreeAsync(ptr_, stream_); }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  template <class T>
  T* get() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

template <bool Log>
void forward_split_launch(const SoftmaxParams& p, const SplitRows& sr, cudaStream_t stream) {
  const int64_t blocks = p.outer * sr.chunks;  // < sms * kSoftmaxSplitRowsPerSm * kSoftmaxBlockSize
  StreamScratch part(static_cast<size_t>(blocks) * sizeof(float2), stream);
  if (aligned_rows(p)) {
    softmax_forward_kernel__split_partials<true><<<blocks, kSoftmaxBlockSize, 0, stream>>>(p, sr, part.get<float2>());
    FASTML_CUDA_CHECK_LAUNCH();
    softmax_forward_kernel__split_write<Log, true><<<blocks, kSoftmaxBlockSize, 0, stream>>>(p, sr, part.get<float2>());
  } else {
    softmax_forward_kernel__split_partials<false><<<blocks, kSoftmaxBlockSize, 0, stream>>>(p, sr, part.get<float2>());
    FASTML_CUDA_CHECK_LAUNCH();
    softmax_forward_kernel__split_write<Log, false><<<blocks, kSoftmaxBlockSize, 0, stream>>>(p, sr, part.get<float2>());
  }
  FASTML_CUDA_CHECK_LAUNCH();
}

template <bool Log>
void backward_split_launch(const SoftmaxParams& p, const SplitRows& sr, cudaStream_t stream) {
  const int64_t blocks = p.outer * sr.chunks;
  StreamScratch part(static_cast<size_t>(blocks) * sizeof(float), stream);
  softmax_backward_kernel__split_partials<Log><<<blocks, kSoftmaxBlockSize, 0, stream>>>(p, sr, part.get<float>());
  FASTML_CUDA_CHECK_LAUNCH();
  softmax_backward_kernel__split_write<Log><<<blocks, kSoftmaxBlockSize, 0, stream>>>(p, sr, part.get<float>());
  FASTML_CUDA_CHECK_LAUNCH();
}

template <bool Log>
void forward_launch(const SoftmaxParams& p, cudaStream_t stream) {
  if (p.inner == 1 && p.dim <= kSoftmaxWarpMaxDim) {
    warp_regs_launch<ForwardWarp<Log>::template K>(p, stream);
  } else if (const SplitRows sr = split_rows(p); sr.chunks > 0) {
    forward_split_launch<Log>(p, sr, stream);
  } else if (p.inner == 1) {
    if (aligned_rows(p)) {
      softmax_forward_kernel__block_per_row<Log, true><<<capped_grid(p.outer), kSoftmaxBlockSize, 0, stream>>>(p);
    } else {
      softmax_forward_kernel__block_per_row<Log, false><<<capped_grid(p.outer), kSoftmaxBlockSize, 0, stream>>>(p);
    }
  } else {
    const dim3 block = column_block(p);
    softmax_forward_kernel__column_tiles<Log>
        <<<capped_grid(p.outer * ceil_div(p.inner, kWarpSize)), block, 0, stream>>>(p);
  }
}

template <bool Log>
void backward_launch(const SoftmaxParams& p, cudaStream_t stream) {
  if (p.inner == 1 && p.dim <= kSoftmaxWarpMaxDim) {
    warp_regs_launch<BackwardWarp<Log>::template K>(p, stream);
  } else if (const SplitRows sr = split_rows(p); sr.chunks > 0) {
    backward_split_launch<Log>(p, sr, stream);
  } else if (p.inner == 1) {
    softmax_backward_kernel__block_per_row<Log><<<capped_grid(p.outer), kSoftmaxBlockSize, 0, stream>>>(p);
  } else {
    const dim3 block = column_block(p);
    softmax_backward_kernel__column_tiles<Log>
        <<<capped_grid(p.outer * ceil_div(p.inner, kWarpSize)), block, 0, stream>>>(p);
  }
}

void check_sizes(int64_t outer, int64_t dim, int64_t inner) {
  if (outer < 0 || dim < 0 || inner < 0)
    throw std::invalid_argument("softmax: expected non-negative (outer, dim, inner), got (" + std::to_string(outer) +
                                ", " + std::to_string(dim) + ", " + std::to_string(inner) + ")");
}

}  // namespace

void softmax_forward_launch(const SoftmaxParams& p, bool log, cudaStream_t stream) {
  if (log) {
    forward_launch<true>(p, stream);
  } else {
    forward_launch<false>(p, stream);
  }
  FASTML_CUDA_CHECK_LAUNCH();
}

void softmax_backward_launch(const SoftmaxParams& p, bool log, cudaStream_t stream) {
  if (log) {
    backward_launch<true>(p, stream);
  } else {
    backward_launch<false>(p, stream);
  }
  FASTML_CUDA_CHECK_LAUNCH();
}

void softmax_forward_cuda(std::uintptr_t input, std::uintptr_t out, int64_t outer, int64_t dim, int64_t inner,
                          bool log, int device, std::uintptr_t stream) {
  check_sizes(outer, dim, inner);
  if (outer == 0 || dim == 0 || inner == 0) return;
  DeviceGuard guard(input, device);
  const SoftmaxParams p{reinterpret_cast<const float*>(input), nullptr, reinterpret_cast<float*>(out), outer, dim,
                        inner};
  softmax_forward_launch(p, log, as_stream(stream));
}

void softmax_backward_cuda(std::uintptr_t grad_output, std::uintptr_t output, std::uintptr_t grad_input,
                           int64_t outer, int64_t dim, int64_t inner, bool log, int device, std::uintptr_t stream) {
  check_sizes(outer, dim, inner);
  if (outer == 0 || dim == 0 || inner == 0) return;
  DeviceGuard guard(grad_output, device);
  const SoftmaxParams p{reinterpret_cast<const float*>(grad_output), reinterpret_cast<const float*>(output),
                        reinterpret_cast<float*>(grad_input), outer, dim, inner};
  softmax_backward_launch(p, log, as_stream(stream));
}

}  // namespace fastml::cuda
