"""The candidates a reranker reorders: a given TREC run, or BM25 (bm25s) over the collection's documents."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from .collection import Collection, Run, read_run, top_k

log = logging.getLogger(__name__)

# Lucene's BM25 with Pyserini's default k1 and b (Pyserini stems with Porter, this with Snowball's English
# stemmer, Porter's successor), English stopwords: the usual first stage of reranking papers, in a pip package.
BM25_SETTINGS = {"method": "lucene", "k1": 0.9, "b": 0.4}


def bm25_description() -> str:
    return "BM25 (bm25s, " + ", ".join(f"{k}={v}" for k, v in BM25_SETTINGS.items()) + ", English stopwords, Snowball stemmer)"


def bm25_run(collection: Collection, queries: list[str], k: int) -> Run:
    """Each query's `k` best-scoring documents under BM25; documents sharing no term with the query are left out."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = list(collection.documents)
    texts = [collection.documents[i].reranked_text() for i in ids]
    retriever = bm25s.BM25(**BM25_SETTINGS)
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([collection.queries[q] for q in queries], stopwords="en", stemmer=stemmer,
                            return_ids=False, show_progress=False)
    run: Run = {}
    for query, words in zip(queries, tokens):
        scores = retriever.get_scores(words) if words else np.zeros(len(ids), dtype=np.float32)
        matched = np.flatnonzero(scores > 0)
        best = matched[np.lexsort((matched, -scores[matched]))][:k]  # score descending, ties by corpus order
        run[query] = {ids[i]: float(scores[i]) for i in best}
    return run


def first_stage(collection: Collection, queries: list[str], k: int, run_file: str | None = None) -> tuple[Run, str]:
    """The top-`k` candidates of each query (from `run_file` when given, else BM25) and how they were made."""
    if run_file is None:
        return bm25_run(collection, queries, k), bm25_description()
    given = read_run(run_file)
    unknown = {d for scores in given.values() for d in scores} - collection.documents.keys()
    if unknown:
        raise ValueError(f"{run_file}: {len(unknown)} document ids are not in the collection, e.g. {sorted(unknown)[:3]}")
    missing = [q for q in queries if q not in given]
    if missing:
        log.warning("%s has no candidates for %d of %d judged queries (e.g. %s): trec_eval leaves them out of the means",
                    run_file, len(missing), len(queries), ", ".join(missing[:3]))
    return top_k(_only(given, queries), k), f"the run {run_file}"


def _only(run: Mapping[str, Mapping[str, float]], queries: list[str]) -> Run:
    return {q: dict(run[q]) for q in queries if q in run}
