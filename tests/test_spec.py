"""The model spec: known models, local checkpoints, JSON round trip, derived buckets and profiles."""

from __future__ import annotations

import pytest

from mxbai_triton.core.model import BASE_V2, LARGE_V2, ModelSpec, resolve_spec


def test_known_models_resolve_by_short_name_and_hub_id():
    assert resolve_spec("base-v2") is BASE_V2
    assert resolve_spec("mixedbread-ai/mxbai-rerank-large-v2") is LARGE_V2
    assert (BASE_V2.estimated_max, LARGE_V2.estimated_max) == (9.0, 12.0)


def test_local_checkpoint_gets_reference_defaults(tiny_checkpoint):
    spec = resolve_spec(str(tiny_checkpoint))
    assert (spec.name, spec.estimated_max, spec.model_max_length, spec.max_length) == ("tiny", 12.0, 32768, 8192)


def test_unknown_hub_id_keeps_the_id_as_source():
    spec = resolve_spec("someone/my-reranker")
    assert (spec.source, spec.name, spec.estimated_max) == ("someone/my-reranker", "my-reranker", 12.0)


def test_unresolvable_name_is_rejected():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        resolve_spec("nope")


def test_spec_survives_json_round_trip():
    spec = LARGE_V2.with_overrides(dtype="fp16", max_length=512)
    assert ModelSpec.from_json(spec.to_json()) == spec


def test_buckets_end_at_the_longest_padded_sequence():
    assert BASE_V2.max_sequence_length == 8272  # 8192 + 79 template tokens, multiple of 8
    assert BASE_V2.seq_buckets[-1] == 8272
    assert list(BASE_V2.seq_buckets) == sorted(set(BASE_V2.seq_buckets))


def test_small_max_length_shrinks_buckets():
    spec = BASE_V2.with_overrides(max_length=200)
    assert spec.seq_buckets == (64, 128, 192, 256, 280)


def test_trt_profiles_tile_all_lengths_without_gaps():
    profiles = BASE_V2.trt_profiles
    assert profiles[0][0] == 1 and profiles[-1][2] == BASE_V2.max_sequence_length
    for (_, _, high), (low, _, _) in zip(profiles, profiles[1:]):
        assert low == high + 1
    assert all(low <= opt <= high for low, opt, high in profiles)
    assert all(high in BASE_V2.seq_buckets for _, _, high in profiles)


def test_triton_name_is_a_safe_model_name():
    assert ModelSpec(name="My Model.v2", source="x").triton_name == "my-model-v2"


def test_a_spec_from_before_right_padded_graphs_is_refused_with_what_to_do():
    import json

    raw = json.loads(BASE_V2.to_json())
    del raw["padding_side"]
    with pytest.raises(ValueError, match="names no padding_side: .* export the model again"):
        ModelSpec.from_json(json.dumps(raw))
