"""Convert the Cranfield 1400 collection (SMART format) into a BEIR-layout folder: `python -m mxbai_triton.evaluation.cranfield SRC OUT`."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path

# cranqrel's codes, as the note shipped with it defines them (Cleverdon): 1 a complete answer .. 4 of minimum
# interest, 5 of no interest (absent from the file; -1 stands for it on one line per query). Gains for
# graded metrics grow with relevance, so a code c becomes 5 - c and "no interest" 0. (ir_datasets reads
# the raw codes as gains, which ranks the minimum-interest references above the complete answers.)
NO_INTEREST = -1


def gain(code: int) -> int:
    """The BEIR relevance (0 = not relevant, 4 = a complete answer) of a cranqrel code."""
    if code == NO_INTEREST:
        return 0
    if not 1 <= code <= 4:
        raise ValueError(f"unknown Cranfield relevance code {code}")
    return 5 - code


def smart_records(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(`.I` number, {field letter: text}) per record; repeated fields are joined, whitespace collapsed."""
    for chunk in re.split(r"^\.I ", text.replace("\r", ""), flags=re.M)[1:]:
        number, _, body = chunk.partition("\n")
        fields: dict[str, list[str]] = {}
        for marker, content in re.findall(r"^\.([A-Z])\n(.*?)(?=^\.[A-Z]\n|\Z)", body, flags=re.M | re.S):
            fields.setdefault(marker, []).append(content)
        yield number.strip(), {k: " ".join(" ".join(v).split()) for k, v in fields.items()}


def convert(source: Path, out: Path) -> dict[str, int]:
    """Write corpus.jsonl, queries.jsonl and qrels/test.tsv under `out` from cran.all.1400, cran.qry, cranqrel."""
    corpus = [{"_id": number, "title": f.get("T", ""), "text": f.get("W", "")}
              for number, f in smart_records((source / "cran.all.1400").read_text(encoding="ascii"))]
    # cranqrel numbers the queries 1..225 in file order, not by cran.qry's own `.I` numbers (1, 2, 4, 8, ...).
    queries = [{"_id": str(position), "text": f.get("W", "")}
               for position, (_, f) in enumerate(smart_records((source / "cran.qry").read_text(encoding="ascii")), 1)]
    qrels = []
    for line in (source / "cranqrel").read_text(encoding="ascii").splitlines():
        if line.strip():
            query, document, code = line.split()
            qrels.append((query, document, gain(int(code))))
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        (out / name).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (out / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in qrels), encoding="utf-8")
    return {"documents": len(corpus), "queries": len(queries), "judgements": len(qrels)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", type=Path, help="folder with cran.all.1400, cran.qry and cranqrel")
    parser.add_argument("out", type=Path, help="BEIR-layout folder to write")
    args = parser.parse_args(argv)
    print(convert(args.source, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
