"""Third-party output we understand and hide by default, each with why; `-v` shows all of it."""

from __future__ import annotations

import contextlib
import logging
import re
import warnings

# tritonserver log lines that say nothing about our models: the bundled server is a CPU build
# started on machines without CUDA.
TRITON_NOISE = (
    (r"Unable to allocate pinned system memory", "no CUDA driver: host memory is used instead, as intended on CPU"),
    (r"CudaDriverHelper has not been initialized", "no CUDA driver on a CPU machine"),
    (r"unable to create stream for", "the ensemble's CUDA stream; on CPU it copies on the host"),
    (r"Failed to initialize (NVML|DCGM)|dcgm|nvml", "GPU metrics on a machine without a GPU"),
    (r"failed to load library .*libcuda", "no CUDA driver on a CPU machine"),
)
_TRITON_NOISE = re.compile("|".join(f"(?:{pattern})" for pattern, _ in TRITON_NOISE))

# Python warnings printed while exporting: about the exporter's own internals, not about the graph
# (which validation checks against PyTorch).
PYTHON_WARNINGS = (
    (UserWarning, r"# The axis name: .* will not be used", "torch.onnx reports merged dynamic axes; export checks them"),
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated", "torch.export internals"),
    (UserWarning, r"TypedStorage is deprecated", "torch internals"),
)
# Loggers of the exporter that print progress or missing optional extras at INFO/WARNING.
QUIET_LOGGERS = (
    ("torch.onnx._internal.exporter._registration", "torchvision is optional: its ops are never in our graph"),
    ("torch.onnx", "the exporter's own progress lines; ours say the same in one line per step"),
    ("onnxscript", "optimizer progress"),
)


def is_triton_noise(line: str) -> bool:
    return _TRITON_NOISE.search(line) is not None


def triton_line_level(line: str) -> int:
    """The logging level a tritonserver log line deserves on a terminal (DEBUG for known noise)."""
    if is_triton_noise(line):
        return logging.DEBUG
    head = line[:1]
    if head == "E":
        return logging.ERROR
    if head == "W":
        return logging.WARNING
    return logging.INFO if head == "I" else logging.DEBUG


_TRITON_LINE = re.compile(r"^([IWE])\d{4} (\S+) +\d+ (\S+)\] ?(.*)$")
_TRITON_LEVELS = {"I": "info", "W": "warning", "E": "error"}


def triton_json_line(line: str) -> str:
    """A tritonserver log line as one JSON object (level, source, message), for `serve --log-format json`.

    Triton itself writes only its default and ISO 8601 formats (server command_line_parser.cc v2.51.0 640-644).
    """
    import json

    text = line.rstrip("\n")
    match = _TRITON_LINE.match(text)
    if match is None:  # a continuation line (a traceback), or output of a python model
        return json.dumps({"level": "info", "logger": "tritonserver", "message": text}, ensure_ascii=False)
    head, clock, source, message = match.groups()
    return json.dumps({"level": _TRITON_LEVELS[head], "logger": "tritonserver", "triton_time": clock, "source": source,
                       "message": message}, ensure_ascii=False)


@contextlib.contextmanager
def quiet_exporter(verbose: bool = False):
    """Within the block, the exporter's known noise is hidden (unless `verbose`); restored afterwards."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name, _ in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for category, message, _ in PYTHON_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
