"""The exported graph: signature, scores equal to the reference's predict, finite under heavy padding."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mxbai_triton.core.model import ONNX_FILENAME, ModelSpec
from mxbai_triton.core.preprocess import RerankPreprocessor, pad_sequences, padded_length
from mxbai_triton.core.runtime import onnx_session
from mxbai_triton.export.validate import ValidationError, check_signature, validate_export
from tests.cases import LONG_DOCUMENT, PARITY_CASES

SCORE_CASES = [c for c in PARITY_CASES
               if c[0] in ("example", "instruction", "multilingual", "empty_and_whitespace", "special_tokens_in_text")]

# runs the ONNX exporter (~10 s a graph)
pytestmark = pytest.mark.slow


def _onnx_scores(export_dir, preprocessor, query, documents, instruction=None):
    sequences = preprocessor.encode(query, documents, instruction=instruction)
    return _run(export_dir, preprocessor, sequences)


def _run(export_dir, preprocessor, sequences):
    spec = preprocessor.spec
    ids, mask = pad_sequences(sequences, padded_length(max(map(len, sequences))), spec.pad_token_id, spec.padding_side)
    (scores,) = onnx_session(export_dir / ONNX_FILENAME).run(None, {"input_ids": ids, "attention_mask": mask})
    return scores[:, 0]


@pytest.mark.parametrize("case", SCORE_CASES, ids=[c[0] for c in SCORE_CASES])
def test_onnx_scores_match_reference_predict(case, tiny_export, preprocessor, oracle):
    _, query, documents, instruction, _ = case
    ours = _onnx_scores(tiny_export, preprocessor, query, documents, instruction)
    expected = oracle.predict([query] * len(documents), documents, instruction=instruction).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
    assert np.argsort(-ours, kind="stable").tolist() == np.argsort(-expected, kind="stable").tolist()


def test_onnx_scores_are_finite_for_rows_that_are_almost_all_padding(tiny_export, oracle):
    # max_length 1024 keeps the unfused attention of both sides within this machine's memory.
    documents = [LONG_DOCUMENT, "", "x"]
    preprocessor = RerankPreprocessor.from_dir(tiny_export, max_length=1024)
    sequences = preprocessor.encode("q", documents)
    assert min(map(len, sequences)) * 10 < max(map(len, sequences))
    ours = _run(tiny_export, preprocessor, sequences)
    assert np.isfinite(ours).all()
    oracle.max_length = 1024
    try:
        expected = oracle.predict(["q"] * 3, documents).numpy()
    finally:
        oracle.max_length = 8192
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)


def test_score_of_a_document_does_not_depend_on_its_batch_padding(tiny_export, preprocessor):
    alone = _onnx_scores(tiny_export, preprocessor, "q", ["short document"])
    padded = _onnx_scores(tiny_export, preprocessor, "q", ["short document", LONG_DOCUMENT[:5000]])
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-5)


def test_signature_has_named_inputs_and_dynamic_batch_and_sequence(tiny_export):
    import onnx

    graph = onnx.load(str(tiny_export / ONNX_FILENAME), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in graph.output] == ["scores"]
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", "sequence"]
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == 1


def test_graph_has_no_vocab_wide_matmul(tiny_export):
    import onnx

    model = onnx.load(str(tiny_export / ONNX_FILENAME))
    vocab = 151936
    big = [t.name for t in model.graph.initializer if vocab in t.dims]
    # Only the embedding table (gathered, never multiplied) has a vocab-sized axis.
    assert len(big) == 1
    assert not any(n.op_type in ("MatMul", "Gemm") and big[0] in n.input for n in model.graph.node)


def test_signature_check_lists_every_mismatch(tiny_export, tmp_path):
    import onnx

    model = onnx.load(str(tiny_export / ONNX_FILENAME))
    model.graph.input[0].name = "input.1"
    model.graph.output[0].name = "logits"
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    with pytest.raises(ValidationError, match=r"inputs are \['input.1', 'attention_mask'\].*outputs are \['logits'\]"):
        check_signature(broken, ModelSpec.load(tiny_export))


def test_validation_passes_on_the_export(tiny_export):
    results = validate_export(tiny_export, batches=(1, 3), lengths=(8, 40))
    assert len(results) == 4 and all(r.ok and r.max_abs_diff < 1e-4 for r in results)


def test_validation_fails_with_every_case_when_scores_disagree(tiny_export, tmp_path):
    # A spec that swaps "1" and "0" makes PyTorch's reference the negation of the graph's score.
    broken = tmp_path / "swapped"
    shutil.copytree(tiny_export, broken)
    raw = json.loads((broken / "spec.json").read_text())
    raw["yes_token_id"], raw["no_token_id"] = raw["no_token_id"], raw["yes_token_id"]
    (broken / "spec.json").write_text(json.dumps(raw))
    with pytest.raises(ValidationError, match=r"4 of 4 cases exceed"):
        validate_export(broken, batches=(1, 2), lengths=(8, 24))
