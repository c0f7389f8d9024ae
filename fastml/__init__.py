"""fastml: hand-written SIMD/OpenMP and CUDA kernels for deep-learning building blocks.

>>> import numpy as np, fastml
>>> import fastml.functional as F
>>> y = F.gelu(np.linspace(-3, 3, 7, dtype=np.float32))
>>> fastml.info()            # version, ISAs, threads, OpenMP runtime, CUDA
"""
from . import _backend
from ._backend import (
    available_isas,
    get_num_threads,
    set_num_threads,
    use_backend,
    use_isa,
)
from ._info import info
from ._version import __version__
from . import functional, nn, optim, reference, text  # noqa: E402
from .functional.linear import matmul  # noqa: E402

__all__ = [
    "__version__",
    "available_isas",
    "functional",
    "get_num_threads",
    "info",
    "matmul",
    "nn",
    "optim",
    "reference",
    "set_num_threads",
    "text",
    "use_backend",
    "use_isa",
]
