#include "bind/arrays.h"

#include "bind/array_pool.h"

namespace fastml::bind {

std::string dims_str(const std::vector<py::ssize_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

std::string shape_str(const py::array& a) { return dims_str(shape_of(a)); }

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

namespace {
py::array as_array(const py::handle& obj, const char* op, const char* arg) {
  FASTML_CHECK_TYPE(py::isinstance<py::array>(obj), op, ": expected a numpy array for ", arg, ", got ",
                    py::str(py::type::of(obj)).cast<std::string>());
  return py::reinterpret_borrow<py::array>(obj);
}
}  // namespace

py::array input_f32(const py::handle& obj, const char* op, const char* arg) {
  py::array a = as_array(obj, op, arg);
  FASTML_CHECK_TYPE(a.dtype().num() == kNpyFloat32, op, ": expected float32 for ", arg, ", got ", dtype_str(a));
  if (!(a.flags() & py::array::c_style)) a = py::array::ensure(a, py::array::c_style);
  return a;
}

py::array input_i64(const py::handle& obj, const char* op, const char* arg) {
  py::array a = as_array(obj, op, arg);
  const auto dt = a.dtype();
  FASTML_CHECK_TYPE(dt.kind() == 'i' && dt.itemsize() == 8, op, ": expected int64 for ", arg, ", got ",
                    dtype_str(a));
  if (!(a.flags() & py::array::c_style)) a = py::array::ensure(a, py::array::c_style);
  return a;
}

py::array inplace_f32(const py::handle& obj, const char* op, const char* arg) {
  py::array a = as_array(obj, op, arg);
  FASTML_CHECK_TYPE(a.dtype().num() == kNpyFloat32, op, ": expected float32 for ", arg, " (updated in place), got ",
                    dtype_str(a));
  FASTML_CHECK(a.flags() & py::array::c_style, op, ": expected a C-contiguous array for ", arg,
               " (updated in place, so it cannot be copied), got a strided view of shape ", shape_str(a));
  FASTML_CHECK(a.writeable(), op, ": expected a writeable array for ", arg, ", got a read-only one");
  return a;
}

py::array output_f32(const py::handle& out, const std::vector<py::ssize_t>& shape, const char* op) {
  if (out.is_none()) return empty_f32(shape);
  py::array a = inplace_f32(out, op, "out");
  bool same = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; same && i < shape.size(); ++i) same = a.shape(i) == shape[i];
  FASTML_CHECK(same, op, ": expected out of shape ", dims_str(shape), ", got ", shape_str(a));
  return a;
}

namespace {

// [lo, hi): the bytes a's elements span, from its strides (negative strides reach below data(), broadcast
// axes add nothing, gaps between rows count). Not nbytes(), which a broadcast view overstates (a false
// overlap with memory it never touches) and a view with gaps or negative strides understates.
struct Span {
  uintptr_t lo, hi;
};
Span byte_span(const py::array& a) {
  Span s{reinterpret_cast<uintptr_t>(a.data()), reinterpret_cast<uintptr_t>(a.data())};
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    const py::ssize_t reach = a.strides(d) * (a.shape(d) - 1);
    if (reach < 0) s.lo -= static_cast<uintptr_t>(-reach);
    else s.hi += static_cast<uintptr_t>(reach);
  }
  s.hi += static_cast<uintptr_t>(a.itemsize());
  return s;
}

}  // namespace

bool partially_overlaps(const py::array& a, const py::array& b) {
  if (a.size() == 0 || b.size() == 0) return false;
  const Span sa = byte_span(a), sb = byte_span(b);
  if (a.data() == b.data() && sa.lo == sb.lo && sa.hi == sb.hi) return false;
  return sa.lo < sb.hi && sb.lo < sa.hi;
}

bool shares_memory(const py::array& a, const py::array& b) {
  if (a.size() == 0 || b.size() == 0) return false;
  return partially_overlaps(a, b) || a.data() == b.data();
}

}  // namespace fastml::bind
