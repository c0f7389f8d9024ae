// Runtime CPU feature detection (CPUID + XGETBV) and the active-ISA switch.
// isa.cpp is compiled at the baseline flags and without LTO, so nothing here can execute an
// instruction the CPU lacks before dispatch has chosen a kernel table.
#pragma once
#include <cstdint>
#include <string>

namespace fastml {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2 };
inline constexpr int kNumIsa = 3;

const char* isa_name(Isa isa);
bool isa_from_name(const std::string& name, Isa* out);

struct CpuInfo {
  std::string vendor;
  std::string model;
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512dq = false, avx512bw = false, avx512vl = false;
  bool os_ymm = false, os_zmm = false;  // XGETBV: the OS saves YMM / ZMM state
  // the cache instance cpu0 belongs to (Linux sysfs, else sysconf; 0: unknown): per core for L1d / L2,
  // the L3 its core shares (a CCX's on AMD, not the package's)
  int64_t l1d_bytes = 0, l2_bytes = 0, l3_bytes = 0;
};

const CpuInfo& cpu_info();
bool isa_supported(Isa isa);
Isa detected_isa();          // best ISA the CPU and OS support
Isa active_isa();            // detected, unless FASTML_ISA or set_active_isa() chose another
void set_active_isa(Isa isa);  // throws ValueError if the CPU cannot run it

}  // namespace fastml
