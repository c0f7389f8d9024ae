// Bindings of cross_entropy (class-index targets): shape / dtype / target checks, GIL release, call the
// entry (ops/cross_entropy/cross_entropy.h). Probability targets run on the NumPy backend.
// out= (optional, both directions): validated by output_f32 before anything is computed and written by the
// kernels directly. The forward's out must not share memory with any argument; the backward's out may be
// the input itself (every row / strip reads its logits before writing their gradients) but must not share
// memory with grad_output (the strip kernel reads it again after writing dx), target or weight.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "bind/arrays.h"
#include "ops/cross_entropy/cross_entropy.h"

namespace fastml::bind {

namespace {

struct CeArgs {
  CrossEntropyParams p;
  int64_t N;
  py::array x, t, w;
  std::vector<py::ssize_t> loss_shape;  // shape of the 'none' output (= target's)
};

CeArgs ce_args(py::handle input, py::handle target, py::handle weight, int64_t ignore_index, float smoothing,
               const char* op) {
  CeArgs a;
  a.x = input_f32(input, op, "input");
  a.t = input_i64(target, op, "target");
  FASTML_CHECK(a.x.ndim() >= 1, op, ": expected input of shape (C,), (N, C) or (N, C, d1, ...), got a 0-d array");
  const int64_t nd = a.x.ndim();
  int64_t C, N = 1, inner = 1;
  if (nd == 1) {
    C = a.x.shape(0);
  } else {
    N = a.x.shape(0);
    C = a.x.shape(1);
    a.loss_shape.push_back(a.x.shape(0));
    for (int64_t i = 2; i < nd; ++i) {
      inner *= a.x.shape(i);
      a.loss_shape.push_back(a.x.shape(i));
    }
  }
  FASTML_CHECK(shape_of(a.t) == a.loss_shape, op, ": expected target of shape ", dims_str(a.loss_shape),
               " for input of shape ", shape_str(a.x), ", got ", shape_str(a.t));
  FASTML_CHECK(smoothing >= 0.0f && smoothing <= 1.0f, op, ": expected label_smoothing in [0, 1], got ", smoothing);
  double wsum = static_cast<double>(C);
  const float* wp = nullptr;
  if (!weight.is_none()) {
    a.w = input_f32(weight, op, "weight");
    FASTML_CHECK(a.w.ndim() == 1 && a.w.shape(0) == C, op, ": expected weight of shape (", C, ",), got ",
                 shape_str(a.w));
    wp = cf32(a.w);
    wsum = 0.0;
    for (int64_t c = 0; c < C; ++c) wsum += wp[c];
  }
  a.N = N;
  a.p = CrossEntropyParams{C, inner, wp, static_cast<float>(wsum), smoothing, ignore_index};
  return a;
}

// Any shared byte (partial overlap or the same buffer) between out and an argument: ValueError naming it.
void check_disjoint(const py::array& out, const py::array& a, const char* op, const char* arg) {
  if (!a || a.nbytes() == 0 || out.nbytes() == 0) return;
  const bool same = a.data() == out.data() && a.nbytes() == out.nbytes();
  FASTML_CHECK(!same && !partially_overlaps(out, a), op, ": expected out not to share memory with ", arg,
               ", got an array overlapping it");
}

Reduction reduction_of(int r, const char* op) {
  FASTML_CHECK(r >= 0 && r <= 2, op, ": unknown reduction code ", r);
  return static_cast<Reduction>(r);
}

}  // namespace

void bind_cross_entropy(py::module_& m) {
  m.def("cross_entropy_forward", [](py::handle input, py::handle target, py::handle weight, int64_t ignore_index,
                                    int reduction, float smoothing, py::handle out) -> py::array {
    const char* op = "cross_entropy";
    const Reduction red = reduction_of(reduction, op);
    CeArgs a = ce_args(input, target, weight, ignore_index, smoothing, op);
    const float* px = cf32(a.x);
    const int64_t* pt = static_cast<const int64_t*>(a.t.data());
    const int64_t npos = a.t.size();
    py::array loss = output_f32(out, red == Reduction::none ? a.loss_shape : std::vector<py::ssize_t>{}, op);
    check_disjoint(loss, a.x, op, "input");
    check_disjoint(loss, a.t, op, "target");
    check_disjoint(loss, a.w, op, "weight");
    float* pl = f32(loss);
    double total = 0.0, denom = 0.0;
    {
      py::gil_scoped_release nogil;
      denom = cross_entropy_check_targets(a.p, npos, pt);  // throws before anything is computed
      total = cross_entropy_forward(a.p, a.N, px, pt, red == Reduction::none ? pl : nullptr);
    }
    if (red == Reduction::sum) *pl = static_cast<float>(total);
    if (red == Reduction::mean) *pl = static_cast<float>(total / denom);  // 0 / 0 -> NaN, as torch
    return loss;
  }, py::arg("input"), py::arg("target"), py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"),
     py::arg("label_smoothing"), py::arg("out") = py::none());

  m.def("cross_entropy_backward", [](py::handle grad_output, py::handle input, py::handle target, py::handle weight,
                                     int64_t ignore_index, int reduction, float smoothing,
                                     py::handle out) -> py::array {
    const char* op = "cross_entropy_backward";
    const Reduction red = reduction_of(reduction, op);
    CeArgs a = ce_args(input, target, weight, ignore_index, smoothing, op);
    py::array g = input_f32(grad_output, op, "grad_output");
    if (red == Reduction::none) {
      FASTML_CHECK(shape_of(g) == a.loss_shape, op, ": expected grad_output of shape ", dims_str(a.loss_shape),
                   " (the loss's with reduction='none'), got ", shape_str(g));
    } else {
      FASTML_CHECK(g.size() == 1, op, ": expected a scalar grad_output for reduction='",
                   red == Reduction::mean ? "mean" : "sum", "', got shape ", shape_str(g));
    }
    py::array dx = output_f32(out, shape_of(a.x), op);
    FASTML_CHECK(!partially_overlaps(a.x, dx), op, ": out partially overlaps input (only exact aliasing is allowed)");
    check_disjoint(dx, g, op, "grad_output");
    check_disjoint(dx, a.t, op, "target");
    check_disjoint(dx, a.w, op, "weight");
    const float* px = cf32(a.x);
    const float* pg = cf32(g);
    const int64_t* pt = static_cast<const int64_t*>(a.t.data());
    float* pdx = f32(dx);
    {
      py::gil_scoped_release nogil;
      const double denom = cross_entropy_check_targets(a.p, a.t.size(), pt);
      float gscale = red == Reduction::none ? 0.0f : *pg;
      if (red == Reduction::mean) gscale = static_cast<float>(static_cast<double>(*pg) / denom);
      cross_entropy_backward(a.p, a.N, px, pt, red == Reduction::none ? pg : &gscale,
                             red == Reduction::none ? 1 : 0, pdx);
    }
    return dx;
  }, py::arg("grad_output"), py::arg("input"), py::arg("target"), py::arg("weight"), py::arg("ignore_index"),
     py::arg("reduction"), py::arg("label_smoothing"), py::arg("out") = py::none());
}

}  // namespace fastml::bind
