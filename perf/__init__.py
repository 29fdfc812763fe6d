"""Perf stage: perf_analyzer sweeps, plots and the reference comparison."""
