// fastml._C_cuda: the optional CUDA module. Each op family's binding lives in cuda/bind_<op>_cuda.cpp
// and is registered through the generated FASTML_BIND_ALL_CUDA_OPS list (cmake/fastml_ops.cmake).
// This file holds exception translation, device_info() and ops(). The user-facing Python layer is
// fastml/_cuda_ops.py (reads __cuda_array_interface__, validates, allocates, passes raw pointers here).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bind/errors.h"
#include "core/check.h"
#include "cuda_api.h"
#include "fastml_cuda_registry.h"

namespace py = pybind11;

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "fastml CUDA kernels (raw device pointers; use fastml.functional / fastml.optim with CUDA arrays)";

  fastml::bind::register_error_translators();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fastml::cuda::CudaError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  m.def("ops", [] {
    std::vector<std::string> v;
    for (const char* const* e = fastml::cuda::kCudaOps; *e; ++e) v.emplace_back(*e);
    return v;
  }, "Names of the op families compiled into the CUDA module.");

  m.def("device_info", [] {
    fastml::cuda::DeviceInfo info;
    {
      py::gil_scoped_release nogil;  // the first runtime call initialises the driver (can take a while)
      info = fastml::cuda::device_info();
    }
    py::dict d;
    d["device_count"] = info.device_count;
    d["current_device"] = info.current_device;
    d["driver_version"] = info.driver_version;
    d["runtime_version"] = info.runtime_version;
    py::list devs;
    for (const auto& p : info.devices) {
      py::dict dd;
      dd["index"] = p.index;
      dd["name"] = p.name;
      dd["compute_capability"] = py::make_tuple(p.major, p.minor);
      dd["total_memory"] = p.total_memory;
      dd["multiprocessors"] = p.multiprocessors;
      devs.append(dd);
    }
    d["devices"] = devs;
    const auto& cur = info.devices.at(static_cast<size_t>(info.current_device));
    d["name"] = cur.name;
    d["compute_capability"] = py::make_tuple(cur.major, cur.minor);
    d["total_memory"] = cur.total_memory;
    return d;
  }, "CUDA devices, driver and runtime versions; raises RuntimeError when no driver or GPU is present.");

  FASTML_BIND_ALL_CUDA_OPS(m);
}
