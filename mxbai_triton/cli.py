"""The `mxbai-triton` command: one subcommand per pipeline step, registered by each folder's cli module."""

from __future__ import annotations

import argparse
import sys

from mxbai_triton import demo, serve
from mxbai_triton.client import cli as client_cli
from mxbai_triton.console import EXIT_CODES, ArgumentParser, configure_logging, run_command
from mxbai_triton.evaluation import cli as evaluation_cli
from mxbai_triton.export import cli as export_cli
from mxbai_triton.gateway import cli as gateway_cli
from mxbai_triton.model_repository import cli as repository_cli
from mxbai_triton.perf import cli as perf_cli


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())
    parser = ArgumentParser(prog="mxbai-triton", description=f"{__doc__}\n\nExit codes (errors are one line on stderr; "
                                                             f"-v adds the traceback):\n{codes}")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logs, and tracebacks with errors")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _stage_clis():
        module.register(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mxbai-triton")
    except PackageNotFoundError:  # run from a source tree (the GPU kit) without an install
        return "(not installed)"


def _stage_clis():
    # Each stage's cli module imports nothing heavy at module level: `tokenize` must not load torch.
    return (export_cli, repository_cli, serve, client_cli, evaluation_cli, gateway_cli, perf_cli, demo)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # usage errors exit 2 here
    configure_logging(args.verbose, args.quiet)
    return run_command(f"mxbai-triton {args.command}", lambda: args.handler(args), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
