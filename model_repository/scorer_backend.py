"""Triton python model: the exported model.onnx on ONNX Runtime (fp32) or OpenVINO (fp32, bf16), for a python-backend-only Triton."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from mxbai_triton.core.model import ONNX_FILENAME, ModelSpec
from mxbai_triton.core.runtime import PRECISION_METRIC, CpuScoring, cpu_scorer
from mxbai_triton.core.serving import ServingLimits
from mxbai_triton.core.telemetry import EXECUTION

# Unfused attention materialises rows x seq x seq scores per head: cap the rows of one run so an
# 8k-token batch cannot take the host's memory. The dispatch plans sub-batches within the same cap
# (serving.json's max_attention_cells, which the repository generator sets for this target).
DEFAULT_MAX_SCORE_CELLS = 1 << 25


class ScorerCore:
    """Runs merged requests as one batch of the runtime (split only by the memory cap)."""

    def __init__(self, model_dir: str | Path, *, scoring: CpuScoring = CpuScoring(), max_score_cells: int | None = None,
                 flags: frozenset[str] | None = None):
        self.spec = ModelSpec.load(model_dir)
        self.scoring = scoring
        names = (self.spec.input_ids.name, self.spec.attention_mask.name)
        self.run = cpu_scorer(Path(model_dir) / ONNX_FILENAME, names, scoring, flags=flags)
        cells = ServingLimits.load(model_dir).max_attention_cells
        self.max_score_cells = max_score_cells or cells or DEFAULT_MAX_SCORE_CELLS

    def score(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        seq = input_ids.shape[1]
        rows = max(1, self.max_score_cells // (seq * seq))
        parts = [self.run(input_ids[i:i + rows], attention_mask[i:i + rows]) for i in range(0, len(input_ids), rows)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def score_requests(self, batches: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Score several requests; those of equal sequence length run together."""
        results: list[np.ndarray | None] = [None] * len(batches)
        by_length: dict[int, list[int]] = {}
        for i, (ids, _) in enumerate(batches):
            by_length.setdefault(ids.shape[1], []).append(i)
        for members in by_length.values():
            ids = np.concatenate([batches[i][0] for i in members])
            mask = np.concatenate([batches[i][1] for i in members])
            scores = self.score(ids, mask)
            offsets = np.cumsum([0] + [len(batches[i][0]) for i in members])
            for i, start, stop in zip(members, offsets[:-1], offsets[1:]):
                results[i] = scores[start:stop]
        return results


class TritonPythonModel:
    """Scoring step of the ensemble (portable target)."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        scoring = CpuScoring.from_parameters(params)
        if not scoring.threads and os.environ.get("MXBAI_TRITON_ORT_THREADS"):
            scoring = scoring.with_overrides(threads=int(os.environ["MXBAI_TRITON_ORT_THREADS"]))
        # bf16 on a CPU without it raises here: the model fails to load with that one line.
        self.core = ScorerCore(Path(args["model_repository"]) / args["model_version"], scoring=scoring,
                               max_score_cells=int(params.get("max_score_cells", 0)) or None)
        spec = self.core.spec
        self.names = (spec.input_ids.name, spec.attention_mask.name, spec.scores.name)
        # Kept: a metric lives as long as its family.
        self.precision_family = pb_utils.MetricFamily(
            name=PRECISION_METRIC, description="1 for the precision and runtime this scorer computes with",
            kind=pb_utils.MetricFamily.GAUGE)
        self.precision_metric = self.precision_family.Metric(labels={
            "model": args["model_name"], "precision": scoring.precision, "runtime": scoring.runtime,
            "threads": str(scoring.threads)})
        self.precision_metric.set(1)

    def execute(self, requests):
        pb = self.pb
        batches = [
            tuple(pb.get_input_tensor_by_name(r, n).as_numpy() for n in self.names[:2]) for r in requests
        ]
        started = time.monotonic_ns()
        try:
            scores = self.core.score_requests(batches)
        except Exception as error:  # surfaced to every request of the batch, never a default score
            message = f"scorer failed: {type(error).__name__}: {error}"
            return [pb.InferenceResponse(output_tensors=[], error=pb.TritonError(message)) for _ in requests]
        # Every row carries the execution it was part of: the dispatch tells its scorer time from its queue time.
        execution = np.array([started, time.monotonic_ns()], dtype=np.int64)
        return [pb.InferenceResponse(output_tensors=[pb.Tensor(self.names[2], s),
                                                     pb.Tensor(EXECUTION.name, np.tile(execution, (len(s), 1)))])
                for s in scores]
