// Shared CUDA helpers of fastml._C_cuda (included only by cuda/*.cu).
//
//   FASTML_CUDA_CHECK(expr)       throws fastml::cuda::CudaError (-> RuntimeError) with file:line and the
//                                 CUDA error string when a runtime call fails
//   ceil_div(a, b)                int64 rounding-up division for grid sizes
//   warp_reduce_{sum,max}         full-warp butterfly reductions (every lane gets the result)
//   block_reduce_{sum,max}        block-wide reductions through shared memory (blockDim.x % 32 == 0,
//                                 every thread gets the result; all threads of the block must call)
//   nan_max(a, b)                 max that propagates NaN (torch.max semantics; fmaxf would drop it)
//   DeviceGuard                   makes the device that owns a pointer current, restores the old one
//
// Streams arrive from Python as integers: 0 = default stream, 1 = cudaStreamLegacy, 2 =
// cudaStreamPerThread (the __cuda_array_interface__ v3 encoding is the runtime's own handle values).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_api.h"

namespace fastml::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);

#define FASTML_CUDA_CHECK(expr)                                                         \
  do {                                                                                  \
    const cudaError_t fastml_err_ = (expr);                                             \
    if (fastml_err_ != cudaSuccess)                                                     \
      ::fastml::cuda::throw_cuda_error(fastml_err_, #expr, __FILE__, __LINE__);         \
  } while (0)

// Checks the launch that was just enqueued (configuration errors; asynchronous faults show up later).
#define FASTML_CUDA_CHECK_LAUNCH() FASTML_CUDA_CHECK(cudaGetLastError())

inline cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

__host__ __device__ constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline constexpr int kWarpSize = 32;

__device__ __forceinline__ float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }

__device__ __forceinline__ float warp_reduce_sum(float v) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_reduce_max(float v) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// `scratch` holds >= 32 floats of shared memory. Ends with a barrier so scratch can be reused.
__device__ __forceinline__ float block_reduce_sum(float v, float* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int nwarps = blockDim.x / kWarpSize;
  v = warp_reduce_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : 0.0f;
  v = warp_reduce_sum(v);
  __syncthreads();
  return v;
}

__device__ __forceinline__ float block_reduce_max(float v, float* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int nwarps = blockDim.x / kWarpSize;
  v = warp_reduce_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : -INFINITY;
  v = warp_reduce_max(v);
  __syncthreads();
  return v;
}

// RAII: switch to the device owning `ptr` (a no-op when it is already current). `device` >= 0 is that
// device as the caller's array library reports it (torch, CuPy: their arrays are device memory), which
// saves asking the driver about the pointer (cudaPointerGetAttributes: ~0.1 us on an H200 host); -1 asks
// the driver, and refuses host memory the GPU cannot access.
class DeviceGuard {
 public:
  DeviceGuard(std::uintptr_t ptr, int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int old_ = -1;
  bool switched_ = false;
};

inline bool aligned16(std::uintptr_t p) { return (p & 15u) == 0; }

}  // namespace fastml::cuda
