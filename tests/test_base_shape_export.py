"""The real base-v2 shape (494M parameters, random weights) exports and validates on CPU."""

from __future__ import annotations

import pytest

from mxbai_triton.core.model import ONNX_FILENAME


@pytest.mark.slow
def test_base_shape_exports_with_external_data_and_validates(tmp_path):
    from mxbai_triton.export.onnx_export import export_onnx
    from mxbai_triton.export.standin import build_standin
    from mxbai_triton.export.validate import validate_export

    checkpoint = build_standin(tmp_path / "base", size="base", seed=0)
    out = tmp_path / "base-export"
    export_onnx(str(checkpoint), out, validate=False)
    assert (out / (ONNX_FILENAME + ".data")).stat().st_size > 1.5e9  # fp32 weights beside the graph
    # Padded rows (batch 2) at two lengths, one past 256: the real head counts and widths are what this test adds.
    results = validate_export(out, batches=(1, 2), lengths=(64, 300))
    assert all(r.ok for r in results) and max(r.max_abs_diff for r in results) < 1e-4
