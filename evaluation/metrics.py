"""IR metrics from trec_eval (through ir-measures) and the paired t-test between systems (scipy)."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from .collection import Run

Qrels = Mapping[str, Mapping[str, int]]


def measures(k: int) -> dict:
    """Our names -> ir-measures measures: nDCG@10 (trec_eval's, gains = relevance), MRR@10, Recall@k, MAP."""
    from ir_measures import AP, RR, R, nDCG

    return {"ndcg@10": nDCG @ 10, "mrr@10": RR @ 10, f"recall@{k}": R @ k, "map": AP}


def mean_metrics(qrels: Qrels, run: Run, k: int) -> dict[str, float]:
    """The means over the judged queries of `run`, as ir-measures computes them (queries absent from the run are left out)."""
    import ir_measures

    named = measures(k)
    means = ir_measures.calc_aggregate(list(named.values()), qrels, run)
    return {name: float(means[measure]) for name, measure in named.items()}


def per_query(qrels: Qrels, run: Run, k: int) -> dict[str, dict[str, float]]:
    """metric name -> query id -> value."""
    import ir_measures

    named = measures(k)
    names = {str(measure): name for name, measure in named.items()}
    values: dict[str, dict[str, float]] = {name: {} for name in named}
    for metric in ir_measures.iter_calc(list(named.values()), qrels, run):
        values[names[str(metric.measure)]][metric.query_id] = float(metric.value)
    return values


@dataclass(frozen=True)
class Comparison:
    """System `b` against system `a` on one metric: the mean per-query difference and the paired t-test's p-value."""

    a: str
    b: str
    metric: str
    queries: int
    mean_delta: float
    p_value: float | None  # None when every query has the same difference (the test is undefined)

    def as_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "metric": self.metric, "queries": self.queries,
                "mean_delta": self.mean_delta, "p_value": self.p_value}


def paired_tests(values: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[Comparison]:
    """Two-sided paired t-tests (scipy.stats.ttest_rel) over per-query values, for every pair of systems and metric.

    `values`: system -> metric -> query id -> value, systems in report order (the first stage first)."""
    from scipy.stats import ttest_rel

    comparisons = []
    for a, b in itertools.combinations(values, 2):
        for metric in values[a]:
            queries = sorted(values[a][metric].keys() & values[b][metric].keys())
            xs = [values[a][metric][q] for q in queries]
            ys = [values[b][metric][q] for q in queries]
            delta = sum(y - x for x, y in zip(xs, ys)) / len(queries) if queries else 0.0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # constant differences: p is nan, reported as None
                p = float(ttest_rel(ys, xs).pvalue) if len(queries) > 1 else math.nan
            comparisons.append(Comparison(a, b, metric, len(queries), delta, None if math.isnan(p) else p))
    return comparisons
