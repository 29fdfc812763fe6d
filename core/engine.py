"""How a TensorRT engine is built for a model: its optimization profiles over sequence length (engine.json records them)."""

from __future__ import annotations

from dataclasses import dataclass

from .model import ModelSpec


@dataclass(frozen=True)
class EngineProfiles:
    """Optimization profiles as (upper bound, opt) of sequence length: each starts where the previous
    ends and covers batch 1..max_batch_size. Bounds are tokenizer buckets; -1 is the model's longest
    sequence."""

    bounds: tuple[tuple[int, int], ...] = ((256, 256), (1024, 512), (-1, 2048))

    def ranges(self, model: ModelSpec) -> tuple[tuple[int, int, int], ...]:
        """(min, opt, max) sequence lengths of each profile for `model`."""
        profiles, low, top = [], 1, model.max_sequence_length
        for bound, opt in self.bounds:
            high = top if bound < 0 else min(bound, top)
            if low > high:
                break
            profiles.append((low, min(max(opt, low), high), high))
            low = high + 1
        return tuple(profiles)

    @classmethod
    def of(cls, ranges) -> "EngineProfiles":
        """The profiles whose ranges are `ranges` ((min, opt, max) each), as an engine records them."""
        return cls(tuple((int(high), int(opt)) for _, opt, high in ranges))
