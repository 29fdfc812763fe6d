"""CLI of the client stage: rank documents for a query on a running server."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_URLS = {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"}


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("rank", help="rank documents for a query through a running Triton ensemble, or a JSONL file of "
                                         "requests (--input, --output)")
    p.add_argument("--url", action="append", default=None,
                   help="host:port of the server; repeat it for replicas (default: 127.0.0.1:8001 for gRPC, "
                        "127.0.0.1:8000 for HTTP)")
    p.add_argument("--model", default=None,
                   help="ensemble name (default: the one rerank ensemble the server serves; several: it lists them)")
    p.add_argument("--protocol", default="grpc", choices=["grpc", "http"], help="KServe protocol to speak")
    p.add_argument("--query", default=None, help="the query to rank the documents for")
    p.add_argument("--instruction", default=None, help="the reference's optional instruction line")
    p.add_argument("--top-k", type=int, default=None, help="print only the best K (default: all)")
    p.add_argument("--priority", type=int, default=None, choices=[0, 1, 2],
                   help="Triton priority: 0 the server decides by size, 1 interactive, 2 bulk work (default: 0; 2 with --input)")
    p.add_argument("--normalize", action="store_true",
                   help="with --json, 'score' is the relevance (sigmoid(raw - estimated_max/2), the reference's normalize=True) "
                        "instead of the raw score; the table always shows both")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds the request may take in all, retries included")
    p.add_argument("--retry-for", type=float, default=10.0, help="seconds of retries while no server answers")
    p.add_argument("--json", action="store_true", help="one JSON object per result")
    p.add_argument("documents", nargs="*", metavar="DOC", help="the documents to rank")
    bulk = p.add_argument_group("bulk files", "one request per line, {\"id\", \"query\", \"documents\"[, \"instruction\", "
                                              "\"top_n\"]}; one result line per request; a rerun skips the ids already in --output")
    bulk.add_argument("--input", default=None, metavar="REQUESTS.jsonl", help="rank every request of this file")
    bulk.add_argument("--output", default=None, metavar="RESULTS.jsonl", help="append the results here")
    bulk.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    p.set_defaults(handler=_rank)


def _rank(args) -> int:
    from .discovery import NO_SERVER_HINT
    from .rerank import RerankClient, RerankError, RetryPolicy

    if args.input or args.output:
        return _rank_file(args)
    if args.query is None or not args.documents:
        raise ValueError("rank needs --query and at least one DOC, or --input and --output")
    urls = args.url or [DEFAULT_URLS[args.protocol]]
    model = _model_when_served(urls, args.model, args.protocol, args.timeout, args.retry_for)
    retry = RetryPolicy(deadline=args.retry_for)
    try:
        with RerankClient(urls, model=model, protocol=args.protocol, timeout=args.timeout, retry=retry) as client:
            results = client.rank(args.query, args.documents, top_k=args.top_k, instruction=args.instruction,
                                  priority=args.priority or 0)
            estimated_max = client.limits.estimated_max
    except RerankError as error:
        if error.unavailable:
            raise RerankError(f"{error}; {NO_SERVER_HINT}", kind=error.kind) from None
        raise
    print_ranking(args.query, results, estimated_max, as_json=args.json, normalized=args.normalize)
    return 0


def _rank_file(args) -> int:
    from mxbai_triton.core.wire import PRIORITY_BULK

    from .bulk import rank_file_with
    from .rerank import RetryPolicy

    if not (args.input and args.output) or args.query is not None or args.documents:
        raise ValueError("rank --input REQUESTS.jsonl --output RESULTS.jsonl takes its queries and documents from the file: "
                         "both files, no --query or DOC")
    if args.top_k or args.normalize or args.instruction:
        raise ValueError("with --input, top_n and instruction come from each line (--top-k, --instruction, --normalize do not apply)")
    if not Path(args.input).is_file():
        raise FileNotFoundError(f"--input {args.input}: no such file")
    urls = args.url or [DEFAULT_URLS[args.protocol]]
    model = _model_when_served(urls, args.model, args.protocol, args.timeout, args.retry_for)
    summary = rank_file_with(urls, model, args.input, args.output, protocol=args.protocol, timeout=args.timeout,
                             retry=RetryPolicy(deadline=args.retry_for), concurrency=args.concurrency,
                             priority=PRIORITY_BULK if args.priority is None else args.priority)
    log.info("%d requests ranked (%d documents) in %.1f s, %.1f documents/s; %d already in %s; %d bad lines (reported above)",
             summary.written, summary.documents, summary.seconds, summary.documents / max(summary.seconds, 1e-9),
             summary.already_done, args.output, len(summary.bad_lines))
    return 2 if summary.bad_lines else 0


def _model_when_served(urls, requested, protocol: str, timeout: float, retry_for: float) -> str:
    """The ensemble to use, asking again for up to `retry_for` seconds while no server answers (one starting)."""
    from .discovery import choose_model, when_served

    return when_served(lambda loop: choose_model(urls, requested, protocol=protocol, timeout=timeout, loop=loop), retry_for)


def print_ranking(query: str, results, estimated_max: float, *, as_json: bool = False, normalized: bool = False) -> None:
    """`results` (raw scores, best first) with both scores labelled: the raw score and the normalised relevance.

    One pair has two numbers across the APIs: the raw score logit("1") - logit("0") (the reference's
    default, NIM's `logit`, TEI's `raw_scores`) and the relevance sigmoid(raw - estimated_max/2) (the
    reference's normalize=True, Cohere's and Jina's `relevance_score`). Both are printed, named.
    """
    from mxbai_triton.core.ranking import sigmoid_normalize

    relevance = sigmoid_normalize([r.score for r in results], estimated_max) if results else []
    if as_json:
        for r, rel in zip(results, relevance):
            print(json.dumps({"index": r.index, "score": float(rel) if normalized else r.score, "raw_score": r.score,
                              "relevance_score": float(rel), "document": r.document}, ensure_ascii=False))
        return
    print(f"query: {query}")
    print(f"{'rank':>4}  {'doc':>5}  {'raw':>8}  {'relevance':>9}  document")
    for rank, (r, rel) in enumerate(zip(results, relevance), 1):
        text = r.document if r.document is None or len(r.document) <= 80 else r.document[:77] + "..."
        print(f"{rank:>4}  {'[' + str(r.index) + ']':>5}  {r.score:+8.4f}  {rel:9.4f}  {text}")
    print(f'raw = logit("1") - logit("0"), the reference\'s score (NIM `logit`, TEI `raw_scores`); relevance = '
          f"sigmoid(raw - {estimated_max:g}/2), its normalize=True (Cohere/Jina `relevance_score`, TEI `score`)")
