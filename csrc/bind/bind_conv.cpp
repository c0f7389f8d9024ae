// Bindings of the convolution core (csrc/ops/conv/conv.h): 5-D float32 arrays (the Python layer reshapes
// conv1d / conv2d to 3 spatial dims and resolves padding strings / modes), validate, release the GIL, call.
//   _C.conv_forward(x, w, bias, out_size, stride, pad, dilation, groups, in_cl, out_cl, algo, act, out)
//   _C.conv_backward_data(dy, w, bias, in_size, stride, pad, dilation, groups, out)   (also conv_transpose)
//   _C.conv_backward_weight(dy, x, kernel, stride, pad, dilation, groups, out)
// Every check runs before anything is written.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <string>

#include "bind/arrays.h"
#include "bind/gemm_act.h"
#include "ops/conv/conv.h"

namespace fastml::bind {

namespace {

using Dims3 = std::array<int64_t, 3>;

void set_common(ConvShape& s, const Dims3& stride, const Dims3& pad, const Dims3& dil, int64_t groups,
                const char* op) {
  for (int d = 0; d < 3; ++d) {
    FASTML_CHECK(stride[d] >= 1 && dil[d] >= 1 && pad[d] >= 0, op, ": expected stride >= 1, dilation >= 1, padding "
                 ">= 0, got ", stride[d], ", ", dil[d], ", ", pad[d]);
    s.stride[d] = stride[d], s.pad[d] = pad[d], s.dil[d] = dil[d];
  }
  FASTML_CHECK(groups >= 1, op, ": expected groups >= 1, got ", groups);
  s.G = groups;
}

void check_5d(const py::array& a, const char* op, const char* arg) {
  FASTML_CHECK(a.ndim() == 5, op, ": expected a 5-D ", arg, ", got shape ", shape_str(a));
  for (int d = 0; d < 5; ++d)
    FASTML_CHECK(a.shape(d) >= 1, op, ": expected a non-empty ", arg, ", got shape ", shape_str(a));
}

void check_weight(const ConvShape& s, const py::array& w, int64_t Cg, const char* op) {
  check_5d(w, op, "weight");
  FASTML_CHECK(w.shape(0) == s.K && w.shape(1) == Cg, op, ": expected weight of shape (", s.K, ", ", Cg,
               ", k...) for C=", s.C, ", K=", s.K, ", groups=", s.G, ", got ", shape_str(w));
}

const float* bias_ptr(const py::handle& b, int64_t n, const char* op, py::array& keep) {
  if (b.is_none()) return nullptr;
  keep = input_f32(b, op, "bias");
  FASTML_CHECK(keep.ndim() == 1 && keep.shape(0) == n, op, ": expected bias of shape (", n, ",), got ",
               shape_str(keep));
  return cf32(keep);
}

void check_no_alias(const py::array& out, std::initializer_list<const py::array*> ins, const char* op) {
  for (const py::array* a : ins)
    if (a && a->size()) FASTML_CHECK(!shares_memory(out, *a), op, ": expected out not to share memory with the inputs");
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv_forward", [](py::handle x_, py::handle w_, py::handle b_, Dims3 out_size, Dims3 stride, Dims3 pad,
                           Dims3 dil, int64_t groups, bool in_cl, bool out_cl, int algo, const std::string& act,
                           py::handle out_) {
    const char* op = "conv";
    py::array x = input_f32(x_, op, "input"), w = input_f32(w_, op, "weight");
    check_5d(x, op, "input");
    ConvShape s;
    set_common(s, stride, pad, dil, groups, op);
    s.in_cl = in_cl, s.out_cl = out_cl;
    s.N = x.shape(0);
    s.C = in_cl ? x.shape(4) : x.shape(1);
    for (int d = 0; d < 3; ++d) {
      s.in[d] = x.shape(in_cl ? 1 + d : 2 + d);
      s.out[d] = out_size[d];
      FASTML_CHECK(out_size[d] >= 1, op, ": expected output sizes >= 1, got ", out_size[d]);
    }
    FASTML_CHECK(w.ndim() == 5, op, ": expected a 5-D weight, got shape ", shape_str(w));
    s.K = w.shape(0);
    for (int d = 0; d < 3; ++d) s.k[d] = w.shape(2 + d);
    FASTML_CHECK(s.C % s.G == 0 && s.K % s.G == 0, op, ": expected groups dividing C=", s.C, " and K=", s.K, ", got ",
                 s.G);
    check_weight(s, w, s.C / s.G, op);
    FASTML_CHECK(algo == 0 || algo == 1, op, ": unknown algorithm id ", algo);
    FASTML_CHECK(algo == 0 || s.is_1x1(), op, ": algorithm '1x1' needs kernel 1, stride 1, padding 0");
    const GemmAct a = gemm_act_of(act, op);
    py::array keep;
    const float* bias = bias_ptr(b_, s.K, op, keep);
    std::vector<py::ssize_t> shape = out_cl ? std::vector<py::ssize_t>{s.N, s.out[0], s.out[1], s.out[2], s.K}
                                            : std::vector<py::ssize_t>{s.N, s.K, s.out[0], s.out[1], s.out[2]};
    py::array y = output_f32(out_, shape, op);
    check_no_alias(y, {&x, &w, bias ? &keep : nullptr}, op);
    const float *px = cf32(x), *pw = cf32(w);
    float* py_ = f32(y);
    {
      py::gil_scoped_release nogil;
      conv_forward(s, static_cast<ConvAlgo>(algo), px, pw, bias, a, py_);
    }
    return y;
  }, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("out_size"), py::arg("stride"), py::arg("pad"),
     py::arg("dilation"), py::arg("groups"), py::arg("in_cl") = false, py::arg("out_cl") = false, py::arg("algo") = 0,
     py::arg("act") = "none", py::arg("out") = py::none());

  m.def("conv_backward_data", [](py::handle dy_, py::handle w_, py::handle b_, Dims3 in_size, Dims3 stride,
                                 Dims3 pad, Dims3 dil, int64_t groups, py::handle out_) {
    const char* op = "conv_backward_data";
    py::array dy = input_f32(dy_, op, "grad_output"), w = input_f32(w_, op, "weight");
    check_5d(dy, op, "grad_output");
    check_5d(w, op, "weight");
    ConvShape s;
    set_common(s, stride, pad, dil, groups, op);
    s.N = dy.shape(0);
    s.K = dy.shape(1);
    s.C = w.shape(1) * s.G;
    for (int d = 0; d < 3; ++d) {
      s.out[d] = dy.shape(2 + d);
      s.in[d] = in_size[d];
      s.k[d] = w.shape(2 + d);
      FASTML_CHECK(in_size[d] >= 1, op, ": expected input sizes >= 1, got ", in_size[d]);
    }
    FASTML_CHECK(s.K % s.G == 0, op, ": expected groups dividing K=", s.K, ", got ", s.G);
    check_weight(s, w, w.shape(1), op);
    py::array keep;
    const float* bias = bias_ptr(b_, s.C, op, keep);
    py::array gx = output_f32(out_, {s.N, s.C, s.in[0], s.in[1], s.in[2]}, op);
    check_no_alias(gx, {&dy, &w, bias ? &keep : nullptr}, op);
    const float *pd = cf32(dy), *pw = cf32(w);
    float* pg = f32(gx);
    {
      py::gil_scoped_release nogil;
      conv_backward_data(s, pd, pw, bias, pg);
    }
    return gx;
  }, py::arg("grad_output"), py::arg("weight"), py::arg("bias"), py::arg("in_size"), py::arg("stride"),
     py::arg("pad"), py::arg("dilation"), py::arg("groups"), py::arg("out") = py::none());

  m.def("conv_backward_weight", [](py::handle dy_, py::handle x_, Dims3 kernel, Dims3 stride, Dims3 pad, Dims3 dil,
                                   int64_t groups, py::handle out_) {
    const char* op = "conv_backward_weight";
    py::array dy = input_f32(dy_, op, "grad_output"), x = input_f32(x_, op, "input");
    check_5d(dy, op, "grad_output");
    check_5d(x, op, "input");
    ConvShape s;
    set_common(s, stride, pad, dil, groups, op);
    s.N = dy.shape(0);
    s.K = dy.shape(1);
    s.C = x.shape(1);
    FASTML_CHECK(x.shape(0) == s.N, op, ": expected input with batch ", s.N, ", got ", shape_str(x));
    FASTML_CHECK(s.C % s.G == 0 && s.K % s.G == 0, op, ": expected groups dividing C=", s.C, " and K=", s.K,
                 ", got ", s.G);
    for (int d = 0; d < 3; ++d) {
      s.out[d] = dy.shape(2 + d);
      s.in[d] = x.shape(2 + d);
      s.k[d] = kernel[d];
      FASTML_CHECK(kernel[d] >= 1, op, ": expected kernel sizes >= 1, got ", kernel[d]);
    }
    py::array gw = output_f32(out_, {s.K, s.C / s.G, s.k[0], s.k[1], s.k[2]}, op);
    check_no_alias(gw, {&dy, &x}, op);
    const float *pd = cf32(dy), *px = cf32(x);
    float* pg = f32(gw);
    {
      py::gil_scoped_release nogil;
      conv_backward_weight(s, pd, px, pg);
    }
    return gw;
  }, py::arg("grad_output"), py::arg("input"), py::arg("kernel"), py::arg("stride"), py::arg("pad"),
     py::arg("dilation"), py::arg("groups"), py::arg("out") = py::none());
}

}  // namespace fastml::bind
