// pybind11 side of the CUDA softmax: raw device pointers (ints) + (outer, dim, inner) + stream.
// Validation of the user's arrays happens in fastml/_cuda_ops.py; the GIL is released around the launch.
#include <pybind11/pybind11.h>

#include "softmax.cuh"

namespace py = pybind11;

namespace fastml::cuda {

void bind_softmax_cuda(py::module_& m) {
  m.def("softmax_forward", [](std::uintptr_t input, std::uintptr_t out, int64_t outer, int64_t dim, int64_t inner,
                              bool log, int device, std::uintptr_t stream) {
    py::gil_scoped_release nogil;
    softmax_forward_cuda(input, out, outer, dim, inner, log, device, stream);
  }, py::arg("input"), py::arg("out"), py::arg("outer"), py::arg("dim"), py::arg("inner"), py::arg("log"),
     py::arg("device"), py::arg("stream"), "(log_)softmax over the middle axis of an (outer, dim, inner) C-contiguous float32 array.");
  m.def("softmax_backward", [](std::uintptr_t grad_output, std::uintptr_t output, std::uintptr_t grad_input,
                               int64_t outer, int64_t dim, int64_t inner, bool log, int device, std::uintptr_t stream) {
    py::gil_scoped_release nogil;
    softmax_backward_cuda(grad_output, output, grad_input, outer, dim, inner, log, device, stream);
  }, py::arg("grad_output"), py::arg("output"), py::arg("grad_input"), py::arg("outer"), py::arg("dim"),
     py::arg("inner"), py::arg("log"), py::arg("device"), py::arg("stream"),
     "Gradient of (log_)softmax from its output, same layout as softmax_forward.");
}

}  // namespace fastml::cuda
