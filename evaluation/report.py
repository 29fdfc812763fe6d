"""What `eval` writes: report.json, report.md (also on stdout), one TREC run per system and a per-query plot."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from .collection import Run, write_run
from .metrics import mean_metrics, paired_tests, per_query
from .served import Timing

FIRST_STAGE = "first-stage"
HEADLINE = "ndcg@10"
PLOT = "ndcg_per_query.png"
LABELS = {"ndcg@10": "nDCG@10", "mrr@10": "MRR@10", "map": "MAP"}


def build_report(runs: Mapping[str, Run], qrels, *, k: int, timings: Mapping[str, Timing], about: dict) -> tuple[dict, dict]:
    """The report (systems' means, paired tests, timings, what was run) and the per-query values it rests on.

    `runs`: the first stage under FIRST_STAGE, then each model's reranked run."""
    values = {name: per_query(qrels, run, k) for name, run in runs.items()}
    report = {
        "systems": {name: mean_metrics(qrels, run, k) for name, run in runs.items()},
        "significance": [c.as_dict() for c in paired_tests(values)],
        "timing": {model: timing.as_dict() for model, timing in timings.items()},
        **about,
        "queries_evaluated": len(values[FIRST_STAGE][HEADLINE]),
        "top_k": k,
    }
    return report, values


def _label(metric: str) -> str:
    return LABELS.get(metric) or metric.replace("recall@", "Recall@")


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def markdown(report: dict) -> str:
    metrics = list(report["systems"][FIRST_STAGE])
    lines = [f"# Reranking evaluation: {report['data']} (split {report['split']})", "",
             f"{report['queries_evaluated']} judged queries; candidates: the top {report['top_k']} of {report['first_stage']}; "
             "each document reranked as its title and text joined by a space (as BEIR's rerankers do).", "",
             "| system | " + " | ".join(_label(m) for m in metrics) + f" | {_label(HEADLINE)} vs {FIRST_STAGE} |",
             "|---|" + "---:|" * len(metrics) + "---|"]
    against_first = {c["b"]: c for c in report["significance"] if c["a"] == FIRST_STAGE and c["metric"] == HEADLINE}
    for name, means in report["systems"].items():
        test = against_first.get(name)
        delta = f"{test['mean_delta']:+.4f} (p = {_p(test['p_value'])})" if test else ""
        lines.append(f"| {name} | " + " | ".join(f"{means[m]:.4f}" for m in metrics) + f" | {delta} |")
    lines += ["", f"Paired two-sided t-test over the per-query {_label(HEADLINE)} (scipy.stats.ttest_rel; "
                  "report.json has every metric):", "", "| a | b | mean b − a | p |", "|---|---|---:|---:|"]
    lines += [f"| {c['a']} | {c['b']} | {c['mean_delta']:+.4f} | {_p(c['p_value'])} |"
              for c in report["significance"] if c["metric"] == HEADLINE]
    if report["timing"]:
        lines += ["", "| model | requests | documents | in flight | seconds | docs/s | latency p50 ms | p95 ms |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {model} | {t['requests']} | {t['documents']} | {t['concurrency']} | {t['seconds']:.1f} | {t['docs_per_s']:.1f} "
                  f"| {t['latency_p50_ms']:.0f} | {t['latency_p95_ms']:.0f} |" for model, t in report["timing"].items()]
    return "\n".join(lines) + "\n"


def run_filename(system: str) -> str:
    return re.sub(r"[^\w.-]", "_", system) + ".trec"


def write_outputs(out: Path, report: dict, runs: Mapping[str, Run], values: Mapping[str, dict]) -> list[Path]:
    """Every output file under `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for system, run in runs.items():
        write_run(out / run_filename(system), run, system)
        written.append(out / run_filename(system))
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    written += [out / "report.json", out / "report.md"]
    if len(runs) > 1:
        plot_per_query(out / PLOT, values)
        written.append(out / PLOT)
    return written


def plot_per_query(path: Path, values: Mapping[str, dict]) -> None:
    """Per-query change of the headline metric over the first stage, one panel per model, queries sorted by it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = values[FIRST_STAGE][HEADLINE]
    models = [name for name in values if name != FIRST_STAGE]
    figure, axes = plt.subplots(len(models), 1, figsize=(9, 2.6 * len(models)), sharex=True, sharey=True, squeeze=False)
    for axis, model in zip(axes[:, 0], models):
        deltas = sorted((values[model][HEADLINE].get(q, 0.0) - v for q, v in base.items()), reverse=True)
        axis.bar(range(len(deltas)), deltas, width=1.0, color=["tab:green" if d > 0 else "tab:red" for d in deltas])
        axis.axhline(0, color="black", linewidth=0.6)
        wins, losses = sum(d > 0 for d in deltas), sum(d < 0 for d in deltas)
        axis.set_title(f"{model}: {wins} queries better, {losses} worse, {len(deltas) - wins - losses} unchanged", fontsize=9)
        axis.set_ylabel(f"Δ {_label(HEADLINE)}")
    axes[-1, 0].set_xlabel(f"queries, sorted by the change over {FIRST_STAGE}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
