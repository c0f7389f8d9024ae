// Translation of fastml's C++ exceptions into Python ones, shared by fastml._C and fastml._C_cuda:
// fastml::TypeError -> TypeError, fastml::ValueError -> ValueError (check.h).
#pragma once
#include <pybind11/pybind11.h>

#include <exception>

#include "core/check.h"

namespace fastml::bind {

inline void register_error_translators() {
  pybind11::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fastml::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const fastml::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
}

}  // namespace fastml::bind
