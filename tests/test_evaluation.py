"""`eval`: collections read from both layouts, metrics that trec_eval computes, and a served run scored like the reference's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mxbai_triton.evaluation.collection import Document, load_collection, read_run
from mxbai_triton.evaluation.cranfield import convert
from mxbai_triton.evaluation.first_stage import first_stage
from mxbai_triton.evaluation.metrics import mean_metrics
from tests.reference import reference_scores

CRANFIELD = Path(__file__).resolve().parents[1] / "data" / "cranfield"

DOCUMENTS = {"d1": ("Moby-Dick", "A novel by Herman Melville."), "d2": ("", "Paris is the capital of France."),
             "d3": ("Whales", "Sperm whales dive deep.")}
QUERIES = {"q1": "who wrote moby-dick", "q2": "how deep do whales dive"}
QRELS = {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}


def _write_corpus_jsonl(path: Path) -> None:
    path.write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, (t, x) in DOCUMENTS.items()))


def _write_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    _write_corpus_jsonl(root / "corpus.jsonl")
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in QUERIES.items()))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q, judged in QRELS.items() for d, g in judged.items()))
    return root


def _write_trec(root: Path, topics: str) -> Path:
    root.mkdir(parents=True)
    if topics == "tsv":
        (root / "topics.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in QUERIES.items()))
        (root / "corpus.tsv").write_text("".join(f"{i}\t{t}\t{x}\n" for i, (t, x) in DOCUMENTS.items()))
    else:
        (root / "topics.txt").write_text("".join(f"<top>\n<num> Number: {i}\n<title> {t}\n\n<desc> Description:\nignored\n</top>\n\n"
                                                 for i, t in QUERIES.items()))
        _write_corpus_jsonl(root / "corpus.jsonl")
    (root / "qrels.txt").write_text("".join(f"{q} 0 {d} {g}\n" for q, judged in QRELS.items() for d, g in judged.items()))
    return root


@pytest.mark.parametrize("layout", ["beir", "trec-tsv", "trec-topics"])
def test_both_layouts_read_the_same_collection(tmp_path, layout):
    root = _write_beir(tmp_path / "c") if layout == "beir" else _write_trec(tmp_path / "c", layout.split("-")[1])
    collection = load_collection(root)
    assert collection.documents == {i: Document(t, x) for i, (t, x) in DOCUMENTS.items()}
    assert (collection.queries, collection.qrels, collection.layout) == (QUERIES, QRELS, layout.split("-")[0])


def test_a_folder_of_neither_layout_names_what_it_lacks(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no topics.tsv \(a TREC folder holds topics.tsv or topics.txt, qrels.txt"):
        load_collection(tmp_path)


def test_the_reranked_text_is_title_space_text_as_beirs_rerankers_join_them():
    assert [Document("Whales", "Sperm whales.").reranked_text(), Document("", "Paris.").reranked_text()] == [
        "Whales Sperm whales.", "Paris."]


def test_a_perfect_ranking_scores_one_and_a_reversed_one_the_textbook_values():
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    assert mean_metrics(qrels, {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, 3) == {"ndcg@10": 1.0, "mrr@10": 1.0, "recall@3": 1.0, "map": 1.0}
    reversed_ = mean_metrics(qrels, {"q": {"c": 3.0, "b": 2.0, "a": 1.0}}, 3)
    # gains 0, 1, 2 at ranks 1..3 over the ideal 2, 1: (1/log2(3) + 2/2) / (2 + 1/log2(3)); relevant at ranks 2 and 3
    assert reversed_ == pytest.approx({"ndcg@10": 0.6199062, "mrr@10": 0.5, "recall@3": 1.0, "map": (1 / 2 + 2 / 3) / 2})


def test_a_given_run_is_cut_to_each_querys_top_k(tmp_path):
    collection = load_collection(_write_beir(tmp_path / "c"))
    (tmp_path / "run.trec").write_text("q1 Q0 d2 1 9.5 bm25\nq1 Q0 d1 2 7.0 bm25\nq1 Q0 d3 3 8.0 bm25\nq2 Q0 d3 1 1.0 bm25\n")
    assert first_stage(collection, ["q1", "q2"], 2, str(tmp_path / "run.trec"))[0] == {
        "q1": {"d2": 9.5, "d3": 8.0}, "q2": {"d3": 1.0}}


def test_cranfield_queries_take_their_file_position_and_codes_become_gains(tmp_path):
    source = tmp_path / "smart"
    source.mkdir()
    (source / "cran.all.1400").write_text(".I 1\r\n.T\r\nwing\r\nflutter .\r\n.A\r\nx\r\n.B\r\ny\r\n.W\r\nwing flutter .\r\n  tests .\r\n"
                                         ".I 2\r\n.T\r\n.A\r\n.B\r\n.W\r\n")
    (source / "cran.qry").write_text(".I 001\n.W\nwhat is flutter .\n.I 004\n.W\nempty ?\n")
    (source / "cranqrel").write_text("1 1 1\n1 2 -1\n2 2 4 \n")
    assert convert(source, tmp_path / "beir") == {"documents": 2, "queries": 2, "judgements": 3}
    collection = load_collection(tmp_path / "beir")
    assert collection.documents == {"1": Document("wing flutter .", "wing flutter . tests ."), "2": Document("", "")}
    assert collection.queries == {"1": "what is flutter .", "2": "empty ?"}
    assert collection.qrels == {"1": {"1": 4, "2": 0}, "2": {"2": 1}}


def test_the_committed_cranfield_copy_is_whole():
    collection = load_collection(CRANFIELD)
    judged = {(q, d) for q, docs in collection.qrels.items() for d in docs}
    assert (len(collection.documents), len(collection.queries), len(judged)) == (1400, 225, 1837)
    assert {q for q, _ in judged} == set(collection.queries) and {d for _, d in judged} <= set(collection.documents)


def _cranfield_slice(root: Path, queries: int) -> Path:
    """The first `queries` Cranfield queries over the whole corpus, as a BEIR folder."""
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").symlink_to(CRANFIELD / "corpus.jsonl")
    kept = (CRANFIELD / "queries.jsonl").read_text().splitlines(keepends=True)[:queries]
    (root / "queries.jsonl").write_text("".join(kept))
    ids = {json.loads(line)["_id"] for line in kept}
    header, *rows = (CRANFIELD / "qrels" / "test.tsv").read_text().splitlines(keepends=True)
    (root / "qrels" / "test.tsv").write_text(header + "".join(r for r in rows if r.split("\t")[0] in ids))
    return root


@pytest.mark.triton
def test_eval_reports_the_metrics_of_the_references_scores_on_the_same_candidates(served, oracle, tmp_path, capsys):
    import ir_measures

    from mxbai_triton.cli import main
    from mxbai_triton.evaluation.metrics import measures

    data, out, k = _cranfield_slice(tmp_path / "cranfield", 3), tmp_path / "out", 8
    assert main(["eval", str(data), "--url", served.grpc_url, "--model", "reranker", "--top-k", str(k), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())

    corpus = {row["_id"]: row for row in map(json.loads, (CRANFIELD / "corpus.jsonl").read_text().splitlines())}
    queries = {row["_id"]: row["text"] for row in map(json.loads, (data / "queries.jsonl").read_text().splitlines())}
    candidates = read_run(out / "first-stage.trec")
    expected = {}
    for query, documents in candidates.items():
        texts = [(corpus[d]["title"] + " " + corpus[d]["text"]).strip() for d in documents]
        expected[query] = dict(zip(documents, map(float, reference_scores(oracle, queries[query], texts))))
    qrels = load_collection(data).qrels

    def library(run) -> dict:
        means = ir_measures.calc_aggregate(list(measures(k).values()), qrels, run)
        return {name: means[measure] for name, measure in measures(k).items()}

    assert report["systems"] == {"first-stage": library(candidates), "reranker": library(expected)}
    assert [len(docs) for docs in candidates.values()] == [k] * 3
    assert {(c["a"], c["b"]) for c in report["significance"]} == {("first-stage", "reranker")}
    assert report["timing"]["reranker"]["documents"] == 3 * k
    assert capsys.readouterr().out == (out / "report.md").read_text()
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "first-stage.trec", "reranker.trec", "ndcg_per_query.png"}
