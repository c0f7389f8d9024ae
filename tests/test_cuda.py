"""The CUDA backend without a GPU: fastml._C_cuda (when built) and the __cuda_array_interface__ parsing and
validation of fastml/_cuda_ops.py.

* the compiled module: it imports, lists its ops, and device_info() raises RuntimeError without a GPU;
* _cuda_ops with fake device arrays and a recorder in place of the compiled module: the launch
  arguments (pointers, sizes, (outer, dim, inner), stream), and every validation error raised before
  any launch.
The kernels themselves are tested on a GPU in tests/test_cuda_kernels.py.
"""
import math

import numpy as np
import pytest

import fastml.functional as F
from fastml import _backend as B
from fastml import _cuda_ops as CO
from _cuda_util import GPU_SKIP, needs_ext


# ================================ 1. the module on any machine =====================================

@needs_ext
def test_cuda_module_imports_and_lists_ops():
    import fastml._C_cuda as m

    assert {"activation", "softmax", "optim"} <= set(m.ops())
    for name in ("activation_forward", "activation_backward", "softmax_forward", "softmax_backward",
                 "sgd_step", "rmsprop_step", "adam_step", "device_info"):
        assert callable(getattr(m, name))


@needs_ext
def test_cuda_device_info_raises_or_describes():
    if GPU_SKIP is None:
        d = B._C_cuda.device_info()
        assert d["device_count"] >= 1 and len(d["devices"]) == d["device_count"]
        assert isinstance(d["name"], str) and len(d["compute_capability"]) == 2 and d["total_memory"] > 0
        assert d["runtime_version"] > 0 and d["driver_version"] > 0
    else:
        with pytest.raises(RuntimeError, match="device_info: no usable CUDA device"):
            B._C_cuda.device_info()


# ====================== 2. interface parsing and validation (no GPU needed) ========================

class FakeDeviceArray:
    """Anything with a __cuda_array_interface__; not a torch/CuPy type, so fastml cannot allocate like it."""

    def __init__(self, shape, ptr=1 << 20, typestr="<f4", strides=None, readonly=False, version=3, **extra):
        self.__cuda_array_interface__ = dict(shape=tuple(shape), typestr=typestr, data=(ptr, readonly),
                                             strides=strides, version=version, **extra)


class Recorder:
    """Stands in for fastml._C_cuda: records the calls instead of launching."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def record(*args):
            self.calls.append((name, args))
        return record


@pytest.fixture
def rec(monkeypatch):
    r = Recorder()
    monkeypatch.setattr(CO, "_K", r)
    return r


def test_parse_interface_fields(rec):
    a = CO.parse(FakeDeviceArray((2, 3), ptr=4096), "op", "x")
    assert (a.ptr, a.shape, a.size, a.nbytes, a.c_contiguous, a.readonly) == (4096, (2, 3), 6, 24, True, False)
    assert CO.parse(FakeDeviceArray((2, 3), strides=(12, 4)), "op", "x").c_contiguous
    assert CO.parse(FakeDeviceArray((2, 1), strides=(4, 99)), "op", "x").c_contiguous  # size-1 dims don't matter
    assert not CO.parse(FakeDeviceArray((2, 3), strides=(24, 8)), "op", "x").c_contiguous
    assert not CO.parse(FakeDeviceArray((2, 3), strides=(4, 8)), "op", "x").c_contiguous  # Fortran order
    assert CO.parse(FakeDeviceArray((0, 3), ptr=0), "op", "x").size == 0  # empty arrays may have a null pointer
    assert CO.parse(FakeDeviceArray(()), "op", "x").size == 1


@pytest.mark.parametrize("stream,expected", [("absent", 1), (None, 1), (1, 1), (2, 2), (0x7F00DEAD, 0x7F00DEAD)])
def test_parse_stream(rec, stream, expected):
    extra = {} if stream == "absent" else {"stream": stream}
    x = FakeDeviceArray((5,), **extra)
    assert CO.parse(x, "op", "x").stream == expected
    CO.activation_forward(0, x, FakeDeviceArray((5,), ptr=1 << 30))
    assert rec.calls[-1][1][-1] == expected  # the kernel runs on the array's stream


def test_parse_rejects(rec):
    with pytest.raises(TypeError, match=r"relu: expected float32 for input, got float64"):
        CO.activation_forward(0, FakeDeviceArray((3,), typestr="<f8"), None)
    with pytest.raises(TypeError, match=r"expected float32 for input, got float16"):
        CO.activation_forward(0, FakeDeviceArray((3,), typestr="<f2"), None)
    with pytest.raises(TypeError, match=r"expected float32 for input, got int32"):
        CO.activation_forward(0, FakeDeviceArray((3,), typestr="<i4"), None)
    with pytest.raises(TypeError, match="without a mask"):
        CO.activation_forward(0, FakeDeviceArray((3,), mask=FakeDeviceArray((3,), typestr="|b1")), None)
    with pytest.raises(TypeError, match="version >= 2"):
        CO.activation_forward(0, FakeDeviceArray((3,), version=1), None)
    with pytest.raises(ValueError, match="stream handle other than 0"):
        CO.activation_forward(0, FakeDeviceArray((3,), stream=0), None)
    with pytest.raises(TypeError, match=r"relu: expected a CUDA array .* for input, got numpy.ndarray"):
        CO.activation_forward(0, np.zeros(3, np.float32), None)
    with pytest.raises(ValueError, match="non-null data pointer"):
        CO.activation_forward(0, FakeDeviceArray((3,), ptr=0), None)
    assert rec.calls == []


def test_activation_validation_before_launch(rec):
    x = FakeDeviceArray((4, 5), ptr=1 << 20)
    with pytest.raises(ValueError, match=r"activation: unknown kind 6"):
        CO.activation_forward(6, x, None)
    with pytest.raises(TypeError, match="cannot allocate an output like a .*FakeDeviceArray.*pass out="):
        CO.activation_forward(0, x, None)
    with pytest.raises(ValueError, match=r"sigmoid: expected out of shape \(4, 5\), got \(20,\)"):
        CO.activation_forward(2, x, FakeDeviceArray((20,), ptr=1 << 30))
    with pytest.raises(ValueError, match="tanh: expected a writeable array for out"):
        CO.activation_forward(3, x, FakeDeviceArray((4, 5), ptr=1 << 30, readonly=True))
    with pytest.raises(ValueError, match="gelu: expected a C-contiguous array for out"):
        CO.activation_forward(4, x, FakeDeviceArray((4, 5), ptr=1 << 30, strides=(40, 4)))
    with pytest.raises(ValueError, match="relu: out partially overlaps input"):
        CO.activation_forward(0, x, FakeDeviceArray((4, 5), ptr=(1 << 20) + 4))
    with pytest.raises(ValueError, match=r"expected a C-contiguous array for input \(fastml cannot copy"):
        CO.activation_forward(0, FakeDeviceArray((4, 5), strides=(40, 8)), FakeDeviceArray((4, 5), ptr=1 << 30))
    with pytest.raises(ValueError, match=r"sigmoid_backward: expected grad_output of shape \(4, 5\), got \(5, 4\)"):
        CO.activation_backward(2, FakeDeviceArray((5, 4)), x, FakeDeviceArray((5, 4), ptr=1 << 30))
    with pytest.raises(TypeError, match=r"sigmoid: expected a CUDA array .* for output, got numpy.ndarray"):
        CO.activation_backward(2, x, np.zeros((4, 5), np.float32), None)
    with pytest.raises(ValueError, match="gelu_backward: out partially overlaps an input"):
        CO.activation_backward(5, x, FakeDeviceArray((4, 5), ptr=1 << 30), FakeDeviceArray((4, 5), ptr=(1 << 30) + 8))
    assert rec.calls == []
    # exact aliasing is allowed; the launch receives pointers, sizes, the parameter and the stream
    out = CO.activation_forward(1, x, x, 0.25)
    assert out is x
    assert rec.calls == [("activation_forward", (1, 1 << 20, 1 << 20, 20, 0.25, -1, 1))]
    g, s, o = FakeDeviceArray((4, 5), ptr=8192), FakeDeviceArray((4, 5), ptr=1 << 24), FakeDeviceArray((4, 5), ptr=1 << 28)
    assert CO.activation_backward(4, g, s, o) is o
    assert rec.calls[-1] == ("activation_backward", (4, 8192, 1 << 24, 1 << 28, 20, 0.0, -1, 1))


@pytest.mark.parametrize("shape,dim,split", [
    ((2, 3, 4), 1, (2, 3, 4)), ((2, 3, 4), -1, (6, 4, 1)), ((2, 3, 4), 0, (1, 2, 12)), ((7,), 0, (1, 7, 1)),
    ((), 0, (1, 1, 1)), ((), -1, (1, 1, 1)), ((3, 0, 2), 2, (0, 2, 1))])
def test_softmax_split_and_launch_args(rec, shape, dim, split):
    x, y = FakeDeviceArray(shape, ptr=4096), FakeDeviceArray(shape, ptr=1 << 30)
    assert CO.softmax_forward(x, dim, True, y) is y
    assert rec.calls[-1] == ("softmax_forward", (4096, 1 << 30, *split, True, -1, 1))
    g = FakeDeviceArray(shape, ptr=1 << 26, stream=2)
    assert CO.softmax_backward(g, x, dim, False, y) is y
    assert rec.calls[-1] == ("softmax_backward", (1 << 26, 4096, 1 << 30, *split, False, -1, 2))


def test_softmax_validation_before_launch(rec):
    x, y = FakeDeviceArray((2, 3)), FakeDeviceArray((2, 3), ptr=1 << 30)
    with pytest.raises(ValueError, match=r"softmax: expected dim in \[-2, 1\] for an input of shape \(2, 3\), got 2"):
        CO.softmax_forward(x, 2, False, y)
    with pytest.raises(ValueError, match=r"log_softmax: expected dim in \[-1, 0\] .* got 1"):
        CO.softmax_forward(FakeDeviceArray(()), 1, True, y)
    with pytest.raises(TypeError, match="softmax: expected an int for dim, got float"):
        CO.softmax_forward(x, 1.0, False, y)
    with pytest.raises(ValueError, match=r"log_softmax_backward: expected grad_output of shape \(2, 3\), got \(3, 2\)"):
        CO.softmax_backward(FakeDeviceArray((3, 2)), x, 1, True, y)
    with pytest.raises(ValueError, match=r"softmax: expected out of shape \(2, 3\), got \(6,\)"):
        CO.softmax_forward(x, 1, False, FakeDeviceArray((6,), ptr=1 << 30))
    with pytest.raises(ValueError, match="softmax_backward: out partially overlaps an input"):
        CO.softmax_backward(x, FakeDeviceArray((2, 3), ptr=1 << 24), 1, False, FakeDeviceArray((2, 3), ptr=(1 << 24) + 4))
    assert rec.calls == []


def _fakes(shapes, base):
    out, p = [], base
    for s in shapes:
        out.append(FakeDeviceArray(s, ptr=p))
        p += 4 * max(math.prod(s), 1) + 256
    return out


SHAPES = [(3,), (2, 5), (0,), (7,)]


def test_optim_launch_args(rec):
    P, G, M, V, X = (_fakes(SHAPES, b << 24) for b in range(1, 6))
    CO.sgd_step(P, G, M, lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=True, maximize=False,
                first_step=True)
    name, args = rec.calls[-1]
    assert name == "sgd_step"
    assert args[0] == [p.__cuda_array_interface__["data"][0] for p in P]
    assert args[2] == [m.__cuda_array_interface__["data"][0] for m in M]
    assert args[3] == [3, 10, 0, 7] and args[4:] == (0.1, 0.9, 0.0, 0.01, True, False, True, -1, 1)
    CO.sgd_step(P, G, None, lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=True,
                first_step=False)
    assert rec.calls[-1][1][2] == []  # no buffers without momentum
    CO.rmsprop_step(P, G, M, lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.0, momentum=0.5, momentum_buffers=V,
                    centered=True, grad_avgs=X, maximize=False)
    name, args = rec.calls[-1]
    assert name == "rmsprop_step" and args[3] == [v.__cuda_array_interface__["data"][0] for v in V]
    assert args[5] == [3, 10, 0, 7] and args[6:] == (0.01, 0.9, 1e-6, 0.0, 0.5, True, False, -1, 1)
    CO.adam_step(P, G, M, V, step=3, lr=1e-3, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.1, amsgrad=True,
                 max_exp_avg_sqs=X, maximize=False, decoupled=True)
    name, args = rec.calls[-1]
    assert name == "adam_step" and args[4] == [x.__cuda_array_interface__["data"][0] for x in X]
    assert args[6:] == (3, 1e-3, 0.8, 0.99, 1e-8, 0.1, True, False, True, -1, 1)


def test_optim_validation_before_launch(rec):
    P, G, M, V, X = (_fakes(SHAPES, b << 24) for b in range(1, 6))
    kw = dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False, first_step=False)
    with pytest.raises(ValueError, match=r"sgd_step: expected 4 grads \(one per param\), got 3"):
        CO.sgd_step(P, G[:3], M, **kw)
    with pytest.raises(ValueError, match="sgd_step: expected momentum_buffers with momentum=0.9, got None"):
        CO.sgd_step(P, G, None, **kw)
    with pytest.raises(ValueError, match=r"sgd_step: expected lr >= 0.0, got -0.1"):
        CO.sgd_step(P, G, M, **{**kw, "lr": -0.1})
    with pytest.raises(ValueError, match="nesterov"):
        CO.sgd_step(P, G, M, **{**kw, "nesterov": True, "dampening": 0.1})
    with pytest.raises(ValueError, match=r"sgd_step: expected grads\[1\] of shape \(2, 5\), got \(10,\)"):
        CO.sgd_step(P, [G[0], FakeDeviceArray((10,), ptr=G[1].__cuda_array_interface__["data"][0]), G[2], G[3]], M, **kw)
    with pytest.raises(TypeError, match=r"sgd_step: expected float32 for momentum_buffers\[0\], got float64"):
        CO.sgd_step(P, G, [FakeDeviceArray((3,), typestr="<f8", ptr=9 << 24)] + M[1:], **kw)
    with pytest.raises(ValueError, match=r"expected a writeable array for params\[3\]"):
        CO.sgd_step(P[:3] + [FakeDeviceArray((7,), ptr=9 << 24, readonly=True)], G, M, **kw)
    with pytest.raises(ValueError, match=r"expected a C-contiguous array for params\[1\] \(updated in place"):
        CO.sgd_step([P[0], FakeDeviceArray((2, 5), ptr=9 << 24, strides=(4, 8))] + P[2:], G, M, **kw)
    with pytest.raises(ValueError, match=r"expected params\[0\] and momentum_buffers\[0\] to be separate"):
        CO.sgd_step(P, G, [P[0]] + M[1:], **kw)
    with pytest.raises(ValueError, match=r"expected grads\[3\] not to overlap params\[3\]"):
        CO.sgd_step(P, G[:3] + [P[3]], M, **kw)
    with pytest.raises(TypeError, match="sgd_step: expected a list of CUDA arrays for params"):
        CO.sgd_step(P[0], G, M, **kw)
    rkw = dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, momentum_buffers=None, centered=True,
               grad_avgs=None, maximize=False)
    with pytest.raises(ValueError, match="rmsprop_step: expected grad_avgs with centered=True, got None"):
        CO.rmsprop_step(P, G, M, **rkw)
    with pytest.raises(ValueError, match=r"rmsprop_step: expected alpha >= 0.0, got -0.5"):
        CO.rmsprop_step(P, G, M, **{**rkw, "alpha": -0.5, "centered": False})
    with pytest.raises(ValueError, match=r"rmsprop_step: expected 4 square_avgs \(one per param\), got 2"):
        CO.rmsprop_step(P, G, M[:2], **{**rkw, "centered": False})
    akw = dict(step=1, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, max_exp_avg_sqs=None,
               maximize=False, decoupled=False)
    with pytest.raises(ValueError, match=r"adam_step: expected step >= 1 \(the count of this update\), got 0"):
        CO.adam_step(P, G, M, V, **{**akw, "step": 0})
    with pytest.raises(ValueError, match=r"adamw_step: expected betas in \[0, 1\), got \(0.9, 1.0\)"):
        CO.adam_step(P, G, M, V, **{**akw, "betas": (0.9, 1.0), "decoupled": True})
    with pytest.raises(ValueError, match=r"adam_step: expected eps >= 0.0, got nan"):
        CO.adam_step(P, G, M, V, **{**akw, "eps": float("nan")})
    with pytest.raises(ValueError, match="adam_step: expected max_exp_avg_sqs with amsgrad=True, got None"):
        CO.adam_step(P, G, M, V, **{**akw, "amsgrad": True})
    with pytest.raises(ValueError, match=r"adam_step: expected exp_avg_sqs\[1\] of shape \(2, 5\), got \(5, 2\)"):
        CO.adam_step(P, G, M, [V[0], FakeDeviceArray((5, 2), ptr=9 << 24), V[2], V[3]], **akw)
    assert rec.calls == []


def test_public_api_routes_device_arrays(monkeypatch, rec):
    monkeypatch.setattr(B, "_C_cuda", rec)  # cuda_module() only checks that the module is there
    x, y = FakeDeviceArray((8,), ptr=4096), FakeDeviceArray((8,), ptr=1 << 30)
    assert F.leaky_relu(x, 0.3, out=y) is y
    assert rec.calls[-1] == ("activation_forward", (1, 4096, 1 << 30, 8, 0.3, -1, 1))
    assert F.gelu_backward(x, y, approximate="tanh", out=x) is x
    assert rec.calls[-1] == ("activation_backward", (5, 4096, 1 << 30, 4096, 8, 0.0, -1, 1))
    assert F.relu(y, inplace=True) is y
    assert rec.calls[-1] == ("activation_forward", (0, 1 << 30, 1 << 30, 8, 0.0, -1, 1))


def test_public_api_without_cuda_module(monkeypatch):
    monkeypatch.setattr(B, "_C_cuda", None)
    with pytest.raises(RuntimeError, match="CUDA module is unavailable"):
        F.relu(FakeDeviceArray((8,)))


def test_is_device_array_accepts_tensors_that_refuse_the_interface():
    class RequiresGrad:  # torch raises RuntimeError (not AttributeError) for CUDA tensors with requires_grad
        @property
        def __cuda_array_interface__(self):
            raise RuntimeError("Can't get __cuda_array_interface__ on Variable that requires grad.")

    class HostOnly:
        @property
        def __cuda_array_interface__(self):
            raise AttributeError("not a CUDA tensor")

    assert B.is_device_array(RequiresGrad())
    assert not B.is_device_array(HostOnly())
    assert not B.is_device_array(np.zeros(3, np.float32))


def test_torch_tensors_are_read_without_the_interface_dict(rec):
    torch = pytest.importorskip("torch")

    class TorchLike:  # what _cuda_ops reads from a torch CUDA tensor (type's module starts with "torch")
        def __init__(self, t, ptr, is_cuda=True):
            self.t, self.ptr, self.is_cuda_ = t, ptr, is_cuda

        is_cuda = property(lambda self: self.is_cuda_)
        dtype = property(lambda self: self.t.dtype)
        layout = property(lambda self: self.t.layout)
        shape = property(lambda self: self.t.shape)
        device = property(lambda self: "cuda:0" if self.is_cuda_ else "cpu")

        def numel(self):
            return self.t.numel()

        def data_ptr(self):
            return self.ptr

        def is_contiguous(self):
            return self.t.is_contiguous()

        def stride(self):
            return self.t.stride()

    TorchLike.__module__ = "torch.fake"
    a = CO.parse(TorchLike(torch.zeros(3, 4), 4096), "op", "x")
    assert (a.library, a.ptr, a.shape, a.strides, a.c_contiguous) == ("torch", 4096, (3, 4), None, True)
    a = CO.parse(TorchLike(torch.zeros(4, 3).t(), 4096), "op", "x")
    assert a.strides == (4, 12) and not a.c_contiguous
    assert CO.parse(TorchLike(torch.zeros(0, 4), 4096), "op", "x").ptr == 0
    with pytest.raises(TypeError, match=r"relu: expected float32 for input, got float64"):
        CO.activation_forward(0, TorchLike(torch.zeros(3, dtype=torch.float64), 4096), None)
    with pytest.raises(TypeError, match=r"relu: expected a CUDA array .* for input, got a torch tensor on cpu"):
        CO.activation_forward(0, TorchLike(torch.zeros(3), 4096, is_cuda=False), None)
    with pytest.raises(ValueError, match=r"relu: expected a C-contiguous array for out \(updated in place"):
        CO.activation_forward(0, TorchLike(torch.zeros(4, 3), 4096), TorchLike(torch.zeros(3, 4).t(), 1 << 30))
    assert rec.calls == []


def test_torch_direct_read_and_device_check_of_tensor_lists(monkeypatch, rec):
    # a contiguous float32 CUDA torch tensor is read without the interface (CO._torch_direct); a CPU tensor
    # that claims to be on CUDA device 0 or 1 stands in for one here
    torch = pytest.importorskip("torch")

    class OnCuda(torch.Tensor):
        is_cuda = property(lambda self: True)
        device_index = 0

        def get_device(self):
            return type(self).device_index

    class OnCuda1(OnCuda):
        device_index = 1

    def dev(n, cls=OnCuda):
        return torch.zeros(n).as_subclass(cls)

    monkeypatch.setattr(CO, "_torch_current_stream", lambda t: 7)
    a = CO.parse(dev(6).reshape(2, 3), "op", "x")
    assert (a.library, a.shape, a.strides, a.readonly, a.c_contiguous) == ("torch", (2, 3), None, False, True)
    assert a.ptr == a.obj.data_ptr() and CO.parse(dev(0), "op", "x").ptr == 0
    assert CO.parse(dev(6).reshape(2, 3).t(), "op", "x").strides == (4, 12)  # not contiguous: general path
    P, G, M, V = ([dev(5), dev(7)] for _ in range(4))
    CO.adam_step(P, G, M, V, step=1)
    assert rec.calls[-1][0] == "adam_step" and rec.calls[-1][1][0] == [p.data_ptr() for p in P]
    assert rec.calls[-1][1][-2:] == (0, 7)  # the device as torch reports it, then the stream
    with pytest.raises(ValueError, match=r"adam_step: expected exp_avg_sqs\[1\] on the device of params\[0\] "
                                         r"\(cuda:0\), got cuda:1"):
        CO.adam_step(P, G, M, [V[0], dev(7, OnCuda1)], step=1)
    with pytest.raises(ValueError, match=r"relu: expected out on the device of input \(cuda:0\), got cuda:1"):
        CO.activation_forward(0, dev(4), dev(4, OnCuda1))
    # the one-pass check of torch lists hands every failure to the general parse, which names it
    L = CO._tensor_lists("adam_step", P, G, {"exp_avgs": M, "exp_avg_sqs": V, "max_exp_avg_sqs": None})
    assert L._first is P[0] and L.sizes == [5, 7] and L.device == 0 and L.ptrs["max_exp_avg_sqs"] == []
    assert L.ptrs["exp_avg_sqs"] == [v.data_ptr() for v in V]
    with pytest.raises(ValueError, match=r"adam_step: expected exp_avgs\[1\] of shape \(7,\), got \(6,\)"):
        CO.adam_step(P, G, [M[0], dev(6)], V, step=1)
    with pytest.raises(ValueError, match=r"adam_step: expected params\[0\] and exp_avgs\[0\] to be separate"):
        CO.adam_step(P, G, [P[0], M[1]], V, step=1)
    shared = dev(12)
    with pytest.raises(ValueError, match=r"adam_step: expected grads\[1\] not to overlap params\[1\]"):
        CO.adam_step([shared[:5], shared[5:]], [G[0], shared[5:]], M, V, step=1)
    with pytest.raises(TypeError, match=r"adam_step: expected float32 for grads\[1\], got float64"):
        CO.adam_step(P, [G[0], dev(7).double()], M, V, step=1)
    assert CO._tensor_lists("sgd_step", [], [], {"momentum_buffers": None}).sizes == []


def test_every_name_the_public_api_dispatches_to_exists():
    # fastml.functional / fastml.optim.functional call these on device arrays (by name)
    import fastml._cuda_ops as CO2

    for name in ("activation_forward", "activation_backward", "softmax_forward", "softmax_backward",
                 "sgd_step", "rmsprop_step", "adam_step", "adamw_step"):
        assert callable(getattr(CO2, name, None)), name
