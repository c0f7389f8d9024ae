// Softmax and log_softmax along one axis on CUDA, forward and backward, float32.
//
//   forward   m = max_d x (NaN propagates), s = sum_d e^{x - m}
//             softmax y = e^{x - m} / s            log_softmax y = (x - m) - log s
//   backward  softmax dx = y (dy - sum_d dy y)     log_softmax dx = dy - e^y sum_d dy
// Semantics as torch: a NaN anywhere in a row makes the row NaN; an all -inf row gives NaN; a +inf
// element gives a NaN row (torch computes inf - inf there). m and s come from one online pass
// (Milakov & Gimelshein 2018, "Online normalizer calculation for softmax"), then one write pass.
//
// Layout: (outer, dim, inner) view of a C-contiguous tensor. Variants (chosen by softmax_<pass>_launch):
//   softmax_<pass>_kernel__warp_per_row    inner == 1, dim <= kSoftmaxWarpMaxDim: a warp per row
//   softmax_<pass>_kernel__block_per_row   inner == 1, longer rows: a block per row, block reductions
//   softmax_<pass>_kernel__strided         inner > 1: a thread per (outer, inner) column; consecutive
//                                          threads read consecutive addresses (coalesced)
// Test: pytest tests/test_cuda.py -k softmax.   Bench: python -m fastml.bench --ops softmax.
#include "common.cuh"
#include "softmax.cuh"

namespace fastml::cuda {

namespace {

// Running (max, sum of e^{x - max}) of the values seen so far; the empty state is (-inf, 0).
struct MaxSum {
  float m = -INFINITY;
  float s = 0.0f;
};

__device__ __forceinline__ void online_add(MaxSum& a, float x) {
  if (x > a.m) {
    a.s = a.s * expf(a.m - x) + 1.0f;  // a.m = -inf: 0 * 0 + 1
    a.m = x;
  } else if (x != x) {
    a.m = x;  // NaN: the whole row becomes NaN
    a.s = x;
  } else if (x != -INFINITY) {
    a.s += expf(x - a.m);  // x <= m (m = +inf gives inf - inf = NaN, as torch)
  }
}

__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  MaxSum r;
  r.m = nan_max(a.m, b.m);
  if (r.m == -INFINITY) return r;  // both empty / all -inf
  const float sa = a.s == 0.0f ? 0.0f : a.s * expf(a.m - r.m);
  const float sb = b.s == 0.0f ? 0.0f : b.s * expf(b.m - r.m);
  r.s = sa + sb;
  return r;
}

__device__ __forceinline__ MaxSum warp_merge(MaxSum v) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) {
    MaxSum other;
    other.m = __shfl_xor_sync(0xffffffffu, v.m, o);
    other.s = __shfl_xor_sync(0xffffffffu, v.s, o);
    v = merge(v, other);
  }
  return v;
}

// torch sums e^{x - m} including the element equal to m = +inf, which is e^{NaN}: the row is NaN.
__device__ __forceinline__ MaxSum finish(MaxSum v) {
  if (v.m == INFINITY) v.s = NAN;
  return v;
}

template <bool Log>
__device__ __forceinline__ float forward_value(float x, const MaxSum& v, float log_s) {
  return Log ? (x - v.m) - log_s : expf(x - v.m) / v.s;
}

template <bool Log>
__device__ __forceinline__ float backward_value(float dy, float y, float sum) {
  return Log ? dy - expf(y) * sum : y * (dy - sum);
}

// ---- forward ----------------------------------------------------------------------------------------

template <bool Log>
__global__ void __launch_bounds__(kSoftmaxWarpsPerBlock * kWarpSize)
    softmax_forward_kernel__warp_per_row(SoftmaxParams p) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * kSoftmaxWarpsPerBlock;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kSoftmaxWarpsPerBlock + threadIdx.x / kWarpSize;
       row < p.outer; row += nwarps) {
    const float* x = p.x + row * p.dim;
    float* y = p.out + row * p.dim;
    MaxSum v;
    for (int64_t j = lane; j < p.dim; j += kWarpSize) online_add(v, x[j]);
    v = finish(warp_merge(v));
    const float log_s = Log ? logf(v.s) : 0.0f;
    for (int64_t j = lane; j < p.dim; j += kWarpSize) y[j] = forward_value<Log>(x[j], v, log_s);
  }
}

template <bool Log>
__global__ void __launch_bounds__(kSoftmaxBlockSize) softmax_forward_kernel__block_per_row(SoftmaxParams p) {
  __shared__ float sm[kWarpSize], ss[kWarpSize];
  __shared__ float row_m, row_s;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int nwarps = blockDim.x / kWarpSize;
  for (int64_t row = blockIdx.x; row < p.outer; row += gridDim.x) {
    const float* x = p.x + row * p.dim;
    float* y = p.out + row * p.dim;
    MaxSum v;
    for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) online_add(v, x[j]);
    v = warp_merge(v);
    if (lane == 0) {
      sm[warp] = v.m;
      ss[warp] = v.s;
    }
    __syncthreads();
    if (warp == 0) {
      MaxSum w;
      if (lane < nwarps) {
        w.m = sm[lane];
        w.s = ss[lane];
      }
      w = finish(warp_merge(w));
      if (lane == 0) {
        row_m = w.m;
        row_s = w.s;
      }
    }
    __syncthreads();
    MaxSum r;
    r.m = row_m;
    r.s = row_s;
    const float log_s = Log ? logf(r.s) : 0.0f;
    for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) y[j] = forward_value<Log>(x[j], r, log_s);
    __syncthreads();  // row_m, row_s, sm, ss are rewritten by the next row
  }
}

template <bool Log>
__global__ void __launch_bounds__(kSoftmaxStridedBlockSize) softmax_forward_kernel__strided(SoftmaxParams p) {
  const int64_t cols = p.outer * p.inner;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols; c += stride) {
    const int64_t o = c / p.inner, i = c - o * p.inner;
    const int64_t base = o * p.dim * p.inner + i;
    MaxSum v;
    for (int64_t d = 0; d < p.dim; ++d) online_add(v, p.x[base + d * p.inner]);
    v = finish(v);
    const float log_s = Log ? logf(v.s) : 0.0f;
    for (int64_t d = 0; d < p.dim; ++d) {
      const int64_t k = base + d * p.inner;
      p.out[k] = forward_value<Log>(p.x[k], v, log_s);
    }
  }
}

// ---- backward ---------------------------------------------------------------------------------------

template <bool Log>
__device__ __forceinline__ float backward_term(float dy, float y) {
  return Log ? dy : dy * y;
}

template <bool Log>
__global__ void __launch_bounds__(kSoftmaxWarpsPerBlock * kWarpSize)
    softmax_backward_kernel__warp_per_row(SoftmaxParams p) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * kSoftmaxWarpsPerBlock;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kSoftmaxWarpsPerBlock + threadIdx.x / kWarpSize;
       row < p.outer; row += nwarps) {
    const float* dy = p.x + row * p.dim;
    const float* y = p.y + row * p.dim;
    float* dx = p.out + row * p.dim;
    float acc = 0.0f;
    for (int64_t j = lane; j < p.dim; j += kWarpSize) acc += backward_term<Log>(dy[j], y[j]);
    const float sum = warp_reduce_sum(acc);
    for (int64_t j = lane; j < p.dim; j += kWarpSize) dx[j] = backward_value<Log>(dy[j], y[j], sum);
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
    for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) acc += backward_term<Log>(dy[j], y[j]);
    const float sum = block_reduce_sum(acc, scratch);  // ends with a barrier: scratch is reusable
    for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) dx[j] = backward_value<Log>(dy[j], y[j], sum);
  }
}

template <bool Log>
__global__ void __launch_bounds__(kSoftmaxStridedBlockSize) softmax_backward_kernel__strided(SoftmaxParams p) {
  const int64_t cols = p.outer * p.inner;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols; c += stride) {
    const int64_t o = c / p.inner, i = c - o * p.inner;
    const int64_t base = o * p.dim * p.inner + i;
    float sum = 0.0f;
    for (int64_t d = 0; d < p.dim; ++d) sum += backward_term<Log>(p.x[base + d * p.inner], p.y[base + d * p.inner]);
    for (int64_t d = 0; d < p.dim; ++d) {
      const int64_t k = base + d * p.inner;
      p.out[k] = backward_value<Log>(p.x[k], p.y[k], sum);
    }
  }
}

int capped_grid(int64_t blocks) {
  return static_cast<int>(blocks < kSoftmaxMaxBlocks ? blocks : kSoftmaxMaxBlocks);
}

template <bool Log>
void forward_launch(const SoftmaxParams& p, cudaStream_t stream) {
  if (p.inner == 1 && p.dim <= kSoftmaxWarpMaxDim) {
    softmax_forward_kernel__warp_per_row<Log>
        <<<capped_grid(ceil_div(p.outer, kSoftmaxWarpsPerBlock)), kSoftmaxWarpsPerBlock * kWarpSize, 0, stream>>>(p);
  } else if (p.inner == 1) {
    softmax_forward_kernel__block_per_row<Log><<<capped_grid(p.outer), kSoftmaxBlockSize, 0, stream>>>(p);
  } else {
    softmax_forward_kernel__strided<Log>
        <<<capped_grid(ceil_div(p.outer * p.inner, kSoftmaxStridedBlockSize)), kSoftmaxStridedBlockSize, 0, stream>>>(p);
  }
}

template <bool Log>
void backward_launch(const SoftmaxParams& p, cudaStream_t stream) {
  if (p.inner == 1 && p.dim <= kSoftmaxWarpMaxDim) {
    softmax_backward_kernel__warp_per_row<Log>
        <<<capped_grid(ceil_div(p.outer, kSoftmaxWarpsPerBlock)), kSoftmaxWarpsPerBlock * kWarpSize, 0, stream>>>(p);
  } else if (p.inner == 1) {
    softmax_backward_kernel__block_per_row<Log><<<capped_grid(p.outer), kSoftmaxBlockSize, 0, stream>>>(p);
  } else {
    softmax_backward_kernel__strided<Log>
        <<<capped_grid(ceil_div(p.outer * p.inner, kSoftmaxStridedBlockSize)), kSoftmaxStridedBlockSize, 0, stream>>>(p);
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
                          bool log, std::uintptr_t stream) {
  check_sizes(outer, dim, inner);
  if (outer == 0 || dim == 0 || inner == 0) return;
  DeviceGuard guard(input);
  const SoftmaxParams p{reinterpret_cast<const float*>(input), nullptr, reinterpret_cast<float*>(out), outer, dim,
                        inner};
  softmax_forward_launch(p, log, as_stream(stream));
}

void softmax_backward_cuda(std::uintptr_t grad_output, std::uintptr_t output, std::uintptr_t grad_input,
                           int64_t outer, int64_t dim, int64_t inner, bool log, std::uintptr_t stream) {
  check_sizes(outer, dim, inner);
  if (outer == 0 || dim == 0 || inner == 0) return;
  DeviceGuard guard(grad_output);
  const SoftmaxParams p{reinterpret_cast<const float*>(grad_output), reinterpret_cast<const float*>(output),
                        reinterpret_cast<float*>(grad_input), outer, dim, inner};
  softmax_backward_launch(p, log, as_stream(stream));
}

}  // namespace fastml::cuda
