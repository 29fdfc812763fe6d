"""Steady load for drain and restart tests: worker threads send requests over gRPC (RerankClient) and HTTP (the gateway)
until told to stop, and count each request's outcome: scored, refused before any work, or failed (lost)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import httpx

from mxbai_triton.client import RerankClient, RerankError
from mxbai_triton.core.errors import ErrorKind

QUERY = "Who wrote 'To Kill a Mockingbird'?"
DOCUMENTS = ["Harper Lee wrote it in 1960.", "Boil water, add salt.", "Goethe schrieb Faust.", "Paris is the capital."]
# A request is the work of a few sub-batches: long enough that some are always in flight.
WORKLOAD = DOCUMENTS * 3


@dataclass
class Load:
    """Outcomes of every request sent, by path ("grpc", "http") and outcome; failures keep their text."""

    stop: threading.Event = field(default_factory=threading.Event)
    outcomes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, path: str, outcome: str, failure: str | None = None) -> None:
        with self.lock:
            self.outcomes[path, outcome] += 1
            if failure:
                self.failures.append(f"{path}: {failure}")

    def of(self, path: str, outcome: str) -> int:
        with self.lock:
            return self.outcomes[path, outcome]

    def total(self, outcome: str) -> int:
        with self.lock:
            return sum(n for (_, o), n in self.outcomes.items() if o == outcome)

    def grpc(self, client: RerankClient, *, refusals_are_failures: bool = True) -> None:
        """A worker scoring through `client` (a refusal with nothing computed is `refused` unless it counts as lost)."""
        def run():
            while not self.stop.is_set():
                try:
                    scores = client.scores(QUERY, WORKLOAD)
                    self.count("grpc", "scored" if len(scores) == len(WORKLOAD) else "failed", None)
                except RerankError as error:
                    refused = error.kind is ErrorKind.BACKEND_UNAVAILABLE and not refusals_are_failures
                    self.count("grpc", "refused" if refused else "failed", None if refused else str(error))
                    if refused:
                        self.stop.wait(0.05)
        self._start(run)

    def http(self, url: str, *, keep_alive: bool = True) -> None:
        """A worker posting to the gateway at `url`; a connection refused before the request is sent is `refused`.

        Without `keep_alive` each request has a connection of its own, so that a request the server did
        not take is refused at connect: on a kept-alive connection that a draining server closes as the
        next request is sent, the client cannot tell whether it was read (a reset either way).
        """
        def run():
            headers = {} if keep_alive else {"connection": "close"}
            with httpx.Client(base_url=url, timeout=120, headers=headers) as client:
                while not self.stop.is_set():
                    try:
                        response = client.post("/v1/rerank", json={"query": QUERY, "documents": WORKLOAD})
                    except httpx.ConnectError:
                        self.count("http", "refused")
                        self.stop.wait(0.05)  # nothing listens (drained): do not spin
                        continue
                    except httpx.HTTPError as error:
                        self.count("http", "failed", repr(error))
                        continue
                    ok = response.status_code == 200 and len(response.json()["results"]) == len(WORKLOAD)
                    self.count("http", "scored" if ok else "failed", None if ok else f"{response.status_code} {response.text}")
        self._start(run)

    def _start(self, run) -> None:
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=300)
