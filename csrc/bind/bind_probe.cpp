// Bindings of the machine-ceiling probes (csrc/ops/probe/probe.h): STREAM-style bandwidth and FMA peak.
// threads=0 means fastml's current thread count. The GIL is released while a probe runs.
#include <pybind11/pybind11.h>

#include <string>

#include "bind/arrays.h"
#include "core/check.h"
#include "core/parallel.h"
#include "ops/probe/probe.h"

namespace fastml::bind {

namespace py = pybind11;

namespace {
double stream(StreamKind kind, int64_t n, int threads, int repeats) {
  FASTML_CHECK(threads >= 0, "probe: expected threads >= 0 (0 = fastml's thread count), got ", threads);
  py::gil_scoped_release nogil;
  return probe_stream(kind, n, threads, repeats);
}
}  // namespace

void bind_probe(py::module_& m) {
  m.def("probe_triad", [](int64_t n, int threads, int repeats) { return stream(StreamKind::triad, n, threads, repeats); },
        py::arg("n_elements"), py::arg("threads") = 0, py::arg("repeats") = 5,
        "Best-of-repeats STREAM triad a = b + s*c over float32 arrays of n_elements, in GB/s "
        "(3 x 4 bytes per element; write-allocate not counted).");
  m.def("probe_copy", [](int64_t n, int threads, int repeats) { return stream(StreamKind::copy, n, threads, repeats); },
        py::arg("n_elements"), py::arg("threads") = 0, py::arg("repeats") = 5,
        "Best-of-repeats copy a = b, in GB/s (2 x 4 bytes per element).");
  m.def("probe_read", [](int64_t n, int threads, int repeats) { return stream(StreamKind::read, n, threads, repeats); },
        py::arg("n_elements"), py::arg("threads") = 0, py::arg("repeats") = 5,
        "Best-of-repeats read-only sum over b, in GB/s (4 bytes per element).");
  m.def("probe_fma_peak", [](const std::string& isa, int threads, double seconds) {
    FASTML_CHECK(threads >= 0, "probe_fma_peak: expected threads >= 0 (0 = fastml's thread count), got ", threads);
    Isa which = active_isa();
    if (isa != "active")
      FASTML_CHECK(isa_from_name(isa, &which), "probe_fma_peak: expected isa in {active, scalar, avx2, avx512}, got '",
                   isa, "'");
    py::gil_scoped_release nogil;
    return probe_fma_peak(which, threads, seconds);
  }, py::arg("isa") = "active", py::arg("threads") = 0, py::arg("seconds") = 0.2,
     "Float32 FMA throughput in GFLOP/s (12 independent FMA chains per thread, 2 flops per lane).");
  m.def("probe_triad_arrays", [](py::handle a, py::handle b, py::handle c, float s, int threads) {
    FASTML_CHECK(threads >= 0, "probe_triad_arrays: expected threads >= 0 (0 = fastml's thread count), got ", threads);
    py::array pa = inplace_f32(a, "probe_triad_arrays", "a");
    py::array pb = inplace_f32(b, "probe_triad_arrays", "b");
    py::array pc = inplace_f32(c, "probe_triad_arrays", "c");
    FASTML_CHECK(pb.size() == pa.size() && pc.size() == pa.size(), "probe_triad_arrays: expected arrays of ",
                 pa.size(), " elements, got ", pb.size(), " and ", pc.size());
    float* da = f32(pa);
    const float* db = cf32(pb);
    const float* dc = cf32(pc);
    const int64_t n = pa.size();
    py::gil_scoped_release nogil;
    probe_triad_pass(n, da, db, dc, s, threads);
  }, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("scalar") = 0.5f, py::arg("threads") = 0,
     "One STREAM triad pass a = b + scalar*c over C-contiguous float32 arrays of equal size (in place on a).");
  m.attr("probe_fma_chains") = kFmaChains;
}

}  // namespace fastml::bind
