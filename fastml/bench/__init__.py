"""fastml's benchmark harness: ``python -m fastml.bench [--ops OP ...] [--quick] [--json FILE]``.

* :mod:`fastml.bench.machine` -- measured machine ceilings (STREAM triad bandwidth, FMA peak), cached.
* :mod:`fastml.bench.cases`   -- the one registry of benchmark cases (fastml vs NumPy vs torch on the
  same arrays); ``benchmarks/`` (pytest-benchmark) reuses it.
* :mod:`fastml.bench.runner`  -- interleaved timing, tables, bars and JSON output.
"""
