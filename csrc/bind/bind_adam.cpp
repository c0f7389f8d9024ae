// Binding of the Adam/AdamW step: lists of arrays -> ParamSlots (all validated first), GIL released.
#include <pybind11/pybind11.h>

#include "bind/optim_slots.h"
#include "ops/adam/adam.h"

namespace fastml::bind {

void bind_adam(py::module_& m) {
  m.def("adam_step", [](py::handle params, py::handle grads, py::handle exp_avgs, py::handle exp_avg_sqs,
                        py::handle max_exp_avg_sqs, int64_t step, double lr, double beta1, double beta2, double eps,
                        double weight_decay, bool amsgrad, bool decoupled, bool maximize) {
    const char* op = decoupled ? "adamw_step" : "adam_step";
    FASTML_CHECK(exp_avgs.ptr() != Py_None && exp_avg_sqs.ptr() != Py_None, op,
                 ": exp_avgs and exp_avg_sqs are required");
    FASTML_CHECK(!amsgrad || !max_exp_avg_sqs.is_none(), op, ": amsgrad=True requires max_exp_avg_sqs");
    const py::handle vmax = amsgrad ? max_exp_avg_sqs : py::handle(Py_None);
    std::vector<py::array> keep;
    const std::vector<ParamSlot> slots = optim_slots(
        op, params, grads, {{"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}, {"max_exp_avg_sqs", vmax}}, keep);
    const AdamHyper h{step, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled, maximize};
    py::gil_scoped_release nogil;
    adam_step(slots, h);
  }, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"),
     py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
     py::arg("amsgrad"), py::arg("decoupled"), py::arg("maximize"),
     "Adam/AdamW step over lists of float32 arrays, in place (fastml.optim.functional.adam_step).");
}

}  // namespace fastml::bind
