"""Perf stage: perf_analyzer sweeps, plots and the reference comparison."""

from mxbai_triton import require_package_name

require_package_name(__name__, "perf")

