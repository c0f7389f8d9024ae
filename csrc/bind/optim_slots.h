// Lists of arrays -> std::vector<ParamSlot> for the multi-tensor optimizer steps (bind_sgd/rmsprop/adam).
// Every array of every tensor is validated here, before the caller writes anything:
//   params[i] and each state list's [i]: inplace_f32 (C-contiguous, writeable float32, never copied) and
//   the shape of params[i]; grads[i]: input_f32 (any float32 array; a strided one is copied once, the
//   copy kept alive in `keep`) of the same shape. All lists must have the same length.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bind/arrays.h"
#include "core/view.h"

namespace fastml::bind {

struct StateList {
  const char* name;
  py::handle list;  // None -> the slot's buffer stays null
};

inline py::list as_list(py::handle obj, const char* op, const char* name) {
  FASTML_CHECK_TYPE(py::isinstance<py::list>(obj), op, ": expected a list of arrays for ", name, ", got ",
                    py::str(py::type::of(obj)).cast<std::string>());
  return py::reinterpret_borrow<py::list>(obj);
}

// Arrays updated in place (params and state buffers) must not share memory with each other, and a gradient
// must not share memory with any of them except its own parameter (exactly: p -= lr * p is well defined
// elementwise). Otherwise one update would overwrite another's input, or two threads would update the
// same element. Byte ranges are sorted once, so a call over many tensors stays O(n log n); names are
// only spelled out for the error message.
struct ByteRange {
  uintptr_t begin, end;
  int list;  // -2 grads, -1 params, k >= 0: states[k]
  size_t index;
};

inline ByteRange byte_range(const py::array& a, int list, size_t index) {
  const auto b = reinterpret_cast<uintptr_t>(a.data());
  return {b, b + static_cast<uintptr_t>(a.nbytes()), list, index};
}

inline void check_disjoint(const char* op, std::vector<ByteRange> written, const std::vector<ByteRange>& grads,
                           const std::vector<StateList>& states) {
  auto name = [&](const ByteRange& r) {
    const char* list = r.list == -2 ? "grads" : r.list == -1 ? "params" : states[r.list].name;
    return std::string(list) + "[" + std::to_string(r.index) + "]";
  };
  std::sort(written.begin(), written.end(), [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < written.size(); ++i)
    FASTML_CHECK(written[i - 1].end <= written[i].begin, op, ": expected ", name(written[i - 1]), " and ",
                 name(written[i]), " not to share memory (both are updated in place)");
  for (size_t i = 0; i < grads.size(); ++i) {
    const ByteRange& g = grads[i];
    if (g.begin == g.end) continue;
    // the written ranges are disjoint and sorted: walk back from the last one starting before g.end
    auto it = std::lower_bound(written.begin(), written.end(), g.end,
                               [](const ByteRange& w, uintptr_t v) { return w.begin < v; });
    while (it != written.begin()) {
      --it;
      if (it->end <= g.begin) break;
      const bool own_param = it->list == -1 && it->index == i && g.begin == it->begin && g.end == it->end;
      FASTML_CHECK(own_param, op, ": expected ", name(g), " not to share memory with ", name(*it),
                   " (updated in place)");
    }
  }
}

inline std::vector<ParamSlot> optim_slots(const char* op, py::handle params, py::handle grads,
                                          const std::vector<StateList>& states, std::vector<py::array>& keep) {
  const py::list ps = as_list(params, op, "params");
  const py::list gs = as_list(grads, op, "grads");
  const size_t n = ps.size();
  FASTML_CHECK(gs.size() == n, op, ": expected ", n, " arrays in grads (one per parameter), got ", gs.size());
  std::vector<py::list> ss;
  for (const StateList& s : states) {
    if (s.list.is_none()) {
      ss.emplace_back();
      continue;
    }
    ss.push_back(as_list(s.list, op, s.name));
    FASTML_CHECK(ss.back().size() == n, op, ": expected ", n, " arrays in ", s.name, " (one per parameter), got ",
                 ss.back().size());
  }
  std::vector<ParamSlot> slots(n);
  std::vector<ByteRange> written, grad_ranges;
  written.reserve(n * (1 + states.size()));
  grad_ranges.reserve(n);
  keep.reserve(keep.size() + n * (2 + states.size()));
  for (size_t i = 0; i < n; ++i) {
    const std::string idx = "[" + std::to_string(i) + "]";
    py::array p = inplace_f32(ps[i], op, ("params" + idx).c_str());
    py::array g = input_f32(gs[i], op, ("grads" + idx).c_str());
    FASTML_CHECK(shape_of(g) == shape_of(p), op, ": expected grads", idx, " of shape ", shape_str(p),
                 " (its parameter's), got ", shape_str(g));
    ParamSlot& slot = slots[i];
    slot.param = f32(p);
    slot.grad = cf32(g);
    slot.size = static_cast<int64_t>(p.size());
    float** bufs[3] = {&slot.buf0, &slot.buf1, &slot.buf2};
    for (size_t k = 0; k < states.size(); ++k) {
      *bufs[k] = nullptr;
      if (states[k].list.is_none()) continue;
      const std::string name = states[k].name + idx;
      py::array b = inplace_f32(ss[k][i], op, name.c_str());
      FASTML_CHECK(shape_of(b) == shape_of(p), op, ": expected ", name, " of shape ", shape_str(p),
                   " (its parameter's), got ", shape_str(b));
      *bufs[k] = f32(b);
      if (b.size() > 0) written.push_back(byte_range(b, static_cast<int>(k), i));
      keep.push_back(std::move(b));
    }
    if (p.size() > 0) written.push_back(byte_range(p, -1, i));
    grad_ranges.push_back(byte_range(g, -2, i));
    keep.push_back(std::move(p));
    keep.push_back(std::move(g));
  }
  check_disjoint(op, std::move(written), grad_ranges, states);
  return slots;
}

}  // namespace fastml::bind
