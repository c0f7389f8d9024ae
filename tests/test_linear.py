"""linear, linear_backward and matmul: references on hand values, then every backend x ISA against them
(error <= 2x that of the same computation in float32 NumPy), torch parity, NumPy matmul semantics."""
import numpy as np
import pytest

import fastml
import fastml.functional as F
import fastml.reference as R
from _tolerance import EPS32, assert_error_within


def _within(got, ref, base, what):
    ref = np.asarray(ref, dtype=np.float64)
    # floor: 2 ulps of max|ref| (see tests/test_gemm.py: where OpenBLAS uses K-split gemv/dot kernels)
    assert_error_within(got, ref, base, floor=2 * EPS32 * max(float(np.abs(ref).max(initial=0)), 1e-30), what=what)


def test_reference_hand_values():
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    w = np.array([[1.0, 0.0], [0.5, 2.0], [-1.0, 1.0]])
    b = np.array([0.0, 1.0, -1.0])
    np.testing.assert_array_equal(R.linear(x, w, b), [[1.0, 5.5, 0.0], [3.0, 0.5, -5.0]])
    g = np.ones((2, 3))
    gi, gw, gb = R.linear_backward(g, x, w)
    np.testing.assert_array_equal(gi, [[0.5, 3.0], [0.5, 3.0]])
    np.testing.assert_array_equal(gw, [[4.0, 1.0]] * 3)
    np.testing.assert_array_equal(gb, [2.0, 2.0, 2.0])
    assert R.linear_backward(g, x, w, (False, True, False))[0] is None
    np.testing.assert_array_equal(R.matmul([1.0, 2.0], [[1.0], [1.0]]), [3.0])


LINEAR_SHAPES = [((1, 7), 5), ((4,), 3), ((5, 33), 17), ((2, 3, 64), 70), ((300, 257), 129), ((3, 1000), 40),
                 ((0, 8), 4), ((6, 0), 3)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xshape,out_f", LINEAR_SHAPES, ids=str)
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_forward(backend, rng, xshape, out_f, with_bias, dtype):
    x = rng.standard_normal(xshape).astype(dtype)
    w = rng.standard_normal((out_f, xshape[-1])).astype(dtype)
    b = rng.standard_normal(out_f).astype(dtype) if with_bias else None
    y = F.linear(x, w, b)
    assert y.dtype == dtype and y.shape == xshape[:-1] + (out_f,)
    base = x @ w.T + (b if b is not None else 0)
    _within(y, R.linear(x, w, b), base.astype(dtype), f"{backend} {xshape} {out_f}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xshape,out_f", LINEAR_SHAPES, ids=str)
def test_linear_backward(backend, rng, xshape, out_f, dtype):
    x = rng.standard_normal(xshape).astype(dtype)
    w = rng.standard_normal((out_f, xshape[-1])).astype(dtype)
    g = rng.standard_normal(xshape[:-1] + (out_f,)).astype(dtype)
    gi, gw, gb = F.linear_backward(g, x, w)
    ri, rw, rb = R.linear_backward(g, x, w)
    rows = int(np.prod(xshape[:-1]))
    g2, x2 = g.reshape(rows, out_f), x.reshape(rows, xshape[-1])
    assert gi.dtype == gw.dtype == gb.dtype == dtype
    _within(gi, ri, g @ w, "grad_input")
    _within(gw, rw, g2.T @ x2, "grad_weight")
    _within(gb, rb, g2.sum(0), "grad_bias")
    for mask in [(True, False, False), (False, True, False), (False, False, True), (False, False, False)]:
        res = F.linear_backward(g, x, w, output_mask=mask)
        assert [r is not None for r in res] == list(mask)


def test_linear_backward_strided_operands(backend, rng):
    # 2-D views (strided rows, a transposed weight, negative strides) give the contiguous copies' results
    x = rng.standard_normal((10, 40)).astype(np.float32)
    w = rng.standard_normal((24, 20)).astype(np.float32)
    g = rng.standard_normal((5, 24, 2)).astype(np.float32)
    xv, wv, gv = x[::2, 5:25], np.asfortranarray(w), g[::-1, :, 1]
    for got, want in zip(F.linear_backward(gv, xv, wv), F.linear_backward(*(np.ascontiguousarray(a) for a in (gv, xv, wv)))):
        np.testing.assert_array_equal(got, want)


def test_linear_backward_grad_bias_is_correctly_rounded_over_a_large_batch(backend, rng):
    # grad_bias sums a column over the whole batch: accumulated in float64 and rounded once, so it is the
    # float32 rounding of the exact sum (a float32 row-after-row sum drifts by ~1e-4 relative here).
    g = (1.0 + 1e-3 * rng.standard_normal((200_000, 3))).astype(np.float32)
    x = rng.standard_normal((200_000, 2)).astype(np.float32)
    w = rng.standard_normal((3, 2)).astype(np.float32)
    _, _, gb = F.linear_backward(g, x, w, output_mask=(False, False, True))
    exact = g.astype(np.float64).sum(axis=0)
    np.testing.assert_array_equal(gb, exact.astype(np.float32))


@pytest.mark.parametrize("rows,cols", [(0, 5), (1, 1), (3, 513), (200, 1100), (5000, 37)])
def test_column_sums_are_the_float64_row_order_sums(rng, threads, rows, cols):
    # _C.column_sums (linear_backward's grad_bias, the RNN bias gradients): the same bits as NumPy's float64
    # sum over axis 0 rounded once, for row strides wider than the row, and for 1 and 2 threads
    if not fastml._backend.HAS_CPU_EXT:
        pytest.skip("compiled module missing")
    C = fastml._backend._C
    wide = rng.standard_normal((rows, cols + 3)).astype(np.float32)
    for a in (np.ascontiguousarray(wide[:, :cols]), wide[:, 2:cols + 2]):
        want = a.sum(axis=0, dtype=np.float64).astype(np.float32)
        for nt in (1, 2):
            fastml.set_num_threads(nt)
            got = C.column_sums(a)
            assert got.shape == (cols,) and got.dtype == np.float32
            np.testing.assert_array_equal(got, want)


def test_linear_out_and_noncontiguous(backend, rng):
    xb = rng.standard_normal((10, 40)).astype(np.float32)
    x = xb[::2, 3:35]  # strided input is copied once at the boundary
    w = rng.standard_normal((64, 32)).astype(np.float32).T.copy().T  # Fortran-ordered weight
    b = rng.standard_normal(64).astype(np.float32)
    out = np.full((5, 64), np.nan, np.float32)
    y = F.linear(x, w, b, out=out)
    assert y is out
    _within(out, R.linear(x, w, b), x @ w.T + b, "out=")


def test_linear_bad_inputs(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    out = np.full((4, 3), 7.0, np.float32)
    cases = [
        (ValueError, r"expected input of shape \(\.\.\., 5\)", lambda: F.linear(x[:, :4], w, out=out)),
        (ValueError, "weight of shape", lambda: F.linear(x, w[0], out=out)),
        (ValueError, r"bias of shape \(3,\)", lambda: F.linear(x, w, np.ones(4, np.float32), out=out)),
        (TypeError, "dtype float32", lambda: F.linear(x, w.astype(np.float64), out=out)),
        (TypeError, "float32 or float64", lambda: F.linear(x.astype(np.int32), w, out=out)),
        (ValueError, r"out of shape \(4, 3\)", lambda: F.linear(x, w, out=np.empty((4, 4), np.float32))),
        (TypeError, "float32 for out", lambda: F.linear(x, w, out=np.empty((4, 3), np.float64))),
        (ValueError, "grad_output of shape", lambda: F.linear_backward(out[:, :2], x, w)),
        (ValueError, "output_mask", lambda: F.linear_backward(out, x, w, output_mask=(True,))),
    ]
    for exc, msg, fn in cases:
        with pytest.raises(exc, match=msg):
            fn()
        assert np.all(out == 7.0)


def test_linear_threads_bitwise_identical(rng, threads):
    x = rng.standard_normal((64, 300)).astype(np.float32)
    w = rng.standard_normal((500, 300)).astype(np.float32)
    b = rng.standard_normal(500).astype(np.float32)
    g = rng.standard_normal((64, 500)).astype(np.float32)
    res = []
    for nt in (1, 2):
        fastml.set_num_threads(nt)
        res.append((F.linear(x, w, b),) + F.linear_backward(g, x, w))
    for a, b_ in zip(*res):
        assert np.array_equal(a, b_)


def test_linear_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((7, 3, 96)).astype(np.float32)
    w = rng.standard_normal((50, 96)).astype(np.float32)
    b = rng.standard_normal(50).astype(np.float32)
    g = rng.standard_normal((7, 3, 50)).astype(np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.from_numpy(g))
    np.testing.assert_allclose(F.linear(x, w, b), ty.detach().numpy(), rtol=1e-5, atol=1e-4)
    gi, gw, gb = F.linear_backward(g, x, w)
    np.testing.assert_allclose(gi, tx.grad.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=1e-5, atol=1e-4)


MATMUL_CASES = [((5,), (5,)), ((5,), (5, 3)), ((4, 5), (5,)), ((4, 5), (5, 3)), ((2, 4, 5), (5, 3)),
                ((5,), (2, 5, 3)), ((2, 4, 5), (2, 5, 3)), ((2, 1, 4, 5), (3, 5, 6)), ((1, 4, 5), (4, 5, 6)),
                ((3, 4, 5), (5,)), ((40, 300), (300, 70)), ((3, 0, 5), (5, 2)), ((2, 3, 0), (0, 4)),
                ((0, 4, 5), (0, 5, 6)), ((3, 0, 5), (3, 5, 6)), ((3, 4, 0), (3, 0, 6)), ((3, 4, 5), (3, 5, 0)),
                ((2, 3, 4, 5), (2, 3, 5, 6)), ((4, 1, 6, 5), (1, 3, 5, 2)), ((2, 3, 4, 5), (3, 5, 6)),
                ((2, 1, 3, 4, 5), (1, 2, 1, 5, 3))]


@pytest.mark.parametrize("ashape,bshape", MATMUL_CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_numpy_semantics(backend, rng, ashape, bshape, dtype):
    a = rng.standard_normal(ashape).astype(dtype)
    b = rng.standard_normal(bshape).astype(dtype)
    got = fastml.matmul(a, b)
    want = np.matmul(a, b)
    assert np.shape(got) == want.shape and np.asarray(got).dtype == want.dtype
    _within(got, R.matmul(a, b), want, f"{backend} {ashape} @ {bshape}")


def test_matmul_batched_views(backend, rng):
    # the same-batch 3-D path: strided rows, transposed operands, negative strides, a broadcast (0-stride) batch
    a = rng.standard_normal((3, 8, 5)).astype(np.float32)
    b = rng.standard_normal((3, 6, 5)).astype(np.float32)
    a4 = rng.standard_normal((4, 6, 8, 5)).astype(np.float32)
    for x, y in ((a[:, ::2], b.transpose(0, 2, 1)), (a[::-1], b[:, ::-1].transpose(0, 2, 1)),
                 (np.broadcast_to(a[:1], a.shape), np.ascontiguousarray(b.transpose(0, 2, 1))),
                 (a4.transpose(1, 0, 2, 3), b[:1].transpose(0, 2, 1)),  # batch dims that do not merge
                 (a4[:, ::2], np.broadcast_to(b.transpose(0, 2, 1)[:1], (4, 3, 5, 6))),
                 (a4[::2, ::3], b.transpose(0, 2, 1)[None, :2])):
        got = fastml.matmul(x, y)
        _within(got, R.matmul(x, y), np.matmul(x, y), f"{backend} {x.strides} @ {y.strides}")


def test_matmul_views_out_and_mixed_dtypes(backend, rng):
    a = rng.standard_normal((6, 40, 30)).astype(np.float32)
    b = rng.standard_normal((30, 6, 50)).astype(np.float32)
    x = a.transpose(0, 2, 1)[:, ::2]  # (6, 15, 40), transposed and strided
    y = rng.standard_normal((6, 40, 9)).astype(np.float32)[:, :, ::2]  # non-unit inner stride
    out = np.empty((6, 15, 5), np.float32)
    res = fastml.matmul(x, y, out=out)
    assert res is out
    _within(out, R.matmul(x, y), np.matmul(x, y), "views")
    mixed = fastml.matmul(a[0], b[:, 0].astype(np.float64))
    assert mixed.dtype == np.float64
    np.testing.assert_allclose(mixed, a[0].astype(np.float64) @ b[:, 0], rtol=1e-6, atol=1e-5)
    bc = np.broadcast_to(rng.standard_normal(30).astype(np.float32), (40, 30))  # zero row stride
    _within(fastml.matmul(bc, b[:, 0]), R.matmul(bc, b[:, 0]), bc @ b[:, 0], "broadcast rows")


def test_matmul_3d_out(backend, rng):
    # contiguous same-batch operands with a contiguous out: the batched hot path writes out in place,
    # bitwise the result without out=; an out that overlaps an operand is refused
    a = rng.standard_normal((5, 7, 33)).astype(np.float32)
    b = rng.standard_normal((5, 33, 7)).astype(np.float32)
    out = np.full((5, 7, 7), np.nan, np.float32)
    res = fastml.matmul(a, b, out=out)
    assert res is out
    np.testing.assert_array_equal(out, fastml.matmul(a, b))
    _within(out, R.matmul(a, b), np.matmul(a, b), f"{backend} out=")
    sq = rng.standard_normal((5, 7, 7)).astype(np.float32)
    with pytest.raises(ValueError, match="share memory"):
        fastml.matmul(sq, np.ascontiguousarray(b[:, :7, :]), out=sq)  # the hot path's own check
    with pytest.raises(ValueError, match=r"out of shape \(5, 7, 7\)"):
        fastml.matmul(a, b, out=np.empty((5, 7, 8), np.float32))


def test_matmul_2d_views_read_in_place(backend, rng):
    # 2-D hot path: transposed views (x.T) go to the engine as op = trans with their column stride,
    # sliced rows / columns with their row stride; other strides are copied. Each result is close to the
    # reference and bitwise that of contiguous copies (the transposes change the packing, not the sums).
    big = rng.standard_normal((90, 130)).astype(np.float32)
    other = rng.standard_normal((130, 90)).astype(np.float32)
    views = {"c": big[:40, :70], "T": other[:70, :40].T, "rows": big[::2, :70][:40], "neg": big[:40, 69::-1],
             "1col": big[:40, 5:6], "1row": other[5:6, :40].T.T, "1colT": other[7:8, :40].T,
             "step2": big[:40, ::2][:, :35]}
    rhs = {"c": other[:70, :50], "T": big[:50, :70].T, "rowsT": big[:100:2, :70].T}
    for na, a in views.items():
        for nb, b in rhs.items():
            k = min(a.shape[1], b.shape[0])
            x, y = a[:, :k], b[:k]
            got = fastml.matmul(x, y)
            _within(got, R.matmul(x, y), np.matmul(x, y), f"{backend} {na} @ {nb}")
            if backend == "numpy":
                continue
            assert np.array_equal(got, fastml.matmul(np.ascontiguousarray(x), np.ascontiguousarray(y))), f"{na} @ {nb}"


def test_matmul_bad_inputs(rng):
    a = rng.standard_normal((4, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="5 rows"):
        fastml.matmul(a, a)
    with pytest.raises(ValueError, match="do not broadcast"):
        fastml.matmul(np.zeros((2, 4, 5), np.float32), np.zeros((3, 5, 4), np.float32))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        fastml.matmul(np.float32(1.0), a)
    with pytest.raises(TypeError, match="float32 or float64"):
        fastml.matmul(a.astype(np.int64), a.T)
    with pytest.raises(ValueError, match=r"out of shape \(4, 4\)"):
        fastml.matmul(a, a.T, out=np.empty((4, 5), np.float32))


def test_matmul_threads_bitwise_identical(rng, threads):
    a = rng.standard_normal((8, 70, 130)).astype(np.float32)
    b = rng.standard_normal((8, 130, 90)).astype(np.float32)
    res = []
    for nt in (1, 2):
        fastml.set_num_threads(nt)
        res.append(fastml.matmul(a, b))
    assert np.array_equal(res[0], res[1])


def test_matmul_out_returns_out_and_rejects_shared_memory(backend):
    v = np.ones(5, np.float32)
    o = np.empty((), np.float32)
    assert F.matmul(v, v, out=o) is o and o == 5.0
    a = np.ones((2, 3, 3), np.float32)
    before = a.copy()
    with pytest.raises(ValueError, match="matmul: expected out not to share memory with a or b"):
        F.matmul(a, a[0], out=a)
    np.testing.assert_array_equal(a, before)


def test_matmul_out_overlap_found_from_strides(backend, rng):
    # a reads every fourth 16-float stretch of buf (rows 64 floats apart, read in place by the compiled
    # engine): out over a's third row overlaps it although it lies past a's first a.nbytes bytes.
    buf = rng.standard_normal((4, 64)).astype(np.float32)
    a, b = buf[:, :16], np.ones((16, 4), np.float32)
    before = buf.copy()
    with pytest.raises(ValueError, match="share memory"):
        F.matmul(a, b, out=buf.reshape(-1)[128:144].reshape(4, 4))
    np.testing.assert_array_equal(buf, before)
    # and a broadcast operand spans only the memory it reads: out just past it is no overlap
    store = np.zeros(64 + 16, np.float32)
    row = store[:16]
    row[:] = rng.standard_normal(16)
    a2 = np.broadcast_to(row, (4, 16))
    out = store[64:80].reshape(4, 4)
    assert F.matmul(a2, b, out=out) is out
    np.testing.assert_allclose(out, np.broadcast_to(row.sum(), (4, 4)), rtol=1e-5)
