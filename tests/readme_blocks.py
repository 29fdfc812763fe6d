"""Generated blocks of README and docs/ (limits, memory, exit codes, error kinds) rendered from the code;
`python -m tests.readme_blocks` rewrites them.

A block is the text between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; tests/test_readme.py fails
when README's copy and the code's differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def limits() -> str:
    from mxbai_triton.core.cost import TARGET_RATES
    from mxbai_triton.core.engine import EngineProfiles
    from mxbai_triton.core.model import BASE_V2, LARGE_V2
    from mxbai_triton.core.serving import ServingLimits
    from mxbai_triton.export.scorer import PADDING_SIDE

    models = (BASE_V2, LARGE_V2)
    served = {m.name: ServingLimits.for_model(m) for m in models}

    def row(label: str, value) -> str:
        return f"| {label} | " + " | ".join(str(value(m, served[m.name])) for m in models) + " |"

    rows = [
        "| | " + " | ".join(f"`{m.name}`" for m in models) + " |",
        "|---|" + "---:|" * len(models),
        row("`estimated_max` (normalisation)", lambda m, s: m.estimated_max),
        row("`max_length` (query + document tokens)", lambda m, s: m.max_length),
        row("longest padded prompt (template included)", lambda m, s: m.max_sequence_length),
        row("padding side of the graph", lambda m, s: PADDING_SIDE),
        row("`max_batch_size` (rows per scorer execution)", lambda m, s: s.max_batch_size),
        row("`max_documents_per_request`", lambda m, s: s.max_documents_per_request),
        row("`max_batch_tokens` (rows × padded length per sub-batch)", lambda m, s: s.max_batch_tokens),
        row("`bucket_bounds` (trt, onnx)", lambda m, s: ", ".join(map(str, s.seq_buckets(m)))),
        row("`queue_delay_us` (scorer)", lambda m, s: s.queue_delay_us),
        row("`interactive_queue_size` / `bulk_queue_size` (dispatch step)",
            lambda m, s: f"{s.interactive_queue_size} / {s.bulk_queue_size}"),
        row("`queue_timeout_us`", lambda m, s: f"{s.queue_timeout_us:,}"),
        row("`tokenizer_instances`", lambda m, s: s.tokenizer_instances),
        row("`interactive_max_tokens` / `bulk_sub_batches_in_flight`",
            lambda m, s: f"{s.interactive_max_tokens} / {s.bulk_sub_batches_in_flight}"),
        row("`bulk_sub_batch_seconds` (CPU / GPU targets)",
            lambda m, s: " / ".join(f"{TARGET_RATES[kind].bulk_sub_batch_seconds}" for kind in ("cpu", "gpu"))),
        row("TensorRT profiles (min–max sequence)",
            lambda m, s: ", ".join(f"{low}–{high}" for low, _, high in EngineProfiles().ranges(m))),
    ]
    return "\n".join(rows)


def memory() -> str:
    from mxbai_triton.core.memory import ARCHITECTURES, memory_table
    from mxbai_triton.core.model import BASE_V2, LARGE_V2

    return "\n\n".join(memory_table(m, ARCHITECTURES[m.name], "fp16") for m in (BASE_V2, LARGE_V2))


def exit_codes() -> str:
    from mxbai_triton.console import EXIT_CODES

    return "\n".join(["| exit code | meaning |", "|---:|---|", *(f"| {c} | {m} |" for c, m in EXIT_CODES.items())])


def error_kinds() -> str:
    from mxbai_triton.core.errors import markdown_table

    return markdown_table()


BLOCKS = {"limits": limits, "memory": memory, "exit-codes": exit_codes}
# Generated blocks of the pages under docs/, by page.
DOCS = README.parent / "docs"
DOC_BLOCKS = {DOCS / "errors.md": {"error-kinds": error_kinds}}


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"<!-- generated: {name} -->\n(.*?)<!-- end: {name} -->", re.S)


def block(text: str, name: str) -> str | None:
    """README's copy of block `name` (None when README has no such block)."""
    found = _pattern(name).search(text)
    return found.group(1).removesuffix("\n") if found else None


def rewrite(text: str, blocks: dict = BLOCKS) -> str:
    for name, render in blocks.items():
        text = _pattern(name).sub(lambda m, n=name, r=render: f"<!-- generated: {n} -->\n{r()}\n<!-- end: {n} -->", text)
    return text


if __name__ == "__main__":
    README.write_text(rewrite(README.read_text(encoding="utf-8")), encoding="utf-8")
    for page, blocks in DOC_BLOCKS.items():
        page.write_text(rewrite(page.read_text(encoding="utf-8"), blocks), encoding="utf-8")
    sys.exit(0)
