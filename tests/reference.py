"""The reference's own tokens and model, computing logits for the last position only (8k inputs fit in memory)."""

from __future__ import annotations

import numpy as np


def reference_scores(oracle, query: str, documents: list[str], instruction: str | None = None) -> np.ndarray:
    """What `oracle.predict` returns, without the [rows, seq, 151936] logits tensor predict materialises."""
    import torch

    inputs = oracle.prepare_inputs([query] * len(documents), documents, instruction=instruction)
    with torch.inference_mode():
        logits = oracle.model(**inputs, logits_to_keep=1).logits[:, -1].float()
    return (logits[:, oracle.yes_loc] - logits[:, oracle.no_loc]).numpy()


def reference_rows(oracle, query: str, documents: list[str], instruction: str | None = None) -> list[list[int]]:
    """The reference's token ids of each (query, document) prompt, without padding."""
    batch = oracle.prepare_inputs([query] * len(documents), documents, instruction=instruction)
    return [row[mask.bool()].tolist() for row, mask in zip(batch["input_ids"], batch["attention_mask"])]
