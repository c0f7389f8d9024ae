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
// counts (in the kernel parameters); inside a tensor the blocks run a grid-stride loop, with float4
// loads/stores when every pointer of the tensor is 16-byte aligned (then a scalar tail of < 4).
// The element maths is in <opt>_update (host and device), the memory traffic in update_one/update_four.
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
  bool vec4;  // every pointer used is 16-byte aligned: float4 loads/stores for the first n/4*4 elements
};

struct OptimTensorList {
  OptimTensor t[kOptimMaxTensors];
  int block_start[kOptimMaxTensors + 1];  // prefix sums of the blocks of each tensor
  int count;
};

// Which state arrays an update reads / writes (bit k = s<k>); unused pointers are never touched.
struct StateUse {
  unsigned load, store;
};

// One element in registers: the update functions below are the whole maths (host-callable too, so
// that the formulas can be checked without a GPU).
struct OptimElem {
  float p, g, s0, s1, s2;
};

__host__ __device__ __forceinline__ float lerp(float a, float b, float w) {
  return w < 0.5f ? fmaf(w, b - a, a) : fmaf(-(b - a), 1.0f - w, b);
}

__host__ __device__ __forceinline__ void sgd_update(const SgdHyper& h, OptimElem& e) {
  float g = h.maximize ? -e.g : e.g;
  if (h.weight_decay != 0.0f) g = fmaf(h.weight_decay, e.p, g);
  if (h.momentum != 0.0f) {
    e.s0 = h.first_step ? g : fmaf(h.one_minus_dampening, g, e.s0 * h.momentum);  // s0 = momentum buffer
    g = h.nesterov ? fmaf(h.momentum, e.s0, g) : e.s0;
  }
  e.p = fmaf(-h.lr, g, e.p);
}

__host__ __device__ __forceinline__ void rmsprop_update(const RmspropHyper& h, OptimElem& e) {
  float g = h.maximize ? -e.g : e.g;
  if (h.weight_decay != 0.0f) g = fmaf(h.weight_decay, e.p, g);
  e.s0 = fmaf(h.one_minus_alpha, g * g, e.s0 * h.alpha);  // s0 = square_avg
  float avg;
  if (h.centered) {
    e.s2 = lerp(e.s2, g, h.one_minus_alpha);  // s2 = grad_avg
    avg = sqrtf(fmaf(-e.s2, e.s2, e.s0)) + h.eps;
  } else {
    avg = sqrtf(e.s0) + h.eps;
  }
  if (h.momentum > 0.0f) {
    e.s1 = fmaf(e.s1, h.momentum, g / avg);  // s1 = momentum buffer
    e.p = fmaf(-h.lr, e.s1, e.p);
  } else {
    e.p = fmaf(-h.lr, g / avg, e.p);
  }
}

__host__ __device__ __forceinline__ void adam_update(const AdamHyper& h, OptimElem& e) {
  float g = h.maximize ? -e.g : e.g;
  if (h.weight_decay != 0.0f) {
    if (h.decoupled) {
      e.p *= h.decay_factor;
    } else {
      g = fmaf(h.weight_decay, e.p, g);
    }
  }
  e.s0 = lerp(e.s0, g, h.beta1_weight);                   // s0 = exp_avg
  e.s1 = fmaf(h.one_minus_beta2, g * g, e.s1 * h.beta2);  // s1 = exp_avg_sq
  float v_hat = e.s1;
  if (h.amsgrad) {
    e.s2 = (e.s2 > e.s1 || e.s2 != e.s2) ? e.s2 : e.s1;  // s2 = max_exp_avg_sq; torch.maximum propagates NaN
    v_hat = e.s2;
  }
  const float denom = sqrtf(v_hat) / h.bc2_sqrt + h.eps;
  e.p = fmaf(-h.step_size, e.s0 / denom, e.p);
}

struct SgdOp {
  __device__ __forceinline__ void operator()(const SgdHyper& h, OptimElem& e) const { sgd_update(h, e); }
};
struct RmspropOp {
  __device__ __forceinline__ void operator()(const RmspropHyper& h, OptimElem& e) const { rmsprop_update(h, e); }
};
struct AdamOp {
  __device__ __forceinline__ void operator()(const AdamHyper& h, OptimElem& e) const { adam_update(h, e); }
};

template <class Op, class Hyper>
__device__ __forceinline__ void update_one(const OptimTensor& t, int64_t i, const Hyper& h, StateUse use) {
  OptimElem e{t.param[i], t.grad[i], 0.0f, 0.0f, 0.0f};
  if (use.load & 1u) e.s0 = t.s0[i];
  if (use.load & 2u) e.s1 = t.s1[i];
  if (use.load & 4u) e.s2 = t.s2[i];
  Op()(h, e);
  t.param[i] = e.p;
  if (use.store & 1u) t.s0[i] = e.s0;
  if (use.store & 2u) t.s1[i] = e.s1;
  if (use.store & 4u) t.s2[i] = e.s2;
}

__device__ __forceinline__ float4 load4(const float* p, int64_t i) { return reinterpret_cast<const float4*>(p)[i]; }
__device__ __forceinline__ void store4(float* p, int64_t i, float4 v) { reinterpret_cast<float4*>(p)[i] = v; }

template <class Op, class Hyper>
__device__ __forceinline__ void update_four(const OptimTensor& t, int64_t i4, const Hyper& h, StateUse use) {
  const float4 z = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  const float4 p = load4(t.param, i4), g = load4(t.grad, i4);
  const float4 a = (use.load & 1u) ? load4(t.s0, i4) : z;
  const float4 b = (use.load & 2u) ? load4(t.s1, i4) : z;
  const float4 c = (use.load & 4u) ? load4(t.s2, i4) : z;
  OptimElem e0{p.x, g.x, a.x, b.x, c.x}, e1{p.y, g.y, a.y, b.y, c.y};
  OptimElem e2{p.z, g.z, a.z, b.z, c.z}, e3{p.w, g.w, a.w, b.w, c.w};
  const Op op;
  op(h, e0);
  op(h, e1);
  op(h, e2);
  op(h, e3);
  store4(t.param, i4, make_float4(e0.p, e1.p, e2.p, e3.p));
  if (use.store & 1u) store4(t.s0, i4, make_float4(e0.s0, e1.s0, e2.s0, e3.s0));
  if (use.store & 2u) store4(t.s1, i4, make_float4(e0.s1, e1.s1, e2.s1, e3.s1));
  if (use.store & 4u) store4(t.s2, i4, make_float4(e0.s2, e1.s2, e2.s2, e3.s2));
}

// Runs the update over every element of the tensor that this block serves (grid-stride inside it).
template <class Op, class Hyper>
__device__ __forceinline__ void apply(const OptimTensorList& list, const Hyper& h, StateUse use) {
  int t = 0;
  while (t + 1 < list.count && list.block_start[t + 1] <= static_cast<int>(blockIdx.x)) ++t;
  const OptimTensor& ten = list.t[t];
  const int64_t nblocks = list.block_start[t + 1] - list.block_start[t];
  const int64_t first = (static_cast<int64_t>(blockIdx.x) - list.block_start[t]) * blockDim.x + threadIdx.x;
  const int64_t stride = nblocks * blockDim.x;
  int64_t done = 0;
  if (ten.vec4) {
    const int64_t n4 = ten.n / 4;
    for (int64_t i = first; i < n4; i += stride) update_four<Op>(ten, i, h, use);
    done = n4 * 4;
  }
  for (int64_t i = done + first; i < ten.n; i += stride) update_one<Op>(ten, i, h, use);
}

__global__ void __launch_bounds__(kOptimBlockSize)
    sgd_step_kernel(const OptimTensorList list, const SgdHyper h, const StateUse use) {
  apply<SgdOp>(list, h, use);
}

__global__ void __launch_bounds__(kOptimBlockSize)
    rmsprop_step_kernel(const OptimTensorList list, const RmspropHyper h, const StateUse use) {
  apply<RmspropOp>(list, h, use);
}

__global__ void __launch_bounds__(kOptimBlockSize)
    adam_step_kernel(const OptimTensorList list, const AdamHyper h, const StateUse use) {
  apply<AdamOp>(list, h, use);
}

// Splits the tensors into launches of at most kOptimMaxTensors non-empty tensors and calls
// launch(list, grid) for each.
template <class Launch>
void for_each_launch(const std::vector<OptimTensorPtrs>& tensors, StateUse use, Launch launch) {
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
    const unsigned used = use.load | use.store;
    t.vec4 = aligned16(tp.param) && aligned16(tp.grad) && (!(used & 1u) || aligned16(tp.s0)) &&
             (!(used & 2u) || aligned16(tp.s1)) && (!(used & 4u) || aligned16(tp.s2));
    const int64_t items = t.vec4 ? ceil_div(tp.n, 4) : tp.n;  // a thread's first item is a float4 when vec4
    const int64_t nb = ceil_div(items, kOptimBlockSize);
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

void sgd_step_launch(const OptimTensorList& list, int grid, const SgdHyper& h, StateUse use, cudaStream_t stream) {
  sgd_step_kernel<<<grid, kOptimBlockSize, 0, stream>>>(list, h, use);
}
void rmsprop_step_launch(const OptimTensorList& list, int grid, const RmspropHyper& h, StateUse use,
                         cudaStream_t stream) {
  rmsprop_step_kernel<<<grid, kOptimBlockSize, 0, stream>>>(list, h, use);
}
void adam_step_launch(const OptimTensorList& list, int grid, const AdamHyper& h, StateUse use, cudaStream_t stream) {
  adam_step_kernel<<<grid, kOptimBlockSize, 0, stream>>>(list, h, use);
}

void sgd_step_cuda(const std::vector<OptimTensorPtrs>& tensors, const SgdHyper& h, int device,
                   std::uintptr_t stream) {
  // the buffer is read except on the first step, written whenever there is momentum
  const unsigned momentum = h.momentum != 0.0f ? 1u : 0u;
  const StateUse use{h.first_step ? 0u : momentum, momentum};
  DeviceGuard guard(first_pointer(tensors), device);
  for_each_launch(tensors, use,
                  [&](const OptimTensorList& l, int grid) { sgd_step_launch(l, grid, h, use, as_stream(stream)); });
}

void rmsprop_step_cuda(const std::vector<OptimTensorPtrs>& tensors, const RmspropHyper& h, int device,
                       std::uintptr_t stream) {
  const unsigned bits = 1u | (h.momentum > 0.0f ? 2u : 0u) | (h.centered ? 4u : 0u);
  const StateUse use{bits, bits};
  DeviceGuard guard(first_pointer(tensors), device);
  for_each_launch(tensors, use,
                  [&](const OptimTensorList& l, int grid) { rmsprop_step_launch(l, grid, h, use, as_stream(stream)); });
}

void adam_step_cuda(const std::vector<OptimTensorPtrs>& tensors, const AdamHyper& h, int device,
                    std::uintptr_t stream) {
  const unsigned bits = 1u | 2u | (h.amsgrad ? 4u : 0u);
  const StateUse use{bits, bits};
  DeviceGuard guard(first_pointer(tensors), device);
  for_each_launch(tensors, use,
                  [&](const OptimTensorList& l, int grid) { adam_step_launch(l, grid, h, use, as_stream(stream)); });
}

}  // namespace fastml::cuda
