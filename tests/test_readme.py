"""README is a short front page that says what the code does: the two commands first, at most 150 lines, every
command it and the docs name exists, every link lands, and the GPU recipe creates what it mounts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mxbai_triton.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
# The pages a reader of the tree opens; the site (docs/) is link-checked by `mkdocs build --strict`.
TREE_PAGES = [README, ROOT / "SECURITY.md", ROOT / "deploy" / "README.md", ROOT / "perf" / "README.md"]
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))


def _commands() -> set[str]:
    (action,) = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(action.choices)


def _named(text: str) -> set[str]:
    return set(re.findall(r"mxbai-triton ([a-z][a-z-]+)", text))


def _slug(heading: str) -> str:
    """The anchor GitHub and MkDocs give a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readme_starts_with_the_two_commands_and_stays_under_150_lines():
    first_block = TEXT.split("```bash\n", 1)[1].split("```", 1)[0]
    assert re.findall(r"^make \w+", first_block, flags=re.M) == ["make demo", "make test"]
    assert TEXT.index("```bash") < TEXT.index("\n## ")
    assert len(TEXT.splitlines()) <= 150


@pytest.mark.parametrize("page", TREE_PAGES + DOC_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_a_page_runs_exists(page):
    assert _named(page.read_text(encoding="utf-8")) - _commands() == set()


def test_every_command_of_the_cli_is_on_the_commands_page():
    named = _named((ROOT / "docs" / "commands.md").read_text(encoding="utf-8"))
    assert {c for c in _commands() if c != "tiny-model"} - named == set()


@pytest.mark.parametrize("page", TREE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_of_a_page_in_the_tree_lands_on_a_file_and_heading(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), flags=re.M)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(target)
    assert broken == []


def test_the_gpu_recipe_creates_every_host_path_it_mounts_before_mounting_it():
    recipe = TEXT.split("## Serve it on a GPU", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = recipe.splitlines()
    for number, line in enumerate(lines):
        for mounted in re.findall(r"-v \$PWD/([\w./-]+):", line):
            before = "\n".join(lines[:number])
            made = re.search(rf"(--out|>)\s+{re.escape(mounted)}(\s|\)|$)", before, flags=re.M)
            assert made, f"the recipe mounts $PWD/{mounted} which no earlier step creates"


def test_the_gpu_recipe_calls_the_model_by_the_name_its_repository_gives_it():
    recipe = TEXT.split("## Serve it on a GPU", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    (name,) = re.findall(r"--out \S+ --name ([\w.-]+)", recipe)  # the repository's, not the container's
    assert re.findall(r'"model": "([\w.-]+)"', recipe) == [name]
    assert "Authorization: Bearer" in recipe and "--api-key-file" in recipe


# Who worked when, with which tools: a user's page says what is verified and what is not, never this.
WORKLOG = re.compile(r"\bwas lent\b|\blent to\b|\bno GPU was\b|\b[Ii]ssue #\d+|\(#\d+\)|\bthe team\b|\bthis stop\b|\bthe session that\b"
                     r"|\bnewest release found\b", re.I)


def test_the_pages_speak_of_the_project_not_of_who_worked_on_it():
    pages = [*TREE_PAGES, *DOC_PAGES, ROOT / "perf" / "NOTES.md", *sorted((ROOT / "data").rglob("*.md"))]
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in pages for m in WORKLOG.finditer(p.read_text(encoding="utf-8"))]
    assert found == []
