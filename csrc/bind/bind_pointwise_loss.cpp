// Bindings of the elementwise losses (mse_loss, binary_cross_entropy_with_logits): shape / dtype checks,
// GIL release, call the entry (ops/pointwise_loss/pointwise_loss.h). No maths here.
// out= (optional): validated by output_f32 before anything is computed and written by the kernels directly.
// The kernels are elementwise and load each vector of x / t / grad_output before storing that vector of the
// result, so out may be exactly the input, the target or grad_output (the same buffer); a partial overlap
// with them, or any overlap with weight / pos_weight, raises.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <limits>
#include <string>
#include <vector>

#include "bind/arrays.h"
#include "ops/pointwise_loss/pointwise_loss.h"

namespace fastml::bind {

namespace {

const char* const kOps[kNumPointwiseLosses] = {"mse_loss", "binary_cross_entropy_with_logits"};

struct LossArgs {
  PointwiseLoss kind;
  py::array x, t, w, pw;
  int64_t C = 1;
  const float* pw_ptr = nullptr;
  const float* w_ptr = nullptr;
};

LossArgs loss_args(int k, py::handle input, py::handle target, py::handle weight, py::handle pos_weight, int red) {
  FASTML_CHECK(k >= 0 && k < kNumPointwiseLosses, "pointwise_loss: unknown kind ", k);
  FASTML_CHECK(red >= 0 && red <= 2, kOps[k], ": unknown reduction code ", red);
  LossArgs a;
  a.kind = static_cast<PointwiseLoss>(k);
  const char* op = kOps[k];
  a.x = input_f32(input, op, "input");
  a.t = input_f32(target, op, "target");
  FASTML_CHECK(shape_of(a.t) == shape_of(a.x), op, ": expected target of shape ", shape_str(a.x), ", got ",
               shape_str(a.t));
  a.C = a.x.ndim() > 0 ? a.x.shape(a.x.ndim() - 1) : 1;
  auto vec = [&](py::handle h, const char* arg, py::array* dst) -> const float* {
    if (h.is_none()) return nullptr;
    *dst = input_f32(h, op, arg);
    FASTML_CHECK(dst->ndim() == 1 && dst->shape(0) == a.C, op, ": expected ", arg, " of shape (", a.C,
                 ",) (broadcast along the last dim), got ", shape_str(*dst));
    return cf32(*dst);
  };
  a.w_ptr = vec(weight, "weight", &a.w);
  a.pw_ptr = vec(pos_weight, "pos_weight", &a.pw);
  FASTML_CHECK(a.kind == PointwiseLoss::bce_with_logits || (!a.w_ptr && !a.pw_ptr), op,
               ": takes no weight / pos_weight");
  return a;
}

// Exact aliasing of out with an elementwise operand is fine; a partial overlap is not.
void check_elementwise(const py::array& out, const py::array& a, const std::string& op, const char* arg) {
  FASTML_CHECK(!partially_overlaps(out, a), op, ": out partially overlaps ", arg, " (only exact aliasing is allowed)");
}

// weight / pos_weight (broadcast along rows): no shared byte at all.
void check_disjoint(const py::array& out, const py::array& a, const std::string& op, const char* arg) {
  if (!a || a.nbytes() == 0 || out.nbytes() == 0) return;
  const bool same = a.data() == out.data() && a.nbytes() == out.nbytes();
  FASTML_CHECK(!same && !partially_overlaps(out, a), op, ": expected out not to share memory with ", arg,
               ", got an array overlapping it");
}

void check_out_overlaps(const py::array& out, const LossArgs& a, const std::string& op) {
  check_elementwise(out, a.x, op, "input");
  check_elementwise(out, a.t, op, "target");
  check_disjoint(out, a.w, op, "weight");
  check_disjoint(out, a.pw, op, "pos_weight");
}

}  // namespace

void bind_pointwise_loss(py::module_& m) {
  m.def("pointwise_loss_forward", [](int k, py::handle input, py::handle target, py::handle weight,
                                     py::handle pos_weight, int reduction, py::handle out_arg) -> py::array {
    LossArgs a = loss_args(k, input, target, weight, pos_weight, reduction);
    const std::string op = kOps[k];
    const int64_t n = a.x.size();
    py::array out = output_f32(out_arg, reduction == 0 ? shape_of(a.x) : std::vector<py::ssize_t>{}, op.c_str());
    check_out_overlaps(out, a, op);
    float* po = f32(out);
    const float* px = cf32(a.x);
    const float* pt = cf32(a.t);
    double total;
    {
      py::gil_scoped_release nogil;
      total = pointwise_loss_forward(a.kind, n, a.C, px, pt, a.w_ptr, a.pw_ptr, reduction == 0 ? po : nullptr);
    }
    if (reduction == 2) *po = static_cast<float>(total);
    if (reduction == 1) *po = n ? static_cast<float>(total / n) : std::numeric_limits<float>::quiet_NaN();
    return out;
  }, py::arg("kind"), py::arg("input"), py::arg("target"), py::arg("weight"), py::arg("pos_weight"),
     py::arg("reduction"), py::arg("out") = py::none());

  m.def("pointwise_loss_backward", [](int k, py::handle grad_output, py::handle input, py::handle target,
                                      py::handle weight, py::handle pos_weight, int reduction,
                                      py::handle out) -> py::array {
    LossArgs a = loss_args(k, input, target, weight, pos_weight, reduction);
    const std::string op = std::string(kOps[k]) + "_backward";
    py::array g = input_f32(grad_output, op.c_str(), "grad_output");
    if (reduction == 0) {
      FASTML_CHECK(shape_of(g) == shape_of(a.x), op, ": expected grad_output of shape ", shape_str(a.x),
                   ", got ", shape_str(g));
    } else {
      FASTML_CHECK(g.size() == 1, op, ": expected a scalar grad_output, got shape ", shape_str(g));
    }
    const int64_t n = a.x.size();
    py::array dx = output_f32(out, shape_of(a.x), op.c_str());
    check_out_overlaps(dx, a, op);
    check_elementwise(dx, g, op, "grad_output");
    const float* px = cf32(a.x);
    const float* pt = cf32(a.t);
    const float* pg = cf32(g);
    float* pdx = f32(dx);
    const float scale = reduction == 1 ? static_cast<float>(1.0 / static_cast<double>(n ? n : 1)) : 1.0f;
    {
      py::gil_scoped_release nogil;
      pointwise_loss_backward(a.kind, n, a.C, px, pt, a.w_ptr, a.pw_ptr, pg, reduction == 0 ? 1 : 0, scale, pdx);
    }
    return dx;
  }, py::arg("kind"), py::arg("grad_output"), py::arg("input"), py::arg("target"), py::arg("weight"),
     py::arg("pos_weight"), py::arg("reduction"), py::arg("out") = py::none());
}

}  // namespace fastml::bind
