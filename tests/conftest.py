"""Shared fixtures: every test that takes ``backend`` runs once per available implementation:
the NumPy backend and the compiled module under each ISA this CPU supports (``cpu-scalar``,
``cpu-avx2``, ``cpu-avx512``). ISAs the CPU cannot run are reported as skipped, with the reason."""
import contextlib
import os

import numpy as np
import pytest

import fastml
from fastml import _backend as B

ALL_ISAS = ("scalar", "avx2", "avx512")


def _backend_params():
    params = [pytest.param("numpy", id="numpy")]
    for isa in ALL_ISAS:
        marks = []
        if not B.HAS_CPU_EXT:
            marks.append(pytest.mark.skip(reason=f"compiled module missing: {B.CPU_IMPORT_ERROR}"))
        elif not B._C.isa_supported(isa):
            marks.append(pytest.mark.skip(reason=f"this CPU cannot run {isa}"))
        params.append(pytest.param(f"cpu-{isa}", id=f"cpu-{isa}", marks=marks))
    return params


@contextlib.contextmanager
def backend_context(name):
    if name == "numpy":
        with fastml.use_backend("numpy"):
            yield
    else:
        with fastml.use_backend("cpu"), fastml.use_isa(name.split("-", 1)[1]):
            yield


@pytest.fixture(params=_backend_params())
def backend(request):
    """Runs the test body under one backend / ISA; yields its name."""
    with backend_context(request.param):
        yield request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def threads():
    """Restores the thread count after a test that changes it."""
    old = fastml.get_num_threads()
    yield
    fastml.set_num_threads(old)


def pytest_report_header(config):
    d = fastml.info(print_=False)
    return [f"fastml {d['version']} from {os.path.dirname(fastml.__file__)}",
            f"cpu extension {d['cpu_extension']}, active ISA {d['active_isa']}, "
            f"supported {d['supported_isas']}, threads {d['threads']}, cuda {d['cuda_extension']}",
            f"FASTML_ISA={os.environ.get('FASTML_ISA', '')} FASTML_BACKEND={os.environ.get('FASTML_BACKEND', '')}"]


def run_python(args, env_extra=None, **kw):
    """Run ``python <args>`` importing the same fastml as this test process (not whatever a source
    folder in the working directory would shadow it with). Returns the CompletedProcess."""
    import subprocess
    import sys
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(fastml.__file__)))
    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, **kw)


@pytest.fixture
def python_run():
    """``python_run(args, env_extra=None)``: see run_python."""
    return run_python
