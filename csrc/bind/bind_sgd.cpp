// Binding of the SGD step: lists of arrays -> ParamSlots (all validated first), GIL released.
#include <pybind11/pybind11.h>

#include "bind/optim_slots.h"
#include "ops/sgd/sgd.h"

namespace fastml::bind {

void bind_sgd(py::module_& m) {
  m.def("sgd_step", [](py::handle params, py::handle grads, py::handle momentum_buffers, double lr, double momentum,
                       double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step) {
    const char* op = "sgd_step";
    FASTML_CHECK(momentum == 0.0 || !momentum_buffers.is_none(), op, ": momentum > 0 requires momentum_buffers");
    const py::handle bufs = momentum != 0.0 ? momentum_buffers : py::handle(Py_None);
    std::vector<py::array> keep;
    const std::vector<ParamSlot> slots = optim_slots(op, params, grads, {{"momentum_buffers", bufs}}, keep);
    const SgdHyper h{lr, momentum, dampening, weight_decay, nesterov, maximize, first_step};
    py::gil_scoped_release nogil;
    sgd_step(slots, h);
  }, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("lr"), py::arg("momentum"),
     py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("maximize"), py::arg("first_step"),
     "SGD step over lists of float32 arrays, in place (fastml.optim.functional.sgd_step).");
}

}  // namespace fastml::bind
