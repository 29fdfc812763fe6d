"""`python -m mxbai_triton.perf.NAME` runs a perf module with the same flags as `mxbai-triton perf NAME`."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def script_main(description: str | None, add_arguments: Callable[[argparse.ArgumentParser], None],
                run: Callable[[argparse.Namespace], int], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser)
    return run(parser.parse_args(argv))
