// Plain C++ view of fastml._C_cuda's host side: what the pybind11 files (bind_*.cpp, compiled by the
// C++ compiler, not nvcc) need to know. No CUDA headers here: streams and device pointers cross as
// std::uintptr_t. The kernels and their launches live in cuda/<op>.cu.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastml::cuda {

// A failed CUDA runtime call (translated to Python RuntimeError).
struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct DeviceProps {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;
  int64_t total_memory = 0;
  int multiprocessors = 0;
};

struct DeviceInfo {
  int device_count = 0;
  int current_device = 0;
  int driver_version = 0;   // e.g. 13000 for 13.0 (0 when no driver is installed)
  int runtime_version = 0;  // cudart the module was linked with
  std::vector<DeviceProps> devices;
};

// Throws CudaError("device_info: ...") when no driver or no GPU is present.
DeviceInfo device_info();

}  // namespace fastml::cuda
