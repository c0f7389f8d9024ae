// Elementwise activations on CUDA, forward and backward, float32, contiguous arrays of n elements.
//
// Maths (identical to csrc/ops/activation/activation.h, including its stable forms):
//   relu        y = x < 0 ? 0 : x (NaN propagates)      dx = x <= 0 ? 0 : dy
//   leaky_relu  y = x > 0 ? x : a x                      dx = x > 0 ? dy : a dy
//   sigmoid     y = 1 / (1 + e^-x)                       dx = dy y (1 - y)        (saved = output)
//   tanh        y = tanhf(x)                             dx = dy (1 - y^2)        (saved = output)
//   gelu        y = x Phi(x), Phi = normcdff             dx = dy (Phi(x) + x phi(x)); phi's exponent uses an
//               exact x^2 (FMA split) so that large |x| do not amplify the rounding of x*x
//   gelu_tanh   y = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
//               dx = dy (s + 2 x s (1 - s) u'), 1 - s formed as e s when s >= 1/2 (no cancellation)
//
// Variants: one kernel per (kind, pass) (template on the kind), grid-stride; float4 loads/stores when
// all pointers are 16-byte aligned (the CPU path of the Python side guarantees C-contiguity, not alignment).
// Triple: activation_<pass>_kernel -> activation_<pass>_launch(params, stream) -> activation_<pass>_cuda.
// Test: pytest tests/test_cuda.py -k activation.   Bench: python -m fastml.bench --ops activation.
#include "activation.cuh"
#include "common.cuh"

namespace fastml::cuda {

namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluTanhC = 0.044715f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;

enum Kind : int { kRelu = 0, kLeakyRelu, kSigmoid, kTanh, kGelu, kGeluTanh };

__host__ __device__ __forceinline__ float gelu_tanh_u2(float x) {  // 2u
  return (2.0f * kSqrt2OverPi) * fmaf(kGeluTanhC * x, x * x, x);
}

template <int K>
__host__ __device__ __forceinline__ float act_forward(float x, float a) {
  if constexpr (K == kRelu) {
    return x < 0.0f ? 0.0f : x;
  } else if constexpr (K == kLeakyRelu) {
    return x > 0.0f ? x : x * a;
  } else if constexpr (K == kSigmoid) {
    return 1.0f / (1.0f + expf(-x));
  } else if constexpr (K == kTanh) {
    return tanhf(x);
  } else if constexpr (K == kGelu) {
    return x * normcdff(x);
  } else {
    return x * (1.0f / (1.0f + expf(-gelu_tanh_u2(x))));
  }
}

template <int K>
__host__ __device__ __forceinline__ float act_backward(float g, float s, float a) {
  if constexpr (K == kRelu) {
    return s <= 0.0f ? 0.0f : g;
  } else if constexpr (K == kLeakyRelu) {
    return s > 0.0f ? g : g * a;
  } else if constexpr (K == kSigmoid) {
    return g * (s * (1.0f - s));
  } else if constexpr (K == kTanh) {
    return g * fmaf(-s, s, 1.0f);
  } else if constexpr (K == kGelu) {
    const float x = s;
    const float x2 = x * x;
    const float x2_err = fmaf(x, x, -x2);  // x^2 = x2 + x2_err exactly
    const float e = expf(-0.5f * x2);
    // e^{-x^2/2} = e * e^{-x2_err/2} ~ e (1 - x2_err/2); skip when e == 0 (x2 may be inf there)
    const float pdf = kInvSqrt2Pi * (e == 0.0f ? 0.0f : fmaf(e, -0.5f * x2_err, e));
    return g * fmaf(x, pdf, normcdff(x));
  } else {
    const float x = s;
    const float e = expf(-gelu_tanh_u2(x));
    const float sg = 1.0f / (1.0f + e);
    const float s1 = sg < 0.5f ? 1.0f - sg : e * sg;  // 1 - sigmoid(2u)
    const float du = kSqrt2OverPi * fmaf(3.0f * kGeluTanhC * x, x, 1.0f);
    const float ds = 2.0f * sg * s1 * du;
    return g * fmaf(x, ds, sg);
  }
}

// The 16-byte loops load kActivationUnroll float4s (a grid stride apart) before they compute and store any:
// the output may alias the input, so the compiler cannot move a later load above an earlier store, and one
// load in flight per thread left the copy-bound kernels at ~88% of the device-to-device copy rate (H200).
inline constexpr int kActivationUnroll = 4;

template <int K>
__device__ __forceinline__ float4 forward4(float4 v, float param) {
  return make_float4(act_forward<K>(v.x, param), act_forward<K>(v.y, param), act_forward<K>(v.z, param),
                     act_forward<K>(v.w, param));
}

template <int K>
__device__ __forceinline__ float4 backward4(float4 g, float4 s, float param) {
  return make_float4(act_backward<K>(g.x, s.x, param), act_backward<K>(g.y, s.y, param),
                     act_backward<K>(g.z, s.z, param), act_backward<K>(g.w, s.w, param));
}

template <int K>
__global__ void __launch_bounds__(kActivationBlockSize) activation_forward_kernel(ActivationParams p) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (p.vec4) {
    const int64_t n4 = p.n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(p.x);
    float4* y4 = reinterpret_cast<float4*>(p.y);
    int64_t i = tid;
    for (; i + (kActivationUnroll - 1) * stride < n4; i += kActivationUnroll * stride) {
      float4 v[kActivationUnroll];
#pragma unroll
      for (int u = 0; u < kActivationUnroll; ++u) v[u] = x4[i + u * stride];
#pragma unroll
      for (int u = 0; u < kActivationUnroll; ++u) y4[i + u * stride] = forward4<K>(v[u], p.param);
    }
    for (; i < n4; i += stride) y4[i] = forward4<K>(x4[i], p.param);
    done = n4 * 4;
  }
  for (int64_t i = done + tid; i < p.n; i += stride) p.y[i] = act_forward<K>(p.x[i], p.param);
}

template <int K>
__global__ void __launch_bounds__(kActivationBlockSize) activation_backward_kernel(ActivationParams p) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (p.vec4) {
    const int64_t n4 = p.n / 4;
    const float4* g4 = reinterpret_cast<const float4*>(p.x);
    const float4* s4 = reinterpret_cast<const float4*>(p.saved);
    float4* d4 = reinterpret_cast<float4*>(p.y);
    int64_t i = tid;
    for (; i + (kActivationUnroll - 1) * stride < n4; i += kActivationUnroll * stride) {
      float4 g[kActivationUnroll], s[kActivationUnroll];
#pragma unroll
      for (int u = 0; u < kActivationUnroll; ++u) {
        g[u] = g4[i + u * stride];
        s[u] = s4[i + u * stride];
      }
#pragma unroll
      for (int u = 0; u < kActivationUnroll; ++u) d4[i + u * stride] = backward4<K>(g[u], s[u], p.param);
    }
    for (; i < n4; i += stride) d4[i] = backward4<K>(g4[i], s4[i], p.param);
    done = n4 * 4;
  }
  for (int64_t i = done + tid; i < p.n; i += stride) p.y[i] = act_backward<K>(p.x[i], p.saved[i], p.param);
}

int grid_for(const ActivationParams& p) {
  const int64_t items = p.vec4 ? ceil_div(p.n, 4) : p.n;
  const int64_t blocks = ceil_div(items, kActivationBlockSize);
  return static_cast<int>(blocks < kActivationMaxBlocks ? blocks : kActivationMaxBlocks);
}

template <int K>
void forward_one(const ActivationParams& p, cudaStream_t stream) {
  activation_forward_kernel<K><<<grid_for(p), kActivationBlockSize, 0, stream>>>(p);
}

template <int K>
void backward_one(const ActivationParams& p, cudaStream_t stream) {
  activation_backward_kernel<K><<<grid_for(p), kActivationBlockSize, 0, stream>>>(p);
}

void check_kind(int kind) {
  if (kind < 0 || kind >= kActivationNumKinds)
    throw std::invalid_argument("activation: unknown kind " + std::to_string(kind));
}

}  // namespace

void activation_forward_launch(int kind, const ActivationParams& p, cudaStream_t stream) {
  switch (kind) {
    case kRelu: forward_one<kRelu>(p, stream); break;
    case kLeakyRelu: forward_one<kLeakyRelu>(p, stream); break;
    case kSigmoid: forward_one<kSigmoid>(p, stream); break;
    case kTanh: forward_one<kTanh>(p, stream); break;
    case kGelu: forward_one<kGelu>(p, stream); break;
    default: forward_one<kGeluTanh>(p, stream); break;
  }
  FASTML_CUDA_CHECK_LAUNCH();
}

void activation_backward_launch(int kind, const ActivationParams& p, cudaStream_t stream) {
  switch (kind) {
    case kRelu: backward_one<kRelu>(p, stream); break;
    case kLeakyRelu: backward_one<kLeakyRelu>(p, stream); break;
    case kSigmoid: backward_one<kSigmoid>(p, stream); break;
    case kTanh: backward_one<kTanh>(p, stream); break;
    case kGelu: backward_one<kGelu>(p, stream); break;
    default: backward_one<kGeluTanh>(p, stream); break;
  }
  FASTML_CUDA_CHECK_LAUNCH();
}

void activation_forward_cuda(int kind, std::uintptr_t x, std::uintptr_t y, int64_t n, float param, int device,
                             std::uintptr_t stream) {
  check_kind(kind);
  if (n <= 0) return;
  DeviceGuard guard(x, device);
  ActivationParams p{reinterpret_cast<const float*>(x), nullptr, reinterpret_cast<float*>(y), n, param,
                     aligned16(x) && aligned16(y)};
  activation_forward_launch(kind, p, as_stream(stream));
}

void activation_backward_cuda(int kind, std::uintptr_t grad_output, std::uintptr_t saved, std::uintptr_t grad_input,
                              int64_t n, float param, int device, std::uintptr_t stream) {
  check_kind(kind);
  if (n <= 0) return;
  DeviceGuard guard(grad_output, device);
  ActivationParams p{reinterpret_cast<const float*>(grad_output), reinterpret_cast<const float*>(saved),
                     reinterpret_cast<float*>(grad_input), n, param,
                     aligned16(grad_output) && aligned16(saved) && aligned16(grad_input)};
  activation_backward_launch(kind, p, as_stream(stream));
}

}  // namespace fastml::cuda
