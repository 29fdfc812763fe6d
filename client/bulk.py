"""`rank --input`: a JSONL file of requests ranked into a JSONL file of results, at bulk priority, resumable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from mxbai_triton.core.wire import PRIORITY_BULK

from .rerank import AsyncRerankClient, RetryPolicy, rank_results
from .transport import RerankError

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


async def completed(items: Iterable[T], work: Callable[[T], Awaitable[R]], concurrency: int) -> AsyncIterator[R]:
    """`work(item)`'s results in the order they finish, at most `concurrency` running at once; items are
    drawn lazily. An exception from `work` ends the iteration and cancels the others in flight."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    items, running = iter(items), set()
    try:
        while True:
            while len(running) < concurrency and (item := next(items, _END)) is not _END:
                running.add(asyncio.ensure_future(work(item)))
            if not running:
                return
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                yield task.result()
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


_END = object()


@dataclass(frozen=True)
class BulkRequest:
    """One line of the input file."""

    line: int
    id: str | int
    query: str
    documents: list[str]
    instruction: str | None = None
    top_n: int | None = None


def parse_request(line: int, text: str) -> BulkRequest:
    """The request on one input line; ValueError saying what is wrong with it."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    checks = {
        "id": (lambda v: isinstance(v, (str, int)) and not isinstance(v, bool), "a string or an integer"),
        "query": (lambda v: isinstance(v, str), "a string"),
        "documents": (lambda v: isinstance(v, list) and all(isinstance(d, str) for d in v), "a list of strings"),
        "instruction": (lambda v: v is None or isinstance(v, str), "a string"),
        "top_n": (lambda v: v is None or isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
    }
    for name, (valid, expected) in checks.items():
        if name in ("id", "query", "documents") and name not in row:
            raise ValueError(f"no '{name}'")
        if not valid(row.get(name)):
            raise ValueError(f"'{name}' must be {expected}, got {json.dumps(row[name])[:40]}")
    return BulkRequest(line, row["id"], row["query"], row["documents"], row.get("instruction"), row.get("top_n"))


def finished_ids(output: Path) -> set:
    """Ids already in `output`; a torn last line (a run killed while writing it) is cut off, its request is redone."""
    ids: set = set()
    if not output.exists():
        return ids
    with output.open("r+b") as results:
        good_end, raw = 0, b""
        for number, raw in enumerate(iter(results.readline, b""), 1):
            if not raw.strip():
                good_end = results.tell()
                continue
            try:
                ids.add(json.loads(raw)["id"])
            except (ValueError, KeyError, TypeError):
                if raw.endswith(b"\n") and results.read(1):
                    raise ValueError(f"{output}:{number}: not a result line; is --output the right file?") from None
                log.warning("%s: line %d is incomplete (the last run was stopped while writing it); its request runs again",
                            output, number)
                results.truncate(good_end)
                break
            good_end = results.tell()
        else:
            if raw and not raw.endswith(b"\n"):  # complete JSON without its newline: finish the line
                results.write(b"\n")
    return ids


@dataclass
class BulkSummary:
    written: int = 0
    already_done: int = 0
    bad_lines: list[int] = field(default_factory=list)
    documents: int = 0
    seconds: float = 0.0


def _requests(path: Path, done: set, summary: BulkSummary, progress) -> Iterator[BulkRequest]:
    first_seen: dict = {}
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                request = parse_request(number, text)
                if request.id in first_seen:
                    raise ValueError(f"id {json.dumps(request.id)} again (first on line {first_seen[request.id]})")
            except ValueError as problem:
                _bad(path, number, problem, summary, progress)
                continue
            first_seen[request.id] = number
            if request.id in done:
                summary.already_done += 1
                progress.update()
                continue
            yield request


def _bad(path: Path, number: int, problem: Exception, summary: BulkSummary, progress) -> None:
    log.warning("%s:%d: %s; skipped", path, number, problem)
    summary.bad_lines.append(number)
    progress.update()


async def rank_file(client: AsyncRerankClient, input_path: Path, output: Path, *, concurrency: int = 4, priority: int = PRIORITY_BULK,
                    clock: Callable[[], float] = time.monotonic) -> BulkSummary:
    """Rank every request of `input_path` not yet in `output`, appending one result line per request as it finishes.

    A bad line is reported with its number and skipped; a server that cannot be reached stops the run (what
    was written stays: the same call resumes)."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    done = finished_ids(output)
    summary = BulkSummary()
    with input_path.open(encoding="utf-8") as lines:
        total = sum(1 for line in lines if line.strip())

    async def rank(request: BulkRequest):
        try:
            scores = await client.scores(request.query, request.documents, instruction=request.instruction, priority=priority)
        except RerankError as error:
            if error.unavailable:
                raise
            return request, error
        except (TypeError, ValueError) as error:  # refused before sending (a lone surrogate in the text, ...)
            return request, error
        return request, rank_results(scores, request.documents, top_k=request.top_n, return_documents=False)

    started = clock()
    with tqdm(total=total, unit="req", disable=None) as progress, logging_redirect_tqdm([logging.getLogger("mxbai_triton")]), \
            output.open("a", encoding="utf-8") as out:
        try:
            async with contextlib.aclosing(completed(_requests(input_path, done, summary, progress), rank, concurrency)) as finished:
                async for request, outcome in finished:
                    if isinstance(outcome, Exception):
                        _bad(input_path, request.line, outcome, summary, progress)
                        continue
                    results = [{"index": r.index, "score": r.score} for r in outcome]
                    out.write(json.dumps({"id": request.id, "results": results}) + "\n")
                    out.flush()  # a crash or Ctrl-C loses nothing written
                    summary.written += 1
                    summary.documents += len(request.documents)
                    progress.update()
        except RerankError as error:
            raise RerankError(f"{error} ({summary.written} results written to {output} before it; the same command "
                              "resumes)", unavailable=True, status=error.status) from None
        finally:
            summary.seconds = clock() - started
    return summary


def rank_file_with(urls: list[str], model: str, input_path: str, output: str, *, protocol: str, timeout: float,
                   retry: RetryPolicy, concurrency: int, priority: int) -> BulkSummary:
    """rank_file on a client of its own (what the `rank --input` command runs)."""
    async def run() -> BulkSummary:
        async with AsyncRerankClient(urls, model=model, protocol=protocol, timeout=timeout, retry=retry) as client:
            await client.limits()  # no server: one error now, before any line is read
            return await rank_file(client, Path(input_path), Path(output), concurrency=concurrency, priority=priority)

    return asyncio.run(run())
