// Thread-count state. Default: OMP_NUM_THREADS when set, else the number of physical cores available
// to this process (hyper-threads share the FMA units and the cache, so they rarely help these kernels).
#include "core/parallel.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <utility>

#if defined(__linux__)
#include <sched.h>
#endif

#include "core/check.h"

namespace fastml {
namespace {

// C stdio, not an ifstream: see core/check.h on iostreams in a module with a static libstdc++.
int read_int_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  int v = -1;
  if (f) {
    if (std::fscanf(f, "%d", &v) != 1) v = -1;
    std::fclose(f);
  }
  return v;
}

int count_physical_cores() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    std::set<std::pair<int, int>> cores;
    int logical = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &set)) continue;
      ++logical;
      const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
      const int pkg = read_int_file(base + "physical_package_id");
      const int core = read_int_file(base + "core_id");
      if (pkg < 0 || core < 0) return logical > 0 ? CPU_COUNT(&set) : 1;
      cores.insert({pkg, core});
    }
    if (!cores.empty()) return static_cast<int>(cores.size());
    if (logical > 0) return logical;
  }
#endif
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

int default_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int v = std::atoi(env);  // "4,2" (nested lists) -> 4
    if (v > 0) return v;
  }
  return physical_cores();
}

std::atomic<int> g_threads{0};

}  // namespace

int physical_cores() {
  static const int n = count_physical_cores();
  return n;
}

int get_num_threads() {
  int v = g_threads.load(std::memory_order_relaxed);
  if (v == 0) {
    int expected = 0;
    g_threads.compare_exchange_strong(expected, default_threads());
    v = g_threads.load(std::memory_order_relaxed);
  }
  return v;
}

void set_num_threads(int n) {
  FASTML_CHECK(n >= 1, "set_num_threads: expected a thread count >= 1, got ", n);
  g_threads.store(n, std::memory_order_relaxed);
}

}  // namespace fastml
