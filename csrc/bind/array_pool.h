// Memory for the large arrays the module returns. A fresh block of tens of MiB costs one page
// fault per 4 KiB page when it is first written (~2.7 us each on the 2-core VMs this was measured on: 12 ms
// of a 50 ms bidirectional LSTM call, whose outputs and saved gates are ~50 MB), and glibc returns such
// blocks to the OS when they are freed, so every call paid again. Here an array of at least
// kPoolMinBytes is carved from a cache of 64-byte aligned blocks: when the array (and every view of it) is
// freed its block goes back to the cache, and the next array that fits reuses it, already mapped.
// The cache keeps at most FASTML_ARRAY_CACHE_MB MiB of free blocks (default 512; 0 turns it off), freeing
// the largest blocks beyond that; fastml._C.array_cache_clear() frees them all.
// Smaller arrays use NumPy's allocator. Python: fastml._C.empty_f32(shape), array_cache_info(), array_cache_clear().
#pragma once
#include <pybind11/numpy.h>

#include <cstdint>
#include <vector>

namespace fastml::bind {

namespace py = pybind11;

inline constexpr int64_t kPoolMinBytes = int64_t(256) << 10;

// An uninitialised C-contiguous array of dtype dt.
py::array empty_array(const std::vector<py::ssize_t>& shape, const py::dtype& dt);
inline py::array empty_f32(const std::vector<py::ssize_t>& shape) { return empty_array(shape, py::dtype::of<float>()); }
inline py::array empty_i64(const std::vector<py::ssize_t>& shape) { return empty_array(shape, py::dtype::of<int64_t>()); }

struct ArrayCacheStats {
  int64_t free_bytes = 0, free_blocks = 0, limit_bytes = 0;
};
ArrayCacheStats array_cache_stats();
void array_cache_clear();

}  // namespace fastml::bind
