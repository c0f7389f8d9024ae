// CUDA optimizer steps (sgd, rmsprop, adam/adamw): hyper-parameters, launch constants and entry points
// (plain C++: included by cuda/bind_optim_cuda.cpp and cuda/optim.cu). The maths is documented in
// cuda/optim.cu. Each call updates a list of tensors in place: (param, grad, state...) per tensor.
#pragma once
#include <cstdint>
#include <vector>

namespace fastml::cuda {

inline constexpr int kOptimBlockSize = 256;
// Tensors per launch: their pointers travel in the kernel's parameter block (< 4 KiB in total), so
// one launch covers many small tensors without a host-to-device copy (as torch's multi_tensor_apply).
inline constexpr int kOptimMaxTensors = 24;
// Blocks given to one tensor; larger tensors are covered by a grid-stride loop inside their blocks.
inline constexpr int64_t kOptimMaxBlocksPerTensor = 2048;

// One tensor of the list: device pointers as ints (0 where a state is not used), n elements each.
struct OptimTensorPtrs {
  std::uintptr_t param, grad, s0, s1, s2;
  int64_t n;
};

// Scalars are computed on the host in double and rounded to float once, as torch does when it
// combines a Python float with a float32 tensor.
struct SgdHyper {
  float lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, maximize, first_step;  // first_step: the momentum buffer is set to the gradient
};

struct RmspropHyper {
  float lr, alpha, one_minus_alpha, eps, weight_decay, momentum;
  bool centered, maximize;
};

struct AdamHyper {
  float lr, beta1_weight /* 1 - beta1 */, beta2, one_minus_beta2, eps, weight_decay;
  float step_size;        // lr / (1 - beta1^step)
  float bc2_sqrt;         // sqrt(1 - beta2^step)
  float decay_factor;     // 1 - lr * weight_decay (decoupled weight decay, AdamW)
  bool amsgrad, maximize, decoupled;
};

// s0 = momentum buffer (only when momentum != 0)
void sgd_step_cuda(const std::vector<OptimTensorPtrs>& tensors, const SgdHyper& h, int device,
                   std::uintptr_t stream);
// s0 = square_avg, s1 = momentum buffer (momentum > 0), s2 = grad_avg (centered)
void rmsprop_step_cuda(const std::vector<OptimTensorPtrs>& tensors, const RmspropHyper& h, int device,
                       std::uintptr_t stream);
// s0 = exp_avg, s1 = exp_avg_sq, s2 = max_exp_avg_sq (amsgrad)
void adam_step_cuda(const std::vector<OptimTensorPtrs>& tensors, const AdamHyper& h, int device,
                    std::uintptr_t stream);

}  // namespace fastml::cuda
