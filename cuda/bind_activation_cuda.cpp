// pybind11 side of the CUDA activations: raw device pointers (ints) + sizes + stream in, nothing out.
// All validation of the user's arrays happens in fastml/_cuda_ops.py before this is called; here the
// GIL is released around the (asynchronous) launch.
#include <pybind11/pybind11.h>

#include "activation.cuh"

namespace py = pybind11;

namespace fastml::cuda {

void bind_activation_cuda(py::module_& m) {
  m.def("activation_forward", [](int kind, std::uintptr_t x, std::uintptr_t y, int64_t n, float param, int device,
                                 std::uintptr_t stream) {
    py::gil_scoped_release nogil;
    activation_forward_cuda(kind, x, y, n, param, device, stream);
  }, py::arg("kind"), py::arg("x"), py::arg("y"), py::arg("n"), py::arg("param"), py::arg("device"), py::arg("stream"),
     "y[0:n] = f(x[0:n]) on the GPU (device pointers as ints; stream as an int cudaStream_t).");
  m.def("activation_backward", [](int kind, std::uintptr_t grad_output, std::uintptr_t saved,
                                  std::uintptr_t grad_input, int64_t n, float param, int device,
                                  std::uintptr_t stream) {
    py::gil_scoped_release nogil;
    activation_backward_cuda(kind, grad_output, saved, grad_input, n, param, device, stream);
  }, py::arg("kind"), py::arg("grad_output"), py::arg("saved"), py::arg("grad_input"), py::arg("n"),
     py::arg("param"), py::arg("device"), py::arg("stream"),
     "grad_input[0:n] = grad_output * f'(saved) on the GPU (saved = input or output, see ActKind).");
}

}  // namespace fastml::cuda
