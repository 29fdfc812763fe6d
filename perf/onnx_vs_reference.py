"""CPU time of in-process ONNX Runtime (our preprocessing) vs the reference's predict, one run each."""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (the reference loads it)")
    parser.add_argument("--export", required=True, help="export directory of the same checkpoint")
    parser.add_argument("--docs", type=int, default=16)
    parser.add_argument("--doc-tokens", type=int, default=290)
    args = parser.parse_args(argv)

    import torch
    from mxbai_rerank import MxbaiRerankV2

    from mxbai_triton.export.onnx_export import ONNX_FILENAME
    from mxbai_triton.export.preprocess import RerankPreprocessor, pad_left, padded_length
    from mxbai_triton.export.validate import onnx_session

    from .workload import QUERY, synthetic_documents

    documents = synthetic_documents(args.docs, args.doc_tokens)
    query = QUERY
    reference = MxbaiRerankV2(args.checkpoint, device="cpu", torch_dtype=torch.float32)
    pre = RerankPreprocessor.from_dir(args.export)
    session = onnx_session(args.export + "/" + ONNX_FILENAME)

    start = time.perf_counter()
    expected = reference.predict([query] * len(documents), documents).numpy()
    reference_s = time.perf_counter() - start

    start = time.perf_counter()
    sequences = pre.encode(query, documents)
    ids, mask = pad_left(sequences, padded_length(max(map(len, sequences))), pre.spec.pad_token_id)
    (scores,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    onnx_s = time.perf_counter() - start

    diff = float(np.max(np.abs(scores[:, 0] - expected)))
    print(f"workload: {args.docs} docs x {ids.shape[1]} tokens (padded), {time.strftime('%Y-%m-%d')}")
    print(f"reference predict (torch fp32): {reference_s:7.2f} s")
    print(f"onnxruntime + our tokenizer:    {onnx_s:7.2f} s   ({reference_s / onnx_s:.2f}x faster)")
    print(f"max |score diff|: {diff:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
