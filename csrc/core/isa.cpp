// CPU feature detection. Compiled at baseline flags with -fno-lto (see CMakeLists.txt).
// AVX2 needs CPUID.7.EBX[5] + FMA + OS YMM support (XCR0 bits 1,2); AVX-512 additionally needs
// F/DQ/BW/VL and OS opmask/ZMM support (XCR0 bits 5,6,7). A CPU whose OS does not save ZMM state
// runs the AVX2 path.
#include "core/isa.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "core/check.h"

#if defined(FASTML_X86) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define FASTML_HAVE_CPUID 1
#endif
#if defined(__unix__)
#include <unistd.h>
#endif

namespace fastml {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

bool isa_from_name(const std::string& name, Isa* out) {
  for (int i = 0; i < kNumIsa; ++i) {
    if (name == isa_name(static_cast<Isa>(i))) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

namespace {

#ifdef FASTML_HAVE_CPUID
uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

int64_t sysconf_bytes(int name) {
#if defined(__unix__) && defined(_SC_LEVEL1_DCACHE_SIZE)
  long v = sysconf(name);
  return v > 0 ? v : 0;
#else
  (void)name;
  return 0;
#endif
}

#if defined(__unix__) && defined(_SC_LEVEL1_DCACHE_SIZE)
#if defined(__linux__)
// The first line of a small sysfs file ("" when it cannot be read).
std::string read_line(const std::string& path) {
  std::string out;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    char buf[64];
    if (std::fgets(buf, sizeof buf, f)) out = buf;
    std::fclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}
#endif

// Size of the level-`level` data or unified cache that cpu0 belongs to, from Linux's cache topology
// (/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}, "32K" / "32768K" / "1M"); 0 when absent.
// It is the instance the core shares (the CCX's L3 on AMD), where glibc's sysconf may report the whole
// package: 256 MiB against 32 MiB per CCX on a Zen 3 EPYC VM.
int64_t sysfs_cache_bytes(int level) {
#if defined(__linux__)
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    const std::string lv = read_line(dir + "level");
    if (lv.empty()) break;
    if (std::atoi(lv.c_str()) != level) continue;
    const std::string type = read_line(dir + "type");
    if (type != "Data" && type != "Unified") continue;
    const std::string size = read_line(dir + "size");
    char* end = nullptr;
    const long long v = std::strtoll(size.c_str(), &end, 10);
    if (v <= 0 || end == size.c_str()) return 0;
    const int64_t unit = *end == 'K' ? 1024 : *end == 'M' ? 1024 * 1024 : *end == 'G' ? int64_t{1} << 30 : 1;
    return static_cast<int64_t>(v) * unit;
  }
#else
  (void)level;
#endif
  return 0;
}

// sysfs first (see sysfs_cache_bytes), else sysconf.
int64_t cache_bytes(int level, int sysconf_name) {
  const int64_t v = sysfs_cache_bytes(level);
  return v > 0 ? v : sysconf_bytes(sysconf_name);
}
#endif

CpuInfo detect() {
  CpuInfo c;
#ifdef FASTML_HAVE_CPUID
  unsigned a, b, cx, d;
  if (__get_cpuid(0, &a, &b, &cx, &d)) {
    char v[13];
    std::memcpy(v, &b, 4);
    std::memcpy(v + 4, &d, 4);
    std::memcpy(v + 8, &cx, 4);
    v[12] = 0;
    c.vendor = v;
    const unsigned max_leaf = a;
    if (__get_cpuid(1, &a, &b, &cx, &d)) {
      c.sse42 = cx & (1u << 20);
      c.fma = cx & (1u << 12);
      c.f16c = cx & (1u << 29);
      const bool osxsave = cx & (1u << 27);
      c.avx = cx & (1u << 28);
      if (osxsave) {
        const uint64_t xcr0 = read_xcr0();
        c.os_ymm = (xcr0 & 0x6) == 0x6;
        c.os_zmm = (xcr0 & 0xe6) == 0xe6;
      }
    }
    if (max_leaf >= 7) {
      __cpuid_count(7, 0, a, b, cx, d);
      c.avx2 = b & (1u << 5);
      c.avx512f = b & (1u << 16);
      c.avx512dq = b & (1u << 17);
      c.avx512bw = b & (1u << 30);
      c.avx512vl = b & (1u << 31);
    }
  }
  unsigned ext_max = __get_cpuid_max(0x80000000u, nullptr);
  if (ext_max >= 0x80000004u) {
    char brand[49] = {0};
    for (unsigned i = 0; i < 3; ++i) {
      __cpuid(0x80000002u + i, a, b, cx, d);
      std::memcpy(brand + 16 * i, &a, 4);
      std::memcpy(brand + 16 * i + 4, &b, 4);
      std::memcpy(brand + 16 * i + 8, &cx, 4);
      std::memcpy(brand + 16 * i + 12, &d, 4);
    }
    std::string s(brand);
    const auto first = s.find_first_not_of(' ');
    const auto last = s.find_last_not_of(' ');
    c.model = first == std::string::npos ? "" : s.substr(first, last - first + 1);
  }
#endif
#if defined(__unix__) && defined(_SC_LEVEL1_DCACHE_SIZE)
  c.l1d_bytes = cache_bytes(1, _SC_LEVEL1_DCACHE_SIZE);
  c.l2_bytes = cache_bytes(2, _SC_LEVEL2_CACHE_SIZE);
  c.l3_bytes = cache_bytes(3, _SC_LEVEL3_CACHE_SIZE);
#endif
  return c;
}

Isa best_isa(const CpuInfo& c) {
  const bool avx2 = c.avx && c.avx2 && c.fma && c.os_ymm;
  const bool avx512 = avx2 && c.avx512f && c.avx512dq && c.avx512bw && c.avx512vl && c.os_zmm;
  return avx512 ? Isa::avx512 : avx2 ? Isa::avx2 : Isa::scalar;
}

std::atomic<int> g_active{-1};
std::once_flag g_init;

void init_active() {
  Isa isa = detected_isa();
  if (const char* env = std::getenv("FASTML_ISA")) {
    Isa want;
    // An unknown or unsupported FASTML_ISA falls back to detection; fastml.info() reports the result.
    if (*env && isa_from_name(env, &want) && static_cast<int>(want) <= static_cast<int>(isa)) isa = want;
  }
  g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
}

}  // namespace

const CpuInfo& cpu_info() {
  static const CpuInfo info = detect();
  return info;
}

Isa detected_isa() { return best_isa(cpu_info()); }

bool isa_supported(Isa isa) {
#ifndef FASTML_X86
  if (isa != Isa::scalar) return false;
#endif
  return static_cast<int>(isa) <= static_cast<int>(detected_isa());
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) {
    std::call_once(g_init, init_active);
    v = g_active.load(std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

void set_active_isa(Isa isa) {
  FASTML_CHECK(isa_supported(isa), "set_isa: this CPU cannot run '", isa_name(isa),
               "'; the best it supports is '", isa_name(detected_isa()), "'");
  std::call_once(g_init, init_active);
  g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
}

}  // namespace fastml
