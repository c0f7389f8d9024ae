// Optimizer steps on CUDA, float32, in place, multi-tensor. Formulas are torch.optim's single-tensor
// paths (torch/optim/{sgd,rmsprop,adam}.py), element by element, g = maximize ? -grad : grad:
//
//   sgd      g += wd p;  momentum != 0: b = first_step ? g : momentum b + (1 - dampening) g;
//                                       g = nesterov ? g + momentum b : b
//            p -= lr g
//   rmsprop  g += wd p;  v = alpha v + (1 - alpha) g^2
//            centered: a = lerp(a, g, 1 - alpha); avg = sqrt(v - a^2) + eps;  else avg = sqrt(v) + eps
//            momentum > 0: b = momentum b + g / avg; p -= lr b;  else p -= lr g / avg
//   adam     decoupled (AdamW): p *= 1 - lr wd;  else g += wd p
//            m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g^2
//            amsgrad: vmax = max(vmax, v) (NaN propagates), v_hat = vmax;  else v_hat = v
//            p -= step_size m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps), step_size = lr / (1 - beta1^t)
// lerp(a, b, w) = w < 0.5 ? a + w (b - a) : b - (b - a) (1 - w)  (torch's formula).
// Bias corrections and every scalar combination are computed on the host in double (AdamHyper etc.).
//
// Layout: a list of tensors (param, grad, state...) of n_i contiguous floats each. One launch covers up
// to kOptimMaxTensors tensors: block b finds its tensor through the prefix sums of the per-tensor block
// counts (in the kernel parameters); inside a tensor the blocks run a grid-stride loop.
// Triple: <opt>_step_kernel -> <opt>_step_launch(list, hyper, stream) -> <opt>_step_cuda.
// Test: pytest tests/test_cuda.py -k "sgd or rmsprop or adam".   Bench: python -m fastml.bench --ops optim.
#include "common.cuh"
#include "optim.cuh"

namespace fastml::cuda {

namespace {

struct OptimTensor {
  float* param;
  const float* grad;
  float* s0;
  float* s1;
  float* s2;
  int64_t n;
};

struct OptimTensorList {
  OptimTensor t[kOptimMaxTensors];
  int block_start[kOptimMaxTensors + 1];  // prefix sums of the blocks of each tensor
  int count;
};

__device__ __forceinline__ float lerp(float a, float b, float w) {
  return w < 0.5f ? fmaf(w, b - a, a) : fmaf(-(b - a), 1.0f - w, b);
}

// Calls op(tensor, i) for every element of the tensor that this block serves.
template <class Op>
__device__ __forceinline__ void for_each_element(const OptimTensorList& list, Op op) {
  int t = 0;
  while (t + 1 < list.count && list.block_start[t + 1] <= static_cast<int>(blockIdx.x)) ++t;
  const OptimTensor& ten = list.t[t];
  const int64_t nblocks = list.block_start[t + 1] - list.block_start[t];
  const int64_t b = static_cast<int64_t>(blockIdx.x) - list.block_start[t];
  const int64_t stride = nblocks * blockDim.x;
  for (int64_t i = b * blockDim.x + threadIdx.x; i < ten.n; i += stride) op(ten, i);
}

__global__ void __launch_bounds__(kOptimBlockSize) sgd_step_kernel(const OptimTensorList list, const SgdHyper h) {
  for_each_element(list, [&h](const OptimTensor& t, int64_t i) {
    const float p = t.param[i];
    float g = h.maximize ? -t.grad[i] : t.grad[i];
    if (h.weight_decay != 0.0f) g = fmaf(h.weight_decay, p, g);
    if (h.momentum != 0.0f) {
      float b;
      if (h.first_step) {
        b = g;
      } else {
        b = fmaf(h.one_minus_dampening, g, t.s0[i] * h.momentum);
      }
      t.s0[i] = b;
      g = h.nesterov ? fmaf(h.momentum, b, g) : b;
    }
    t.param[i] = fmaf(-h.lr, g, p);
  });
}

__global__ void __launch_bounds__(kOptimBlockSize)
    rmsprop_step_kernel(const OptimTensorList list, const RmspropHyper h) {
  for_each_element(list, [&h](const OptimTensor& t, int64_t i) {
    const float p = t.param[i];
    float g = h.maximize ? -t.grad[i] : t.grad[i];
    if (h.weight_decay != 0.0f) g = fmaf(h.weight_decay, p, g);
    const float v = fmaf(h.one_minus_alpha, g * g, t.s0[i] * h.alpha);
    t.s0[i] = v;
    float avg;
    if (h.centered) {
      const float a = lerp(t.s2[i], g, h.one_minus_alpha);
      t.s2[i] = a;
      avg = sqrtf(fmaf(-a, a, v)) + h.eps;
    } else {
      avg = sqrtf(v) + h.eps;
    }
    if (h.momentum > 0.0f) {
      const float b = fmaf(t.s1[i], h.momentum, g / avg);
      t.s1[i] = b;
      t.param[i] = fmaf(-h.lr, b, p);
    } else {
      t.param[i] = fmaf(-h.lr, g / avg, p);
    }
  });
}

__global__ void __launch_bounds__(kOptimBlockSize) adam_step_kernel(const OptimTensorList list, const AdamHyper h) {
  for_each_element(list, [&h](const OptimTensor& t, int64_t i) {
    float p = t.param[i];
    float g = h.maximize ? -t.grad[i] : t.grad[i];
    if (h.weight_decay != 0.0f) {
      if (h.decoupled) {
        p *= h.decay_factor;
      } else {
        g = fmaf(h.weight_decay, p, g);
      }
    }
    const float m = lerp(t.s0[i], g, h.beta1_weight);
    const float v = fmaf(h.one_minus_beta2, g * g, t.s1[i] * h.beta2);
    t.s0[i] = m;
    t.s1[i] = v;
    float v_hat = v;
    if (h.amsgrad) {
      const float vm = t.s2[i];
      v_hat = (vm > v || vm != vm) ? vm : v;  // torch.maximum: NaN propagates
      t.s2[i] = v_hat;
    }
    const float denom = sqrtf(v_hat) / h.bc2_sqrt + h.eps;
    t.param[i] = fmaf(-h.step_size, m / denom, p);
  });
}

// Splits the tensors into launches of at most kOptimMaxTensors non-empty tensors and calls
// launch(list, grid) for each.
template <class Launch>
void for_each_launch(const std::vector<OptimTensorPtrs>& tensors, Launch launch) {
  OptimTensorList list{};
  int blocks = 0;
  auto flush = [&] {
    if (list.count == 0) return;
    list.block_start[list.count] = blocks;
    launch(list, blocks);
    FASTML_CUDA_CHECK_LAUNCH();
    list = OptimTensorList{};
    blocks = 0;
  };
  for (const auto& tp : tensors) {
    if (tp.n <= 0) continue;
    OptimTensor& t = list.t[list.count];
    t.param = reinterpret_cast<float*>(tp.param);
    t.grad = reinterpret_cast<const float*>(tp.grad);
    t.s0 = reinterpret_cast<float*>(tp.s0);
    t.s1 = reinterpret_cast<float*>(tp.s1);
    t.s2 = reinterpret_cast<float*>(tp.s2);
    t.n = tp.n;
    const int64_t nb = ceil_div(tp.n, kOptimBlockSize);
    list.block_start[list.count] = blocks;
    blocks += static_cast<int>(nb < kOptimMaxBlocksPerTensor ? nb : kOptimMaxBlocksPerTensor);
    if (++list.count == kOptimMaxTensors) flush();
  }
  flush();
}

std::uintptr_t first_pointer(const std::vector<OptimTensorPtrs>& tensors) {
  for (const auto& t : tensors)
    if (t.n > 0) return t.param;
  return 0;
}

}  // namespace

void sgd_step_launch(const OptimTensorList& list, int grid, const SgdHyper& h, cudaStream_t stream) {
  sgd_step_kernel<<<grid, kOptimBlockSize, 0, stream>>>(list, h);
}
void rmsprop_step_launch(const OptimTensorList& list, int grid, const RmspropHyper& h, cudaStream_t stream) {
  rmsprop_step_kernel<<<grid, kOptimBlockSize, 0, stream>>>(list, h);
}
void adam_step_launch(const OptimTensorList& list, int grid, const AdamHyper& h, cudaStream_t stream) {
  adam_step_kernel<<<grid, kOptimBlockSize, 0, stream>>>(list, h);
}

void sgd_step_cuda(const std::vector<OptimTensorPtrs>& tensors, const SgdHyper& h, std::uintptr_t stream) {
  DeviceGuard guard(first_pointer(tensors));
  for_each_launch(tensors, [&](const OptimTensorList& l, int grid) { sgd_step_launch(l, grid, h, as_stream(stream)); });
}

void rmsprop_step_cuda(const std::vector<OptimTensorPtrs>& tensors, const RmspropHyper& h, std::uintptr_t stream) {
  DeviceGuard guard(first_pointer(tensors));
  for_each_launch(tensors,
                  [&](const OptimTensorList& l, int grid) { rmsprop_step_launch(l, grid, h, as_stream(stream)); });
}

void adam_step_cuda(const std::vector<OptimTensorPtrs>& tensors, const AdamHyper& h, std::uintptr_t stream) {
  DeviceGuard guard(first_pointer(tensors));
  for_each_launch(tensors, [&](const OptimTensorList& l, int grid) { adam_step_launch(l, grid, h, as_stream(stream)); });
}

}  // namespace fastml::cuda
