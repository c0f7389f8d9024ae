"""Huge and edge argument values for the convolution and pooling families: every call either returns, or raises
ValueError / TypeError (or MemoryError for a legal result too big to allocate), never crashes the process,
on every backend. A stride of 2^31 - 1 once segfaulted the direct convolution kernel; such a crash here ends
the test run. The NumPy backend once padded the input to a 2^31-tap pooling window (16 GiB, filled) and
looped in Python over a 2^40-position adaptive output: the system's out-of-memory killer ended the run."""
import numpy as np
import pytest

import fastml.functional as F

BIG = [2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**62]
OK = (ValueError, TypeError, MemoryError)


def _calls():
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, 2, 9)).astype(np.float32)
    x2 = rng.standard_normal((1, 2, 8, 9)).astype(np.float32)
    x3 = rng.standard_normal((1, 2, 4, 5, 6)).astype(np.float32)
    w1 = rng.standard_normal((3, 2, 3)).astype(np.float32)
    w2 = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    w3 = rng.standard_normal((3, 2, 3, 3, 3)).astype(np.float32)
    dw = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    for b in BIG:
        for key in ("stride", "padding", "dilation"):
            kw = {key: b}
            for alg in ("auto", "im2col", "direct", "depthwise"):
                w, g = (dw, 2) if alg == "depthwise" else (w2, 1)
                yield f"conv2d {alg} {key}={b}", lambda kw=kw, alg=alg, w=w, g=g: F.conv2d(x2, w, groups=g,
                                                                                             algorithm=alg, **kw)
                yield (f"conv2d_backward {alg} {key}={b}",
                       lambda kw=kw, alg=alg, w=w, g=g: F.conv2d_backward(np.ones((1, w.shape[0], 1, 1), np.float32),
                                                                          x2, w, groups=g, algorithm=alg, **kw))
            yield f"conv1d {key}={b}", lambda kw=kw: F.conv1d(x1, w1, **kw)
            yield f"conv3d {key}={b}", lambda kw=kw: F.conv3d(x3, w3, **kw)
            yield f"conv_transpose2d {key}={b}", lambda kw=kw: F.conv_transpose2d(x2, w2.transpose(1, 0, 2, 3).copy(),
                                                                                   **kw)
        for nd, x in ((1, x1), (2, x2), (3, x3)):
            for key in ("kernel_size", "stride", "padding", "dilation"):
                kw = {"kernel_size": 2, key: b}
                yield f"max_pool{nd}d {key}={b}", lambda nd=nd, x=x, kw=kw: getattr(F, f"max_pool{nd}d")(
                    x, ceil_mode=True, return_indices=True, **kw)
                if key != "dilation":
                    yield f"avg_pool{nd}d {key}={b}", lambda nd=nd, x=x, kw=kw: getattr(F, f"avg_pool{nd}d")(
                        x, ceil_mode=True, **kw)
            if b >= 2**40:  # (2^31 output positions are legal and really computed: ~17 GB, too slow for a test)
                yield f"adaptive_avg_pool{nd}d {b}", lambda nd=nd, x=x, b=b: getattr(F, f"adaptive_avg_pool{nd}d")(x, b)


CALLS = list(_calls())


@pytest.mark.parametrize("family", ["conv2d ", "conv2d_backward", "conv1d", "conv3d", "conv_transpose", "pool"])
def test_huge_arguments_never_crash(family, backend):
    n = 0
    for name, call in CALLS:
        if family not in name:
            continue
        n += 1
        try:
            out = call()
        except OK:
            continue
        for a in out if isinstance(out, tuple) else (out,):
            assert a is None or np.all(np.isfinite(a)), name
    assert n >= 15
