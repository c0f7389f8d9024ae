// Binding of the RMSprop step: lists of arrays -> ParamSlots (all validated first), GIL released.
#include <pybind11/pybind11.h>

#include "bind/optim_slots.h"
#include "ops/rmsprop/rmsprop.h"

namespace fastml::bind {

void bind_rmsprop(py::module_& m) {
  m.def("rmsprop_step", [](py::handle params, py::handle grads, py::handle square_avgs, py::handle momentum_buffers,
                           py::handle grad_avgs, double lr, double alpha, double eps, double weight_decay,
                           double momentum, bool centered, bool maximize) {
    const char* op = "rmsprop_step";
    FASTML_CHECK(!square_avgs.is_none(), op, ": square_avgs is required");
    FASTML_CHECK(momentum <= 0.0 || !momentum_buffers.is_none(), op, ": momentum > 0 requires momentum_buffers");
    FASTML_CHECK(!centered || !grad_avgs.is_none(), op, ": centered=True requires grad_avgs");
    const py::handle bufs = momentum > 0.0 ? momentum_buffers : py::handle(Py_None);
    const py::handle gavg = centered ? grad_avgs : py::handle(Py_None);
    std::vector<py::array> keep;
    const std::vector<ParamSlot> slots = optim_slots(
        op, params, grads, {{"square_avgs", square_avgs}, {"grad_avgs", gavg}, {"momentum_buffers", bufs}}, keep);
    const RmspropHyper h{lr, alpha, eps, weight_decay, momentum, centered, maximize};
    py::gil_scoped_release nogil;
    rmsprop_step(slots, h);
  }, py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("momentum_buffers"),
     py::arg("grad_avgs"), py::arg("lr"), py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"),
     py::arg("momentum"), py::arg("centered"), py::arg("maximize"),
     "RMSprop step over lists of float32 arrays, in place (fastml.optim.functional.rmsprop_step).");
}

}  // namespace fastml::bind
