"""Reference pages rendered from the code at every docs build (mkdocs-gen-files): CLI help, limits, memory, exit codes, metrics."""

from __future__ import annotations

import argparse
import io
from contextlib import redirect_stdout

import mkdocs_gen_files


def _help(parser: argparse.ArgumentParser) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        parser.print_help()
    return out.getvalue().rstrip()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if sub not in found.values():  # aliases (tiny-model) point at the same parser
                    found[name] = sub
    return found


def cli() -> str:
    from mxbai_triton.cli import build_parser

    parser = build_parser()
    parts = ["# Command line", "", "Every command and flag, as `--help` prints it (generated from the code).", "",
             "```text", _help(parser), "```"]
    for name, sub in _subparsers(parser).items():
        parts += ["", f"## `mxbai-triton {name}`", "", "```text", _help(sub), "```"]
        for child, leaf in _subparsers(sub).items():
            parts += ["", f"### `mxbai-triton {name} {child}`", "", "```text", _help(leaf), "```"]
    return "\n".join(parts) + "\n"


def limits() -> str:
    from mxbai_triton.core.cost import TARGET_RATES
    from mxbai_triton.core.engine import EngineProfiles
    from mxbai_triton.core.memory import ARCHITECTURES, memory_table
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
        *(row(f"`{f}`", lambda m, s, f=f: _value(getattr(s, f))) for f in ServingLimits.__dataclass_fields__),
        row("TensorRT profiles (min–max sequence)",
            lambda m, s: ", ".join(f"{low}–{high}" for low, _, high in EngineProfiles().ranges(m))),
    ]
    memory = "\n\n".join(memory_table(m, ARCHITECTURES[m.name], "fp16") for m in models)
    return "\n".join([
        "# Limits and memory", "",
        "The serving defaults `mxbai-triton repo` writes to each repository's `serving.json` (`core/serving.py`, "
        "`ServingLimits`), per model; generated from the code.", "", *rows, "",
        "## Bulk sub-batch budgets and cost rates per target", "",
        "`repo` fills `bulk_sub_batch_seconds` and `sub_batch_cost` from these (`core/cost.py`; "
        "[scheduling](../scheduling.md)).", "",
        "| target kind | budget per bulk sub-batch | projections + MLP | attention | per execution | source |",
        "|---|---:|---:|---:|---:|---|",
        *(f"| {kind} | {r.bulk_sub_batch_seconds} s | {r.linear_flop_per_s / 1e9:,.0f} GFLOP/s | "
          f"{r.attention_flop_per_s / 1e9:,.0f} GFLOP/s | {r.seconds_per_execution * 1e3:g} ms | {r.source} |"
          for kind, r in TARGET_RATES.items()), "",
        "## GPU memory of the fp16 engines", "",
        "The memory model of `core/memory.py`, which `build-engine` checks before building.",
        "", memory, ""])


def _value(value) -> str:
    if value is None:
        return "per target (below)"
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) or "(none)"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) and value >= 100_000 else str(value)


def exit_codes() -> str:
    from mxbai_triton.console import EXIT_CODES

    return "\n".join(["# Exit codes", "", "Every command exits with one of these; an error is one line on stderr (`-v` adds "
                      "the traceback).", "", "| exit code | meaning |", "|---:|---|",
                      *(f"| {c} | {m} |" for c, m in EXIT_CODES.items())]) + "\n"


def metrics() -> str:
    from mxbai_triton.core.dispatch import COUNTERS
    from mxbai_triton.gateway.metrics import GatewayMetrics

    gateway = [(m.name, m.type, m.documentation) for m in GatewayMetrics().registry.collect()]
    return "\n".join([
        "# Metrics", "",
        "## Triton's metrics port (default 8002): the dispatch", "",
        "Published by the tokenizer step, label `model` (and `class` or `reason`), beside Triton's own `nv_*` series.", "",
        "| name | type | meaning |", "|---|---|---|",
        *(f"| `{name}` | counter | {text} |" for name, text in COUNTERS.items()), "",
        "## The gateway's `/metrics`", "",
        "| name | type | meaning |", "|---|---|---|",
        *(f"| `{name}` | {kind} | {text} |" for name, kind, text in gateway), ""])


PAGES = {"reference/cli.md": cli, "reference/limits.md": limits, "reference/exit-codes.md": exit_codes,
         "reference/metrics.md": metrics}

for path, render in PAGES.items():
    with mkdocs_gen_files.open(path, "w") as page:
        page.write(render())
