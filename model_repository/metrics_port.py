"""Read a running Triton's Prometheus endpoint: our counters and gauges summed, each scorer's precision."""

from __future__ import annotations

import re
import urllib.request

from mxbai_triton.core.dispatch import COUNTERS
from mxbai_triton.core.runtime import PRECISION_METRIC, CpuScoring


def read_counters(metrics_url: str, names=tuple(COUNTERS), **labels: str) -> dict[str, float]:
    """Sum of each named counter over its series that carry `labels`, from a Prometheus endpoint
    ("http://host:port"; 0 when absent)."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals = dict.fromkeys(names, 0.0)
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals and all(w in line for w in wanted):
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def scorer_precisions(metrics_url: str) -> dict[str, str]:
    """What each python scorer of a server computes with, as it loaded ({"rr_scorer": "bf16 on OpenVINO"}),
    from its precision gauge on the Prometheus endpoint ("http://host:port")."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith(PRECISION_METRIC + "{") and float(line.rsplit(" ", 1)[1]) == 1:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            found[labels["model"]] = CpuScoring(labels["runtime"], labels["precision"]).describe()
    return found
