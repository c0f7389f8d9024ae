// Bindings of the recurrent layers (csrc/ops/rnn/rnn.h): validate shapes, allocate outputs and the saved
// buffers, release the GIL, call. No maths here.
//   _C.rnn_layers_forward(mode, x, [(h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse[, packed_hh, packed_hr])]
//                         * (1 or 2), lengths, relu, keep=True)   packed_*: None or _C.gemm_pack_b(w_hh / w_hr,
//       True) of exactly these weights under the active ISA (RnnLayer::pk_hh; checked: shape and ISA, not
//       contents)
//       -> [(out, h_n, c_n or None, (gates, hprev, cprev or None, ms or None) or None)] per direction
//       keep=False: inference, nothing saved for a backward (RnnSaved::ring; the last item is None)
//   _C.rnn_layers_backward(mode, x, [(dy, dh_n, dc_n, w_ih, w_hh, w_hr, reverse, has_bias, saved)], lengths, relu)
//       -> [(dx, dh0, dc0 or None, dw_ih, dw_hh, db_ih or None, db_hh or None, dw_hr or None)] per direction
//   _C.rnn_cell_forward(mode, x, h, c, w_ih, w_hh, b_ih, b_hh, relu) -> h' or (h', c')
// Two directions (of one bidirectional layer, same x and lengths) run concurrently: rnn.h.
// mode: 0 rnn, 1 lstm, 2 gru. Shapes: rnn.h.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "bind/array_pool.h"
#include "bind/arrays.h"
#include "core/isa.h"
#include "gemm/gemm.h"
#include "ops/rnn/rnn.h"

namespace fastml::bind {

namespace {

constexpr const char* kOp = "rnn_layer";

// An absent optional array: a null handle (a default py::array would be a real empty array).
py::array none_arr() { return py::reinterpret_steal<py::array>(py::handle()); }

void want(const py::array& a, std::vector<py::ssize_t> shape, const char* arg, const char* op = kOp) {
  FASTML_CHECK(shape_of(a) == shape, op, ": expected ", arg, " of shape ", dims_str(shape),
               ", got ", shape_str(a));
}

py::array opt_f32(const py::handle& h, const char* arg) {
  return h.is_none() ? none_arr() : input_f32(h, kOp, arg);
}

const float* ptr_or_null(const py::array& a) { return a ? cf32(a) : nullptr; }

// Reads mode, x, weights, lengths into L (keeping the arrays alive in `keep`) after checking shapes.
RnnLayer make_layer(int mode, const py::array& x, const py::array& w_ih, const py::array& w_hh,
                    const py::array& b_ih, const py::array& b_hh, const py::array& w_hr, const py::array& lens,
                    bool reverse, bool relu) {
  FASTML_CHECK(mode >= 0 && mode <= 2, kOp, ": unknown mode ", mode);
  RnnLayer L;
  L.mode = static_cast<RnnMode>(mode);
  FASTML_CHECK(x.ndim() == 3, kOp, ": expected x of shape (T, N, I), got ", shape_str(x));
  L.T = x.shape(0);
  L.N = x.shape(1);
  L.I = x.shape(2);
  const int64_t G = L.gates();
  FASTML_CHECK(w_hh.ndim() == 2 && w_hh.shape(0) % G == 0 && w_hh.shape(0) > 0, kOp,
               ": expected w_hh of shape (", G, "*H, P), got ", shape_str(w_hh));
  L.H = w_hh.shape(0) / G;
  L.P = w_hh.shape(1);
  FASTML_CHECK(w_hr || L.P == L.H, kOp, ": expected w_hh of shape (", G * L.H, ", ", L.H, "), got ", shape_str(w_hh));
  FASTML_CHECK(!w_hr || L.mode == RnnMode::lstm, kOp, ": a projection is only defined for the LSTM");
  want(w_ih, {G * L.H, L.I}, "w_ih");
  if (w_hr) want(w_hr, {L.P, L.H}, "w_hr");
  FASTML_CHECK(bool(b_ih) == bool(b_hh), kOp, ": expected both b_ih and b_hh or neither");
  if (b_ih) {
    want(b_ih, {G * L.H}, "b_ih");
    want(b_hh, {G * L.H}, "b_hh");
  }
  if (lens) {
    want(lens, {L.N}, "lengths");
    const int64_t* l = static_cast<const int64_t*>(lens.data());
    for (int64_t n = 0; n < L.N; ++n)
      FASTML_CHECK(l[n] >= 1 && l[n] <= L.T, kOp, ": expected lengths in [1, ", L.T, "], got ", l[n]);
    L.lengths = l;
  }
  L.reverse = reverse;
  L.relu = relu;
  L.x = cf32(x);
  L.w_ih = cf32(w_ih);
  L.w_hh = cf32(w_hh);
  L.b_ih = ptr_or_null(b_ih);
  L.b_hh = ptr_or_null(b_hh);
  L.w_hr = ptr_or_null(w_hr);
  return L;
}

// An optional pre-packed weight (fastml PackedB or None) of op(B) shape k x n, packed under the active ISA.
const PackedB* opt_pack(py::handle h, int64_t k, int64_t n, const char* name,
                        std::vector<std::shared_ptr<PackedB>>& keep) {
  if (h.is_none()) return nullptr;
  FASTML_CHECK_TYPE(py::isinstance<PackedB>(h), kOp, ": expected ", name, " to be a PackedB or None, got ",
                    std::string(py::str(py::type::of(h).attr("__name__"))));
  auto p = h.cast<std::shared_ptr<PackedB>>();
  FASTML_CHECK(p->k() == k && p->n() == n, kOp, ": expected ", name, " packed from a (", n, ", ", k,
               ") weight (op(B) ", k, " x ", n, "), got op(B) ", p->k(), " x ", p->n());
  FASTML_CHECK(p->isa() == active_isa(), kOp, ": ", name, " was packed for ISA ", isa_name(p->isa()),
               " but the active ISA is ", isa_name(active_isa()), "; pack the weights again");
  keep.push_back(p);
  return p.get();
}

py::object obj(const py::array& a) { return a ? py::object(a) : py::object(py::none()); }

const char* const kCellOps[3] = {"rnn_cell", "lstm_cell", "gru_cell"};

}  // namespace

void bind_rnn(py::module_& m) {
  m.def("rnn_layers_forward", [](int mode, py::handle x_, py::list dirs, py::handle lengths_, bool relu,
                                 bool keep_saved) {
    py::array x = input_f32(x_, kOp, "x");
    py::array lens = lengths_.is_none() ? none_arr() : input_i64(lengths_, kOp, "lengths");
    const int count = static_cast<int>(dirs.size());
    FASTML_CHECK(count == 1 || count == 2, kOp, ": expected 1 or 2 directions, got ", count);
    std::vector<py::array> keep;
    std::vector<std::shared_ptr<PackedB>> keep_packs;
    RnnLayer L[2];
    RnnFwdIO io[2];
    py::list results;
    for (int d = 0; d < count; ++d) {
      py::tuple t = dirs[d].cast<py::tuple>();
      FASTML_CHECK(t.size() == 8 || t.size() == 10, kOp,
                   ": expected (h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse[, packed_hh, packed_hr]) per direction");
      py::array w_ih = input_f32(t[2], kOp, "w_ih"), w_hh = input_f32(t[3], kOp, "w_hh");
      py::array b_ih = opt_f32(t[4], "b_ih"), b_hh = opt_f32(t[5], "b_hh"), w_hr = opt_f32(t[6], "w_hr");
      L[d] = make_layer(mode, x, w_ih, w_hh, b_ih, b_hh, w_hr, lens, t[7].cast<bool>(), relu);
      if (t.size() == 10) {
        L[d].pk_hh = opt_pack(t[8], L[d].P, L[d].gates() * L[d].H, "packed_hh", keep_packs);
        L[d].pk_hr = opt_pack(t[9], L[d].H, L[d].P, "packed_hr", keep_packs);
        FASTML_CHECK(!L[d].pk_hr || L[d].w_hr, kOp, ": packed_hr given without w_hr");
      }
      const bool lstm = L[d].mode == RnnMode::lstm;
      const int64_t T = L[d].T, N = L[d].N, H = L[d].H, P = L[d].P;
      py::array h0 = input_f32(t[0], kOp, "h0");
      want(h0, {N, P}, "h0");
      py::array c0 = none_arr();
      if (lstm) {
        c0 = input_f32(t[1], kOp, "c0");
        want(c0, {N, H}, "c0");
      }
      py::array out = empty_f32({T, N, P}), hn = empty_f32({N, P});
      py::array cn = lstm ? empty_f32({N, H}) : none_arr();
      // without keep_saved the states (and the GRU's saved gates) need two steps only; the LSTM's and RNN's
      // gates hold the input projection of every step either way
      const int64_t S = keep_saved ? T : std::min<int64_t>(T, 2);
      const bool gru = L[d].mode == RnnMode::gru;
      py::array gates = empty_f32({gru ? S : T, N, L[d].saved_width()}), hprev = empty_f32({S, N, P});
      py::array cprev = lstm ? empty_f32({S, N, H}) : none_arr();
      py::array ms = L[d].w_hr ? empty_f32({S, N, H}) : none_arr();
      RnnSaved sv{f32(gates), f32(hprev), lstm ? f32(cprev) : nullptr, L[d].w_hr ? f32(ms) : nullptr};
      sv.ring = !keep_saved;
      io[d] = RnnFwdIO{cf32(h0), lstm ? cf32(c0) : nullptr, f32(out), f32(hn), lstm ? f32(cn) : nullptr, sv};
      for (auto* k : {&w_ih, &w_hh, &b_ih, &b_hh, &w_hr, &h0, &c0}) keep.push_back(*k);
      for (auto* k : {&gates, &hprev, &cprev, &ms}) keep.push_back(*k);
      py::object saved = keep_saved ? py::object(py::make_tuple(gates, hprev, obj(cprev), obj(ms))) : py::none();
      results.append(py::make_tuple(out, hn, obj(cn), saved));
    }
    {
      py::gil_scoped_release nogil;
      rnn_layers_forward(count, L, io);
    }
    return results;
  }, py::arg("mode"), py::arg("x"), py::arg("dirs"), py::arg("lengths"), py::arg("relu"), py::arg("keep") = true);

  // One cell step without saved state (the inference hot path of lstm_cell / gru_cell / rnn_cell):
  // x (N, I), h (N, H), c (N, H) (LSTM) -> h' (LSTM: (h', c')). Validates like the Python wrapper.
  m.def("rnn_cell_forward", [](int mode, py::handle x_, py::handle h_, py::handle c_, py::handle w_ih_,
                               py::handle w_hh_, py::handle b_ih_, py::handle b_hh_, bool relu) -> py::object {
    FASTML_CHECK(mode >= 0 && mode <= 2, kOp, ": unknown mode ", mode);
    const char* op = kCellOps[mode];
    py::array x = input_f32(x_, op, "input"), w_ih = input_f32(w_ih_, op, "w_ih"), w_hh = input_f32(w_hh_, op, "w_hh");
    FASTML_CHECK(x.ndim() == 2, op, ": expected input of shape (N, input_size), got ", shape_str(x));
    RnnLayer L;
    L.mode = static_cast<RnnMode>(mode);
    const int64_t G = L.gates();
    L.T = 1;
    L.N = x.shape(0);
    L.I = x.shape(1);
    FASTML_CHECK(w_ih.ndim() == 2 && w_ih.shape(0) % G == 0 && w_ih.shape(0) > 0, op, ": expected w_ih of shape (",
                 G, "*hidden_size, ", L.I, "), got ", shape_str(w_ih));
    L.H = L.P = w_ih.shape(0) / G;
    want(w_ih, {G * L.H, L.I}, "w_ih", op);
    want(w_hh, {G * L.H, L.H}, "w_hh", op);
    FASTML_CHECK(b_ih_.is_none() == b_hh_.is_none(), op, ": expected both b_ih and b_hh or neither");
    py::array b_ih = opt_f32(b_ih_, "b_ih"), b_hh = opt_f32(b_hh_, "b_hh");
    if (b_ih) {
      want(b_ih, {G * L.H}, "b_ih", op);
      want(b_hh, {G * L.H}, "b_hh", op);
    }
    const bool lstm = L.mode == RnnMode::lstm;
    py::array h = input_f32(h_, op, lstm ? "h" : "hx");
    want(h, {L.N, L.H}, lstm ? "h" : "hx", op);
    py::array c = lstm ? input_f32(c_, op, "c") : none_arr();
    if (lstm) want(c, {L.N, L.H}, "c", op);
    L.relu = relu;
    L.x = cf32(x);
    L.w_ih = cf32(w_ih);
    L.w_hh = cf32(w_hh);
    L.b_ih = ptr_or_null(b_ih);
    L.b_hh = ptr_or_null(b_hh);
    py::array out = empty_f32({L.N, L.H}), hn = empty_f32({L.N, L.H});
    py::array cn = lstm ? empty_f32({L.N, L.H}) : none_arr();
    py::array gates = empty_f32({L.N, L.saved_width()}), hprev = empty_f32({L.N, L.H});
    py::array cprev = lstm ? empty_f32({L.N, L.H}) : none_arr();
    RnnSaved s;
    s.gates = f32(gates);
    s.hprev = f32(hprev);
    s.cprev = lstm ? f32(cprev) : nullptr;
    s.ring = true;  // one step, nothing kept
    const float* ph = cf32(h);
    const float* pc = lstm ? cf32(c) : nullptr;
    float *pout = f32(out), *phn = f32(hn), *pcn = lstm ? f32(cn) : nullptr;
    {
      py::gil_scoped_release nogil;
      rnn_layer_forward(L, ph, pc, pout, phn, pcn, s);
    }
    if (lstm) return py::make_tuple(hn, cn);
    return std::move(hn);
  });

  m.def("rnn_layers_backward", [](int mode, py::handle x_, py::list dirs, py::handle lengths_, bool relu) {
    py::array x = input_f32(x_, kOp, "x");
    py::array lens = lengths_.is_none() ? none_arr() : input_i64(lengths_, kOp, "lengths");
    const int count = static_cast<int>(dirs.size());
    FASTML_CHECK(count == 1 || count == 2, kOp, ": expected 1 or 2 directions, got ", count);
    std::vector<py::array> keep;
    RnnLayer L[2];
    RnnBwdIO io[2];
    py::list results;
    for (int d = 0; d < count; ++d) {
      py::tuple t = dirs[d].cast<py::tuple>();
      FASTML_CHECK(t.size() == 9, kOp,
                   ": expected (dy, dh_n, dc_n, w_ih, w_hh, w_hr, reverse, has_bias, saved) per direction");
      py::array w_ih = input_f32(t[3], kOp, "w_ih"), w_hh = input_f32(t[4], kOp, "w_hh");
      py::array w_hr = opt_f32(t[5], "w_hr");
      L[d] = make_layer(mode, x, w_ih, w_hh, none_arr(), none_arr(), w_hr, lens, t[6].cast<bool>(), relu);
      const RnnLayer& l = L[d];
      const bool lstm = l.mode == RnnMode::lstm, has_bias = t[7].cast<bool>();
      py::tuple saved = t[8].cast<py::tuple>();
      FASTML_CHECK(saved.size() == 4, kOp, ": expected the saved tuple of the forward");
      py::array gates = inplace_f32(saved[0], kOp, "saved gates"), hprev = inplace_f32(saved[1], kOp, "saved hprev");
      want(gates, {l.T, l.N, l.saved_width()}, "saved gates");
      want(hprev, {l.T, l.N, l.P}, "saved hprev");
      py::array cprev = none_arr(), ms = none_arr();
      if (lstm) {
        cprev = inplace_f32(saved[2], kOp, "saved cprev");
        want(cprev, {l.T, l.N, l.H}, "saved cprev");
      }
      if (l.w_hr) {
        ms = inplace_f32(saved[3], kOp, "saved ms");
        want(ms, {l.T, l.N, l.H}, "saved ms");
      }
      py::array dy = opt_f32(t[0], "grad_output"), dhn = opt_f32(t[1], "grad_h_n");
      py::array dcn = lstm ? opt_f32(t[2], "grad_c_n") : none_arr();
      if (dy) want(dy, {l.T, l.N, l.P}, "grad_output");
      if (dhn) want(dhn, {l.N, l.P}, "grad_h_n");
      if (dcn) want(dcn, {l.N, l.H}, "grad_c_n");
      const int64_t GH = l.gates() * l.H;
      py::array dx = empty_f32({l.T, l.N, l.I}), dh0 = empty_f32({l.N, l.P});
      py::array dc0 = lstm ? empty_f32({l.N, l.H}) : none_arr();
      py::array dw_ih = empty_f32({GH, l.I}), dw_hh = empty_f32({GH, l.P});
      py::array db_ih = has_bias ? empty_f32({GH}) : none_arr(), db_hh = has_bias ? empty_f32({GH}) : none_arr();
      py::array dw_hr = l.w_hr ? empty_f32({l.P, l.H}) : none_arr();
      auto p = [](py::array& a) { return a ? f32(a) : nullptr; };
      io[d] = RnnBwdIO{RnnSaved{f32(gates), f32(hprev), lstm ? f32(cprev) : nullptr, l.w_hr ? f32(ms) : nullptr},
                       ptr_or_null(dy), ptr_or_null(dhn), ptr_or_null(dcn), p(dx), p(dh0), p(dc0), p(dw_ih),
                       p(dw_hh), p(db_ih), p(db_hh), p(dw_hr)};
      for (auto* k : {&w_ih, &w_hh, &w_hr, &gates, &hprev, &cprev, &ms, &dy, &dhn, &dcn}) keep.push_back(*k);
      results.append(py::make_tuple(dx, dh0, obj(dc0), dw_ih, dw_hh, obj(db_ih), obj(db_hh), obj(dw_hr)));
    }
    {
      py::gil_scoped_release nogil;
      rnn_layers_backward(count, L, io);
    }
    return results;
  });
}

}  // namespace fastml::bind
