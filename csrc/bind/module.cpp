// fastml._C: the compiled CPU module. Each op's binding lives in bind_<op>.cpp and is registered by
// the generated FASTML_BIND_ALL_OPS list (cmake/fastml_ops.cmake). This file holds the runtime
// introspection: ISA detection/override, variants, threads, OpenMP runtime, build information.
#include <omp.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>

#if defined(__unix__)
#include <dlfcn.h>
#endif

#include "bind/array_pool.h"
#include "bind/errors.h"
#include "core/check.h"
#include "core/isa.h"
#include "core/parallel.h"
#include "fastml_registry.h"

namespace py = pybind11;

namespace {

std::vector<std::string> split_words(const char* s) {
  std::vector<std::string> out;
  std::string cur;
  for (const char* p = s; *p; ++p) {
    if (*p == ' ') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += *p;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string openmp_library() {
#if defined(__unix__)
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&omp_get_max_threads), &info) && info.dli_fname) return info.dli_fname;
#endif
  return "unknown";
}

fastml::Isa parse_isa(const std::string& name) {
  fastml::Isa isa;
  FASTML_CHECK(fastml::isa_from_name(name, &isa), "expected an ISA name in {scalar, avx2, avx512}, got '", name, "'");
  return isa;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastml compiled CPU kernels (runtime-dispatched scalar / AVX2 / AVX-512, OpenMP)";

  fastml::bind::register_error_translators();

  m.attr("__version__") = FASTML_VERSION;

  m.def("ops", [] {
    std::vector<std::string> v;
    for (const auto* e = fastml::kOpVariants; e->op; ++e) v.emplace_back(e->op);
    return v;
  }, "Names of the compiled ops (one per csrc/ops/<op> folder).");
  m.def("variants", [](const std::string& op) {
    for (const auto* e = fastml::kOpVariants; e->op; ++e)
      if (op == e->op) return split_words(e->isas);
    throw fastml::ValueError("variants: unknown op '" + op + "'");
  }, py::arg("op"), "ISA variants compiled for an op, e.g. ['scalar', 'avx2', 'avx512'].");

  m.def("detected_isa", [] { return std::string(fastml::isa_name(fastml::detected_isa())); });
  m.def("get_isa", [] { return std::string(fastml::isa_name(fastml::active_isa())); });
  m.def("set_isa", [](const std::string& name) { fastml::set_active_isa(parse_isa(name)); }, py::arg("isa"));
  m.def("isa_supported", [](const std::string& name) { return fastml::isa_supported(parse_isa(name)); },
        py::arg("isa"));
  m.def("cpu_info", [] {
    const auto& c = fastml::cpu_info();
    py::dict d;
    d["vendor"] = c.vendor;
    d["model"] = c.model;
    py::dict f;
    f["sse4_2"] = c.sse42; f["avx"] = c.avx; f["avx2"] = c.avx2; f["fma"] = c.fma; f["f16c"] = c.f16c;
    f["avx512f"] = c.avx512f; f["avx512dq"] = c.avx512dq; f["avx512bw"] = c.avx512bw; f["avx512vl"] = c.avx512vl;
    f["os_ymm"] = c.os_ymm; f["os_zmm"] = c.os_zmm;
    d["features"] = f;
    d["l1d_bytes"] = c.l1d_bytes;
    d["l2_bytes"] = c.l2_bytes;
    d["l3_bytes"] = c.l3_bytes;
    d["physical_cores"] = fastml::physical_cores();
    return d;
  });

  m.def("empty_f32", [](const std::vector<py::ssize_t>& shape) { return fastml::bind::empty_f32(shape); },
        py::arg("shape"), "An uninitialised float32 array from the module's array cache (bind/array_pool.h).");
  m.def("array_cache_info", [] {
    const auto st = fastml::bind::array_cache_stats();
    py::dict d;
    d["free_bytes"] = st.free_bytes;
    d["free_blocks"] = st.free_blocks;
    d["limit_bytes"] = st.limit_bytes;
    return d;
  }, "Free blocks held by the array cache and its limit (FASTML_ARRAY_CACHE_MB).");
  m.def("array_cache_clear", &fastml::bind::array_cache_clear, "Frees the array cache's free blocks.");

  m.def("get_num_threads", &fastml::get_num_threads);
  m.def("set_num_threads", &fastml::set_num_threads, py::arg("n"));
  m.def("openmp_info", [] {
    py::dict d;
    d["library"] = openmp_library();
    d["version"] = _OPENMP;
    d["max_threads"] = omp_get_max_threads();
    return d;
  });
  m.def("build_info", [] {
    py::dict d;
    d["version"] = FASTML_VERSION;
    d["compiler"] = FASTML_COMPILER;
#if defined(FASTML_X86)
    d["x86"] = true;
#else
    d["x86"] = false;
#endif
    return d;
  });

  FASTML_BIND_ALL_OPS(m);
}
