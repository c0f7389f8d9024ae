// CUDA activations: parameters, launch constants and entry points (plain C++: included by the
// pybind11 binding cuda/bind_activation_cuda.cpp as well as by cuda/activation.cu).
// Kinds are indexed exactly as csrc/ops/activation/activation.h ActKind; the maths is documented there.
#pragma once
#include <cstdint>

namespace fastml::cuda {

inline constexpr int kActivationBlockSize = 256;
// Grid-stride loops: a grid larger than this many blocks only adds scheduling cost on any current GPU.
inline constexpr int64_t kActivationMaxBlocks = 8192;
inline constexpr int kActivationNumKinds = 6;

struct ActivationParams {
  const float* x;      // forward: input; backward: grad_output
  const float* saved;  // backward only: the input x (relu, leaky_relu, gelu, gelu_tanh) or output y (sigmoid, tanh)
  float* y;            // forward: output; backward: grad_input (may alias x / saved exactly)
  int64_t n;
  float param;         // leaky_relu's negative slope
  bool vec4;           // every pointer 16-byte aligned: float4 loads/stores for the first n/4*4 elements
};

// Enqueue on `stream` (an int-encoded cudaStream_t). Pointers must be device pointers of n floats.
// `device`: the GPU that owns the pointers, or -1 to ask the driver (see DeviceGuard in common.cuh).
void activation_forward_cuda(int kind, std::uintptr_t x, std::uintptr_t y, int64_t n, float param, int device,
                             std::uintptr_t stream);
void activation_backward_cuda(int kind, std::uintptr_t grad_output, std::uintptr_t saved, std::uintptr_t grad_input,
                              int64_t n, float param, int device, std::uintptr_t stream);

}  // namespace fastml::cuda
