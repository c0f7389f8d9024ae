"""The compiled module's array cache (csrc/bind/array_pool.h): large outputs are carved from cached blocks
that freed arrays give back, so repeated calls do not fault in fresh pages."""
import gc

import numpy as np
import pytest

import fastml.functional as F
from fastml import _backend as B

pytestmark = pytest.mark.skipif(not B.HAS_CPU_EXT, reason=f"compiled module missing: {B.CPU_IMPORT_ERROR}")

BIG = (512, 1024)  # 2 MiB: above the 256 KiB threshold


def _ptr(a):
    return a.__array_interface__["data"][0]


@pytest.fixture
def C():
    B._C.array_cache_clear()
    yield B._C
    B._C.array_cache_clear()


def test_block_returns_to_the_cache_and_is_reused(C):
    a = C.empty_f32(BIG)
    assert a.dtype == np.float32 and a.shape == BIG and a.flags.c_contiguous and a.flags.writeable
    assert _ptr(a) % 64 == 0
    a[...] = 3.0
    p = _ptr(a)
    assert C.array_cache_info()["free_bytes"] == 0
    del a
    gc.collect()
    info = C.array_cache_info()
    assert info["free_blocks"] == 1 and info["free_bytes"] >= 512 * 1024 * 4
    b = C.empty_f32((1024, 512))  # same size, another shape
    assert _ptr(b) == p and C.array_cache_info()["free_blocks"] == 0


def test_small_arrays_and_much_larger_blocks_are_not_mixed(C):
    small = C.empty_f32((10, 10))
    assert small.shape == (10, 10) and small.dtype == np.float32
    del small
    assert C.array_cache_info()["free_blocks"] == 0  # NumPy's own allocation
    big = C.empty_f32((4 * 512, 1024))
    p = _ptr(big)
    del big
    half = C.empty_f32(BIG)  # a quarter of the cached block: a new block, the cached one stays
    assert _ptr(half) != p and C.array_cache_info()["free_blocks"] == 1


def test_views_keep_the_block(C):
    a = C.empty_f32(BIG)
    a[...] = np.arange(a.size, dtype=np.float32).reshape(BIG)
    v = a[7:]
    del a
    gc.collect()
    assert C.array_cache_info()["free_blocks"] == 0  # still owned through the view
    b = C.empty_f32(BIG)
    b[...] = -1.0
    assert v[0, 0] == 7 * 1024 and v[-1, -1] == 512 * 1024 - 1
    del v
    gc.collect()
    assert C.array_cache_info()["free_blocks"] == 1


def test_op_outputs_come_from_the_cache(C, rng):
    x = rng.standard_normal(BIG).astype(np.float32)
    with B.use_backend("cpu"):  # the compiled module's outputs (whatever FASTML_BACKEND says)
        _op_outputs_come_from_the_cache(x)


def _op_outputs_come_from_the_cache(x):
    y = F.relu(x)
    p = _ptr(y)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    del y
    y2 = F.relu(x * 2)
    assert _ptr(y2) == p
    np.testing.assert_array_equal(y2, np.maximum(x * 2, 0))


def test_cache_limit_from_the_environment(python_run):
    code = ("import gc, fastml._C as C; a = C.empty_f32((1 << 20,)); del a; gc.collect(); "
            "i = C.array_cache_info(); print(i['limit_bytes'], i['free_bytes'])")
    r = python_run(["-c", code], {"FASTML_ARRAY_CACHE_MB": "0"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "0"]
    r = python_run(["-c", code], {"FASTML_ARRAY_CACHE_MB": "64"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(64 << 20), str(4 << 20)]
