// Kernel tables: each op declares a struct of function pointers (one signature per kernel family) and
// one const instance per compiled ISA (`<op>_kernels_<isa>`). The entry picks the table of the active
// ISA, falling back to the next lower one that was compiled.
#pragma once
#include "core/isa.h"

namespace fastml {

template <class Table>
const Table& select_kernels(const Table* const (&tables)[kNumIsa]) {
  int i = static_cast<int>(active_isa());
  while (i > 0 && tables[i] == nullptr) --i;
  return *tables[i];
}

}  // namespace fastml

// Declares the per-ISA tables of an op and builds the array select_kernels() takes.
#if defined(FASTML_X86)
#define FASTML_DECLARE_KERNEL_TABLES(Table, op)                  \
  namespace cpu::scalar { extern const Table op##_kernels_scalar; } \
  namespace cpu::avx2 { extern const Table op##_kernels_avx2; }     \
  namespace cpu::avx512 { extern const Table op##_kernels_avx512; } \
  inline const Table* const op##_tables[kNumIsa] = {              \
      &cpu::scalar::op##_kernels_scalar, &cpu::avx2::op##_kernels_avx2, &cpu::avx512::op##_kernels_avx512};
#else
#define FASTML_DECLARE_KERNEL_TABLES(Table, op)                  \
  namespace cpu::scalar { extern const Table op##_kernels_scalar; } \
  inline const Table* const op##_tables[kNumIsa] = {&cpu::scalar::op##_kernels_scalar, nullptr, nullptr};
#endif
