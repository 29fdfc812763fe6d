"""The `mxbai-triton` command: one subcommand per pipeline step, registered by each folder's cli module.

Exit codes: 0 ok, 1 a check or an operation failed, 2 usage (bad arguments or input), 3 a missing
dependency. Errors are one line on stderr; --verbose adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mxbai_triton import demo
from mxbai_triton.client import cli as client_cli
from mxbai_triton.export import cli as export_cli
from mxbai_triton.gateway import cli as gateway_cli
from mxbai_triton.model_repository import cli as repository_cli
from mxbai_triton.perf import cli as perf_cli

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING_DEPENDENCY = 0, 1, 2, 3
# What a user got wrong (an argument, a path, an input) vs what failed while doing it.
USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError, KeyError)
FAILURES = (RuntimeError, OSError)

log = logging.getLogger("mxbai_triton")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mxbai-triton", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logs, and tracebacks with errors")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _stage_clis():
        module.register(commands)
    return parser


def _stage_clis():
    # Each stage's cli module imports nothing heavy at module level: `tokenize` must not load torch.
    return (export_cli, repository_cli, client_cli, gateway_cli, perf_cli, demo)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (tests swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Library loggers (mxbai_triton.*) to stderr: INFO by default, DEBUG with --verbose, WARNING with --quiet."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"))
    package = logging.getLogger("mxbai_triton")
    package.handlers[:] = [handler]
    package.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = perf_cli.legacy_argv(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)  # usage errors exit 2 here
    configure_logging(args.verbose, args.quiet)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as error:
        return _fail(args, f"missing dependency: no module named {error.name!r} (`make setup` installs every "
                           "dependency into .venv)", EXIT_MISSING_DEPENDENCY)
    except ImportError as error:
        return _fail(args, f"missing dependency: {error}", EXIT_MISSING_DEPENDENCY)
    except USAGE_ERRORS as error:
        return _fail(args, str(error), EXIT_USAGE)
    except FAILURES as error:
        return _fail(args, str(error) or type(error).__name__, EXIT_FAILED)


def _fail(args, message: str, code: int) -> int:
    if args.verbose:
        log.exception("traceback:")
    print(f"mxbai-triton {args.command}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
