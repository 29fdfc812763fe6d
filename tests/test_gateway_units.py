"""The gateway's pure parts, without a server: error shapes, field names in messages, score checks, request schemas."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pydantic", reason="the gateway's schemas are pydantic models")

from mxbai_triton.client.transport import Scored  # noqa: E402
from mxbai_triton.gateway.backend import BackendSettings, check_scored  # noqa: E402
from mxbai_triton.gateway.errors import APIError, error_body, validation_error  # noqa: E402
from mxbai_triton.gateway.schemas import CohereV2Request, JinaRequest  # noqa: E402


def test_each_api_gets_its_own_error_shape():
    error = APIError(413, "too many", "documents")
    assert error_body("cohere", error) == {"message": "too many"}
    assert error_body("tei", error) == {"error": "too many", "error_type": "Validation"}
    assert error_body("jina", error) == {"error": {"message": "too many", "type": "BadRequestError",
                                                  "param": "documents", "code": 413}}


def test_validation_errors_name_the_field_with_list_positions():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as raised:
        JinaRequest.model_validate({"query": "q", "documents": ["a", {"txt": "b"}]})
    error = validation_error(raised.value.errors(include_url=False), 400)
    assert (error.status, error.field) == (400, "documents[1]")
    assert error.message == "'documents[1]': Input should be a string or an object with a string 'text'"


def test_a_short_answer_from_triton_is_an_error_not_a_short_ranking():
    with pytest.raises(APIError, match="Triton answered 2 scores for 3 documents") as raised:
        check_scored(Scored(np.zeros(2, np.float32), np.ones(2, np.int64)), 3)
    assert raised.value.status == 502


def test_non_finite_scores_are_an_error_naming_the_documents():
    with pytest.raises(APIError, match=r"non-finite scores for documents \[1, 2\]"):
        check_scored(Scored(np.array([0.5, np.nan, np.inf], np.float32), None), 3)
    check_scored(Scored(np.array([0.5, -3.0], np.float32), np.array([7, 9])), 2)  # a good answer passes


def test_retries_must_stop_before_the_deadline():
    with pytest.raises(ValueError, match="--api-retry-for .* must be shorter than --api-timeout"):
        BackendSettings(urls=("h:1",), models=("m",), timeout=10, retry_for=10)


def test_cohere_documents_may_be_strings_or_text_objects():
    request = CohereV2Request.model_validate({"model": "m", "query": "q", "documents": ["a", {"text": "b"}]})
    assert request.texts() == ["a", "b"] and request.return_documents is False
