// Bindings of the pooling kernels. fastml/functional/pool.py validates the arguments and computes the
// output sizes (fastml/_pool_args.py, torch's rules) and passes the geometry as 19 ints:
// (planes, D, H, W, oD, oH, oW, kD, kH, kW, sD, sH, sW, pD, pH, pW, dD, dH, dW). Here: array checks
// (dtype, sizes, out=, aliasing), all before anything is written; then the GIL is released. The max backward
// kernels check the indices themselves and report a bad one: with out=, in a pass that precedes every write
// (pool.h); into a new grad_input, plane by plane (the array is dropped when one is bad).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "bind/array_pool.h"
#include "bind/arrays.h"
#include "ops/pool/pool.h"

namespace fastml::bind {

namespace {

enum Kind : int { kMax = 0, kAvg = 1, kAdaptiveAvg = 2, kAdaptiveMax = 3 };

PoolGeom geom_of(const std::vector<int64_t>& v, const char* op) {
  FASTML_CHECK(v.size() == 19, op, ": expected 19 geometry values, got ", v.size());
  PoolGeom g{};
  g.planes = v[0];
  for (int i = 0; i < 3; ++i) {
    g.in[i] = v[1 + i];
    g.out[i] = v[4 + i];
    g.k[i] = v[7 + i];
    g.s[i] = v[10 + i];
    g.p[i] = v[13 + i];
    g.d[i] = v[16 + i];
    FASTML_CHECK(g.in[i] >= 1 && g.out[i] >= 0 && g.k[i] >= 1 && g.s[i] >= 1 && g.d[i] >= 1 && g.p[i] >= 0 &&
                     g.p[i] <= g.k[i] / 2,
                 op, ": invalid pooling geometry in dim ", i);
  }
  FASTML_CHECK(g.planes >= 0, op, ": expected planes >= 0, got ", g.planes);
  return g;
}

int64_t in_elems(const PoolGeom& g) { return g.planes * g.in[0] * g.in[1] * g.in[2]; }
int64_t out_elems(const PoolGeom& g) { return g.planes * g.out[0] * g.out[1] * g.out[2]; }

const char* op_name(int kind, bool backward) {
  static const char* const f[] = {"max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool"};
  static const char* const b[] = {"max_pool_backward", "avg_pool_backward", "adaptive_avg_pool_backward",
                                  "adaptive_max_pool_backward"};
  FASTML_CHECK(kind >= 0 && kind <= 3, "pool: unknown kind ", kind);
  return backward ? b[kind] : f[kind];
}

std::vector<py::ssize_t> to_shape(const std::vector<int64_t>& s) { return {s.begin(), s.end()}; }

// True when output position o of dim i has no tap inside the input (the window lies wholly in the padding,
// possible with dilation or ceil_mode): max pooling reports -inf there and, as torch, an index that may be
// outside the plane.
bool window_empty(const PoolGeom& g, int i, int64_t o) {
  for (int64_t t = 0; t < g.k[i]; ++t) {
    const int64_t pos = o * g.s[i] - g.p[i] + t * g.d[i];
    if (pos >= 0 && pos < g.in[i]) return false;
  }
  return true;
}

// Raises for the first index outside [0, plane), except (max pooling, allow_empty) for an output whose window
// has no valid tap: the backward drops that gradient. Called once the kernels have reported a bad index.
void check_indices(const py::array& idx, const PoolGeom& g, bool allow_empty, const char* op) {
  const int64_t plane = g.in[0] * g.in[1] * g.in[2];
  const int64_t* p = static_cast<const int64_t*>(idx.data());
  const int64_t n = idx.size();
  const int64_t os = g.out[0] * g.out[1] * g.out[2];
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] >= 0 && p[i] < plane) continue;
    bool empty = false;
    if (allow_empty) {
      const int64_t o = i % os, ow = o % g.out[2], oh = (o / g.out[2]) % g.out[1], od = o / (g.out[2] * g.out[1]);
      empty = window_empty(g, 0, od) || window_empty(g, 1, oh) || window_empty(g, 2, ow);
    }
    FASTML_CHECK(empty, op, ": expected indices in [0, ", plane, "), got ", p[i]);
  }
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("pool_forward", [](int kind, py::handle input, const std::vector<int64_t>& geom,
                           const std::vector<int64_t>& out_shape, bool return_indices, bool count_include_pad,
                           int64_t divisor, py::handle out) -> py::object {
    const char* op = op_name(kind, false);
    const PoolGeom g = geom_of(geom, op);
    py::array x = input_f32(input, op, "input");
    FASTML_CHECK(x.size() == in_elems(g), op, ": input of shape ", shape_str(x), " does not match the geometry");
    py::array y = output_f32(out, to_shape(out_shape), op);
    FASTML_CHECK(y.size() == out_elems(g), op, ": output shape does not match the geometry");
    FASTML_CHECK(!shares_memory(x, y), op, ": out must not share memory with input");
    const bool want_idx = return_indices && (kind == kMax || kind == kAdaptiveMax);
    py::array idx;
    if (want_idx) idx = empty_i64(to_shape(out_shape));
    const float* px = cf32(x);
    float* py_ = f32(y);
    int64_t* pi = want_idx ? static_cast<int64_t*>(idx.mutable_data()) : nullptr;
    const AvgMode mode{count_include_pad, divisor};
    {
      py::gil_scoped_release nogil;
      switch (kind) {
        case kMax: max_pool_forward(g, px, py_, pi); break;
        case kAvg: avg_pool_forward(g, mode, px, py_); break;
        case kAdaptiveAvg: adaptive_avg_pool_forward(g, px, py_); break;
        default: adaptive_max_pool_forward(g, px, py_, pi); break;
      }
    }
    if (want_idx) return py::make_tuple(y, idx);
    return std::move(y);
  }, py::arg("kind"), py::arg("input"), py::arg("geom"), py::arg("out_shape"), py::arg("return_indices") = false,
     py::arg("count_include_pad") = true, py::arg("divisor") = 0, py::arg("out") = py::none());

  m.def("pool_backward", [](int kind, py::handle grad_output, py::handle input, py::handle indices,
                            const std::vector<int64_t>& geom, const std::vector<int64_t>& in_shape,
                            bool count_include_pad, int64_t divisor, py::handle out) {
    const char* op = op_name(kind, true);
    const PoolGeom g = geom_of(geom, op);
    py::array gy = input_f32(grad_output, op, "grad_output");
    FASTML_CHECK(gy.size() == out_elems(g), op, ": grad_output of shape ", shape_str(gy),
                 " does not match the forward output");
    py::array x, idx;
    bool has_x = false, has_idx = false;
    const bool is_max = kind == kMax || kind == kAdaptiveMax;
    if (is_max && !indices.is_none()) {
      idx = input_i64(indices, op, "indices");
      has_idx = true;
      FASTML_CHECK(shape_of(idx) == shape_of(gy), op, ": expected indices of shape ", shape_str(gy), ", got ",
                   shape_str(idx));
    } else if (is_max) {
      FASTML_CHECK(kind == kMax, op, ": indices are required");
      x = input_f32(input, op, "input");
      has_x = true;
      FASTML_CHECK(x.size() == in_elems(g), op, ": input of shape ", shape_str(x), " does not match the geometry");
    }
    py::array gx = output_f32(out, to_shape(in_shape), op);
    FASTML_CHECK(gx.size() == in_elems(g), op, ": grad_input shape does not match the geometry");
    FASTML_CHECK(!shares_memory(gy, gx) && (!has_x || !shares_memory(x, gx)) &&
                     (!has_idx || !shares_memory(idx, gx)), op,
                 ": out must not share memory with an input");
    const float* pg = cf32(gy);
    const float* px = has_x ? cf32(x) : nullptr;
    const int64_t* pi = has_idx ? static_cast<const int64_t*>(idx.data()) : nullptr;
    float* pgx = f32(gx);
    const AvgMode mode{count_include_pad, divisor};
    bool ok = true;
    {
      py::gil_scoped_release nogil;
      switch (kind) {
        case kMax:
        case kAdaptiveMax: ok = max_pool_backward(g, pg, pi, px, pgx, kind == kAdaptiveMax, out.is_none()); break;
        case kAvg: avg_pool_backward(g, mode, pg, pgx); break;
        default: adaptive_avg_pool_backward(g, pg, pgx); break;
      }
    }
    // a bad index: nothing written to out= (a new grad_input is dropped); find and report it
    if (!ok) check_indices(idx, g, kind == kMax, op);
    FASTML_CHECK(ok, op, ": invalid indices");
    return gx;
  }, py::arg("kind"), py::arg("grad_output"), py::arg("input"), py::arg("indices"), py::arg("geom"),
     py::arg("in_shape"), py::arg("count_include_pad") = true, py::arg("divisor") = 0, py::arg("out") = py::none());
}

}  // namespace fastml::bind
