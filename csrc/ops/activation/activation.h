// Elementwise activations and their backward passes, float32, contiguous arrays of n elements.
//
//   relu        y = max(x, 0) (NaN propagates)        dx = dy * (x > 0)       [torch: x <= 0 -> 0]
//   leaky_relu  y = x > 0 ? x : a*x                    dx = dy * (x > 0 ? 1 : a)
//   sigmoid     y = 1 / (1 + e^-x)                      dx = dy * y * (1 - y)   (from the output)
//   tanh        y = tanh x                              dx = dy * (1 - y^2)     (from the output)
//   gelu        y = x * Phi(x)                          dx = dy * (Phi(x) + x * phi(x))
//   gelu_tanh   y = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)  (= 0.5 x (1 + tanh u))
//               dx = dy * (s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2)), s = sigmoid(2u)
//
// Variants: activation_{scalar,avx2,avx512}.cpp, one generic body (activation_impl.h) over VecF.
// In place is allowed (y == x, dx == dy). Test: pytest tests/test_activation.py.
// Bench: python -m fastml.bench --ops activation.
#pragma once
#include <cstdint>

#include "core/dispatch.h"

namespace fastml {

enum class ActKind : int { relu = 0, leaky_relu, sigmoid, tanh, gelu, gelu_tanh };
inline constexpr int kNumActKinds = 6;

// y[0:n] = f(x[0:n]); param is leaky_relu's negative slope (ignored by the others).
using ActForwardFn = void (*)(int64_t n, const float* x, float* y, float param);
// dx[0:n] = dy * f'(...); `saved` is the input x (relu, leaky_relu, gelu) or the output y (sigmoid, tanh).
using ActBackwardFn = void (*)(int64_t n, const float* dy, const float* saved, float* dx, float param);

struct ActivationKernels {
  ActForwardFn forward[kNumActKinds];
  ActBackwardFn backward[kNumActKinds];
};

FASTML_DECLARE_KERNEL_TABLES(ActivationKernels, activation)

void activation_forward(ActKind kind, const float* x, float* y, int64_t n, float param);
void activation_backward(ActKind kind, const float* dy, const float* saved, float* dx, int64_t n, float param);

}  // namespace fastml
