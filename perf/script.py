"""`python -m mxbai_triton.perf.NAME` runs a perf module with the same flags as `mxbai-triton perf NAME`."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def script_main(description: str | None, add_arguments: Callable[[argparse.ArgumentParser], None],
                run: Callable[[argparse.Namespace], int], argv: list[str] | None = None) -> int:
    """Parse, then run with the CLI's logging and exit codes (0 ok, 1 failed, 2 usage, 3 missing dependency)."""
    from mxbai_triton.console import configure_logging, run_command

    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging()
    return run_command(parser.prog, lambda: run(args))
