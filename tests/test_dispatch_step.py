"""The tokenizer step's dispatch in-process, with a scripted scorer at the Triton edge: how many sub-batches each
kind of request keeps in the scorer's queue, cancellation and timeouts between sub-batches, scorer errors."""

from __future__ import annotations

import asyncio
import importlib

import numpy as np
import pytest

from mxbai_triton.core.model import ModelSpec
from mxbai_triton.core.preprocess import TOKENIZER_FILENAME
from mxbai_triton.core.serving import ServingLimits, SubBatchCost
from mxbai_triton.core.wire import PRIORITY_PARAMETER
from tests import fake_triton

DOCUMENTS = [f"document {i} " + "word " * (3 * i) for i in range(12)]


@pytest.fixture()
def step(tiny_tokenizer_dir, tmp_path, monkeypatch):
    """Build the tokenizer step over a spec with 4-row sub-batches; returns (make(scorer, **spec changes), preprocessor)."""
    from mxbai_triton.core.preprocess import RerankPreprocessor

    def make(scorer: fake_triton.Scorer, spec_changes: dict | None = None, **changes):
        version = tmp_path / "tokenizer" / "1"
        version.mkdir(parents=True, exist_ok=True)
        (version / TOKENIZER_FILENAME).unlink(missing_ok=True)
        (version / TOKENIZER_FILENAME).symlink_to(tiny_tokenizer_dir / TOKENIZER_FILENAME)
        spec = ModelSpec.load(tiny_tokenizer_dir).with_overrides(**(spec_changes or {}))
        spec.save(version)
        ServingLimits.for_model(spec, max_batch_size=4, **changes).save(version)
        fake_triton.install(scorer, monkeypatch)
        backend = importlib.import_module("mxbai_triton.model_repository.tokenizer_backend")
        model = backend.TritonPythonModel()
        model.initialize(fake_triton.model_args(version, {"name": "rr_tokenizer", "parameters": {
            "scorer_model": {"string_value": "rr_scorer"}}}))
        return model

    return make, RerankPreprocessor.from_dir(tiny_tokenizer_dir)


def _expected(preprocessor, documents=DOCUMENTS) -> np.ndarray:
    return np.array([sum(ids) for ids in preprocessor.encode("q", documents)], dtype=np.float32)


def _run(model, *requests):
    return asyncio.run(model.execute(list(requests)))


def _scores(response) -> np.ndarray:
    assert not response.has_error(), response.error().message()
    return response.output("scores").as_numpy().reshape(-1)


def test_an_interactive_request_sends_every_sub_batch_at_once_and_answers_in_input_order(step):
    make, pre = step
    scorer = fake_triton.Scorer(delay=0.01)
    [response] = _run(make(scorer), fake_triton.Request("q", DOCUMENTS))
    np.testing.assert_array_equal(_scores(response), _expected(pre))
    assert len(scorer.sent) == 3 and scorer.most_in_flight == 3
    assert fake_triton.counter("mxbai_dispatch_requests", **{"class": "interactive"}) == 1


def test_a_request_over_the_interactive_token_budget_keeps_one_sub_batch_in_flight(step):
    make, pre = step
    scorer = fake_triton.Scorer(delay=0.01)
    [response] = _run(make(scorer, interactive_max_tokens=64), fake_triton.Request("q", DOCUMENTS))
    np.testing.assert_array_equal(_scores(response), _expected(pre))
    assert len(scorer.sent) == 3 and scorer.most_in_flight == 1
    assert fake_triton.counter("mxbai_dispatch_requests", **{"class": "bulk"}) == 1


def test_bulk_sub_batches_in_flight_sets_the_window(step):
    make, _ = step
    scorer = fake_triton.Scorer(delay=0.01)
    _run(make(scorer, interactive_max_tokens=64, bulk_sub_batches_in_flight=2), fake_triton.Request("q", DOCUMENTS))
    assert len(scorer.sent) == 3 and scorer.most_in_flight == 2


def test_a_small_request_its_caller_marks_bulk_is_dispatched_as_bulk(step):
    make, pre = step
    scorer = fake_triton.Scorer(delay=0.01)
    [response] = _run(make(scorer), fake_triton.Request("q", DOCUMENTS, parameters={PRIORITY_PARAMETER: 2}))
    np.testing.assert_array_equal(_scores(response), _expected(pre))
    assert scorer.most_in_flight == 1


def test_bulk_requests_are_planned_within_the_cost_budget_and_interactive_ones_are_not(step):
    make, pre = step
    # 1 ms per padded token: a 0.2 s budget holds one row of these ~128-token prompts, the row limit four.
    bounded = {"sub_batch_cost": SubBatchCost(0.0, 1e-3, 0.0), "bulk_sub_batch_seconds": 0.2}
    interactive, bulk = fake_triton.Scorer(), fake_triton.Scorer()
    [plain] = _run(make(interactive, **bounded), fake_triton.Request("q", DOCUMENTS))
    [marked] = _run(make(bulk, **bounded), fake_triton.Request("q", DOCUMENTS, parameters={PRIORITY_PARAMETER: 2}))
    assert [s["rows"] for s in interactive.sent] == [4, 4, 4]
    assert [s["rows"] for s in bulk.sent] == [1] * len(DOCUMENTS)
    np.testing.assert_array_equal(_scores(marked), _scores(plain))
    np.testing.assert_array_equal(_scores(plain), _expected(pre))


def test_a_caller_cannot_raise_a_large_request_to_interactive(step):
    make, _ = step
    scorer = fake_triton.Scorer(delay=0.01)
    _run(make(scorer, interactive_max_tokens=64), fake_triton.Request("q", DOCUMENTS, parameters={PRIORITY_PARAMETER: 1}))
    assert scorer.most_in_flight == 1


@pytest.mark.parametrize("value", [3, -1, "bulk", True])
def test_a_bad_dispatch_priority_is_an_error_naming_the_parameter(step, value):
    make, _ = step
    scorer = fake_triton.Scorer()
    [response] = _run(make(scorer), fake_triton.Request("q", DOCUMENTS, parameters={PRIORITY_PARAMETER: value}))
    assert response.has_error() and response.error().code() == fake_triton.TritonError.INVALID_ARG
    assert f"parameter '{PRIORITY_PARAMETER}' must be 0 (by size), 1 (interactive) or 2 (bulk)" in response.error().message()
    assert scorer.sent == []


def test_a_bulk_request_cancelled_between_sub_batches_sends_no_more(step):
    make, _ = step
    scorer = fake_triton.Scorer(delay=0.01)
    request = fake_triton.Request("q", DOCUMENTS, cancelled=lambda: len(scorer.sent) >= 2)
    [response] = _run(make(scorer, interactive_max_tokens=64), request)
    assert len(scorer.sent) == 2
    assert response.error().code() == fake_triton.TritonError.CANCELLED
    assert "cancelled by its client: 1 of 3 sub-batches were not sent" in response.error().message()
    assert fake_triton.counter("mxbai_dispatch_skipped_sub_batches", reason="cancelled") == 1


def test_a_request_past_its_timeout_stops_and_its_sub_batches_carry_the_time_left(step):
    make, _ = step
    clock = fake_triton.DrivenClock()
    scorer = fake_triton.Scorer(delay=0.06, clock=clock)
    model = make(scorer, interactive_max_tokens=64)
    model.clock = clock
    [response] = _run(model, fake_triton.Request("q", DOCUMENTS, timeout_us=100_000))
    assert len(scorer.sent) == 2  # sent at 0 and 60 ms; at 120 ms the 100 ms timeout has passed
    assert response.error().code() == fake_triton.TritonError.UNAVAILABLE
    assert "the request's timeout passed: 1 of 3 sub-batches were not sent" in response.error().message()
    # Each carries the time its request has left: a scorer queue with a policy holds it only as long as that.
    assert [s["timeout"] for s in scorer.sent] == [100_000, 40_000]
    assert fake_triton.counter("mxbai_dispatch_skipped_sub_batches", reason="deadline") == 1


def test_sub_batches_of_a_request_without_a_timeout_carry_none(step):
    make, _ = step
    scorer = fake_triton.Scorer()
    _run(make(scorer), fake_triton.Request("q", DOCUMENTS))
    assert [s["timeout"] for s in scorer.sent] == [0, 0, 0]


def test_a_scorer_error_fails_the_request_with_no_score_and_stops_sending(step):
    make, _ = step
    scorer = fake_triton.Scorer(delay=0.01, fail=lambda index: "out of memory" if index == 1 else None)
    [response] = _run(make(scorer, interactive_max_tokens=64), fake_triton.Request("q", DOCUMENTS))
    assert response.output_tensors == []
    assert response.error().message() == "scorer 'rr_scorer' failed: out of memory"
    assert len(scorer.sent) == 2
    assert fake_triton.counter("mxbai_dispatch_skipped_sub_batches", reason="failed") == 1


def test_a_bad_request_beside_a_good_one_fails_alone(step):
    make, pre = step
    scorer = fake_triton.Scorer()
    bad = fake_triton.Request("q", [])
    good, failed = _run(make(scorer), fake_triton.Request("q", DOCUMENTS), bad)
    np.testing.assert_array_equal(_scores(good), _expected(pre))
    assert failed.error().message() == "'documents' is empty: send at least one document"


# --- refused before work: truncation refused, a draining server ---

def test_truncate_none_refuses_a_cut_document_after_tokenizing_before_any_sub_batch_is_sent(step):
    from mxbai_triton.core.errors import ErrorKind, kind_of_triton

    make, _ = step
    scorer = fake_triton.Scorer()
    model = make(scorer, spec_changes={"max_length": 16})  # prompts of over 16 query + document tokens are cut
    short = ["a", "b c"]
    refused, cut_allowed, fits = _run(model, fake_triton.Request("q", DOCUMENTS, parameters={"truncate": "NONE"}),
                                      fake_triton.Request("q", DOCUMENTS, parameters={"truncate": "END"}),
                                      fake_triton.Request("q", short, parameters={"truncate": "NONE"}))
    message = refused.error().message()
    assert kind_of_triton("StatusCode.INVALID_ARGUMENT", message) is ErrorKind.TOO_LARGE
    assert refused.error().code() == fake_triton.TritonError.INVALID_ARG
    assert "Input length of documents[" in message and "exceeds maximum allowed token size" in message
    assert not cut_allowed.has_error() and not fits.has_error()
    # Only the two requests that were scored sent sub-batches.
    assert sum(sent["rows"] for sent in scorer.sent) == len(DOCUMENTS) + len(short)


def test_an_unknown_truncate_value_is_an_invalid_argument_naming_it(step):
    make, _ = step
    [response] = _run(make(fake_triton.Scorer()), fake_triton.Request("q", ["a"], parameters={"truncate": "START"}))
    assert response.error().code() == fake_triton.TritonError.INVALID_ARG
    assert "parameter 'truncate' must be one of END, NONE, got 'START'" in response.error().message()


def test_a_draining_server_refuses_what_it_has_not_started_and_counts_what_is_in_flight(step, tmp_path, monkeypatch):
    from mxbai_triton.core.drain import DRAIN_FILE_ENV, IN_FLIGHT_GAUGE
    from mxbai_triton.core.errors import ErrorKind, kind_of_triton

    flag = tmp_path / "drain"
    monkeypatch.setenv(DRAIN_FILE_ENV, str(flag))
    make, pre = step
    seen = []  # the gauge while the scorer works on a sub-batch
    scorer = fake_triton.Scorer(fail=lambda index: seen.append(fake_triton.counter(IN_FLIGHT_GAUGE)))
    model = make(scorer)
    [before] = _run(model, fake_triton.Request("q", DOCUMENTS))
    flag.touch()
    [after] = _run(model, fake_triton.Request("q", DOCUMENTS))
    np.testing.assert_array_equal(_scores(before), _expected(pre))
    assert after.error().code() == fake_triton.TritonError.UNAVAILABLE
    assert kind_of_triton("StatusCode.UNAVAILABLE", after.error().message()) is ErrorKind.BACKEND_UNAVAILABLE
    assert len(scorer.sent) == 3  # the refused request sent nothing
    assert seen == [1, 1, 1] and fake_triton.counter(IN_FLIGHT_GAUGE) == 0  # counted in while it ran, out after


# --- what the answer, the metrics and the log say about a request (docs/observability.md) ---

def _timings(response):
    from mxbai_triton.core.telemetry import Timings

    assert not response.has_error(), response.error().message()
    return Timings.from_array(response.output("timings").as_numpy())


def test_a_scorer_reporting_its_execution_splits_the_dispatch_into_queue_and_inference(step):
    make, _ = step
    scorer = fake_triton.Scorer(delay=0.02, reports_execution=True)
    # Bulk: one sub-batch in flight at a time, so the three executions follow each other.
    [response] = _run(make(scorer, interactive_max_tokens=64), fake_triton.Request("q", DOCUMENTS))
    timings = _timings(response)
    assert timings.inference >= 3 * 0.02
    assert timings.queue + timings.inference == pytest.approx(timings.dispatch, abs=2e-6)  # µs rounding
    assert timings.tokenization > 0


def test_without_a_reported_execution_the_round_trips_are_the_inference(step):
    make, _ = step
    scorer = fake_triton.Scorer(delay=0.02)
    [response] = _run(make(scorer), fake_triton.Request("q", DOCUMENTS))  # three sub-batches at once
    timings = _timings(response)
    assert timings.inference >= 0.02 and timings.queue >= 0
    assert timings.queue + timings.inference == pytest.approx(timings.dispatch, abs=2e-6)


def test_the_request_id_names_each_sub_batch_its_errors_and_its_log_line(step, monkeypatch):
    from mxbai_triton.core.errors import untagged
    from mxbai_triton.model_repository.dispatch_telemetry import LOG_REQUESTS_ENV

    monkeypatch.setenv(LOG_REQUESTS_ENV, "1")
    make, _ = step
    scorer = fake_triton.Scorer(fail=lambda index: "out of memory" if index == 1 else None)
    model = make(scorer, interactive_max_tokens=64)
    [failed, bad] = _run(model, fake_triton.Request("q", DOCUMENTS, request_id="req-7"),
                         fake_triton.Request("q", [], request_id="req-8"))
    assert [sent["request_id"] for sent in scorer.sent] == ["req-7.b0", "req-7.b1"]
    assert failed.error().message() == "[request id: req-7] scorer 'rr_scorer' failed: out of memory"
    assert bad.error().message() == "[request id: req-8] 'documents' is empty: send at least one document"
    assert untagged(bad.error().message()) == "'documents' is empty: send at least one document"
    (line,) = [text for level, text in fake_triton.Logger.lines if level == "verbose"]
    assert line.startswith("[request id: req-7] dispatched {") and '"outcome": "failed"' in line


def test_histograms_observe_each_sub_batch_and_each_request_once(step):
    make, _ = step
    scorer = fake_triton.Scorer()
    first, second = _run(make(scorer), fake_triton.Request("q", DOCUMENTS), fake_triton.Request("q", DOCUMENTS[:2]))
    for name in ("mxbai_dispatch_queue_wait_seconds", "mxbai_dispatch_execution_seconds"):
        assert len(fake_triton.observations(name, model="rr_tokenizer")) == len(scorer.sent)
    assert len(fake_triton.observations("mxbai_dispatch_request_duration_seconds", **{"class": "interactive"})) == 2
    tokens = sorted(int(r.output("token_counts").as_numpy().sum()) for r in (first, second))
    assert sorted(fake_triton.observations("mxbai_dispatch_request_tokens")) == tokens
