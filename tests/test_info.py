"""fastml.info(), threads, ISA switching and backend selection."""
import numpy as np
import pytest

import fastml
import fastml.functional as F
from fastml import _backend as B


def test_info_reports_everything(capsys):
    d = fastml.info()
    printed = capsys.readouterr().out
    assert d["version"] == fastml.__version__ and fastml.__version__ in printed
    for key in ("cpu_extension", "compiled_isas", "active_isa", "cpu", "threads", "openmp", "cuda_extension"):
        assert key in d
    if d["cpu_extension"]:
        assert d["active_isa"] in d["supported_isas"]
        assert "scalar" in d["compiled_isas"]["activation"]
        assert d["threads"] >= 1 and d["openmp"]["library"]
        assert d["cpu"]["l1d_bytes"] >= 0


def _sysfs_cache_bytes(level):
    """cpu0's level-`level` data / unified cache size from Linux sysfs, or None."""
    import glob
    import os
    for d in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            with open(os.path.join(d, "level")) as f:
                lv = int(f.read())
            with open(os.path.join(d, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(d, "size")) as f:
                size = f.read().strip()
            unit = {"K": 1024, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
            nbytes = int(size.rstrip("KMG")) * unit
        except (OSError, ValueError):
            continue
        if lv == level and kind in ("Data", "Unified"):
            return nbytes
    return None


@pytest.mark.parametrize("level, key", [(1, "l1d_bytes"), (2, "l2_bytes"), (3, "l3_bytes")])
def test_cache_sizes_are_the_cores_instances(level, key):
    # The sizes are those of the cache instance cpu0 belongs to (Linux sysfs), not glibc's sysconf, which
    # reports the whole package's L3 on AMD EPYC (256 MiB where a core's CCX shares 32 MiB).
    if not B.HAS_CPU_EXT:
        pytest.skip("the compiled module is not built")
    want = _sysfs_cache_bytes(level)
    if want is None:
        pytest.skip(f"no level-{level} data cache in /sys/devices/system/cpu/cpu0/cache")
    assert B._C.cpu_info()[key] == want


def test_compiled_module_present():
    # CI builds from a clean checkout: the compiled module must be there, not silently replaced by NumPy.
    assert B.HAS_CPU_EXT, B.CPU_IMPORT_ERROR


@pytest.mark.parametrize("module", ["_C", "_C_cuda"])
def test_compiled_modules_use_no_iostreams(module):
    # csrc/core/check.h: with a statically linked libstdc++ (GCC 13 toolchains that link it so), the first
    # std::locale, which every iostream constructs, crashed the process. The modules build their messages
    # from strings; a stream or locale symbol in the binary means one came back.
    mod = getattr(B, module)
    if mod is None:
        pytest.skip(f"fastml.{module} is not built")
    with open(mod.__file__, "rb") as f:
        data = f.read()
    found = [s for s in (b"_ZNSt6locale", b"basic_ostringstream", b"basic_istringstream", b"13basic_istream",
                         b"14basic_ifstream", b"13basic_ostream", b"8ios_base") if s in data]
    assert not found, f"{mod.__file__} references iostreams / std::locale: {found}"


def test_variants_and_ops():
    C = B._C
    if C is None:
        pytest.skip("compiled module missing")
    assert "activation" in C.ops()
    assert C.variants("activation")[0] == "scalar"
    with pytest.raises(ValueError, match="unknown op"):
        C.variants("no_such_op")


def test_set_num_threads(threads):
    fastml.set_num_threads(1)
    assert fastml.get_num_threads() == 1
    fastml.set_num_threads(2)
    assert fastml.get_num_threads() == 2
    with pytest.raises(ValueError, match=">= 1"):
        fastml.set_num_threads(0)


def test_use_isa_restores():
    if not B.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    before = B._C.get_isa()
    with fastml.use_isa("scalar"):
        assert B._C.get_isa() == "scalar"
    assert B._C.get_isa() == before
    with pytest.raises(ValueError, match="expected an ISA name"):
        with fastml.use_isa("sse9"):
            pass


def test_use_backend_validation():
    before = B.forced_backend()  # None, or FASTML_BACKEND's
    with pytest.raises(ValueError, match="expected one of"):
        with fastml.use_backend("tpu"):
            pass
    with fastml.use_backend("numpy"):
        assert B.forced_backend() == "numpy"
    assert B.forced_backend() == before


def test_forced_cpu_keeps_float64():
    if not B.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    x = np.array([1e-300, -1.0, 2.0])  # 1e-300 would flush to 0 in float32
    with fastml.use_backend("cpu"):
        y = F.relu(x)
    assert y.dtype == np.float64 and y[0] == 1e-300


def test_float64_stays_float64():
    x = np.linspace(-2, 2, 9)
    assert F.gelu(x).dtype == np.float64
    assert F.sigmoid(x.astype(np.float32)).dtype == np.float32


def test_backend_env_var(python_run):
    code = "import fastml, fastml._backend as B; print(B.forced_backend())"
    out = python_run(["-c", code], {"FASTML_BACKEND": "numpy"}, check=True)
    assert out.stdout.strip() == "numpy"


@pytest.mark.skipif(not B.HAS_CPU_EXT, reason="compiled module missing")
def test_fastml_isa_env_var(python_run):
    code = "import fastml._backend as B; print(B._C.get_isa())"
    out = python_run(["-c", code], {"FASTML_ISA": "scalar"}, check=True)
    assert out.stdout.strip() == "scalar"


def test_import_loads_no_scipy(python_run):
    # scipy (the NumPy backend's erfc) is imported on first use: importing it costs ~0.2 s and starts a
    # second OpenBLAS thread pool. The NumPy-backend gelu still works afterwards.
    code = ("import sys, fastml, fastml.functional as F, fastml.nn, fastml.optim; "
            "print(any(m == 'scipy' or m.startswith('scipy.') for m in sys.modules)); "
            "import numpy as np; print(round(float(F.gelu(np.array([1.0]))[0]), 6))")
    out = python_run(["-c", code], {"FASTML_BACKEND": "numpy"}, check=True)
    assert out.stdout.split() == ["False", "0.841345"], out.stdout + out.stderr


def test_missing_compiled_module_falls_back_with_one_warning(python_run):
    # A finder that makes `import fastml._C` fail, as a broken build or a missing library would.
    code = r"""
import sys, warnings
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "fastml._C":
            raise ImportError("libfoo.so: cannot open shared object file")
sys.meta_path.insert(0, Block())
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    import fastml, fastml.functional as F
    import numpy as np
    y = F.sigmoid(np.array([0.0, 1.0], dtype=np.float32))
d = fastml.info(print_=False)
msgs = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]
print(len(msgs), "could not be imported" in msgs[0], d["cpu_extension"], "libfoo" in d["cpu_extension_error"],
      y.dtype, round(float(y[1]), 6))
"""
    out = python_run(["-c", code], check=True)
    assert out.stdout.split() == ["1", "True", "False", "True", "float32", "0.731059"], out.stdout + out.stderr


def test_concurrent_calls_from_python_threads_match_serial():
    # The GIL is released around compiled calls: 8 Python threads calling at once must get exactly the
    # results of serial calls (no shared mutable state in the kernels or their workspaces).
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((64, 1000 + 37 * i)).astype(np.float32) for i in range(16)]

    def work(x):
        return F.gelu(x), F.softmax(x, dim=-1), F.tanh_backward(x, F.tanh(x))

    serial = [work(x) for x in xs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(work, xs))
    for s, p in zip(serial, parallel):
        for a, b in zip(s, p):
            np.testing.assert_array_equal(a, b)


def test_concurrent_compute_bound_calls_match_serial():
    # The kernels with per-thread workspaces, packed panels shared by an OpenMP team, or a two-pass plan
    # (GEMM, the convolution paths including conv3d's shifted GEMM, Winograd and the backwards, max pooling
    # with its encode pass, flash attention forward and backward) called from 8 Python threads at once: each call
    # must give exactly its serial result, three times over.
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(7)
    f32 = np.float32
    cases = [dict(a=rng.standard_normal((150 + 7 * i, 300), dtype=f32),
                  b=rng.standard_normal((300, 170 + 5 * i), dtype=f32),
                  x=rng.standard_normal((2, 8 + i, 20, 21), dtype=f32),
                  w=rng.standard_normal((12, 8 + i, 3, 3), dtype=f32),
                  x3=rng.standard_normal((1, 16, 5, 9, 10), dtype=f32),
                  w3=rng.standard_normal((30, 16, 3, 3, 3), dtype=f32),
                  q=rng.standard_normal((2, 3, 70 + i, 32), dtype=f32),
                  k=rng.standard_normal((2, 3, 90, 32), dtype=f32),
                  v=rng.standard_normal((2, 3, 90, 24), dtype=f32)) for i in range(12)]

    def work(c):
        y = F.conv2d(c["x"], c["w"], padding=1)
        p, idx = F.max_pool2d(c["x"], 3, 2, 1, return_indices=True)
        o, lse = F.scaled_dot_product_attention_forward(c["q"], c["k"], c["v"], is_causal=True)
        return (fastml.matmul(c["a"], c["b"]), y, *F.conv2d_backward(np.ones_like(y), c["x"], c["w"], padding=1),
                F.conv3d(c["x3"], c["w3"], padding=1), p, idx,
                F.max_pool2d_backward(np.ones_like(p), c["x"], 3, 2, 1, indices=idx), F.avg_pool2d(c["x"], 2), o, lse,
                *F.scaled_dot_product_attention_backward(np.ones_like(o), c["q"], c["k"], c["v"], o, lse,
                                                         is_causal=True),
                # Winograd (2-D backward with its weight gradient's float64 sums, 3-D forward and backward)
                *F.conv2d_backward(np.ones_like(y), c["x"], c["w"], padding=1, algorithm="winograd"),
                F.conv3d(c["x3"], c["w3"], padding=1, algorithm="winograd"),
                *F.conv3d_backward(np.cos(F.conv3d(c["x3"], c["w3"], padding=1)), c["x3"], c["w3"], padding=1,
                                   algorithm="winograd"))

    serial = [work(c) for c in cases]
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=8) as pool:
            parallel = list(pool.map(work, cases))
        for s, p in zip(serial, parallel):
            assert len(s) == len(p) == 22
            for a, b in zip(s, p):
                np.testing.assert_array_equal(a, b)
