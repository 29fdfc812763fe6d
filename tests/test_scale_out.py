"""Scale-out on one machine: publish to an S3 server on loopback, two replicas load it, the client fails over."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from mxbai_triton.client import AsyncRerankClient, RerankClient, RetryPolicy
from tests.conftest import serve_command

pytestmark = pytest.mark.triton

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
URL = "s3://models/mxbai-rerank/v1"
DOCUMENTS = ["Paris is the capital of France.", "Boil water, add salt.", "", "Goethe schrieb Faust.", "1960 novel"]
QUERIES = [f"query {i} about {'cooking' if i % 3 else 'capitals'}" for i in range(60)]


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    from mxbai_triton.processes import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in CREDENTIALS.items():
            patch.setenv(key, value)
        endpoint = f"http://127.0.0.1:{port}"
        from mxbai_triton.model_repository.publish import s3_client

        s3_client(endpoint).create_bucket(Bucket="models")
        yield endpoint
    server.stop()


@pytest.fixture(scope="module")
def local_repository(tiny_repository):
    return tiny_repository


@pytest.fixture(scope="module")
def published(local_repository, s3_endpoint):
    run = subprocess.run(
        [sys.executable, "-m", "mxbai_triton", "publish", str(local_repository), URL, "--endpoint", s3_endpoint],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.fixture(scope="module")
def replicas(published, s3_endpoint):
    """Replica A through `mxbai-triton serve s3://...`, replica B through TritonServer: both read the bucket."""
    from mxbai_triton.model_repository.publish import parse_s3_url
    from mxbai_triton.model_repository.server import TritonServer

    command, a_ports = serve_command(URL, "--s3-endpoint", s3_endpoint)
    a = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    b = TritonServer.on_free_ports(parse_s3_url(URL).triton_url(s3_endpoint), env=CREDENTIALS, stop_grace=0)
    try:
        next(line for line in a.stdout if "models ready" in line)
        b.start()
        yield {"a": f"127.0.0.1:{a_ports['grpc']}", "b": b}
    finally:
        b.stop()
        a.terminate()
        a.wait(timeout=60)


@pytest.fixture(scope="module")
def local_scores(local_repository):
    from mxbai_triton.model_repository.server import TritonServer

    with TritonServer.on_free_ports(local_repository, stop_grace=0) as server:
        with RerankClient(server.grpc_url, model="rr") as client:
            return {q: client.scores(q, DOCUMENTS) for q in QUERIES}


def test_publish_uploads_every_file_and_prints_how_to_serve_it(published, local_repository, s3_endpoint):
    from mxbai_triton.model_repository.publish import parse_s3_url, repository_objects, s3_client

    location = parse_s3_url(URL)
    listed = {
        item["Key"]: item["Size"]
        for item in s3_client(s3_endpoint).list_objects_v2(Bucket=location.bucket, Prefix=location.prefix)["Contents"]
    }
    local = {location.key(k): (p.stat().st_size if p else 0) for k, p in repository_objects(local_repository).items()}
    assert listed == local
    assert "mxbai-rerank/v1/rr/1/.keep" in listed  # the ensemble's empty version folder
    assert "mxbai-rerank/v1/rr_scorer/1/model.onnx" in listed
    assert f"serve it: mxbai-triton serve {URL} --s3-endpoint {s3_endpoint}" in published


def test_publish_refuses_a_repository_that_would_not_load(local_repository, tmp_path, s3_endpoint):
    import shutil

    from mxbai_triton.model_repository.publish import publish

    broken = tmp_path / "broken"
    shutil.copytree(local_repository, broken)
    (broken / "rr_tokenizer" / "1" / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match=r"not ready to publish:\n.*rr_tokenizer/1/tokenizer\.json: missing"):
        publish(broken, "s3://models/broken", endpoint=s3_endpoint)


def test_replicas_loaded_from_object_storage_score_like_a_local_server(replicas, local_scores):
    for url in (replicas["a"], replicas["b"].grpc_url):
        with RerankClient(url, model="rr") as client:
            for query in QUERIES[:5]:
                np.testing.assert_allclose(client.scores(query, DOCUMENTS), local_scores[query], atol=1e-6, rtol=0)


def test_client_spreads_over_replicas_and_loses_nothing_when_one_is_killed_mid_run(replicas, local_scores):
    """Kills replica B: keep this the module's last test."""
    b = replicas["b"]
    urls = [replicas["a"], b.grpc_url]
    answers: dict[str, list[np.ndarray]] = {q: [] for q in QUERIES}
    errors: list[Exception] = []
    policy = RetryPolicy(attempts=6, initial_backoff=0.05, max_backoff=0.5, deadline=60.0, cooldown=5.0)

    async def run():
        async with AsyncRerankClient(urls, model="rr", retry=policy, timeout=30) as client:
            limit, killed, at_kill = asyncio.Semaphore(4), asyncio.Event(), {}

            async def one(query: str):
                async with limit:
                    try:
                        answers[query].append(await client.scores(query, DOCUMENTS))
                    except Exception as error:  # noqa: BLE001 - counted, must stay empty
                        errors.append(error)
                    if sum(map(len, answers.values())) >= 15 and not killed.is_set():
                        killed.set()
                        at_kill.update(client.stats.per_endpoint)
                        os.killpg(b.process.pid, signal.SIGKILL)  # with requests in flight on it

            await asyncio.gather(*(one(q) for q in QUERIES))
            return client.stats, at_kill

    stats, at_kill = asyncio.run(run())
    assert errors == []
    assert all(len(a) == 1 for a in answers.values())
    deviation = max(float(np.max(np.abs(answers[q][0] - local_scores[q]))) for q in QUERIES)
    assert deviation <= 1e-6
    assert at_kill[urls[0]] > 0 and at_kill[urls[1]] > 0, "requests were not spread before the kill"
    assert stats.failures == 0 and stats.retries >= 1 and stats.failovers >= 1
    assert stats.requests == len(QUERIES) + 1  # one config read, one request per query: no duplicates sent
    print(f"failover: {len(QUERIES)} queries, 0 errors, {stats.attempts} tries, {stats.retries} retries, "
          f"{stats.failovers} failovers; at the kill {at_kill}; after {dict(stats.per_endpoint)}; "
          f"max |diff| vs local server {deviation:.1e}")
