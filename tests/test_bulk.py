"""`rank --input`: resumable bulk files, bad lines reported by number, bounded concurrency, one line when no server answers."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mxbai_triton.cli import main
from mxbai_triton.client.bulk import completed, finished_ids, parse_request
from tests.reference import reference_scores


def test_a_torn_last_line_is_cut_off_and_its_request_runs_again(tmp_path):
    output = tmp_path / "results.jsonl"
    output.write_bytes(b'{"id": 1, "results": []}\n{"id": "b", "results": []}\n{"id": 3, "resu')
    assert finished_ids(output) == {1, "b"}
    assert output.read_bytes() == b'{"id": 1, "results": []}\n{"id": "b", "results": []}\n'


def test_a_broken_line_before_the_last_means_the_wrong_output_file(tmp_path):
    output = tmp_path / "results.jsonl"
    output.write_text('{"id": 1, "results": []}\nsome other file\n{"id": 2, "results": []}\n')
    with pytest.raises(ValueError, match=r"results.jsonl:2: not a result line; is --output the right file\?"):
        finished_ids(output)


@pytest.mark.parametrize("line, problem", [
    ('{"id": 1, "query": "q"', "not JSON (Expecting ',' delimiter at column 23)"),
    ('["q", ["d"]]', "expected a JSON object, got list"),
    ('{"query": "q", "documents": []}', "no 'id'"),
    ('{"id": true, "query": "q", "documents": []}', "'id' must be a string or an integer, got true"),
    ('{"id": 1, "query": "q", "documents": "d"}', "'documents' must be a list of strings, got \"d\""),
    ('{"id": 1, "query": "q", "documents": ["d"], "top_n": 0}', "'top_n' must be an integer >= 1, got 0"),
])
def test_a_malformed_request_says_what_is_wrong(line, problem):
    with pytest.raises(ValueError) as error:
        parse_request(1, line)
    assert str(error.value) == problem


def test_no_more_than_concurrency_requests_run_at_once():
    in_flight, most = 0, 0

    async def work(item: int) -> int:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        for _ in range(item % 3 + 1):
            await asyncio.sleep(0)
        in_flight -= 1
        return item

    async def run() -> list[int]:
        return [r async for r in completed(range(20), work, 3)]

    assert sorted(asyncio.run(run())) == list(range(20)) and most == 3


def _requests(n: int) -> list[dict]:
    return [{"id": f"r{i}", "query": f"question {i}?", "documents": [f"answer {i}", "unrelated text", f"{i} more"]}
            for i in range(n)]


def _lines(path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.triton
def test_a_run_killed_midway_then_resumed_ranks_every_id_once_with_the_reference_scores(served, oracle, tmp_path):
    requests, output = _requests(60), tmp_path / "results.jsonl"
    (tmp_path / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    command = ["rank", "--url", served.grpc_url, "--model", "reranker", "--input", str(tmp_path / "requests.jsonl"),
               "--output", str(output)]
    first = subprocess.Popen([sys.executable, "-m", "mxbai_triton", *command, "--concurrency", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120  # a guard against hangs, not the assertion
    while _lines(output) < 5 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert 5 <= _lines(output) < len(requests), "the first run was to be stopped midway"
    assert main(command) == 0
    results = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["id"] for r in results) == sorted(r["id"] for r in requests)
    by_id = {r["id"]: r["results"] for r in results}
    for request in requests:
        expected = reference_scores(oracle, request["query"], request["documents"])
        ranked = by_id[request["id"]]
        assert [r["index"] for r in ranked] == np.argsort(-expected, kind="stable").tolist()
        np.testing.assert_allclose([r["score"] for r in ranked], np.sort(expected)[::-1], atol=1e-4, rtol=0)


@pytest.mark.triton
def test_bad_lines_are_reported_by_number_and_the_others_ranked(served, tmp_path, capsys):
    good = _requests(2)
    lines = [json.dumps(good[0]), "{not json", json.dumps(good[1]), json.dumps({"id": "x", "query": "q", "documents": 3}),
             json.dumps({**good[0], "query": "again"}), json.dumps({"id": "s", "query": "q", "documents": ["bad \udcff"]})]
    requests, output = tmp_path / "requests.jsonl", tmp_path / "results.jsonl"
    requests.write_text("\n".join(lines) + "\n")
    code = main(["rank", "--url", served.grpc_url, "--model", "reranker", "--input", str(requests), "--output", str(output)])
    err = capsys.readouterr().err
    assert code == 2
    for number, problem in [(2, "not JSON (Expecting property name enclosed in double quotes at column 2)"),
                            (4, "'documents' must be a list of strings, got 3"), (5, 'id "r0" again (first on line 1)'),
                            (6, "'documents[0]' has a lone surrogate at character 4 and cannot be sent as UTF-8")]:
        assert f"{requests}:{number}: {problem}; skipped" in err
    assert sorted(json.loads(line)["id"] for line in output.read_text().splitlines()) == ["r0", "r1"]


def test_bulk_against_no_server_fails_in_one_line_and_writes_nothing(tmp_path, capsys):
    from mxbai_triton.processes import free_port

    (tmp_path / "requests.jsonl").write_text(json.dumps(_requests(1)[0]) + "\n")
    code = main(["rank", "--url", f"127.0.0.1:{free_port()}", "--model", "reranker", "--retry-for", "1",
                 "--input", str(tmp_path / "requests.jsonl"), "--output", str(tmp_path / "results.jsonl")])
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert code == 1 and "Traceback" not in err and err.count("mxbai-triton rank: error") == 1
    assert last.startswith("mxbai-triton rank: error: cannot read config of model 'reranker'") and "Connection refused" in last, err
    assert not (tmp_path / "results.jsonl").exists()


def test_input_without_output_or_with_a_query_is_a_usage_error(tmp_path, capsys):
    assert main(["rank", "--input", str(tmp_path / "requests.jsonl")]) == 2
    assert main(["rank", "--input", "r.jsonl", "--output", "o.jsonl", "--query", "q", "doc"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "mxbai-triton rank: error: rank --input REQUESTS.jsonl --output RESULTS.jsonl takes its queries and documents from the "
        "file: both files, no --query or DOC"] * 2
