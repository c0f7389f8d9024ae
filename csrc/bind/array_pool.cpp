#include "bind/array_pool.h"

#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <new>

namespace fastml::bind {

namespace {

constexpr size_t kGranule = size_t(64) << 10;  // block capacities are multiples of 64 KiB

struct Pool {
  std::mutex mu;
  std::multimap<size_t, void*> free;  // capacity -> block
  size_t free_bytes = 0;
  size_t limit = 0;
};

// Never destroyed: arrays freed while the interpreter shuts down still return their blocks here.
Pool& pool() {
  static Pool* p = [] {
    auto* q = new Pool;
    long mb = 512;
    if (const char* e = std::getenv("FASTML_ARRAY_CACHE_MB")) mb = std::atol(e);
    q->limit = mb > 0 ? static_cast<size_t>(mb) << 20 : 0;
    return q;
  }();
  return *p;
}

struct Block {
  void* ptr;
  size_t cap;
};

// A cached block of at least `bytes` and at most 25% larger, else a new one.
Block take(size_t bytes) {
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mu);
    auto it = p.free.lower_bound(bytes);
    if (it != p.free.end() && it->first <= bytes + bytes / 4) {
      Block b{it->second, it->first};
      p.free_bytes -= it->first;
      p.free.erase(it);
      return b;
    }
  }
  const size_t cap = (bytes + kGranule - 1) / kGranule * kGranule;
  void* ptr = std::aligned_alloc(64, cap);
  if (!ptr) throw std::bad_alloc();
  return {ptr, cap};
}

void give_back(Block b) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  if (b.cap > p.limit) {
    std::free(b.ptr);
    return;
  }
  p.free.emplace(b.cap, b.ptr);
  p.free_bytes += b.cap;
  while (p.free_bytes > p.limit) {  // over the limit: free the largest blocks
    auto it = std::prev(p.free.end());
    p.free_bytes -= it->first;
    std::free(it->second);
    p.free.erase(it);
  }
}

}  // namespace

py::array empty_array(const std::vector<py::ssize_t>& shape, const py::dtype& dt) {
  int64_t n = 1;
  for (py::ssize_t s : shape) n *= s;
  const int64_t bytes = n * static_cast<int64_t>(dt.itemsize());
  if (bytes < kPoolMinBytes || pool().limit == 0) return py::array(dt, shape);
  auto* b = new Block(take(static_cast<size_t>(bytes)));
  py::capsule owner(b, [](void* h) {
    auto* blk = static_cast<Block*>(h);
    give_back(*blk);
    delete blk;
  });
  return py::array(dt, shape, b->ptr, owner);
}

ArrayCacheStats array_cache_stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  return {static_cast<int64_t>(p.free_bytes), static_cast<int64_t>(p.free.size()), static_cast<int64_t>(p.limit)};
}

void array_cache_clear() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  for (auto& e : p.free) std::free(e.second);
  p.free.clear();
  p.free_bytes = 0;
}

}  // namespace fastml::bind
