// Array -> pointer conversion and validation shared by all bindings. One helper per kind of check, so
// every op words its errors the same way: "<op>: expected <what> for <arg>, got <what>".
// Nothing here does maths; kernels never see pybind11 types.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/check.h"

namespace fastml::bind {

namespace py = pybind11;

inline constexpr int kNpyFloat32 = 11;  // NPY_FLOAT

std::string shape_str(const py::array& a);
// "(2, 3)", "(5,)", "()": a shape as NumPy prints it.
std::string dims_str(const std::vector<py::ssize_t>& shape);
std::string dtype_str(const py::array& a);

// A float32 input: any numpy float32 array; a non-C-contiguous one is copied once here.
py::array input_f32(const py::handle& obj, const char* op, const char* arg);

// An int64 input (class indices): any integer array is accepted only if it is int64; copied if strided.
py::array input_i64(const py::handle& obj, const char* op, const char* arg);

// An array that will be written in place (optimizer state, out=): must be a C-contiguous, writeable
// float32 numpy array. Never copied: an update must not land in a temporary.
py::array inplace_f32(const py::handle& obj, const char* op, const char* arg);

// `out` for a result shaped like `shape`: None -> a new float32 array; otherwise inplace_f32 plus a shape check.
py::array output_f32(const py::handle& out, const std::vector<py::ssize_t>& shape, const char* op);

std::vector<py::ssize_t> shape_of(const py::array& a);

// True when the byte ranges of a and b overlap without being the same buffer (partial aliasing, which
// no kernel supports). Exact aliasing (same pointer, same span) is allowed where an op says so. The ranges
// come from the strides (np.may_share_memory's bounds test): a broadcast view spans only the memory it
// reads, a view with negative strides or gaps all of it; two views interleaved in one buffer count as
// overlapping.
bool partially_overlaps(const py::array& a, const py::array& b);

// True when a and b share any byte (exact aliasing included): for kernels that support no aliasing at all.
bool shares_memory(const py::array& a, const py::array& b);

inline float* f32(py::array& a) { return static_cast<float*>(a.mutable_data()); }
inline const float* cf32(const py::array& a) { return static_cast<const float*>(a.data()); }

}  // namespace fastml::bind
