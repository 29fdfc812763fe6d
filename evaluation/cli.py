"""`mxbai-triton eval`: first stage -> served rerankers -> nDCG@10, MRR@10, Recall@k, MAP side by side."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "eval", help="measure served rerankers on a judged collection: first stage, reranking, metrics side by side",
        description=f"{__doc__}\n\nDATA is a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) or a folder of TREC "
                    "files (topics.tsv or topics.txt, qrels.txt, corpus.jsonl or corpus.tsv). Each document is reranked as "
                    "its title and text joined by a space, as BEIR's rerankers do. OUT receives report.json, report.md "
                    "(also printed), one TREC run per system and ndcg_per_query.png.")
    p.add_argument("data", metavar="DATA", help="BEIR-layout folder or folder of TREC files")
    p.add_argument("--model", action="append", default=None,
                   help="served ensemble to rerank with; repeat it to compare (default: every rerank ensemble served)")
    p.add_argument("--url", action="append", default=None,
                   help="host:port of the server; repeat it for replicas (default: 127.0.0.1:8001 for gRPC, 127.0.0.1:8000 for HTTP)")
    p.add_argument("--protocol", default="grpc", choices=["grpc", "http"], help="KServe protocol to speak")
    p.add_argument("--run", default=None, metavar="FIRST_STAGE.trec",
                   help="first-stage run to rerank (TREC format; default: BM25 over DATA's documents)")
    p.add_argument("--top-k", type=int, default=100, help="candidates per query from the first stage")
    p.add_argument("--split", default="test", help="qrels/SPLIT.tsv of a BEIR folder")
    p.add_argument("--instruction", default=None, help="the reference's optional instruction line, sent with every query")
    p.add_argument("--concurrency", type=int, default=4, help="queries in flight at once (each one request, bulk priority)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one try of a request may take")
    p.add_argument("--retry-for", type=float, default=10.0, help="seconds of retries while no server answers")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report, the runs and the plot")
    p.set_defaults(handler=_eval)


def _eval(args) -> int:
    from mxbai_triton.client.cli import DEFAULT_URLS
    from mxbai_triton.client.rerank import RetryPolicy

    from .collection import load_collection
    from .first_stage import first_stage
    from .report import FIRST_STAGE, build_report, markdown, write_outputs
    from .served import rerank_with_each

    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    collection = load_collection(args.data, args.split)
    queries = collection.judged_queries()
    if not queries:
        raise ValueError(f"{args.data}: no query has both a text and judgements (split {args.split!r})")
    urls = args.url or [DEFAULT_URLS[args.protocol]]
    models = served_models(urls, args.model, args.protocol, args.timeout, args.retry_for)
    log.info("%s: %d documents, %d judged queries; reranking with %s", args.data, len(collection.documents), len(queries),
             ", ".join(models))
    candidates, described = first_stage(collection, queries, args.top_k, args.run)

    def done(model, timing) -> None:
        log.info("%s: %d documents in %.1f s", model, timing.documents, timing.seconds)

    reranked = rerank_with_each(urls, models, collection, candidates, protocol=args.protocol, timeout=args.timeout,
                                retry=RetryPolicy(deadline=args.retry_for), concurrency=args.concurrency,
                                instruction=args.instruction, on_done=done)
    runs = {FIRST_STAGE: candidates, **{model: run for model, (run, _) in reranked.items()}}
    about = {"data": args.data, "layout": collection.layout, "split": args.split, "first_stage": described,
             "instruction": args.instruction, "protocol": args.protocol}
    report, values = build_report(runs, collection.qrels, k=args.top_k,
                                  timings={model: timing for model, (_, timing) in reranked.items()}, about=about)
    written = write_outputs(Path(args.out), report, runs, values)
    print(markdown(report), end="")
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return 0


def served_models(urls: list[str], requested: list[str] | None, protocol: str, timeout: float, retry_for: float) -> list[str]:
    """The requested ensembles when each is served (ValueError naming the served ones), else every served rerank ensemble."""
    from mxbai_triton.client.discovery import choose_model, served_rerankers, when_served

    if requested:
        if len(set(requested)) != len(requested):
            raise ValueError(f"--model names a model twice: {', '.join(requested)}")
        return when_served(lambda loop: [choose_model(urls, name, protocol=protocol, timeout=timeout, loop=loop)
                                         for name in requested], retry_for)
    served = when_served(lambda loop: served_rerankers(urls[0], protocol=protocol, timeout=timeout, loop=loop), retry_for)
    if not served:
        raise ValueError(f"no rerank ensemble is served at {urls[0]}")
    return served
