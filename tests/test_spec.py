"""The model spec: known models, local checkpoints, JSON round trip, derived buckets and profiles."""

from __future__ import annotations

import pytest

from mxbai_triton.core.engine import EngineProfiles
from mxbai_triton.core.model import BASE_V2, LARGE_V2, ModelSpec, resolve_spec
from mxbai_triton.core.serving import ServingLimits


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
    buckets = ServingLimits().seq_buckets(BASE_V2)
    assert BASE_V2.max_sequence_length == 8272  # 8192 + 79 template tokens, multiple of 8
    assert buckets[-1] == 8272
    assert list(buckets) == sorted(set(buckets))


def test_small_max_length_shrinks_buckets():
    assert ServingLimits().seq_buckets(BASE_V2.with_overrides(max_length=200)) == (64, 128, 192, 256, 280)


def test_trt_profiles_tile_all_lengths_without_gaps():
    profiles = EngineProfiles().ranges(BASE_V2)
    assert profiles[0][0] == 1 and profiles[-1][2] == BASE_V2.max_sequence_length
    for (_, _, high), (low, _, _) in zip(profiles, profiles[1:]):
        assert low == high + 1
    assert all(low <= opt <= high for low, opt, high in profiles)
    assert all(high in ServingLimits().seq_buckets(BASE_V2) for _, _, high in profiles)


def test_serving_defaults_follow_the_model_and_hold_its_longest_sequence():
    assert (ServingLimits.for_model(LARGE_V2).max_batch_size, ServingLimits.for_model(BASE_V2).max_batch_size) == (24, 48)
    with pytest.raises(ValueError, match="max_batch_tokens 4096 cannot hold one sequence of 8272 tokens"):
        ServingLimits.for_model(BASE_V2, max_batch_tokens=4096)


def test_serving_limits_survive_their_json_file(tmp_path):
    limits = ServingLimits.for_model(LARGE_V2, bucket_bounds=(), special_tokens_in_text="text")
    limits.save(tmp_path)
    assert ServingLimits.load(tmp_path) == limits


def test_an_exports_spec_json_keeps_model_facts_only_and_older_ones_still_load():
    import json

    assert "max_batch_size" not in json.loads(BASE_V2.to_json())
    older = {**json.loads(BASE_V2.to_json()), "max_batch_size": 64, "trt_profile_bounds": [[256, 256]]}
    assert ModelSpec.from_json(json.dumps(older)) == BASE_V2


def test_triton_name_is_a_safe_model_name():
    assert ModelSpec(name="My Model.v2", source="x").triton_name == "my-model-v2"


def test_a_spec_from_before_right_padded_graphs_is_refused_with_what_to_do():
    import json

    raw = json.loads(BASE_V2.to_json())
    del raw["padding_side"]
    with pytest.raises(ValueError, match="names no padding_side: .* export the model again"):
        ModelSpec.from_json(json.dumps(raw))
