// Pooling kernel table over VecF: the forward bodies (pool_forward_impl.h) and the backward bodies
// (pool_backward_impl.h). Included by pool_<isa>.cpp after that ISA's vec header.
#pragma once
#include "ops/pool/pool_backward_impl.h"
#include "ops/pool/pool_forward_impl.h"

namespace fastml::pool_impl {
namespace {

template <class V>
constexpr PoolKernels make_kernels() {
  return PoolKernels{&max_plane<V>, &avg_plane<V>, &avg_backward_plane<V>, &max_backward_plane<V>,
                     &max_backward_encode<V>, &max_backward_gather<V>, &mean_planes<V>};
}

}  // namespace
}  // namespace fastml::pool_impl
