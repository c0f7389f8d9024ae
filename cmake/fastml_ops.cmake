# The one op registry. Each line adds an op's C++ entry, its per-ISA kernels (each compiled with its own
# flags), its binding, its CUDA source, and the variant list that fastml._C.variants(op) reports.
#
#   fastml_add_op(<op> [DIR <folder>] ISAS scalar [avx2] [avx512] [CUDA])
#
# expects csrc/ops/<op>/<op>.cpp and csrc/ops/<op>/<op>_<isa>.cpp (or in <folder> with DIR, e.g. the GEMM
# engine in csrc/gemm), csrc/bind/bind_<op>.cpp and, with CUDA,
# cuda/<op>.cu (kernels, launches, entries; no pybind11) plus cuda/bind_<op>_cuda.cpp defining
# fastml::cuda::bind_<op>_cuda(module&), which cuda/bind_cuda.cpp calls through the generated registry.
#
#   fastml_add_cuda_op(<name>)
#
# registers a CUDA-only op family (cuda/<name>.cu + cuda/bind_<name>_cuda.cpp) that has no CPU folder.

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
    set(FASTML_CUDA_SOURCES ${FASTML_CUDA_SOURCES} cuda/${op}.cu cuda/bind_${op}_cuda.cpp PARENT_SCOPE)
    set(FASTML_CUDA_OPS ${FASTML_CUDA_OPS} ${op} PARENT_SCOPE)
  endif()
endfunction()

function(fastml_add_cuda_op op)
  set(FASTML_CUDA_SOURCES ${FASTML_CUDA_SOURCES} cuda/${op}.cu cuda/bind_${op}_cuda.cpp PARENT_SCOPE)
  set(FASTML_CUDA_OPS ${FASTML_CUDA_OPS} ${op} PARENT_SCOPE)
endfunction()

fastml_add_op(activation ISAS scalar avx2 avx512 CUDA)
fastml_add_op(sgd ISAS scalar avx2 avx512)
fastml_add_op(rmsprop ISAS scalar avx2 avx512)
fastml_add_op(adam ISAS scalar avx2 avx512)
fastml_add_op(softmax ISAS scalar avx2 avx512)
fastml_add_op(cross_entropy ISAS scalar avx2 avx512)
fastml_add_op(pointwise_loss ISAS scalar avx2 avx512)
fastml_add_op(probe ISAS scalar avx2 avx512)
fastml_add_op(gemm DIR csrc/gemm ISAS scalar avx2 avx512)
fastml_add_op(conv_fast ISAS scalar avx2 avx512)
# the Winograd entry of conv_fast lives in its own baseline file (the GEMM-driving half of the op)
list(APPEND FASTML_CPU_SOURCES csrc/ops/conv_fast/conv_fast_winograd.cpp)
fastml_add_op(conv)   # plain C++ tiling around the GEMM engine (which dispatches the ISA)
fastml_add_op(rnn ISAS scalar avx2 avx512)
fastml_add_op(pool ISAS scalar avx2 avx512)
fastml_add_op(attention ISAS scalar avx2 avx512)

# CUDA families whose kernels are grouped differently from the CPU ops: cuda/softmax.cu serves the
# softmax op, cuda/optim.cu the sgd, rmsprop and adam ops.
fastml_add_cuda_op(softmax)
fastml_add_cuda_op(optim)

# Optimizer steps round every operation where torch does (trajectory parity with torch.optim): the
# compiler must not contract a separate multiply and add into an FMA; the fused ones are explicit.
if(NOT MSVC)
  foreach(op sgd rmsprop adam)
    foreach(isa scalar avx2 avx512)
      set_property(SOURCE csrc/ops/${op}/${op}_${isa}.cpp APPEND PROPERTY COMPILE_OPTIONS "-ffp-contract=off")
    endforeach()
  endforeach()
endif()

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
