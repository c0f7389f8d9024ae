// Plain views handed from the bindings to the C++ entries. No pybind11 types below the binding layer.
//
// Shape letters used across fastml: N batch, C channels (classes for losses), H,W spatial, T time,
// D feature/head dim, K kernel size. Layouts are row-major (C order) unless a signature says otherwise.
#pragma once
#include <cstdint>

namespace fastml {

// A reduction along one axis of a C-contiguous array, seen as (outer, dim, inner):
// element (o, d, i) lives at o*dim*inner + d*inner + i.
struct AxisView {
  int64_t outer;
  int64_t dim;
  int64_t inner;
};

// One parameter tensor of a multi-tensor optimizer step (all arrays the same length, C-contiguous).
struct ParamSlot {
  float* param;
  const float* grad;
  float* buf0;  // first state buffer (momentum / exp_avg / square_avg), may be null
  float* buf1;  // second state buffer (exp_avg_sq / grad_avg), may be null
  float* buf2;  // third state buffer (max_exp_avg_sq / momentum for rmsprop), may be null
  int64_t size;
};

}  // namespace fastml
