// Bindings of the SGEMM engine (csrc/gemm/gemm.h): validate, map NumPy views to (pointer, leading
// dimension), release the GIL, call. No maths here.
//   _C.sgemm(a, b, c, trans_a, trans_b, alpha, beta, bias, bias_kind, act)       c is written in place
//   _C.sgemm_batched(a, b, c, ...)      3-D operands; any batch stride (0 broadcasts a or b)
//   _C.gemm_pack_b(b, trans_b) -> PackedB; _C.sgemm_packed(a, packed, c, trans_a, alpha, beta, ...)
//   _C.linear_forward(input2d, weight, bias, out) -> out = input @ weight^T + bias
// Matrices may be strided views whose rows are contiguous (unit element stride): the row stride is the
// leading dimension, so a[:, :k] of a wider array runs without a copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include "bind/array_pool.h"
#include "bind/arrays.h"
#include "bind/gemm_act.h"
#include "core/reduce.h"
#include "gemm/gemm.h"

namespace fastml::bind {

namespace {

struct Mat {
  py::array arr;
  int64_t batch = 1, rows = 0, cols = 0, ld = 1, bstride = 0;  // strides in elements
  float* ptr = nullptr;
  const char* lo = nullptr;  // byte range [lo, hi) touched, for overlap checks
  const char* hi = nullptr;
};

Mat as_mat(const py::handle& obj, const char* op, const char* arg, int ndim, bool writeable) {
  FASTML_CHECK_TYPE(py::isinstance<py::array>(obj), op, ": expected a numpy array for ", arg, ", got ",
                    std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  Mat m;
  m.arr = py::reinterpret_borrow<py::array>(obj);
  py::array& a = m.arr;
  FASTML_CHECK_TYPE(a.dtype().kind() == 'f' && a.itemsize() == 4, op, ": expected float32 for ", arg, ", got ",
                    dtype_str(a));
  FASTML_CHECK(a.ndim() == ndim, op, ": expected a ", ndim, "-D array for ", arg, ", got shape ", shape_str(a));
  FASTML_CHECK(!writeable || a.writeable(), op, ": expected a writeable array for ", arg, ", got a read-only one");
  const int off = ndim - 2;
  m.batch = ndim == 3 ? a.shape(0) : 1;
  m.rows = a.shape(off);
  m.cols = a.shape(off + 1);
  auto elems = [&](int d, const char* what) {
    const py::ssize_t s = a.strides(d);
    FASTML_CHECK(s >= 0 && s % 4 == 0, op, ": expected non-negative strides that are multiples of 4 bytes for ",
                 arg, " (", what, "), got ", s);
    return static_cast<int64_t>(s / 4);
  };
  m.ptr = static_cast<float*>(const_cast<void*>(a.data()));
  if (a.size() == 0) {  // nothing is read or written: strides are irrelevant
    m.ld = std::max<int64_t>(1, m.cols);
    m.lo = m.hi = reinterpret_cast<const char*>(m.ptr);
    return m;
  }
  if (m.cols > 1) FASTML_CHECK(a.strides(off + 1) == 4, op, ": expected ", arg,
                               " with contiguous rows (unit element stride), got strides ", a.strides(off), ", ",
                               a.strides(off + 1), " bytes");
  m.ld = m.rows > 1 ? elems(off, "rows") : std::max<int64_t>(1, m.cols);
  FASTML_CHECK(m.rows <= 1 || m.ld >= m.cols, op, ": expected a row stride >= the row length for ", arg, ", got ",
               m.ld, " < ", m.cols);
  m.ld = std::max<int64_t>(m.ld, std::max<int64_t>(1, m.cols));
  m.bstride = (ndim == 3 && m.batch > 1) ? elems(0, "batch") : 0;
  m.lo = reinterpret_cast<const char*>(m.ptr);
  const int64_t last = (m.batch > 0 && m.rows > 0 && m.cols > 0)
                           ? (m.batch - 1) * m.bstride + (m.rows - 1) * m.ld + m.cols : 0;
  m.hi = m.lo + 4 * last;
  return m;
}

bool overlap(const Mat& a, const Mat& b) { return a.lo < b.hi && b.lo < a.hi; }

// Validates the epilogue arguments; `keep` holds a converted bias alive.
GemmEpilogue epilogue_of(const py::handle& bias, const std::string& kind, const std::string& act, int64_t M,
                         int64_t N, const char* op, py::array& keep) {
  GemmEpilogue ep;
  ep.act = gemm_act_of(act, op);
  if (bias.is_none()) return ep;
  FASTML_CHECK(kind == "row" || kind == "col", op, ": expected bias_kind 'row' or 'col', got '", kind, "'");
  keep = input_f32(bias, op, "bias");
  const int64_t want = kind == "row" ? M : N;
  FASTML_CHECK(keep.ndim() == 1 && keep.shape(0) == want, op, ": expected bias of shape (", want, ",), got ",
               shape_str(keep));
  ep.bias = cf32(keep);
  ep.bias_kind = kind == "row" ? GemmBias::row : GemmBias::col;
  return ep;
}

// A 2-D float32 operand of matmul as the engine reads it without a copy: rows contiguous (op none, ld the
// row stride) or columns contiguous (a transposed view such as x.T: op trans on the stored matrix, ld
// the column stride). Anything else (other strides, other dtypes, misaligned data) goes through
// input_f32, which copies it once or words the error.
struct Operand {
  py::array arr;
  const float* p = nullptr;
  Trans t = Trans::none;
  int64_t ld = 1;
};

Operand gemm_operand(const py::handle& obj, const char* op, const char* arg) {
  Operand o;
  bool in_place = false;
  if (py::isinstance<py::array>(obj)) {
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (a.ndim() == 2 && a.dtype().num() == kNpyFloat32 && a.size() > 0 &&
        reinterpret_cast<uintptr_t>(a.data()) % 4 == 0) {
      const int64_t r = a.shape(0), c = a.shape(1), s0 = a.strides(0), s1 = a.strides(1);
      auto unit = [](int64_t n, int64_t s) { return n <= 1 || s == 4; };
      auto lead = [](int64_t n, int64_t s, int64_t width) {  // the other dim's stride, if usable
        return n <= 1 ? std::max<int64_t>(1, width) : (s >= 4 * width && s % 4 == 0 ? s / 4 : 0);
      };
      if (unit(c, s1) && lead(r, s0, c) > 0) {
        o.arr = a, o.t = Trans::none, o.ld = lead(r, s0, c), in_place = true;
      } else if (unit(r, s0) && lead(c, s1, r) > 0) {
        o.arr = a, o.t = Trans::trans, o.ld = lead(c, s1, r), in_place = true;
      }
    }
  }
  if (!in_place) {
    o.arr = input_f32(obj, op, arg);
    if (o.arr.ndim() == 2) o.ld = std::max<int64_t>(1, o.arr.shape(1));
  }
  o.p = cf32(o.arr);
  return o;
}

struct Dims {
  int64_t M, N, K;
};

Dims check_operands(const Mat& a, const Mat& b, const Mat& c, bool ta, bool tb, const char* op) {
  const int64_t M = ta ? a.cols : a.rows, K = ta ? a.rows : a.cols;
  const int64_t Kb = tb ? b.cols : b.rows, N = tb ? b.rows : b.cols;
  FASTML_CHECK(K == Kb, op, ": expected op(b) with ", K, " rows (op(a) is ", M, " x ", K, "), got ", Kb, " x ", N);
  FASTML_CHECK(c.rows == M && c.cols == N, op, ": expected c of shape (", M, ", ", N, "), got ", shape_str(c.arr));
  FASTML_CHECK(!overlap(c, a) && !overlap(c, b), op, ": c must not overlap a or b");
  return {M, N, K};
}

}  // namespace

void bind_gemm(py::module_& m) {
  py::class_<PackedB, std::shared_ptr<PackedB>>(m, "PackedB",
      "op(B) packed once into the microkernel layout of the active ISA (see gemm_pack_b).")
      .def_property_readonly("k", &PackedB::k)
      .def_property_readonly("n", &PackedB::n)
      .def_property_readonly("isa", [](const PackedB& p) { return std::string(isa_name(p.isa())); });

  m.def("gemm_blocking", [] {
    const GemmBlocking b = gemm_blocking();
    py::dict d;
    d["isa"] = isa_name(active_isa());
    d["mr"] = b.mr;
    d["nr"] = b.nr;
    d["kc"] = b.kc;
    d["mc"] = b.mc;
    d["nc"] = b.nc;
    return d;
  }, "Microkernel tile (mr x nr) and cache blocks (kc, mc, nc) of the active ISA.");

  m.def("gemm_set_blocking", &gemm_set_blocking, py::arg("kc") = 0, py::arg("nc") = 0,
        "Override KC / NC process-wide (0 = from the caches): block-edge tests and tuning only.");

  m.def("sgemm", [](py::handle a_, py::handle b_, py::handle c_, bool ta, bool tb, float alpha, float beta,
                    py::handle bias, const std::string& bias_kind, const std::string& act) {
    const char* op = "sgemm";
    Mat a = as_mat(a_, op, "a", 2, false), b = as_mat(b_, op, "b", 2, false), c = as_mat(c_, op, "c", 2, true);
    const Dims d = check_operands(a, b, c, ta, tb, op);
    py::array keep;
    const GemmEpilogue ep = epilogue_of(bias, bias_kind, act, d.M, d.N, op, keep);
    {
      py::gil_scoped_release nogil;
      sgemm(ta ? Trans::trans : Trans::none, tb ? Trans::trans : Trans::none, d.M, d.N, d.K, alpha, a.ptr, a.ld,
            b.ptr, b.ld, beta, c.ptr, c.ld, &ep);
    }
    return c.arr;
  }, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false, py::arg("trans_b") = false,
     py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f, py::arg("bias") = py::none(), py::arg("bias_kind") = "col",
     py::arg("act") = "none",
     "c = act(alpha * op(a) @ op(b) + beta * c + bias), in place; beta = 0 ignores c's contents.");

  m.def("sgemm_batched", [](py::handle a_, py::handle b_, py::handle c_, bool ta, bool tb, float alpha, float beta,
                            py::handle bias, const std::string& bias_kind, const std::string& act) {
    const char* op = "sgemm_batched";
    Mat a = as_mat(a_, op, "a", 3, false), b = as_mat(b_, op, "b", 3, false), c = as_mat(c_, op, "c", 3, true);
    const Dims d = check_operands(a, b, c, ta, tb, op);
    FASTML_CHECK(a.batch == c.batch && b.batch == c.batch, op, ": expected a, b and c with the same batch size, got ",
                 a.batch, ", ", b.batch, ", ", c.batch);
    FASTML_CHECK(c.batch <= 1 || d.M == 0 || d.N == 0 || c.bstride >= (d.M - 1) * c.ld + d.N, op,
                 ": expected the matrices of c not to overlap (batch stride ", c.bstride, ")");
    py::array keep;
    const GemmEpilogue ep = epilogue_of(bias, bias_kind, act, d.M, d.N, op, keep);
    {
      py::gil_scoped_release nogil;
      sgemm_batched(c.batch, ta ? Trans::trans : Trans::none, tb ? Trans::trans : Trans::none, d.M, d.N, d.K, alpha,
                    a.ptr, a.ld, a.bstride, b.ptr, b.ld, b.bstride, beta, c.ptr, c.ld, c.bstride, &ep);
    }
    return c.arr;
  }, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false, py::arg("trans_b") = false,
     py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f, py::arg("bias") = py::none(), py::arg("bias_kind") = "col",
     py::arg("act") = "none", "Batched sgemm over 3-D views (batch stride 0 broadcasts an operand).");

  m.def("column_sums", [](py::handle a_) {
    // (rows, cols) float32 with unit column stride -> (cols,) sums over the rows (core/reduce.h)
    const char* op = "column_sums";
    Mat a = as_mat(a_, op, "a", 2, false);
    const int64_t rows = a.rows, cols = a.cols;
    py::array out = empty_f32({cols});
    float* po = f32(out);
    {
      py::gil_scoped_release nogil;
      column_sums(a.ptr, rows, cols, a.ld, po);
    }
    return out;
  }, py::arg("a"), "Sums over the rows of a 2-D float32 array (float64 accumulation, rounded once).");
  m.def("channel_sums", [](py::handle a_) {
    // (outer, channels, inner) C-contiguous float32 -> (channels,) sums over axes 0 and 2 (core/reduce.h)
    const char* op = "channel_sums";
    py::array a = py::array::ensure(a_);
    FASTML_CHECK(a && a.dtype().is(py::dtype::of<float>()) && a.ndim() == 3 &&
                     (a.flags() & py::array::c_style),
                 op, ": expected a C-contiguous 3-D float32 array");
    const int64_t outer = a.shape(0), channels = a.shape(1), inner = a.shape(2);
    py::array out = empty_f32({channels});
    float* po = f32(out);
    const float* pa = static_cast<const float*>(a.data());
    {
      py::gil_scoped_release nogil;
      channel_sums(pa, outer, channels, inner, po);
    }
    return out;
  }, py::arg("a"), "Sums of a (outer, channels, inner) float32 array over axes 0 and 2 (float64, rounded once).");
  m.def("gemm_pack_b", [](py::handle b_, bool tb) {
    Mat b = as_mat(b_, "gemm_pack_b", "b", 2, false);
    const int64_t K = tb ? b.cols : b.rows, N = tb ? b.rows : b.cols;
    py::gil_scoped_release nogil;
    return std::make_shared<PackedB>(tb ? Trans::trans : Trans::none, K, N, b.ptr, b.ld);
  }, py::arg("b"), py::arg("trans_b") = false, "Pack op(b) (K x N) once for sgemm_packed.");

  m.def("sgemm_packed", [](py::handle a_, const PackedB& pb, py::handle c_, bool ta, float alpha, float beta,
                           py::handle bias, const std::string& bias_kind, const std::string& act) {
    const char* op = "sgemm_packed";
    Mat a = as_mat(a_, op, "a", 2, false), c = as_mat(c_, op, "c", 2, true);
    const int64_t M = ta ? a.cols : a.rows, K = ta ? a.rows : a.cols;
    FASTML_CHECK(K == pb.k(), op, ": expected op(a) with ", pb.k(), " columns (the packed B is ", pb.k(), " x ",
                 pb.n(), "), got ", M, " x ", K);
    FASTML_CHECK(c.rows == M && c.cols == pb.n(), op, ": expected c of shape (", M, ", ", pb.n(), "), got ",
                 shape_str(c.arr));
    FASTML_CHECK(!overlap(c, a), op, ": c must not overlap a");
    py::array keep;
    const GemmEpilogue ep = epilogue_of(bias, bias_kind, act, M, pb.n(), op, keep);
    {
      py::gil_scoped_release nogil;
      sgemm_packed(ta ? Trans::trans : Trans::none, M, alpha, a.ptr, a.ld, pb, beta, c.ptr, c.ld, &ep);
    }
    return c.arr;
  }, py::arg("a"), py::arg("packed"), py::arg("c"), py::arg("trans_a") = false, py::arg("alpha") = 1.0f,
     py::arg("beta") = 0.0f, py::arg("bias") = py::none(), py::arg("bias_kind") = "col", py::arg("act") = "none");

  m.def("matmul2d", [](py::handle a_, py::handle b_, py::handle out) {
    const char* op = "matmul";
    const Operand a = gemm_operand(a_, op, "a");
    const Operand b = gemm_operand(b_, op, "b");
    FASTML_CHECK(a.arr.ndim() == 2 && b.arr.ndim() == 2, op, ": expected 2-D arrays here, got shapes ",
                 shape_str(a.arr), " and ", shape_str(b.arr));
    const int64_t M = a.arr.shape(0), K = a.arr.shape(1), N = b.arr.shape(1);
    FASTML_CHECK(b.arr.shape(0) == K, op, ": expected b with ", K, " rows in its last two dims (a is ",
                 shape_str(a.arr), "), got ", shape_str(b.arr));
    py::array c = output_f32(out, {static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(N)}, op);
    FASTML_CHECK(!shares_memory(a.arr, c) && !shares_memory(b.arr, c), op,
                 ": expected out not to share memory with a or b");
    float* pc = f32(c);
    {
      py::gil_scoped_release nogil;
      sgemm(a.t, b.t, M, N, K, 1.0f, a.p, a.ld, b.p, b.ld, 0.0f, pc, std::max<int64_t>(1, N));
    }
    return c;
  }, py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
     "out = a @ b for 2-D float32 arrays, the hot path of fastml.matmul: row- or column-contiguous views (x.T)\n"
     "are read in place through the engine's transpose flags, other strided input is copied once.");

  m.def("matmul3d", [](py::handle a_, py::handle b_, py::handle out) {
    const char* op = "matmul";
    py::array a = input_f32(a_, op, "a");
    py::array b = input_f32(b_, op, "b");
    FASTML_CHECK(a.ndim() == 3 && b.ndim() == 3 && a.shape(0) == b.shape(0), op,
                 ": expected 3-D arrays with the same batch here, got shapes ", shape_str(a), " and ", shape_str(b));
    const int64_t B = a.shape(0), M = a.shape(1), K = a.shape(2), N = b.shape(2);
    FASTML_CHECK(b.shape(1) == K, op, ": expected b with ", K, " rows in its last two dims (a is ", shape_str(a),
                 "), got ", shape_str(b));
    py::array c =
        output_f32(out, {static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(N)}, op);
    FASTML_CHECK(!shares_memory(a, c) && !shares_memory(b, c), op, ": expected out not to share memory with a or b");
    const float* pa = cf32(a);
    const float* pb = cf32(b);
    float* pc = f32(c);
    {
      py::gil_scoped_release nogil;
      sgemm_batched(B, Trans::none, Trans::none, M, N, K, 1.0f, pa, std::max<int64_t>(1, K), M * K, pb,
                    std::max<int64_t>(1, N), K * N, 0.0f, pc, std::max<int64_t>(1, N), M * N);
    }
    return c;
  }, py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
     "out = a @ b for 3-D float32 arrays with the same batch (strided input copied once): fastml.matmul's batched\n"
     "hot path.");

  m.def("linear_backward2d", [](py::handle g_, py::handle x_, py::handle w_, bool want_gi, bool want_gw,
                                 bool want_gb) {
    // grad_output (M, out), input (M, in), weight (out, in), shapes checked by the caller (fastml.functional
    // .linear_backward): grad_input = g W, grad_weight = g^T x, grad_bias = column sums of g (core/reduce.h)
    const char* op = "linear_backward";
    py::array g = input_f32(g_, op, "grad_output");
    py::array x = input_f32(x_, op, "input");
    py::array w = input_f32(w_, op, "weight");
    FASTML_CHECK(g.ndim() == 2 && x.ndim() == 2 && w.ndim() == 2 && g.shape(0) == x.shape(0) &&
                     g.shape(1) == w.shape(0) && x.shape(1) == w.shape(1),
                 op, ": expected grad_output (M, out), input (M, in), weight (out, in), got ", shape_str(g), ", ",
                 shape_str(x), ", ", shape_str(w));
    const int64_t M = g.shape(0), O = g.shape(1), I = x.shape(1);
    py::object gi = py::none(), gw = py::none(), gb = py::none();
    float *pi = nullptr, *pw = nullptr, *pb = nullptr;
    if (want_gi) {
      py::array a = empty_f32({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(I)});
      pi = f32(a);
      gi = a;
    }
    if (want_gw) {
      py::array a = empty_f32({static_cast<py::ssize_t>(O), static_cast<py::ssize_t>(I)});
      pw = f32(a);
      gw = a;
    }
    if (want_gb) {
      py::array a = empty_f32({static_cast<py::ssize_t>(O)});
      pb = f32(a);
      gb = a;
    }
    const float* pg = cf32(g);
    const float* px = cf32(x);
    const float* pwt = cf32(w);
    {
      py::gil_scoped_release nogil;
      const int64_t lo = std::max<int64_t>(1, O), li = std::max<int64_t>(1, I);
      if (pi) sgemm(Trans::none, Trans::none, M, I, O, 1.0f, pg, lo, pwt, li, 0.0f, pi, li);
      if (pw) sgemm(Trans::trans, Trans::none, O, I, M, 1.0f, pg, lo, px, li, 0.0f, pw, li);
      if (pb) column_sums(pg, M, O, lo, pb);
    }
    return py::make_tuple(gi, gw, gb);
  }, py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("grad_input"), py::arg("grad_weight"),
     py::arg("grad_bias"), "linear_backward's 2-D hot path: (grad_input, grad_weight, grad_bias), None where not wanted.");

  m.def("linear_forward", [](py::handle x_, py::handle w_, py::handle bias, py::handle out) {
    const char* op = "linear";
    py::array x = input_f32(x_, op, "input");
    py::array w = input_f32(w_, op, "weight");
    FASTML_CHECK(x.ndim() == 2, op, ": expected a 2-D input here, got shape ", shape_str(x));
    FASTML_CHECK(w.ndim() == 2, op, ": expected weight of shape (out_features, in_features), got ", shape_str(w));
    const int64_t M = x.shape(0), K = x.shape(1), N = w.shape(0);
    FASTML_CHECK(w.shape(1) == K, op, ": expected input of shape (..., ", w.shape(1), ") (weight is ", shape_str(w),
                 "), got ", shape_str(x));
    py::array keep;
    GemmEpilogue ep;
    if (!bias.is_none()) {
      keep = input_f32(bias, op, "bias");
      FASTML_CHECK(keep.ndim() == 1 && keep.shape(0) == N, op, ": expected bias of shape (", N, ",), got ",
                   shape_str(keep));
      ep.bias = cf32(keep);
      ep.bias_kind = GemmBias::col;
    }
    py::array y = output_f32(out, {static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(N)}, op);
    FASTML_CHECK(!shares_memory(x, y) && !shares_memory(w, y), op, ": out must not overlap input or weight");
    const float* px = cf32(x);
    const float* pw = cf32(w);
    float* py_ = f32(y);
    {
      py::gil_scoped_release nogil;
      sgemm(Trans::none, Trans::trans, M, N, K, 1.0f, px, std::max<int64_t>(1, K), pw, std::max<int64_t>(1, K), 0.0f,
            py_, std::max<int64_t>(1, N), &ep);
    }
    return y;
  }, py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("out") = py::none());
}

}  // namespace fastml::bind
