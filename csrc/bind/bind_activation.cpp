// Bindings of the activation kernels: validate, allocate or check `out`, release the GIL, call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bind/arrays.h"
#include "ops/activation/activation.h"

namespace fastml::bind {

namespace {
const char* const kNames[kNumActKinds] = {"relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu"};

ActKind kind_of(int k) {
  FASTML_CHECK(k >= 0 && k < kNumActKinds, "activation: unknown kind ", k);
  return static_cast<ActKind>(k);
}
}  // namespace

void bind_activation(py::module_& m) {
  m.def("activation_forward", [](int k, py::handle input, py::handle out, float param) {
    const ActKind kind = kind_of(k);
    const char* op = kNames[k];
    py::array x = input_f32(input, op, "input");
    py::array y = output_f32(out, shape_of(x), op);
    FASTML_CHECK(!partially_overlaps(x, y), op, ": out partially overlaps input (only exact aliasing is allowed)");
    const int64_t n = x.size();
    const float* px = cf32(x);
    float* py_ = f32(y);
    {
      py::gil_scoped_release nogil;
      activation_forward(kind, px, py_, n, param);
    }
    return y;
  }, py::arg("kind"), py::arg("input"), py::arg("out") = py::none(), py::arg("param") = 0.0f);

  m.def("activation_backward", [](int k, py::handle grad_output, py::handle saved, py::handle out, float param) {
    const ActKind kind = kind_of(k);
    const char* op = kNames[k];
    py::array g = input_f32(grad_output, op, "grad_output");
    py::array s = input_f32(saved, op, (kind == ActKind::sigmoid || kind == ActKind::tanh) ? "output" : "input");
    FASTML_CHECK(g.ndim() == s.ndim() && shape_of(g) == shape_of(s), op, "_backward: expected grad_output of shape ",
                 shape_str(s), ", got ", shape_str(g));
    py::array gx = output_f32(out, shape_of(g), op);
    FASTML_CHECK(!partially_overlaps(g, gx) && !partially_overlaps(s, gx), op,
                 "_backward: out partially overlaps an input (only exact aliasing is allowed)");
    const int64_t n = g.size();
    const float* pg = cf32(g);
    const float* ps = cf32(s);
    float* pgx = f32(gx);
    {
      py::gil_scoped_release nogil;
      activation_backward(kind, pg, ps, pgx, n, param);
    }
    return gx;
  }, py::arg("kind"), py::arg("grad_output"), py::arg("saved"), py::arg("out") = py::none(),
     py::arg("param") = 0.0f);
}

}  // namespace fastml::bind
