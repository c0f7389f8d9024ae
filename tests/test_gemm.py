"""The packed SGEMM engine (csrc/gemm) through fastml._C: every compiled ISA against the float64
reference, with the error bounded by 2x that of a float32 NumPy matmul of the same inputs."""
import itertools

import numpy as np
import pytest

import fastml
import fastml.functional as F
from fastml import _backend as B
from fastml import reference as R
from _tolerance import EPS32
from _tolerance import assert_error_within as _assert_error_within

pytestmark = pytest.mark.skipif(not B.HAS_CPU_EXT, reason=f"compiled module missing: {B.CPU_IMPORT_ERROR}")
_C = B._C

ISAS = ("scalar", "avx2", "avx512")


def assert_error_within(got, ref, baseline, what="", scale=None):
    """Error vs the float64 reference <= 2x the error of NumPy's float32 matmul, with a floor of 2 ulps
    of max|C|. The floor matters only where OpenBLAS switches to K-split dot/gemv kernels (M = 1, tiny
    B^T products), whose error is ~1 ulp of max|C|; the engine's tile kernels sum K sequentially in
    blocks of KC <= 384 and reach 2-2.5 ulps there (they match or beat OpenBLAS on larger products).
    ``scale``: max|C| before a fused activation (errors pass through it with a factor <= ~1.13)."""
    ref = np.asarray(ref, dtype=np.float64)
    if scale is None:
        scale = float(np.max(np.abs(ref), initial=0.0))
    floor = 2 * EPS32 * max(scale, 1e-30)
    _assert_error_within(got, ref, baseline, floor=floor, what=what)


def _isa_params():
    out = []
    for isa in ISAS:
        marks = []
        if B.HAS_CPU_EXT and isa not in _C.variants("gemm"):
            marks.append(pytest.mark.skip(reason=f"gemm not compiled for {isa}"))
        elif B.HAS_CPU_EXT and not _C.isa_supported(isa):
            marks.append(pytest.mark.skip(reason=f"this CPU cannot run {isa}"))
        out.append(pytest.param(isa, id=isa, marks=marks))
    return out


@pytest.fixture(params=_isa_params())
def isa(request):
    with fastml.use_isa(request.param):
        yield _C.gemm_blocking()


def _padded(rng, rows, cols, pad, fill=None):
    """A (rows, cols) float32 view of a wider array (leading dimension cols + pad)."""
    big = rng.standard_normal((rows, cols + pad)).astype(np.float32) if fill is None else \
        np.full((rows, cols + pad), fill, dtype=np.float32)
    return big[:, :cols]


def _operands(rng, M, N, K, ta, tb, pad):
    a = _padded(rng, K, M, pad) if ta else _padded(rng, M, K, pad)
    b = _padded(rng, N, K, pad) if tb else _padded(rng, K, N, pad)
    return a, b


def _op(x, t):
    return x.T if t else x


def _check(a, b, c0, got, ta, tb, alpha, beta, what):
    a64, b64 = _op(a, ta).astype(np.float64), _op(b, tb).astype(np.float64)
    ref = alpha * (a64 @ b64)
    base = np.float32(alpha) * (_op(a, ta) @ _op(b, tb))
    if beta != 0:
        ref = ref + beta * c0.astype(np.float64)
        base = base + np.float32(beta) * c0
    assert_error_within(got, ref, base, what=what)


# Each dimension runs over {1, 2, 3, tile-1, tile, tile+1, 2*tile+1, 257, 1000} (tile = MR for M, NR for N,
# KC for K); the other two dimensions are drawn from the same set, so every value meets each transpose
# without the full cube (which would take minutes).
def _cases(blk):
    sets = {
        "M": [1, 2, 3, blk["mr"] - 1, blk["mr"], blk["mr"] + 1, 2 * blk["mr"] + 1, 257, 1000],
        "N": [1, 2, 3, blk["nr"] - 1, blk["nr"], blk["nr"] + 1, 2 * blk["nr"] + 1, 257, 1000],
        "K": [1, 2, 3, 15, 16, 17, blk["kc"] + 1, 257, 1000],
    }
    rng = np.random.default_rng(7)
    small = {d: [v for v in vals if v < 300] for d, vals in sets.items()}
    cases = []
    for d in "MNK":
        for v in sets[d]:
            dims = {e: int(rng.choice(small[e])) for e in "MNK"}
            dims[d] = v
            cases.append((dims["M"], dims["N"], dims["K"]))
    return cases


def _draws(M, N):
    """Random draws per shape: the max-error statistic of a tiny output is noisy, so small outputs are
    compared over several independent draws (>= ~1000 elements in all), as one would for a dot product."""
    return max(1, min(16, -(-1000 // max(1, M * N))))


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)), ids=["nn", "nt", "tn", "tt"])
def test_sgemm_sizes_transposes_ld(isa, rng, ta, tb):
    for i, (M, N, K) in enumerate(_cases(isa)):
        pad = (0, 3, 17)[i % 3]
        got, ref, base = [], [], []
        for _ in range(_draws(M, N)):
            a, b = _operands(rng, M, N, K, ta, tb, pad)
            c = _padded(rng, M, N, (5, 0, 1)[i % 3], fill=np.nan)  # beta = 0 must ignore NaN in C
            _C.sgemm(a, b, c, ta, tb)
            if c.base is not None:
                assert np.all(np.isnan(c.base[:, N:])), "wrote outside the C view"
            got.append(c.ravel())
            ref.append((_op(a, ta).astype(np.float64) @ _op(b, tb)).ravel())
            base.append((_op(a, ta) @ _op(b, tb)).ravel())
        assert_error_within(np.concatenate(got), np.concatenate(ref), np.concatenate(base),
                            what=f"{isa['isa']} M={M} N={N} K={K} ta={ta} tb={tb} pad={pad}")


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5])
@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
@pytest.mark.parametrize("shape", [(5, 7, 9), (37, 70, 300), (300, 33, 600)], ids=str)
def test_sgemm_alpha_beta(isa, rng, alpha, beta, shape):
    M, N, K = shape
    for ta, tb in ((False, False), (False, True), (True, False)):
        a, b = _operands(rng, M, N, K, ta, tb, 2)
        c0 = rng.standard_normal((M, N)).astype(np.float32)
        c = c0.copy()
        if beta == 0.0:
            c[::3] = np.nan
        _C.sgemm(a, b, c, ta, tb, alpha, beta)
        _check(a, b, c0, c, ta, tb, alpha, beta, f"{isa['isa']} alpha={alpha} beta={beta} {shape} {ta}{tb}")


def test_sgemm_empty_dims(isa, rng):
    a = np.zeros((0, 5), np.float32)
    b = rng.standard_normal((5, 4)).astype(np.float32)
    c = np.zeros((0, 4), np.float32)
    _C.sgemm(a, b, c)  # M = 0
    c = np.full((3, 0), np.nan, np.float32)
    _C.sgemm(rng.standard_normal((3, 5)).astype(np.float32), np.zeros((5, 0), np.float32), c)  # N = 0
    # K = 0: C = beta * C (beta = 0 writes zeros over NaN), then the epilogue
    c = np.full((3, 4), np.nan, np.float32)
    _C.sgemm(np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32), c)
    assert np.array_equal(c, np.zeros((3, 4), np.float32))
    c0 = rng.standard_normal((3, 4)).astype(np.float32)
    c = c0.copy()
    bias = np.arange(4, dtype=np.float32)
    _C.sgemm(np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32), c, beta=-0.5, bias=bias, act="relu")
    np.testing.assert_allclose(c, np.maximum(np.float32(-0.5) * c0 + bias, 0), rtol=1e-6)


ACTS = {"none": lambda y: y, "relu": R.relu, "gelu": R.gelu, "gelu_tanh": lambda y: R.gelu(y, approximate="tanh"),
        "sigmoid": R.sigmoid, "tanh": R.tanh}


ACT32 = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda y: F.gelu(y, approximate="tanh"),
         "sigmoid": F.sigmoid, "tanh": F.tanh}


def _epilogue_ref(a, b, c0, bias, bias_kind):
    """0.5 a b + 0.25 c0 (+ bias along rows or columns) before the activation: in float64 (the reference)
    and in float32 (the NumPy baseline)."""
    lin = 0.5 * (a.astype(np.float64) @ b) + 0.25 * c0
    base = np.float32(0.5) * (a @ b) + np.float32(0.25) * c0
    if bias is not None:
        bb = bias[:, None] if bias_kind == "row" else bias[None, :]
        lin, base = lin + bb, base + bb
    return lin, base


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("bias_kind", [None, "row", "col"])
def test_sgemm_fused_epilogue(isa, rng, act, bias_kind):
    for (M, N, K), (ta, tb) in zip([(3, 70, 40), (33, 47, 300), (130, 90, 520), (2, 50, 64), (1, 300, 520),
                                    (300, 500, 260)],
                                   [(False, False), (True, False), (False, True), (False, True), (False, False),
                                    (False, False)]):
        a, b = _operands(rng, M, N, K, ta, tb, 1)
        c0 = rng.standard_normal((M, N)).astype(np.float32)
        bias = None if bias_kind is None else rng.standard_normal(M if bias_kind == "row" else N).astype(np.float32)
        c = c0.copy()
        _C.sgemm(a, b, c, ta, tb, 0.5, 0.25, bias=bias, bias_kind=bias_kind or "col", act=act)
        lin, base = _epilogue_ref(_op(a, ta), _op(b, tb), c0, bias, bias_kind)
        ref = ACTS[act](lin)
        with fastml.use_backend("numpy"):  # the float32 NumPy activation of the float32 product
            base32 = base if act == "none" else ACT32[act](base.astype(np.float32))
        assert_error_within(c, ref, base32, scale=float(np.abs(lin).max()),
                            what=f"{isa['isa']} {act} {bias_kind} {M}x{N}x{K}")


@pytest.mark.parametrize("bias_kind", [None, "row", "col"])
@pytest.mark.parametrize("lda", [1024, 2048])
def test_sgemm_direct_a_rows_4k_apart(isa, rng, bias_kind, lda):
    """A read in place (N <= 4 NR) with rows a multiple of 4 KiB apart: the AVX-512 kernel splits such tiles
    (all rows in one L1 set); every row, bias and edge must still land where it belongs, with the bits of
    the same product from rows that are not 4 KiB apart."""
    M, N, K = 2 * isa["mr"] + 3, 40, 300
    big = rng.standard_normal((M, lda)).astype(np.float32)
    a = big[:, :K]
    b = rng.standard_normal((K, N)).astype(np.float32)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    bias = None if bias_kind is None else rng.standard_normal(M if bias_kind == "row" else N).astype(np.float32)
    kw = dict(bias=bias, bias_kind=bias_kind or "col", act="relu")
    c = c0.copy()
    _C.sgemm(a, b, c, False, False, 0.5, 0.25, **kw)
    other = np.empty((M, lda + 16), np.float32)[:, :K]  # rows 4 KiB + 64 B apart
    other[...] = a
    c_other = c0.copy()
    _C.sgemm(other, b, c_other, False, False, 0.5, 0.25, **kw)
    np.testing.assert_array_equal(c, c_other)
    lin, base = _epilogue_ref(a, b, c0, bias, bias_kind)
    assert_error_within(c, np.maximum(lin, 0), np.maximum(base, 0), scale=float(np.abs(lin).max()),
                        what=f"{isa['isa']} lda={lda} {bias_kind}")


@pytest.mark.parametrize("bcast", [None, "a", "b"])
def test_sgemm_batched_strides(isa, rng, bcast):
    nb, M, N, K = 5, 19, 37, 45
    for ta, tb in ((False, False), (False, True), (True, False)):
        a_big = rng.standard_normal((nb, K + 2, K + 3) if ta else (nb, M + 2, K + 3)).astype(np.float32)
        a = a_big[:, :K, :M] if ta else a_big[:, :M, :K]
        b_big = rng.standard_normal((nb, N + 1, K + 4) if tb else (nb, K + 1, N + 4)).astype(np.float32)
        b = b_big[:, :N, :K] if tb else b_big[:, :K, :N]
        if bcast == "a":
            a = np.broadcast_to(a[:1], a.shape)
        if bcast == "b":
            b = np.broadcast_to(b[:1], b.shape)
        c_big = np.full((nb, M + 1, N + 2), np.nan, np.float32)
        c = c_big[:, :M, :N]
        bias = rng.standard_normal(M).astype(np.float32)
        _C.sgemm_batched(a, b, c, ta, tb, bias=bias, bias_kind="row", act="tanh")
        for i in range(nb):
            ai, bi = _op(a[i], ta), _op(b[i], tb)
            ref = np.tanh(ai.astype(np.float64) @ bi + bias[:, None])
            base = np.tanh(ai @ bi + bias[:, None])
            assert_error_within(c[i], ref, base, scale=float(np.abs(ai.astype(np.float64) @ bi).max()),
                                what=f"{isa['isa']} batch {i} bcast={bcast} {ta}{tb}")
        assert np.all(np.isnan(c_big[:, M:, :])) and np.all(np.isnan(c_big[:, :, N:]))


def test_sgemm_batched_many_small_and_threads(isa, rng, threads):
    a = rng.standard_normal((64, 16, 24)).astype(np.float32)
    b = rng.standard_normal((64, 24, 20)).astype(np.float32)
    outs = []
    for nt in (1, 2):
        fastml.set_num_threads(nt)
        c = np.empty((64, 16, 20), np.float32)
        _C.sgemm_batched(a, b, c)
        outs.append(c)
    assert np.array_equal(outs[0], outs[1])
    assert_error_within(outs[0], a.astype(np.float64) @ b, a @ b)


# N = 40 (every ISA) and 75 (AVX-512): A read in place (few B slivers), M = 300 several K blocks per step;
# N = 300: packed A. M <= MC runs B sliver outer (RNN steps).
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("N", [40, 75, 300])
def test_sgemm_prepacked_b(isa, rng, threads, tb, N):
    K = 600
    b = _padded(rng, N, K, 3) if tb else _padded(rng, K, N, 3)
    pb = _C.gemm_pack_b(b, tb)
    assert (pb.k, pb.n, pb.isa) == (K, N, isa["isa"])
    for M, ta in ((1, False), (5, False), (33, True), (40, False), (300, False)):
        a = _padded(rng, K, M, 2) if ta else _padded(rng, M, K, 2)
        outs = []
        for nt in (1, 2):  # reused across calls, and the same bits for any thread count
            fastml.set_num_threads(nt)
            c = np.full((M, N), np.nan, np.float32)
            _C.sgemm_packed(a, pb, c, ta, bias=np.ones(N, np.float32), act="relu")
            outs.append(c)
            lin = _op(a, ta).astype(np.float64) @ _op(b, tb) + 1.0
            base = _op(a, ta) @ _op(b, tb) + np.float32(1)
            assert_error_within(c, np.maximum(lin, 0), np.maximum(base, 0), what=f"packed M={M} ta={ta}")
        assert np.array_equal(outs[0], outs[1]), f"packed M={M} N={N} differs between 1 and 2 threads"
    other = [i for i in fastml.available_isas() if i != isa["isa"] and i in _C.variants("gemm")]
    if other:
        with fastml.use_isa(other[0]):
            with pytest.raises(ValueError, match="packed for"):
                _C.sgemm_packed(np.zeros((2, K), np.float32), pb, np.zeros((2, N), np.float32))


# Shapes that reach every path: dot (M <= 4 with B^T, N <= 8), GEMV (M = 1), direct B (one row block),
# direct A (N <= 4 NR), packed with row split and with column split, several K and N blocks, epilogue.
THREAD_SHAPES = [(3, 300, 700, False, True), (40, 500, 600, False, False), (600, 200, 700, False, True),
                 (30, 900, 300, True, True), (1000, 40, 520, True, False), (700, 1, 300, False, False),
                 (1, 3000, 700, False, False), (1, 2100, 300, True, False), (900, 100, 600, False, False),
                 (400, 1300, 300, False, False), (1000, 40, 700, False, False), (700, 17, 600, False, True)]


def test_sgemm_threads_bitwise_identical(isa, rng, threads):
    for M, N, K, ta, tb in THREAD_SHAPES:
        a, b = _operands(rng, M, N, K, ta, tb, 1)
        bias = rng.standard_normal(N).astype(np.float32)
        outs = []
        for nt in (1, 2):
            fastml.set_num_threads(nt)
            c = np.ones((M, N), np.float32)
            _C.sgemm(a, b, c, ta, tb, 0.75, 0.5, bias=bias, act="gelu")
            outs.append(c)
        assert np.array_equal(outs[0], outs[1]), f"{M}x{N}x{K} differs between 1 and 2 threads"


# Several threads with enough rows: each thread computes a contiguous share of the rows as its own product
# (gemm.cpp run_row_split); the shares start at row M * t / nt, inside a row group, and the row bias follows.
@pytest.mark.parametrize("M,N,K,ta,tb", [(112, 300, 130, False, False), (257, 70, 520, True, False),
                                         (1000, 45, 64, False, True), (150, 2000, 40, False, False)])
def test_sgemm_row_split(isa, rng, threads, M, N, K, ta, tb):
    a, b = _operands(rng, M, N, K, ta, tb, 1)
    _check_epilogues(rng, a, b, ta, tb, M, N, K, isa, ldc_pad=3)


def _check_epilogues(rng, a, b, ta, tb, M, N, K, isa, ldc_pad=0):
    """alpha 0.5 with each (beta, bias kind, activation) of the epilogue against the float64 reference, C with
    leading dimension N + ldc_pad (NaN where beta = 0), 1 vs 2 threads bitwise."""
    for beta, bias_kind, act in [(0.0, None, "none"), (-0.5, "row", "relu"), (1.0, "col", "tanh")]:
        c0 = rng.standard_normal((M, N + ldc_pad)).astype(np.float32)[:, :N]
        bias = None if bias_kind is None else rng.standard_normal(M if bias_kind == "row" else N).astype(np.float32)
        outs = []
        for nt in (1, 2):
            fastml.set_num_threads(nt)
            cbuf = np.empty((M, N + ldc_pad), np.float32)
            cbuf[:, :N] = c0 if beta != 0.0 else np.nan
            cv = cbuf[:, :N]
            _C.sgemm(a, b, cv, ta, tb, 0.5, beta, bias=bias, bias_kind=bias_kind or "col", act=act)
            outs.append(cv.copy())
        assert np.array_equal(outs[0], outs[1]), f"{M}x{N}x{K} beta={beta} differs between 1 and 2 threads"
        lin = 0.5 * (_op(a, ta).astype(np.float64) @ _op(b, tb).astype(np.float64)) + beta * c0
        base = np.float32(0.5) * (_op(a, ta) @ _op(b, tb)) + np.float32(beta) * c0
        if bias is not None:
            bb = bias[:, None] if bias_kind == "row" else bias[None, :]
            lin, base = lin + bb, base + bb
        ref = ACTS[act](lin)
        with fastml.use_backend("numpy"):
            base32 = base if act == "none" else ACT32[act](base.astype(np.float32))
        assert_error_within(outs[0], ref, base32, scale=float(np.abs(lin).max()),
                            what=f"{isa['isa']} {M}x{N}x{K} beta={beta} {bias_kind} {act}")


# Few rows of A against a wide B^T (nn.Linear's x W^T) run as C^T = B A^T with B read in place
# (gemm.cpp, swap_small_m): every epilogue and beta feature, ldc > N, C^T chunks, 1 vs 2 threads on that path.
@pytest.mark.parametrize("M,N,K", [(17, 129, 50), (40, 300, 257), (128, 1000, 600), (29, 4 * 32 + 1, 1),
                                   (128, 32768 + 33, 4)], ids=str)   # last: C^T in two chunks
def test_sgemm_small_m_times_b_transposed(isa, rng, threads, M, N, K):
    blk = _C.gemm_blocking()
    assert M <= 4 * blk["nr"] < N or isa["isa"] != "avx512"  # the shapes this test is about (AVX-512 tile)
    a, b = _operands(rng, M, N, K, False, True, 3)
    _check_epilogues(rng, a, b, False, True, M, N, K, isa, ldc_pad=5)   # ldc > N


# op(B) = B read in place with several row groups (M <= MC, gemm.cpp's B-sliver-outer loop): the first row
# group's microkernel copies the sliver while computing (micro_copy_b), the others read the copy; with A read
# in place (N <= 4 NR) the sliver is copied first. Last shape: K long enough for two packed-A super-blocks.
@pytest.mark.parametrize("M,N,K,ta", [(15, 200, 300, False), (32, 768, 600, False), (47, 129, 513, True),
                                      (40, 100, 300, False), (140, 130, 30000, False)], ids=str)
def test_sgemm_b_in_place_row_groups(isa, rng, threads, M, N, K, ta):
    assert M <= 10 * isa["mr"] and M > isa["mr"] or isa["isa"] != "avx512"  # several row groups, B in place
    a, b = _operands(rng, M, N, K, ta, False, 3)
    _check_epilogues(rng, a, b, ta, False, M, N, K, isa)


@pytest.fixture
def odd_blocking():
    """Small KC and NC that are not multiples of the packing items: many K and N blocks with ragged ends."""
    nr = _C.gemm_blocking()["nr"]
    _C.gemm_set_blocking(40, 3 * nr)
    yield
    _C.gemm_set_blocking(0, 0)


# GEMV (M = 1) with K blocks of 1 (KC override): K x N partials exceed the scratch bound, so the threaded call
# takes column chunks instead of K-block tasks; both must give the one-thread bits.
def test_sgemv_column_chunk_fallback(isa, rng, threads):
    _C.gemm_set_blocking(1, 0)
    try:
        K, N = 4096, 1100  # 4096 blocks x 1100 columns > 4M floats of partials
        a, b = _operands(rng, 1, N, K, False, False, 2)
        outs = []
        for nt in (1, 2):
            fastml.set_num_threads(nt)
            c = np.full((1, N), np.nan, np.float32)
            _C.sgemm(a, b, c)
            outs.append(c)
        assert np.array_equal(outs[0], outs[1])
        # one sequential sum of K terms per element (blocks of 1): the forward error bound K eps sum|a b|
        bound = K * EPS32 * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))
        assert np.all(np.abs(outs[0] - a.astype(np.float64) @ b.astype(np.float64)) <= bound)
    finally:
        _C.gemm_set_blocking(0, 0)


def test_sgemm_block_edges(isa, rng, threads, odd_blocking):
    for M, N, K, ta, tb in [(200, 301, 130, False, False), (150, 200, 97, True, True), (300, 250, 81, False, True),
                            (33, 500, 90, True, False), (200, 40, 530, False, False), (130, 17, 300, False, True)]:
        a, b = _operands(rng, M, N, K, ta, tb, 2)
        c0 = rng.standard_normal((M, N)).astype(np.float32)
        bias = rng.standard_normal(N).astype(np.float32)
        outs = []
        for nt in (1, 2):
            fastml.set_num_threads(nt)
            c = c0.copy()
            _C.sgemm(a, b, c, ta, tb, 1.5, -0.5, bias=bias, act="relu")
            outs.append(c)
        assert np.array_equal(outs[0], outs[1])
        lin = 1.5 * (_op(a, ta).astype(np.float64) @ _op(b, tb)) - 0.5 * c0 + bias
        base = np.float32(1.5) * (_op(a, ta) @ _op(b, tb)) - np.float32(0.5) * c0 + bias
        assert_error_within(outs[0], np.maximum(lin, 0), np.maximum(base, 0), scale=float(np.abs(lin).max()),
                            what=f"odd blocking {M}x{N}x{K} {ta}{tb}")


def test_sgemm_prepacked_and_batched_block_edges(isa, rng, odd_blocking):
    K, N = 130, 301
    b = rng.standard_normal((N, K)).astype(np.float32)
    pb = _C.gemm_pack_b(b, True)
    a = rng.standard_normal((70, K)).astype(np.float32)
    c = np.empty((70, N), np.float32)
    _C.sgemm_packed(a, pb, c)
    assert_error_within(c, a.astype(np.float64) @ b.T, a @ b.T, what="prepacked, odd blocking")
    a3 = rng.standard_normal((3, 50, 97)).astype(np.float32)
    b3 = rng.standard_normal((3, 97, 200)).astype(np.float32)
    c3 = np.empty((3, 50, 200), np.float32)
    _C.sgemm_batched(a3, b3, c3)
    assert_error_within(c3, a3.astype(np.float64) @ b3, a3 @ b3, what="batched, odd blocking")


def test_sgemm_nonfinite_propagates(isa, rng):
    a = rng.standard_normal((20, 40)).astype(np.float32)
    b = rng.standard_normal((40, 50)).astype(np.float32)
    a[3, 7] = np.nan
    a[5, 1] = np.inf
    c = np.empty((20, 50), np.float32)
    _C.sgemm(a, b, c)
    assert np.all(np.isnan(c[3]))
    assert np.all(np.isinf(c[5]) | np.isnan(c[5]))
    rest = np.delete(np.arange(20), [3, 5])
    assert np.all(np.isfinite(c[rest]))


def test_gemm_variants_listed():
    v = _C.variants("gemm")
    assert "scalar" in v
    if _C.build_info()["x86"]:
        assert {"avx2", "avx512"} <= set(v)


def test_sgemm_bad_inputs_write_nothing(rng):
    a = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal((5, 6)).astype(np.float32)
    c = np.full((4, 6), 7.0, np.float32)
    bad = [
        (TypeError, "float32", lambda: _C.sgemm(a.astype(np.float64), b, c)),
        (TypeError, "numpy array", lambda: _C.sgemm([[1.0]], b, c)),
        (ValueError, "rows", lambda: _C.sgemm(a, b[:4], c)),
        (ValueError, "shape", lambda: _C.sgemm(a, b, c[:, :5])),
        (ValueError, "2-D", lambda: _C.sgemm(a[0], b, c)),
        (ValueError, "contiguous rows", lambda: _C.sgemm(a, np.asfortranarray(b), c)),
        (ValueError, "writeable", lambda: _C.sgemm(a, b, np.broadcast_to(c[0], c.shape))),
        (ValueError, "bias of shape", lambda: _C.sgemm(a, b, c, bias=np.ones(5, np.float32))),
        (ValueError, "bias_kind", lambda: _C.sgemm(a, b, c, bias=np.ones(6, np.float32), bias_kind="x")),
        (ValueError, "act", lambda: _C.sgemm(a, b, c, act="swish")),
        (ValueError, "overlap", lambda: _C.sgemm(c[:, :5], b, c)),
        (ValueError, "batch", lambda: _C.sgemm_batched(a[None], np.stack([b, b]), c[None])),
        (ValueError, "overlap", lambda: _C.sgemm_batched(np.stack([a, a]), np.stack([b, b]),
                                                         np.lib.stride_tricks.as_strided(c, (2, 4, 6), (4, 24, 4)))),
    ]
    for exc, msg, fn in bad:
        with pytest.raises(exc, match=msg):
            fn()
        assert np.all(c == 7.0), f"{msg}: output written before the error"
