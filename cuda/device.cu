// Host helpers of fastml._C_cuda: error reporting, device switching, device_info().
// Test: pytest tests/test_cuda.py (test_cuda_module_without_gpu runs on any machine with the module).
#include <cstdio>
#include <string>

#include "common.cuh"

namespace fastml::cuda {

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  // (strings, not an ostringstream: see csrc/core/check.h on iostreams and a static libstdc++)
  std::string msg = std::string("CUDA error ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ") in " +
                    expr + " at " + file + ":" + std::to_string(line);
  cudaGetLastError();  // clear a sticky-free error so that the next call starts clean
  throw CudaError(msg);
}

DeviceGuard::DeviceGuard(std::uintptr_t ptr, int device) {
  if (device >= 0) {
    FASTML_CUDA_CHECK(cudaGetDevice(&old_));
    if (device != old_) {
      FASTML_CUDA_CHECK(cudaSetDevice(device));
      switched_ = true;
    }
    return;
  }
  if (ptr == 0) return;
  cudaPointerAttributes attr{};
  FASTML_CUDA_CHECK(cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(ptr)));
  FASTML_CUDA_CHECK(cudaGetDevice(&old_));
  if (attr.type == cudaMemoryTypeUnregistered) {
    // Plain host memory: usable by kernels only where the GPU can access pageable memory (HMM/ATS,
    // e.g. Grace Hopper). Elsewhere a launch would fault and poison the context, so refuse it here.
    int pageable = 0;
    FASTML_CUDA_CHECK(cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, old_));
    if (!pageable) {
      char hex[24];
      std::snprintf(hex, sizeof(hex), "%llx", static_cast<unsigned long long>(ptr));
      throw std::invalid_argument(std::string("expected a pointer to CUDA device memory, got 0x") + hex +
                                  " (host memory that this GPU cannot access)");
    }
    return;
  }
  // device / managed / registered host memory: run on the device that owns it
  if (attr.device >= 0 && attr.device != old_) {
    FASTML_CUDA_CHECK(cudaSetDevice(attr.device));
    switched_ = true;
  }
}

DeviceGuard::~DeviceGuard() {
  if (switched_) cudaSetDevice(old_);  // never throws from a destructor
}

DeviceInfo device_info() {
  DeviceInfo info;
  cudaDriverGetVersion(&info.driver_version);  // 0 without a driver; not an error by itself
  cudaRuntimeGetVersion(&info.runtime_version);
  const cudaError_t err = cudaGetDeviceCount(&info.device_count);
  if (err != cudaSuccess || info.device_count == 0) {
    std::string msg = "device_info: no usable CUDA device (";
    if (info.driver_version == 0) msg += "no NVIDIA driver found; ";
    if (err != cudaSuccess) {
      msg += std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
    } else {
      msg += "the driver reports 0 devices";
    }
    msg += "; driver version " + std::to_string(info.driver_version) + ", runtime version " +
           std::to_string(info.runtime_version) + ")";
    cudaGetLastError();
    throw CudaError(msg);
  }
  FASTML_CUDA_CHECK(cudaGetDevice(&info.current_device));
  for (int d = 0; d < info.device_count; ++d) {
    cudaDeviceProp p{};
    FASTML_CUDA_CHECK(cudaGetDeviceProperties(&p, d));
    DeviceProps dp;
    dp.index = d;
    dp.name = p.name;
    dp.major = p.major;
    dp.minor = p.minor;
    dp.total_memory = static_cast<int64_t>(p.totalGlobalMem);
    dp.multiprocessors = p.multiProcessorCount;
    info.devices.push_back(dp);
  }
  return info;
}

}  // namespace fastml::cuda
