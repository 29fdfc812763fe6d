"""A test collection read from a BEIR-layout folder or TREC files: documents, queries, judgements; TREC runs in and out."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

Run = dict[str, dict[str, float]]  # query id -> document id -> score, as trec_eval and ir-measures take it


@dataclass(frozen=True)
class Document:
    title: str
    text: str

    def reranked_text(self) -> str:
        """What the reranker reads: title and text joined as BEIR's own rerankers join them
        (beir/reranking/rerank.py: `(title + " " + text).strip()`)."""
        return f"{self.title} {self.text}".strip()


@dataclass(frozen=True)
class Collection:
    documents: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id -> document id -> relevance (0 = judged not relevant)
    layout: str

    def judged_queries(self) -> list[str]:
        """Queries with judgements and a text, in the queries file's order: the ones a metric can score."""
        return [q for q in self.queries if q in self.qrels]


BEIR_FILES = ("corpus.jsonl", "queries.jsonl", "qrels/<split>.tsv")
TREC_FILES = ("topics.tsv or topics.txt", "qrels.txt", "corpus.jsonl or corpus.tsv")


def load_collection(path: str | Path, split: str = "test") -> Collection:
    """The collection in folder `path`: BEIR layout when it has queries.jsonl, TREC files otherwise.

    BEIR: corpus.jsonl ({"_id", "title", "text"} per line), queries.jsonl ({"_id", "text"}), qrels/SPLIT.tsv
    (query-id, corpus-id, score, with a header). TREC: topics.tsv (id TAB text) or topics.txt (<top> blocks,
    the title is the query), qrels.txt (query 0 document relevance), and the documents as corpus.jsonl or
    corpus.tsv (id TAB text, or id TAB title TAB text).
    """
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder; DATA is a BEIR folder ({', '.join(BEIR_FILES)}) "
                                 f"or a folder of TREC files ({', '.join(TREC_FILES)})")
    if (root / "queries.jsonl").is_file():
        qrels_file = root / "qrels" / f"{split}.tsv"
        _need(root, qrels_file, "BEIR", BEIR_FILES)
        _need(root, root / "corpus.jsonl", "BEIR", BEIR_FILES)
        return Collection(read_corpus(root / "corpus.jsonl"), _read_jsonl_queries(root / "queries.jsonl"),
                          _read_beir_qrels(qrels_file), "beir")
    topics = next((p for p in (root / "topics.tsv", root / "topics.txt") if p.is_file()), root / "topics.tsv")
    corpus = next((p for p in (root / "corpus.jsonl", root / "corpus.tsv") if p.is_file()), root / "corpus.jsonl")
    for required in (topics, root / "qrels.txt", corpus):
        _need(root, required, "TREC", TREC_FILES)
    return Collection(read_corpus(corpus), read_topics(topics), read_trec_qrels(root / "qrels.txt"), "trec")


def _need(root: Path, path: Path, layout: str, files: tuple[str, ...]) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{root}: no {path.relative_to(root)} (a {layout} folder holds {', '.join(files)})")


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from None


def read_corpus(path: Path) -> dict[str, Document]:
    """Documents of a BEIR corpus.jsonl or a corpus.tsv (id TAB text, or id TAB title TAB text)."""
    if path.suffix == ".jsonl":
        try:
            return {str(row["_id"]): Document(row.get("title") or "", row.get("text") or "") for _, row in _jsonl(path)}
        except KeyError as missing:
            raise ValueError(f"{path}: a document without {missing}") from None
    documents = {}
    for number, row in enumerate(_tsv(path), 1):
        if len(row) not in (2, 3):
            raise ValueError(f"{path}:{number}: expected id, [title,] text separated by tabs, got {len(row)} columns")
        documents[row[0]] = Document(row[1], row[2]) if len(row) == 3 else Document("", row[1])
    return documents


def _read_jsonl_queries(path: Path) -> dict[str, str]:
    try:
        return {str(row["_id"]): row["text"] for _, row in _jsonl(path)}
    except KeyError as missing:
        raise ValueError(f"{path}: a query without {missing}") from None


def _tsv(path: Path) -> Iterator[list[str]]:
    with path.open(encoding="utf-8", newline="") as rows:
        yield from csv.reader(rows, delimiter="\t", quoting=csv.QUOTE_NONE)


def _read_beir_qrels(path: Path) -> dict[str, dict[str, int]]:
    rows = _tsv(path)
    next(rows, None)  # query-id, corpus-id, score
    return _qrels(((q, d, g) for q, d, g, *_ in rows), path)


def read_trec_qrels(path: Path) -> dict[str, dict[str, int]]:
    """TREC qrels: `query iteration document relevance` per line."""
    import ir_measures

    return _qrels(((q.query_id, q.doc_id, q.relevance) for q in ir_measures.read_trec_qrels(str(path))), path)


def _qrels(rows: Iterable[tuple[str, str, object]], path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for query, document, relevance in rows:
        try:
            qrels.setdefault(query, {})[document] = int(relevance)
        except ValueError:
            raise ValueError(f"{path}: relevance {relevance!r} of {query}/{document} is not an integer") from None
    return qrels


def read_topics(path: Path) -> dict[str, str]:
    """TREC topics: `id TAB text` lines (topics.tsv) or <top> blocks whose <title> is the query (topics.txt)."""
    if path.suffix == ".tsv":
        return {row[0]: row[1] for row in _tsv(path) if len(row) >= 2}
    topics = {}
    for block in re.findall(r"<top>(.*?)</top>", path.read_text(encoding="utf-8"), flags=re.S):
        number = re.search(r"<num>\s*(?:Number:)?\s*(\S+)", block)
        title = re.search(r"<title>\s*(?:Topic:)?\s*(.*?)\s*(?=<|\Z)", block, flags=re.S)
        if number is None or title is None:
            raise ValueError(f"{path}: a <top> block without <num> or <title>")
        topics[number.group(1)] = " ".join(title.group(1).split())
    return topics


def read_run(path: str | Path) -> Run:
    """A TREC run (`query Q0 document rank score tag`): scores by query; ranks are ignored, as trec_eval does."""
    import ir_measures

    run: Run = {}
    for row in ir_measures.read_trec_run(str(path)):
        run.setdefault(row.query_id, {})[row.doc_id] = row.score
    return run


def top_k(run: Mapping[str, Mapping[str, float]], k: int) -> Run:
    """Each query's `k` best documents (score descending, ties by document id)."""
    return {query: dict(sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]) for query, scores in run.items()}


def write_run(path: Path, run: Mapping[str, Mapping[str, float]], tag: str) -> None:
    """`run` as a TREC run file, each query's documents best first."""
    with path.open("w", encoding="utf-8") as out:
        for query, scores in run.items():
            for rank, (document, score) in enumerate(sorted(scores.items(), key=lambda item: (-item[1], item[0])), 1):
                out.write(f"{query} Q0 {document} {rank} {score!r} {tag}\n")
