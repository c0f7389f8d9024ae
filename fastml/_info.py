"""fastml.info(): what this installation is and what it runs on."""
from __future__ import annotations

import platform

from . import _backend as B
from ._version import __version__


def info(print_: bool = True) -> dict:
    """Return (and by default print) version, ISAs, CPU, threads, OpenMP runtime and CUDA status.

    Keys: ``version``, ``cpu_extension`` (bool), ``cpu_extension_error``, ``compiled_isas`` (per op),
    ``supported_isas``, ``active_isa``, ``detected_isa``, ``cpu`` (vendor, model, cache sizes, features),
    ``threads``, ``openmp``, ``cuda_extension`` (bool), ``cuda_extension_error``, ``cuda`` (devices),
    ``backend_forced``, ``numpy``, ``python``.
    """
    import numpy as np

    d = {
        "version": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_extension": B.HAS_CPU_EXT,
        "cpu_extension_error": B.CPU_IMPORT_ERROR,
        "backend_forced": B.forced_backend(),
    }
    if B._C is not None:
        C = B._C
        d["compiled_isas"] = {op: C.variants(op) for op in C.ops()}
        d["supported_isas"] = B.available_isas()
        d["detected_isa"] = C.detected_isa()
        d["active_isa"] = C.get_isa()
        d["cpu"] = C.cpu_info()
        d["threads"] = C.get_num_threads()
        d["openmp"] = C.openmp_info()
        d["build"] = C.build_info()
    else:
        d.update(compiled_isas={}, supported_isas=[], detected_isa=None, active_isa=None,
                 cpu={"model": platform.processor()}, threads=1, openmp=None, build=None)
    d["cuda_extension"] = B.HAS_CUDA_EXT
    d["cuda_extension_error"] = B.CUDA_IMPORT_ERROR
    d["cuda"] = None
    if B._C_cuda is not None:
        try:
            d["cuda"] = B._C_cuda.device_info()
        except Exception as exc:  # no driver / no GPU: the module is present but cannot run
            d["cuda"] = {"error": f"{type(exc).__name__}: {exc}"}
    if print_:
        print(format_info(d))
    return d


def format_info(d: dict) -> str:
    lines = [f"fastml {d['version']} (python {d['python']}, numpy {d['numpy']})"]
    if d["cpu_extension"]:
        cpu = d["cpu"]
        lines.append(f"  cpu:       {cpu.get('model') or '?'} ({cpu.get('vendor', '?')}), "
                     f"{cpu.get('physical_cores', '?')} physical cores, L1d {cpu['l1d_bytes'] // 1024} KiB, "
                     f"L2 {cpu['l2_bytes'] // 1024} KiB, L3 {cpu['l3_bytes'] // 1024} KiB")
        lines.append(f"  isa:       active {d['active_isa']} (detected {d['detected_isa']}; "
                     f"supported {', '.join(d['supported_isas'])})")
        ops = sorted(d["compiled_isas"])
        isas = sorted({i for v in d["compiled_isas"].values() for i in v})
        lines.append(f"  compiled:  {len(ops)} ops, ISAs {', '.join(isas)}")
        lines.append(f"  threads:   {d['threads']} (OpenMP {d['openmp']['version']}, {d['openmp']['library']})")
    else:
        lines.append(f"  cpu extension: MISSING ({d['cpu_extension_error']}); using the NumPy backend")
    if d["cuda_extension"]:
        lines.append(f"  cuda:      {d['cuda']}")
    else:
        lines.append(f"  cuda:      no ({d['cuda_extension_error']})")
    if d["backend_forced"]:
        lines.append(f"  backend:   forced to {d['backend_forced']}")
    return "\n".join(lines)
