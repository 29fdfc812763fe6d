"""The `mxbai-triton` command: one subcommand per pipeline stage, registered by each folder's cli module."""

from __future__ import annotations

import argparse
import sys

from mxbai_triton.client import cli as client_cli
from mxbai_triton.export import cli as export_cli
from mxbai_triton.gateway import cli as gateway_cli
from mxbai_triton.model_repository import cli as repository_cli
from mxbai_triton.perf import cli as perf_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mxbai-triton", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _stage_clis():
        module.register(commands)
    return parser


def _stage_clis():
    # Each stage's cli module imports nothing heavy at module level: `tokenize` must not load torch.
    return (export_cli, repository_cli, client_cli, gateway_cli, perf_cli)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        print(f"mxbai-triton {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
