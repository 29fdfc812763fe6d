"""Reading tritonserver's log: the copy to the terminal, why a start failed, what a start announced."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mxbai_triton.noise import is_triton_noise, triton_json_line, triton_line_level


def tee(source, log_file, threshold: int, as_json: bool = False) -> None:
    """Every line into the log file; those at `threshold` or above (Triton's own level, noise demoted) to stderr,
    as JSON objects with `as_json`."""
    with log_file:
        for line in source:
            text = line.decode(errors="replace")
            if triton_line_level(text) >= threshold:
                sys.stderr.buffer.write((triton_json_line(text) + "\n").encode() if as_json else line)
                sys.stderr.flush()
            log_file.write(line)
            log_file.flush()


def tail(log: str, lines: int = 40) -> str:
    return "\n".join(log.splitlines()[-lines:]) if log else "(no log)"


# What a start that failed says, first match wins: why, in Triton's words.
START_FAILURES = (
    (r"failed to start (\w+) service: (?:\w+ - )?([^\n\"]+)", "could not start its {0} service: {1}"),
    (r"failed to load '([^']+)' version \d+: ([^\n\"]+)", "model '{0}' failed to load: {1}"),
    (r"^E\S* +\S+ +\d+ +\S+\] +\"?([^\n\"]+)", "{0}"),
)
# The services a server of ours has started, as its log announces them (readiness from our process only).
STARTED = {"HTTP": r"Started HTTPService at ", "gRPC": r"Started GRPCInferenceService at ", "metrics": r"Started Metrics Service at "}
# How tritonserver 24.10 dies when its python backend fails a stub's lock while loading (TritonServer.start
# starts it once more).
KNOWN_LOAD_ABORT = "boost::interprocess::lock_exception"


def failure_reason(log_text: str, log_path: Path | None) -> str:
    """Why a server did not start, in one line per failed model or service (else the log's last lines)."""
    for pattern, form in START_FAILURES:
        found = list(dict.fromkeys(
            form.format(*(g.split(chr(92) + "n")[0].strip() for g in m.groups()))
            for m in re.finditer(pattern, log_text, flags=re.MULTILINE)
            if not is_triton_noise(m.group(0))
        ))
        if found:
            return "; ".join(found) + f" (full log: {log_path})"
    return f"\n{tail(log_text)}"
