// FASTML_CHECK(cond, parts...): throws fastml::ValueError with the concatenated message when cond is
// false. The bindings translate ValueError -> Python ValueError and TypeError -> Python TypeError.
// Messages follow "op: expected ..., got ..." so the user sees what was wanted and what arrived.
//
// Messages are built without iostreams: an iostream constructs a std::locale, and in a module that links
// libstdc++ statically (some GCC 13 toolchains do so by default) the first locale construction crashed
// (seen on an Ubuntu 24.04 image with GCC 13.3). Numbers print as an ostream would by default: integers
// in decimal, floating point as "%g" (6 significant digits).
#pragma once
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace fastml {

struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct TypeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

namespace detail {
inline void append(std::string& s, std::string_view v) { s.append(v.data(), v.size()); }
inline void append(std::string& s, const char* v) { s += v ? v : "(null)"; }
inline void append(std::string& s, char v) { s += v; }
inline void append(std::string& s, const void* v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%p", v);
  s += buf;
}
template <class T, std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, char>, int> = 0>
void append(std::string& s, T v) {
  if constexpr (std::is_same_v<T, bool>) {
    s += v ? '1' : '0';
  } else if constexpr (std::is_integral_v<T>) {
    s += std::to_string(v);
  } else {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", static_cast<double>(v));
    s += buf;
  }
}

template <class... Parts>
std::string concat(const Parts&... parts) {
  std::string s;
  (append(s, parts), ...);
  return s;
}
}  // namespace detail

}  // namespace fastml

#define FASTML_CHECK(cond, ...)                                          \
  do {                                                                   \
    if (!(cond)) throw ::fastml::ValueError(::fastml::detail::concat(__VA_ARGS__)); \
  } while (0)

#define FASTML_CHECK_TYPE(cond, ...)                                     \
  do {                                                                   \
    if (!(cond)) throw ::fastml::TypeError(::fastml::detail::concat(__VA_ARGS__)); \
  } while (0)
