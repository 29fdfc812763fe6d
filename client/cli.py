"""CLI of the client stage: rank documents for a query on a running server."""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("rank", help="rank documents for a query through a running Triton ensemble")
    p.add_argument("--url", action="append", default=None,
                   help="host:port (gRPC 8001, HTTP 8000 by default); repeat it for replicas (default 127.0.0.1:8001)")
    p.add_argument("--model", default=None,
                   help="ensemble name (default: the one rerank ensemble the server serves; several: it lists them)")
    p.add_argument("--protocol", default="grpc", choices=["grpc", "http"])
    p.add_argument("--query", required=True)
    p.add_argument("--instruction", default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--normalize", action="store_true", help="sigmoid(score - estimated_max/2), as the reference")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--json", action="store_true", help="one JSON object per result")
    p.add_argument("documents", nargs="+", metavar="DOC")
    p.set_defaults(handler=_rank)


def _rank(args) -> int:
    from .discovery import choose_model
    from .rerank import RerankClient

    urls = args.url or ["127.0.0.1:8001"]
    model = choose_model(urls, args.model, protocol=args.protocol, timeout=args.timeout)
    with RerankClient(urls, model=model, protocol=args.protocol, timeout=args.timeout) as client:
        results = client.rank(
            args.query, args.documents, top_k=args.top_k, instruction=args.instruction, normalize=args.normalize
        )
    print_ranking(args.query, results, as_json=args.json)
    return 0


def print_ranking(query: str, results, *, as_json: bool = False) -> None:
    if as_json:
        for r in results:
            print(json.dumps({"index": r.index, "score": r.score, "document": r.document}, ensure_ascii=False))
        return
    print(f"query: {query}")
    for rank, r in enumerate(results, 1):
        text = r.document if r.document is None or len(r.document) <= 90 else r.document[:87] + "..."
        print(f"{rank:3d}. [{r.index}] {r.score:+.4f}  {text}")
