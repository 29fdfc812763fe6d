"""`python -m mxbai_triton.perf.NAME` runs a perf module with the same flags as `mxbai-triton perf NAME`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from mxbai_triton.core.memory import SIZES


def script_main(description: str | None, add_arguments: Callable[[argparse.ArgumentParser], None],
                run: Callable[[argparse.Namespace], int], argv: list[str] | None = None) -> int:
    """Parse, then run with the CLI's logging and exit codes (0 ok, 1 failed, 2 usage, 3 missing dependency)."""
    from mxbai_triton.console import ArgumentParser, configure_logging, run_command

    parser = ArgumentParser(description=description)
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging()
    return run_command(parser.prog, lambda: run(args))


STANDIN_SIZES = tuple(SIZES)


def add_standin_arguments(parser: argparse.ArgumentParser, *, size: str = "small") -> None:
    """The flags of benchmarks that build a seeded stand-in and its export: --size and --workdir."""
    parser.add_argument("--size", default=size, choices=STANDIN_SIZES,
                        help="stand-in to build (random weights): tiny, small, or the real base/large shapes")
    parser.add_argument("--workdir", default="artifacts", help="where stand-ins and exports are built and reused")
