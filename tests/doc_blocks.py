"""Generated blocks of the committed pages under docs/ (the error table), rendered from the code;
`python -m tests.doc_blocks` rewrites them.

A block is the text between `<!-- generated: NAME -->` and `<!-- end: NAME -->`. Tables a reader needs only on
the site (CLI help, limits, exit codes, metrics) are not committed: docs/gen_reference.py renders them at every
build. The error table is committed because README links it for readers of the tree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def error_kinds() -> str:
    from mxbai_triton.core.errors import markdown_table

    return markdown_table()


DOC_BLOCKS = {DOCS / "errors.md": {"error-kinds": error_kinds}}


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"<!-- generated: {name} -->\n(.*?)<!-- end: {name} -->", re.S)


def block(text: str, name: str) -> str | None:
    """A page's copy of block `name` (None when the page has no such block)."""
    found = _pattern(name).search(text)
    return found.group(1).removesuffix("\n") if found else None


def rewrite(text: str, blocks: dict) -> str:
    for name, render in blocks.items():
        text = _pattern(name).sub(lambda m, n=name, r=render: f"<!-- generated: {n} -->\n{r()}\n<!-- end: {n} -->", text)
    return text


if __name__ == "__main__":
    for page, blocks in DOC_BLOCKS.items():
        page.write_text(rewrite(page.read_text(encoding="utf-8"), blocks), encoding="utf-8")
    sys.exit(0)
