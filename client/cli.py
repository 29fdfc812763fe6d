"""CLI of the client stage: rank documents for a query on a running server."""

from __future__ import annotations

import argparse
import json
import logging
import time

log = logging.getLogger(__name__)

DEFAULT_URLS = {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"}


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("rank", help="rank documents for a query through a running Triton ensemble")
    p.add_argument("--url", action="append", default=None,
                   help="host:port of the server; repeat it for replicas (default: 127.0.0.1:8001 for gRPC, "
                        "127.0.0.1:8000 for HTTP)")
    p.add_argument("--model", default=None,
                   help="ensemble name (default: the one rerank ensemble the server serves; several: it lists them)")
    p.add_argument("--protocol", default="grpc", choices=["grpc", "http"], help="KServe protocol to speak")
    p.add_argument("--query", required=True, help="the query to rank the documents for")
    p.add_argument("--instruction", default=None, help="the reference's optional instruction line")
    p.add_argument("--top-k", type=int, default=None, help="print only the best K (default: all)")
    p.add_argument("--priority", type=int, default=0, choices=[0, 1, 2],
                   help="Triton priority: 0 the server decides by size, 1 interactive, 2 bulk work")
    p.add_argument("--normalize", action="store_true", help="sigmoid(score - estimated_max/2), as the reference")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds the request may take in all, retries included")
    p.add_argument("--retry-for", type=float, default=10.0, help="seconds of retries while no server answers")
    p.add_argument("--json", action="store_true", help="one JSON object per result")
    p.add_argument("documents", nargs="+", metavar="DOC", help="the documents to rank")
    p.set_defaults(handler=_rank)


def _rank(args) -> int:
    from .rerank import RerankClient, RetryPolicy

    urls = args.url or [DEFAULT_URLS[args.protocol]]
    model = _model_when_served(urls, args.model, args.protocol, args.timeout, args.retry_for)
    retry = RetryPolicy(deadline=args.retry_for)
    with RerankClient(urls, model=model, protocol=args.protocol, timeout=args.timeout, retry=retry) as client:
        results = client.rank(args.query, args.documents, top_k=args.top_k, instruction=args.instruction,
                              normalize=args.normalize, priority=args.priority)
    print_ranking(args.query, results, as_json=args.json)
    return 0


def _model_when_served(urls, requested, protocol: str, timeout: float, retry_for: float) -> str:
    """The ensemble to use, asking again for up to `retry_for` seconds while no server answers (one starting)."""
    from .discovery import DiscoveryError, choose_model
    from .loop import LoopThread

    deadline = time.monotonic() + retry_for
    said = False
    loop = LoopThread("mxbai-triton-discovery")  # one for every try
    try:
        while True:
            try:
                return choose_model(urls, requested, protocol=protocol, timeout=timeout, loop=loop)
            except DiscoveryError as error:
                if error.restricted or time.monotonic() + 0.5 > deadline:
                    raise
                if not said:
                    log.info("%s; asking again for up to %g s (--retry-for)", error, retry_for)
                    said = True
                time.sleep(0.5)
    finally:
        loop.close()


def print_ranking(query: str, results, *, as_json: bool = False) -> None:
    if as_json:
        for r in results:
            print(json.dumps({"index": r.index, "score": r.score, "document": r.document}, ensure_ascii=False))
        return
    print(f"query: {query}")
    for rank, r in enumerate(results, 1):
        text = r.document if r.document is None or len(r.document) <= 90 else r.document[:87] + "..."
        print(f"{rank:3d}. [{r.index}] {r.score:+.4f}  {text}")
