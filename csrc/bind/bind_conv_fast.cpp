// Bindings of the specialised conv kernels (csrc/ops/conv_fast/conv_fast.h): validate every shape,
// dtype and parameter before anything is written, allocate or check `out`, release the GIL, call.
//   _C.depthwise_conv2d_forward(x, w, bias, stride, padding, dilation, act, out)
//   _C.depthwise_conv2d_backward(grad_output, x, w, stride, padding, dilation, output_mask) -> (gx, gw, gb)
//   _C.direct_conv2d_forward / _C.direct_conv2d_backward                     (same arguments)
//   _C.winograd_conv2d_forward(x, w, bias, padding, act, out, m, swapped)    m = 4: F(4x4,3x3), 2: F(2x2,3x3);
//                                                                            swapped: w (C, K, 3, 3) flipped
//   _C.winograd_conv3d_forward(x, w, bias, padding, act, out)                F(2x2x2,3x3x3), padding (pd, ph, pw)
//   _C.winograd_conv_backward_weight(grad_output, x, padding)                3x3 / 3x3x3 grad_weight, F(3,2) nesting
// stride / padding / dilation are (int, int); act is "none" | "relu" | "gelu" | "gelu_tanh" | "sigmoid" | "tanh".
// Python API: fastml/functional/_conv_fast.py. Test: pytest tests/test_conv_fast.py
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <string>
#include <tuple>
#include <vector>

#include "bind/array_pool.h"
#include "bind/arrays.h"
#include "bind/gemm_act.h"
#include "ops/conv_fast/conv_fast.h"

namespace fastml::bind {

namespace {

using Pair = std::array<int64_t, 2>;
enum class Kind { depthwise, direct, winograd };

struct Checked {
  py::array x, w, b;  // b: none when there is no bias
  bool has_bias = false;
  Conv2dArgs a{};
  int64_t Ho = 0, Wo = 0;
};

// bias: none, or a float32 (K,) array into b; returns whether there is one.
bool bias_arg(py::handle bias, int64_t K, const char* op, py::array& b) {
  if (bias.is_none()) return false;
  b = input_f32(bias, op, "bias");
  FASTML_CHECK(b.ndim() == 1 && b.shape(0) == K, op, ": expected bias of shape (", K, ",), got ", shape_str(b));
  return true;
}

// out= (checked) or a new float32 array of `shape`, never sharing memory with input, weight or bias.
py::array conv_output(py::handle out, const std::vector<py::ssize_t>& shape, const char* op, const py::array& x,
                      const py::array& w, const py::array* b) {
  py::array y = output_f32(out, shape, op);
  FASTML_CHECK(!shares_memory(y, x) && !shares_memory(y, w) && !(b && shares_memory(y, *b)), op,
               ": expected out not to share memory with input, weight or bias");
  return y;
}

// Shapes of x (N, C, H, W) and w (K, C or 1, kh, kw), bias (K,), the parameters, the output size.
Checked check(const char* op, Kind kind, py::handle input, py::handle weight, py::handle bias, Pair stride,
              Pair padding, Pair dilation, bool swapped = false) {
  Checked r;
  r.x = input_f32(input, op, "input");
  r.w = input_f32(weight, op, "weight");
  FASTML_CHECK(r.x.ndim() == 4, op, ": expected input of shape (N, C, H, W), got ", shape_str(r.x));
  FASTML_CHECK(r.w.ndim() == 4, op, ": expected weight of shape (K, C/groups, kH, kW), got ", shape_str(r.w));
  Conv2dArgs& a = r.a;
  a.N = r.x.shape(0);
  a.C = r.x.shape(1);
  a.H = r.x.shape(2);
  a.W = r.x.shape(3);
  a.K = r.w.shape(swapped ? 1 : 0);  // swapped (Winograd's grad_input): weight (C, K, 3, 3)
  a.kh = r.w.shape(2);
  a.kw = r.w.shape(3);
  FASTML_CHECK(a.C >= 1 && a.H >= 1 && a.W >= 1, op, ": expected input with C, H, W >= 1, got ", shape_str(r.x));
  FASTML_CHECK(a.K >= 1 && a.kh >= 1 && a.kw >= 1, op, ": expected weight with K, kH, kW >= 1, got ", shape_str(r.w));
  if (kind == Kind::depthwise) {
    FASTML_CHECK(r.w.shape(1) == 1 && a.K % a.C == 0, op, ": expected weight of shape (C*m, 1, kH, kW) with C=",
                 a.C, " (groups == C), got ", shape_str(r.w));
  } else {
    FASTML_CHECK(r.w.shape(swapped ? 0 : 1) == a.C, op, ": expected weight of shape ",
                 swapped ? "(C, K, kH, kW)" : "(K, C, kH, kW)", " with C=", a.C, ", got ", shape_str(r.w));
  }
  if (kind == Kind::winograd)
    FASTML_CHECK(a.kh == 3 && a.kw == 3, op, ": expected a 3x3 kernel, got ", shape_str(r.w));
  FASTML_CHECK(stride[0] >= 1 && stride[1] >= 1, op, ": expected stride >= 1, got (", stride[0], ", ", stride[1], ")");
  FASTML_CHECK(padding[0] >= 0 && padding[1] >= 0, op, ": expected padding >= 0, got (", padding[0], ", ",
               padding[1], ")");
  FASTML_CHECK(dilation[0] >= 1 && dilation[1] >= 1, op, ": expected dilation >= 1, got (", dilation[0], ", ",
               dilation[1], ")");
  constexpr int64_t kBig = int64_t(1) << 40;  // keeps every size product far from int64 overflow
  FASTML_CHECK(padding[0] < kBig && padding[1] < kBig && dilation[0] < kBig && dilation[1] < kBig, op,
               ": expected padding and dilation < 2^40");  // a stride only divides (and is bounded below)
  a.sh = stride[0];
  a.sw = stride[1];
  a.ph = padding[0];
  a.pw = padding[1];
  a.dh = dilation[0];
  a.dw = dilation[1];
  const int64_t eh = a.dh * (a.kh - 1) + 1, ew = a.dw * (a.kw - 1) + 1;  // dilated kernel extent
  FASTML_CHECK(a.H + 2 * a.ph >= eh && a.W + 2 * a.pw >= ew, op, ": expected padded input (",
               a.H + 2 * a.ph, ", ", a.W + 2 * a.pw, ") at least as large as the dilated kernel (", eh, ", ", ew,
               "), got input ", shape_str(r.x));
  r.Ho = (a.H + 2 * a.ph - eh) / a.sh + 1;
  r.Wo = (a.W + 2 * a.pw - ew) / a.sw + 1;
  // A single output row (column) reads only window 0, whatever the stride. The kernels' buffers hold a
  // stride's worth of rows per output row (and rows of `stride` phases), so a stride far beyond the input
  // (legal, as in torch) would size them by the stride: it is lowered to the padded extent past the
  // window, which leaves the output size at 1.
  if (r.Ho == 1) a.sh = std::min(a.sh, a.H + 2 * a.ph - eh + 1);
  if (r.Wo == 1) a.sw = std::min(a.sw, a.W + 2 * a.pw - ew + 1);
  r.has_bias = bias_arg(bias, a.K, op, r.b);
  return r;
}

py::array forward(const char* op, Kind kind, py::handle input, py::handle weight, py::handle bias, Pair stride,
                  Pair padding, Pair dilation, const std::string& act_name, py::handle out, int64_t m,
                  bool swapped = false) {
  Checked r = check(op, kind, input, weight, bias, stride, padding, dilation, swapped);
  const GemmAct act = gemm_act_of(act_name, op);
  py::array y = conv_output(out, {r.a.N, r.a.K, r.Ho, r.Wo}, op, r.x, r.w, r.has_bias ? &r.b : nullptr);
  const float* px = cf32(r.x);
  const float* pw = cf32(r.w);
  const float* pb = r.has_bias ? cf32(r.b) : nullptr;
  float* py_ = f32(y);
  {
    py::gil_scoped_release nogil;
    if (kind == Kind::depthwise) depthwise_conv2d_forward(r.a, px, pw, pb, act, py_);
    else if (kind == Kind::direct) direct_conv2d_forward(r.a, px, pw, pb, act, py_);
    else winograd_conv2d_forward(r.a, m, px, pw, pb, act, py_, swapped);
  }
  return y;
}

py::tuple backward(const char* op, Kind kind, py::handle grad_output, py::handle input, py::handle weight,
                   Pair stride, Pair padding, Pair dilation, std::array<bool, 3> mask) {
  Checked r = check(op, kind, input, weight, py::none(), stride, padding, dilation);
  py::array g = input_f32(grad_output, op, "grad_output");
  const bool ok = g.ndim() == 4 && g.shape(0) == r.a.N && g.shape(1) == r.a.K && g.shape(2) == r.Ho &&
                  g.shape(3) == r.Wo;
  FASTML_CHECK(ok, op, ": expected grad_output of shape (", r.a.N, ", ", r.a.K, ", ", r.Ho, ", ", r.Wo, "), got ",
               shape_str(g));
  py::object gx = py::none(), gw = py::none(), gb = py::none();
  float *pgx = nullptr, *pgw = nullptr, *pgb = nullptr;
  if (mask[0]) {
    py::array t = empty_f32(shape_of(r.x));
    pgx = f32(t);
    gx = t;
  }
  if (mask[1]) {
    py::array t = empty_f32(shape_of(r.w));
    pgw = f32(t);
    gw = t;
  }
  if (mask[2]) {
    py::array t = empty_f32({r.a.K});
    pgb = f32(t);
    gb = t;
  }
  const float* pg = cf32(g);
  const float* px = cf32(r.x);
  const float* pw = cf32(r.w);
  {
    py::gil_scoped_release nogil;
    if (kind == Kind::depthwise) depthwise_conv2d_backward(r.a, pg, px, pw, pgx, pgw, pgb);
    else direct_conv2d_backward(r.a, pg, px, pw, pgx, pgw, pgb);
  }
  return py::make_tuple(gx, gw, gb);
}

// x (N, C, D, H, W), w (K, C, 3, 3, 3), padding (pd, ph, pw) each 0 or 1 -> y (N, K, Do, Ho, Wo).
py::array winograd3d(py::handle input, py::handle weight, py::handle bias, std::array<int64_t, 3> padding,
                     const std::string& act_name, py::handle out, bool swapped) {
  const char* op = "winograd_conv3d";
  py::array x = input_f32(input, op, "input"), w = input_f32(weight, op, "weight"), b;
  FASTML_CHECK(x.ndim() == 5, op, ": expected input of shape (N, C, D, H, W), got ", shape_str(x));
  const int ck = swapped ? 0 : 1;  // swapped (grad_input): weight (C, K, 3, 3, 3)
  Conv3dArgs a{x.shape(0), x.shape(1), x.shape(2), x.shape(3), x.shape(4), w.ndim() > 1 ? w.shape(1 - ck) : 0,
               padding[0], padding[1], padding[2]};
  FASTML_CHECK(w.ndim() == 5 && w.shape(ck) == a.C && w.shape(2) == 3 && w.shape(3) == 3 && w.shape(4) == 3, op,
               ": expected weight of shape ", swapped ? "(" : "(K, ", a.C, swapped ? ", K" : "", ", 3, 3, 3), got ",
               shape_str(w));
  FASTML_CHECK(a.C >= 1 && a.K >= 1, op, ": expected C_in, C_out >= 1, got input ", shape_str(x), " and weight ",
               shape_str(w));
  for (int64_t p : padding) FASTML_CHECK(p == 0 || p == 1, op, ": expected padding 0 or 1, got ", p);
  const int64_t Do = a.D + 2 * a.pd - 2, Ho = a.H + 2 * a.ph - 2, Wo = a.W + 2 * a.pw - 2;
  FASTML_CHECK(Do >= 1 && Ho >= 1 && Wo >= 1, op, ": expected padded input (", a.D + 2 * a.pd, ", ",
               a.H + 2 * a.ph, ", ", a.W + 2 * a.pw, ") at least as large as the kernel (3, 3, 3), got input ",
               shape_str(x));
  const bool has_bias = bias_arg(bias, a.K, op, b);
  const GemmAct act = gemm_act_of(act_name, op);
  py::array y = conv_output(out, {a.N, a.K, Do, Ho, Wo}, op, x, w, has_bias ? &b : nullptr);
  const float *px = cf32(x), *pw = cf32(w), *pb = has_bias ? cf32(b) : nullptr;
  float* py_ = f32(y);
  if (a.N > 0) {
    py::gil_scoped_release nogil;
    winograd_conv3d_forward(a, px, pw, pb, act, py_, swapped);
  }
  return y;
}

// grad_weight of a 3x3 (3x3x3) stride-1 convolution: grad_output (N, K, out...), x (N, C, in...),
// padding (nd values, each 0 or 1) -> (K, C, 3, 3[, 3]).
py::array winograd_wgrad(py::handle grad_output, py::handle input, const std::vector<int64_t>& padding) {
  const char* op = "winograd_conv_backward_weight";
  py::array g = input_f32(grad_output, op, "grad_output"), x = input_f32(input, op, "input");
  const int nd = static_cast<int>(padding.size());
  FASTML_CHECK(nd == 2 || nd == 3, op, ": expected 2 or 3 paddings, got ", nd);
  FASTML_CHECK(x.ndim() == nd + 2, op, ": expected input of ", nd + 2, " dimensions, got ", shape_str(x));
  for (int64_t p : padding) FASTML_CHECK(p == 0 || p == 1, op, ": expected padding 0 or 1, got ", p);
  Conv3dArgs a{x.shape(0), x.shape(1), nd == 3 ? x.shape(2) : 1, x.shape(nd), x.shape(nd + 1),
               g.ndim() > 1 ? g.shape(1) : 0, nd == 3 ? padding[0] : 0, padding[nd - 2], padding[nd - 1]};
  const int64_t Do = nd == 3 ? a.D + 2 * a.pd - 2 : 1, Ho = a.H + 2 * a.ph - 2, Wo = a.W + 2 * a.pw - 2;
  FASTML_CHECK(a.C >= 1 && Do >= 1 && Ho >= 1 && Wo >= 1, op, ": expected C >= 1 and a padded input at least as "
               "large as the kernel, got input ", shape_str(x));
  std::vector<py::ssize_t> gs{a.N, a.K};
  if (nd == 3) gs.push_back(Do);
  gs.push_back(Ho);
  gs.push_back(Wo);
  bool ok = g.ndim() == nd + 2 && a.K >= 1;
  for (int i = 0; ok && i < nd + 2; ++i) ok = i == 1 || g.shape(i) == gs[static_cast<size_t>(i)];
  FASTML_CHECK(ok, op, ": expected grad_output of shape (", a.N, ", K >= 1, ", Do, ", ", Ho, ", ", Wo, "), got ",
               shape_str(g));
  std::vector<py::ssize_t> ws{a.K, a.C, 3, 3};
  if (nd == 3) ws.push_back(3);
  py::array gw = empty_f32(ws);
  float* pgw = f32(gw);
  const float *pg = cf32(g), *px = cf32(x);
  {
    py::gil_scoped_release nogil;
    if (a.N == 0) std::fill(pgw, pgw + a.K * a.C * (nd == 3 ? 27 : 9), 0.0f);
    else winograd_conv_backward_weight(nd, a, pg, px, pgw);
  }
  return gw;
}

}  // namespace

void bind_conv_fast(py::module_& m) {
  m.def("depthwise_conv2d_forward",
        [](py::handle x, py::handle w, py::handle b, Pair s, Pair p, Pair d, const std::string& act, py::handle out) {
          return forward("depthwise_conv2d", Kind::depthwise, x, w, b, s, p, d, act, out, 0);
        }, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("act") = "none", py::arg("out") = py::none());
  m.def("depthwise_conv2d_backward",
        [](py::handle g, py::handle x, py::handle w, Pair s, Pair p, Pair d, std::array<bool, 3> mask) {
          return backward("depthwise_conv2d_backward", Kind::depthwise, g, x, w, s, p, d, mask);
        }, py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("output_mask"));
  m.def("direct_conv2d_forward",
        [](py::handle x, py::handle w, py::handle b, Pair s, Pair p, Pair d, const std::string& act, py::handle out) {
          return forward("direct_conv2d", Kind::direct, x, w, b, s, p, d, act, out, 0);
        }, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("act") = "none", py::arg("out") = py::none());
  m.def("direct_conv2d_backward",
        [](py::handle g, py::handle x, py::handle w, Pair s, Pair p, Pair d, std::array<bool, 3> mask) {
          return backward("direct_conv2d_backward", Kind::direct, g, x, w, s, p, d, mask);
        }, py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("output_mask"));
  m.def("winograd_conv2d_forward",
        [](py::handle x, py::handle w, py::handle b, int64_t padding, const std::string& act, py::handle out,
           int64_t tile, bool swapped) {
          const char* op = "winograd_conv2d";
          FASTML_CHECK(padding == 0 || padding == 1, op, ": expected padding 0 or 1, got ", padding);
          FASTML_CHECK(tile == 2 || tile == 4, op, ": expected tile m = 2 (F(2x2,3x3)) or 4 (F(4x4,3x3)), got ", tile);
          return forward(op, Kind::winograd, x, w, b, {1, 1}, {padding, padding}, {1, 1}, act, out, tile, swapped);
        }, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("padding"), py::arg("act") = "none",
        py::arg("out") = py::none(), py::arg("m") = 4, py::arg("swapped") = false);
  m.def("winograd_conv_backward_weight", &winograd_wgrad, py::arg("grad_output"), py::arg("input"),
        py::arg("padding"));
  m.def("winograd_conv3d_forward", &winograd3d, py::arg("input"), py::arg("weight"), py::arg("bias"),
        py::arg("padding"), py::arg("act") = "none", py::arg("out") = py::none(), py::arg("swapped") = false);
}

}  // namespace fastml::bind
