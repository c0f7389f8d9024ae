"""Shared pieces of the CUDA tests: why GPU tests are skipped, and the array libraries (torch, CuPy)
that the kernel tests run under (the ``lib`` fixture)."""
import numpy as np
import pytest

from fastml import _backend as B


def _gpu_skip_reason():
    if not B.HAS_CUDA_EXT:
        return f"CUDA module not available: {B.CUDA_IMPORT_ERROR}"
    try:
        B._C_cuda.device_info()
    except RuntimeError as exc:
        return f"no usable GPU: {exc}"
    return None


GPU_SKIP = _gpu_skip_reason()
gpu = pytest.mark.skipif(GPU_SKIP is not None, reason=str(GPU_SKIP))
needs_ext = pytest.mark.skipif(not B.HAS_CUDA_EXT, reason=f"CUDA module not available: {B.CUDA_IMPORT_ERROR}")


def _libraries():
    params = []
    try:
        import torch
        ok = torch.cuda.is_available()
    except ImportError:
        ok = False
    params.append(pytest.param("torch", id="torch", marks=[] if ok else [pytest.mark.skip(
        reason="torch with CUDA not available")]))
    try:
        import cupy
        ok = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or CUDARuntimeError without a driver
        ok = False
    params.append(pytest.param("cupy", id="cupy", marks=[] if ok else [pytest.mark.skip(reason="CuPy not available")]))
    return params


class Lib:
    def __init__(self, name):
        self.name = name
        if name == "torch":
            import torch
            self.m = torch
        else:
            import cupy
            self.m = cupy

    def dev(self, a):
        a = np.array(a, order="C", copy=True)  # (np.ascontiguousarray would turn a 0-d array into 1-d)
        return self.m.from_numpy(a).cuda() if self.name == "torch" else self.m.asarray(a)

    def host(self, a):
        if self.name == "torch":
            return a.cpu().numpy()
        return self.m.asnumpy(a)

    def is_mine(self, a):
        return type(a).__module__.split(".")[0] == self.name


@pytest.fixture(params=_libraries())
def lib(request):
    if GPU_SKIP is not None:
        pytest.skip(GPU_SKIP)
    return Lib(request.param)
