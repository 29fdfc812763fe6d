"""README says what the code does: its generated blocks equal the code's rendering, every command it shows exists,
and every command the CLI has is in it."""

from __future__ import annotations

import re

import pytest

from mxbai_triton.cli import build_parser
from tests.readme_blocks import BLOCKS, README, block

TEXT = README.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(BLOCKS))
def test_the_readmes_generated_blocks_are_what_the_code_computes_today(name):
    assert block(TEXT, name) == BLOCKS[name](), f"README's '{name}' block is stale: run `python -m tests.readme_blocks`"


def _commands() -> set[str]:
    (action,) = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(action.choices)


def test_every_command_readme_runs_exists():
    shown = set(re.findall(r"mxbai-triton ([a-z][a-z-]+)", TEXT))
    assert shown - _commands() == set()


def test_every_command_of_the_cli_is_in_the_readme():
    assert {c for c in _commands() if c != "tiny-model"} - set(re.findall(r"mxbai-triton ([a-z][a-z-]+)", TEXT)) == set()


def test_the_readme_starts_with_the_two_commands_and_a_table_of_contents():
    first_screen = TEXT.split("\n## ", 1)[0]
    assert re.findall(r"^make \w+", first_screen, flags=re.M) == ["make demo", "make test"]
    assert re.findall(r"^## (.+)$", TEXT, flags=re.M)[0] == "Contents"
