# The one op registry. Each line adds an op's C++ entry, its per-ISA kernels (each compiled with its own
# flags), its binding, its CUDA source, and the variant list that fastml._C.variants(op) reports.
#
#   fastml_add_op(<op> [DIR <folder>] ISAS scalar [avx2] [avx512] [CUDA])
#
# expects csrc/ops/<op>/<op>.cpp (or <folder>/<op>.cpp when DIR is given, e.g. the GEMM engine in csrc/gemm), csrc/ops/<op>/<op>_<isa>.cpp, csrc/bind/bind_<op>.cpp and, with CUDA,
# cuda/<op>.cu exporting bind_<op>_cuda(module&) through cuda/bind_cuda.cpp.

function(fastml_add_op op)
  cmake_parse_arguments(ARG "CUDA" "DIR" "ISAS" ${ARGN})
  set(dir csrc/ops/${op})
  if(ARG_DIR)
    set(dir ${ARG_DIR})
  endif()
  set(srcs ${dir}/${op}.cpp csrc/bind/bind_${op}.cpp)
  set(built "")
  foreach(isa IN LISTS ARG_ISAS)
    if(NOT isa STREQUAL "scalar" AND NOT FASTML_X86)
      continue()
    endif()
    list(APPEND srcs ${dir}/${op}_${isa}.cpp)
    set_source_files_properties(${dir}/${op}_${isa}.cpp PROPERTIES COMPILE_OPTIONS "${FASTML_FLAGS_${isa}}")
    list(APPEND built ${isa})
  endforeach()
  list(JOIN built " " built_str)
  set(FASTML_CPU_SOURCES ${FASTML_CPU_SOURCES} ${srcs} PARENT_SCOPE)
  set(FASTML_BIND_OPS ${FASTML_BIND_OPS} ${op} PARENT_SCOPE)
  set(FASTML_VARIANT_LINES "${FASTML_VARIANT_LINES}    {\"${op}\", \"${built_str}\"},\n" PARENT_SCOPE)
  if(ARG_CUDA)
    set(FASTML_CUDA_SOURCES ${FASTML_CUDA_SOURCES} cuda/${op}.cu PARENT_SCOPE)
    set(FASTML_CUDA_OPS ${FASTML_CUDA_OPS} ${op} PARENT_SCOPE)
  endif()
endfunction()

fastml_add_op(activation ISAS scalar avx2 avx512)
fastml_add_op(gemm DIR csrc/gemm ISAS scalar avx2 avx512)

# Assemble the generated registry headers (declarations + calls) used by the module files.
set(FASTML_BIND_DECLS "")
set(FASTML_BIND_CALLS "")
foreach(op IN LISTS FASTML_BIND_OPS)
  string(APPEND FASTML_BIND_DECLS "void bind_${op}(pybind11::module_& m);\n")
  string(APPEND FASTML_BIND_CALLS "  ::fastml::bind::bind_${op}(m); \\\n")
endforeach()
set(FASTML_CUDA_BIND_DECLS "")
set(FASTML_CUDA_BIND_CALLS "")
set(FASTML_CUDA_OP_NAMES "")
foreach(op IN LISTS FASTML_CUDA_OPS)
  string(APPEND FASTML_CUDA_BIND_DECLS "void bind_${op}_cuda(pybind11::module_& m);\n")
  string(APPEND FASTML_CUDA_BIND_CALLS "  ::fastml::cuda::bind_${op}_cuda(m); \\\n")
  string(APPEND FASTML_CUDA_OP_NAMES "\"${op}\", ")
endforeach()
