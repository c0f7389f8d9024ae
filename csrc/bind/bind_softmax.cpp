// Bindings of softmax / log_softmax and their backward passes: validate dim, shapes and dtypes,
// allocate or check `out`, release the GIL, call the entry (ops/softmax/softmax.h). No maths here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bind/arrays.h"
#include "ops/softmax/softmax.h"

namespace fastml::bind {

namespace {

// torch's rule: dim in [-max(ndim, 1), max(ndim, 1) - 1]; a 0-d array is one row of length 1.
AxisView axis_view(const py::array& a, const py::handle& dim_obj, const std::string& op) {
  FASTML_CHECK_TYPE(PyIndex_Check(dim_obj.ptr()) && !PyBool_Check(dim_obj.ptr()), op,
                    ": expected an integer dim, got ", py::str(py::type::of(dim_obj)).cast<std::string>());
  const int64_t dim = dim_obj.cast<int64_t>();
  const int64_t nd = a.ndim();
  const int64_t span = nd > 0 ? nd : 1;
  FASTML_CHECK(dim >= -span && dim < span, op, ": expected dim in [", -span, ", ", span - 1, "], got ", dim);
  AxisView v{1, 1, 1};
  if (nd == 0) return v;
  const int64_t d = dim < 0 ? dim + nd : dim;
  for (int64_t i = 0; i < d; ++i) v.outer *= a.shape(i);
  v.dim = a.shape(d);
  for (int64_t i = d + 1; i < nd; ++i) v.inner *= a.shape(i);
  return v;
}

SoftmaxRowVariant variant_of(int v) {
  FASTML_CHECK(v >= 0 && v <= 2, "softmax: expected variant 0 (auto), 1 (three-pass) or 2 (online), got ", v);
  return static_cast<SoftmaxRowVariant>(v);
}

}  // namespace

void bind_softmax(py::module_& m) {
  m.def("softmax_forward", [](py::handle input, py::handle dim, bool log, py::handle out, int variant) {
    const std::string op = log ? "log_softmax" : "softmax";
    const SoftmaxRowVariant var = variant_of(variant);
    py::array x = input_f32(input, op.c_str(), "input");
    const AxisView v = axis_view(x, dim, op);
    py::array y = output_f32(out, shape_of(x), op.c_str());
    FASTML_CHECK(!partially_overlaps(x, y), op, ": out partially overlaps input (only exact aliasing is allowed)");
    const float* px = cf32(x);
    float* py_ = f32(y);
    {
      py::gil_scoped_release nogil;
      softmax_forward(v, px, py_, log, var);
    }
    return y;
  }, py::arg("input"), py::arg("dim"), py::arg("log"), py::arg("out") = py::none(), py::arg("variant") = 0);

  m.def("softmax_backward", [](py::handle grad_output, py::handle output, py::handle dim, bool log, py::handle out) {
    const std::string op = log ? "log_softmax_backward" : "softmax_backward";
    py::array g = input_f32(grad_output, op.c_str(), "grad_output");
    py::array y = input_f32(output, op.c_str(), "output");
    FASTML_CHECK(shape_of(g) == shape_of(y), op, ": expected grad_output of shape ", shape_str(y),
                 " (the output's), got ", shape_str(g));
    const AxisView v = axis_view(y, dim, op);
    py::array dx = output_f32(out, shape_of(g), op.c_str());
    FASTML_CHECK(!partially_overlaps(g, dx) && !partially_overlaps(y, dx), op,
                 ": out partially overlaps an input (only exact aliasing is allowed)");
    const float* pg = cf32(g);
    const float* pyv = cf32(y);
    float* pdx = f32(dx);
    {
      py::gil_scoped_release nogil;
      softmax_backward(v, pg, pyv, pdx, log);
    }
    return dx;
  }, py::arg("grad_output"), py::arg("output"), py::arg("dim"), py::arg("log"), py::arg("out") = py::none());
}

}  // namespace fastml::bind
