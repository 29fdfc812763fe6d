"""What every entry point shares: logging to stderr (-v/-q), errors as one line with an exit code (EXIT_CODES), help."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING_DEPENDENCY = 0, 1, 2, 3
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "a check or an operation failed (validation outside tolerance, a server that did not start, a busy port)",
    EXIT_USAGE: "a usage error: a bad argument, path or input, an unknown model, an unsafe bind without --insecure",
    EXIT_MISSING_DEPENDENCY: "a missing dependency (TensorRT, an optional package)",
}
# What a user got wrong (an argument, a path, an input) vs what failed while doing it.
USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError, KeyError)
FAILURES = (RuntimeError, OSError)

log = logging.getLogger("mxbai_triton")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (tests swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and a record's `fields` at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
                **getattr(record, "fields", {})}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(verbose: bool = False, quiet: bool = False, log_format: str = "text") -> None:
    """Library loggers (mxbai_triton.*) to stderr: INFO by default, DEBUG with --verbose, WARNING with --quiet;
    `log_format` "json": one JSON object per line (JsonFormatter)."""
    handler = _StderrHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"))
    package = logging.getLogger("mxbai_triton")
    package.handlers[:] = [handler]
    package.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def run_command(name: str, handler: Callable[[], int | None], *, verbose: bool = False) -> int:
    """`handler()`'s exit code; a raised error becomes one line on stderr and its exit code."""
    try:
        return int(handler() or 0)
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as error:
        return _fail(name, f"missing dependency: no module named {error.name!r} (`make setup` installs every "
                           "dependency into .venv)", EXIT_MISSING_DEPENDENCY, verbose)
    except ImportError as error:
        return _fail(name, f"missing dependency: {error}", EXIT_MISSING_DEPENDENCY, verbose)
    except USAGE_ERRORS as error:
        return _fail(name, str(error), EXIT_USAGE, verbose)
    except FAILURES as error:
        return _fail(name, str(error) or type(error).__name__, EXIT_FAILED, verbose)


def _fail(name: str, message: str, code: int, verbose: bool) -> int:
    if verbose:
        log.exception("traceback:")
    print(f"{name}: error: {message}", file=sys.stderr)
    return code


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every flag's help ends with its default when it has a telling one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
                and "default" not in text):
            text += " (default: %(default)s)"
        return text


class ArgumentParser(argparse.ArgumentParser):
    """Our parsers and their subcommands' parsers: HelpFormatter unless told otherwise."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


class EnvDefaults:
    """Flag defaults from PREFIX<NAME> environment variables (argparse applies `type` to string defaults)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def has(self, name: str) -> bool:
        return bool(os.environ.get(self.prefix + name))

    def get(self, name: str, default=None):
        return os.environ.get(self.prefix + name) or default
