// FASTML_CHECK(cond, parts...): throws fastml::ValueError with the concatenated message when cond is
// false. The bindings translate ValueError -> Python ValueError and TypeError -> Python TypeError.
// Messages follow "op: expected ..., got ..." so the user sees what was wanted and what arrived.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace fastml {

struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct TypeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
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
