// pybind11 side of the CUDA optimizer steps. Takes lists of device pointers (ints) and sizes, which
// fastml/_cuda_ops.py has validated (dtype, shape, contiguity, writeability, list lengths); computes the
// scalar combinations (bias corrections, 1 - beta, ...) in double, releases the GIL and launches.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <vector>

#include "core/check.h"
#include "optim.cuh"

namespace py = pybind11;

namespace fastml::cuda {

namespace {

using Ptrs = std::vector<std::uintptr_t>;

// Zips the per-tensor pointer lists; an empty state list means "state not used" (pointer 0).
std::vector<OptimTensorPtrs> zip(const char* op, const Ptrs& params, const Ptrs& grads, const Ptrs& s0,
                                 const Ptrs& s1, const Ptrs& s2, const std::vector<int64_t>& sizes) {
  const size_t n = params.size();
  FASTML_CHECK(grads.size() == n && sizes.size() == n, op, ": expected ", n, " grads and sizes, got ", grads.size(),
               " and ", sizes.size());
  for (const Ptrs* s : {&s0, &s1, &s2})
    FASTML_CHECK(s->empty() || s->size() == n, op, ": expected ", n, " state pointers, got ", s->size());
  std::vector<OptimTensorPtrs> out(n);
  for (size_t i = 0; i < n; ++i) {
    FASTML_CHECK(sizes[i] >= 0, op, ": expected a non-negative size, got ", sizes[i]);
    out[i] = {params[i], grads[i], s0.empty() ? 0 : s0[i], s1.empty() ? 0 : s1[i], s2.empty() ? 0 : s2[i], sizes[i]};
  }
  return out;
}

}  // namespace

void bind_optim_cuda(py::module_& m) {
  m.def("sgd_step", [](const Ptrs& params, const Ptrs& grads, const Ptrs& momentum_buffers,
                       const std::vector<int64_t>& sizes, double lr, double momentum, double dampening,
                       double weight_decay, bool nesterov, bool maximize, bool first_step, int device,
                       std::uintptr_t stream) {
    const auto tensors = zip("sgd_step", params, grads, momentum_buffers, {}, {}, sizes);
    FASTML_CHECK(momentum == 0.0 || !momentum_buffers.empty(), "sgd_step: expected momentum buffers with momentum ",
                 momentum, ", got none");
    const SgdHyper h{static_cast<float>(lr), static_cast<float>(momentum), static_cast<float>(1.0 - dampening),
                     static_cast<float>(weight_decay), nesterov, maximize, first_step};
    py::gil_scoped_release nogil;
    sgd_step_cuda(tensors, h, device, stream);
  }, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("sizes"), py::arg("lr"),
     py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("maximize"),
     py::arg("first_step"), py::arg("device"), py::arg("stream"));

  m.def("rmsprop_step", [](const Ptrs& params, const Ptrs& grads, const Ptrs& square_avgs,
                           const Ptrs& momentum_buffers, const Ptrs& grad_avgs, const std::vector<int64_t>& sizes,
                           double lr, double alpha, double eps, double weight_decay, double momentum, bool centered,
                           bool maximize, int device, std::uintptr_t stream) {
    const auto tensors = zip("rmsprop_step", params, grads, square_avgs, momentum_buffers, grad_avgs, sizes);
    FASTML_CHECK(square_avgs.size() == params.size(), "rmsprop_step: expected ", params.size(),
                 " square_avgs, got ", square_avgs.size());
    FASTML_CHECK(momentum <= 0.0 || !momentum_buffers.empty(), "rmsprop_step: expected momentum buffers with momentum ",
                 momentum, ", got none");
    FASTML_CHECK(!centered || !grad_avgs.empty(), "rmsprop_step: expected grad_avgs with centered=True, got none");
    const RmspropHyper h{static_cast<float>(lr), static_cast<float>(alpha), static_cast<float>(1.0 - alpha),
                         static_cast<float>(eps), static_cast<float>(weight_decay), static_cast<float>(momentum),
                         centered, maximize};
    py::gil_scoped_release nogil;
    rmsprop_step_cuda(tensors, h, device, stream);
  }, py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("momentum_buffers"), py::arg("grad_avgs"),
     py::arg("sizes"), py::arg("lr"), py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"),
     py::arg("centered"), py::arg("maximize"), py::arg("device"), py::arg("stream"));

  m.def("adam_step", [](const Ptrs& params, const Ptrs& grads, const Ptrs& exp_avgs, const Ptrs& exp_avg_sqs,
                        const Ptrs& max_exp_avg_sqs, const std::vector<int64_t>& sizes, int64_t step, double lr,
                        double beta1, double beta2, double eps, double weight_decay, bool amsgrad, bool maximize,
                        bool decoupled, int device, std::uintptr_t stream) {
    const auto tensors = zip("adam_step", params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, sizes);
    FASTML_CHECK(exp_avgs.size() == params.size() && exp_avg_sqs.size() == params.size(), "adam_step: expected ",
                 params.size(), " exp_avgs and exp_avg_sqs, got ", exp_avgs.size(), " and ", exp_avg_sqs.size());
    FASTML_CHECK(!amsgrad || !max_exp_avg_sqs.empty(), "adam_step: expected max_exp_avg_sqs with amsgrad=True, got none");
    FASTML_CHECK(step >= 1, "adam_step: expected step >= 1 (the step count after this update), got ", step);
    // torch: bias_correction1 = 1 - beta1 ** step etc. as Python floats (double), then rounded to float.
    const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
    const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
    const AdamHyper h{static_cast<float>(lr), static_cast<float>(1.0 - beta1), static_cast<float>(beta2),
                      static_cast<float>(1.0 - beta2), static_cast<float>(eps), static_cast<float>(weight_decay),
                      static_cast<float>(lr / bc1), static_cast<float>(std::sqrt(bc2)),
                      static_cast<float>(1.0 - lr * weight_decay), amsgrad, maximize, decoupled};
    py::gil_scoped_release nogil;
    adam_step_cuda(tensors, h, device, stream);
  }, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"),
     py::arg("sizes"), py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
     py::arg("weight_decay"), py::arg("amsgrad"), py::arg("maximize"), py::arg("decoupled"), py::arg("device"), py::arg("stream"));
}

}  // namespace fastml::cuda
