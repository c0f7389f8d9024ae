// Bindings of scaled dot-product attention forward / backward (ops/attention/attention.h): validate the
// 4-d (B, H, L, E) layout the Python layer normalises to (the forward reads strided views whose rows are
// contiguous in place), the mask view (float32, any strides, zero
// strides broadcast, unit stride along keys), `out`; release the GIL; call the entry. No maths here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bind/arrays.h"
#include "ops/attention/attention.h"

namespace fastml::bind {

namespace {

struct Inputs {
  py::array q, k, v, mask;
  AttentionParams p;
};

// rows: a float32 4-d array whose last dim is contiguous and whose other strides are non-negative whole
// elements is taken as it is (a (B, L, H, E) buffer viewed as (B, H, L, E) needs no copy); anything else is
// copied once. Without rows, the result is C-contiguous.
py::array attention_input(py::handle obj, const char* op, const char* arg, bool rows) {
  if (rows && py::isinstance<py::array>(obj)) {
    auto a = py::reinterpret_borrow<py::array>(obj);
    bool ok = a.dtype().num() == kNpyFloat32 && a.ndim() == 4 && (a.shape(3) <= 1 || a.strides(3) == 4);
    for (int d = 0; ok && d < 3; ++d) ok = a.strides(d) >= 0 && a.strides(d) % 4 == 0;
    if (ok) return a;
  }
  return input_f32(obj, op, arg);
}

// Element strides (batch, head, row) of a 4-d float32 array whose rows are contiguous.
void row_strides(const py::array& a, int64_t& sb, int64_t& sh, int64_t& sl) {
  sb = a.strides(0) / 4;
  sh = a.strides(1) / 4;
  sl = a.strides(2) / 4;
}

Inputs make_params(const char* op, py::handle query, py::handle key, py::handle value, py::handle mask, bool causal,
                   int64_t window, double scale, int64_t drop_threshold, double drop_scale, uint64_t seed,
                   bool strided_rows, int64_t diag) {
  Inputs in;
  in.q = attention_input(query, op, "query", strided_rows);
  in.k = attention_input(key, op, "key", strided_rows);
  in.v = attention_input(value, op, "value", strided_rows);
  FASTML_CHECK(in.q.ndim() == 4 && in.k.ndim() == 4 && in.v.ndim() == 4, op,
               ": expected 4-d query, key, value (B, H, L, E), got ", shape_str(in.q), ", ", shape_str(in.k), ", ",
               shape_str(in.v));
  AttentionParams& p = in.p;
  p.B = in.q.shape(0);
  p.Hq = in.q.shape(1);
  p.L = in.q.shape(2);
  p.E = in.q.shape(3);
  p.Hkv = in.k.shape(1);
  p.S = in.k.shape(2);
  p.Ev = in.v.shape(3);
  FASTML_CHECK(in.k.shape(0) == p.B && in.k.shape(3) == p.E, op, ": expected key of shape (", p.B, ", H, S, ", p.E,
               "), got ", shape_str(in.k));
  FASTML_CHECK(in.v.shape(0) == p.B && in.v.shape(1) == p.Hkv && in.v.shape(2) == p.S, op,
               ": expected value of shape (", p.B, ", ", p.Hkv, ", ", p.S, ", Ev), got ", shape_str(in.v));
  FASTML_CHECK(p.Hkv > 0 ? p.Hq % p.Hkv == 0 : p.Hq == 0, op, ": expected query heads (", p.Hq,
               ") divisible by key/value heads, got ", p.Hkv);
  FASTML_CHECK(window >= 0, op, ": expected sliding_window >= 1 or None, got ", window);
  // beyond [-L, S] every row's band is empty or holds every key: the range keeps the band's sums in int64
  FASTML_CHECK(diag >= -p.L && diag <= p.S, op, ": expected a causal diagonal offset in [", -p.L, ", ", p.S,
               "], got ", diag);
  FASTML_CHECK(drop_threshold >= 0 && drop_threshold <= (int64_t{1} << 24), op, ": bad dropout threshold ",
               drop_threshold);
  p.q = cf32(in.q);
  p.k = cf32(in.k);
  p.v = cf32(in.v);
  row_strides(in.q, p.qsb, p.qsh, p.qsl);
  row_strides(in.k, p.ksb, p.ksh, p.ksl);
  row_strides(in.v, p.vsb, p.vsh, p.vsl);
  p.causal = causal;
  p.window = window;
  p.diag = diag;
  p.scale = static_cast<float>(scale);
  p.dropout = drop_threshold > 0;
  p.drop_threshold = static_cast<uint32_t>(drop_threshold);
  p.drop_scale = static_cast<float>(drop_scale);
  p.seed = seed;
  if (!mask.is_none()) {
    in.mask = py::reinterpret_borrow<py::array>(mask);
    FASTML_CHECK_TYPE(py::isinstance<py::array>(mask) && in.mask.dtype().num() == kNpyFloat32, op,
                      ": expected a float32 array for the additive mask");
    const std::vector<py::ssize_t> want{p.B, p.Hq, p.L, p.S};
    FASTML_CHECK(shape_of(in.mask) == want, op, ": expected a mask view of shape (", p.B, ", ", p.Hq, ", ", p.L, ", ",
                 p.S, "), got ", shape_str(in.mask));
    for (int d = 0; d < 4; ++d)
      FASTML_CHECK(in.mask.strides(d) >= 0 && in.mask.strides(d) % 4 == 0, op,
                   ": expected non-negative element strides for the mask");
    FASTML_CHECK(p.S <= 1 || in.mask.strides(3) == 4, op, ": expected unit stride along keys for the mask");
    p.mask = cf32(in.mask);
    p.msb = in.mask.strides(0) / 4;
    p.msh = in.mask.strides(1) / 4;
    p.msl = in.mask.strides(2) / 4;
  }
  return in;
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def(
      "attention_forward",
      [](py::handle query, py::handle key, py::handle value, py::handle mask, bool causal, int64_t window,
         double scale, int64_t drop_threshold, double drop_scale, uint64_t seed, py::handle out, int path,
         int64_t diag) {
        const char* op = "scaled_dot_product_attention";
        Inputs in = make_params(op, query, key, value, mask, causal, window, scale, drop_threshold, drop_scale, seed,
                                true, diag);
        const AttentionParams& p = in.p;
        FASTML_CHECK(path >= 0 && path <= 3, op,
                     ": expected path 0 (auto), 1 (general), 2 (decode) or 3 (auto, output only), got ", path);
        py::array o = output_f32(out, {p.B, p.Hq, p.L, p.Ev}, op);
        for (const py::array* a : {&in.q, &in.k, &in.v})
          FASTML_CHECK(!shares_memory(*a, o), op, ": out must not share memory with query, key or value");
        py::array lse = output_f32(py::none(), {p.B, p.Hq, p.L}, op);
        float* po = f32(o);
        float* pl = f32(lse);
        {
          py::gil_scoped_release nogil;
          attention_forward(p, po, pl, static_cast<AttentionPath>(path));
        }
        return py::make_tuple(o, lse);
      },
      py::arg("query"), py::arg("key"), py::arg("value"), py::arg("mask"), py::arg("causal"), py::arg("window"),
      py::arg("scale"), py::arg("drop_threshold"), py::arg("drop_scale"), py::arg("seed"), py::arg("out") = py::none(),
      py::arg("path") = 0, py::arg("diag") = 0);

  m.def(
      "attention_backward",
      [](py::handle grad_output, py::handle query, py::handle key, py::handle value, py::handle output,
         py::handle logsumexp, py::handle mask, bool causal, int64_t window, double scale, int64_t drop_threshold,
         double drop_scale, uint64_t seed, int64_t diag) {
        const char* op = "scaled_dot_product_attention_backward";
        Inputs in = make_params(op, query, key, value, mask, causal, window, scale, drop_threshold, drop_scale, seed,
                                false, diag);
        const AttentionParams& p = in.p;
        py::array g = input_f32(grad_output, op, "grad_output");
        py::array o = input_f32(output, op, "output");
        py::array lse = input_f32(logsumexp, op, "logsumexp");
        const std::vector<py::ssize_t> os{p.B, p.Hq, p.L, p.Ev}, ls{p.B, p.Hq, p.L};
        FASTML_CHECK(shape_of(g) == os, op, ": expected grad_output of shape ", shape_str(o), ", got ", shape_str(g));
        FASTML_CHECK(shape_of(o) == os, op, ": expected output of shape (B, Hq, L, Ev), got ", shape_str(o));
        FASTML_CHECK(shape_of(lse) == ls, op, ": expected logsumexp of shape (B, Hq, L), got ", shape_str(lse));
        py::array dq = output_f32(py::none(), shape_of(in.q), op);
        py::array dk = output_f32(py::none(), shape_of(in.k), op);
        py::array dv = output_f32(py::none(), shape_of(in.v), op);
        const float *pg = cf32(g), *po = cf32(o), *pl = cf32(lse);
        float *pdq = f32(dq), *pdk = f32(dk), *pdv = f32(dv);
        {
          py::gil_scoped_release nogil;
          attention_backward(p, pg, po, pl, pdq, pdk, pdv);
        }
        return py::make_tuple(dq, dk, dv);
      },
      py::arg("grad_output"), py::arg("query"), py::arg("key"), py::arg("value"), py::arg("output"),
      py::arg("logsumexp"), py::arg("mask"), py::arg("causal"), py::arg("window"), py::arg("scale"),
      py::arg("drop_threshold"), py::arg("drop_scale"), py::arg("seed"), py::arg("diag") = 0);
}

}  // namespace fastml::bind
