"""Load shedding at the gateway: the admission bound per class, in-process with a scripted Triton edge that holds
requests until the test lets them go (waits on state, never on time)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the gateway is a FastAPI app")

from mxbai_triton.core.errors import ErrorKind  # noqa: E402
from mxbai_triton.core.wire import PRIORITY_BULK  # noqa: E402
from mxbai_triton.gateway.admission import Admission, AdmissionLimits  # noqa: E402
from mxbai_triton.gateway.errors import APIError  # noqa: E402
from mxbai_triton.gateway.metrics import GatewayMetrics  # noqa: E402

LIMITS = AdmissionLimits(interactive_requests=2, interactive_tokens=1000, bulk_requests=1, bulk_tokens=10_000,
                         interactive_max_tokens=500)


def _shed(metrics: GatewayMetrics, level: str, bound: str) -> float:
    return metrics.registry.get_sample_value("mxbai_gateway_shed_total", {"class": level, "bound": bound}) or 0.0


def test_each_class_admits_up_to_its_request_bound_then_refuses_at_once_counted():
    metrics = GatewayMetrics()
    admission = Admission(LIMITS, metrics)
    held = [admission.admit(100), admission.admit(100)]
    with pytest.raises(APIError, match="at its admission bound for interactive requests") as refused:
        admission.admit(100)
    assert (refused.value.kind, refused.value.retry_after) == (ErrorKind.OVERLOADED, 1.0)
    bulk = admission.admit(100, PRIORITY_BULK)  # the other class has its own room
    assert _shed(metrics, "interactive", "requests") == 1
    held[0].release()
    admission.admit(100)
    bulk.release()
    bulk.release()  # a ticket gives its share back once
    assert admission.requests[PRIORITY_BULK] == 0


def test_the_token_bound_refuses_what_would_pass_it_while_the_class_has_work():
    metrics = GatewayMetrics()
    admission = Admission(AdmissionLimits(interactive_requests=5, interactive_tokens=800, interactive_max_tokens=500), metrics)
    first = admission.admit(400)
    with pytest.raises(APIError, match="at its admission bound") as refused:
        admission.admit(450)  # 850 tokens in flight would pass 800
    assert "450 more would pass the bound of 800" in refused.value.detail
    assert _shed(metrics, "interactive", "tokens") == 1
    first.release()
    assert admission.admit(450).tokens == 450


def test_a_large_request_is_bulk_work_and_admitted_when_its_class_is_empty():
    admission = Admission(LIMITS, GatewayMetrics())
    huge = admission.admit(50_000)  # over the bulk token bound, but nothing else is running
    assert huge.level == PRIORITY_BULK
    with pytest.raises(APIError, match="bulk"):
        admission.admit(600)
    huge.release()
    admission.admit(600).release()


def test_zero_turns_a_bound_off():
    admission = Admission(AdmissionLimits(interactive_requests=0, interactive_tokens=0), GatewayMetrics())
    tickets = [admission.admit(10_000 // 100) for _ in range(100)]
    assert len(tickets) == 100


class HeldEdge:
    """Triton, scripted: each scoring call waits until the test releases it; counts what arrived."""

    def __init__(self):
        self.arrived = 0
        self.release = asyncio.Event()


@pytest.fixture()
def held(monkeypatch):
    from mxbai_triton.client.transport import Scored, ServerLimits

    edge = HeldEdge()

    class ScriptedClient:
        def __init__(self, urls, *, model, **_):
            self.model = model

        async def limits(self, deadline=None):
            return ServerLimits(24, 9.0, 8271, f"{self.model}_tokenizer")

        async def scored(self, query, documents, **_):
            edge.arrived += 1
            await edge.release.wait()
            return Scored(np.arange(len(documents), dtype=np.float32), np.full(len(documents), 5, dtype=np.int64))

        async def close(self):
            pass

    monkeypatch.setattr("mxbai_triton.gateway.backend.AsyncRerankClient", ScriptedClient)
    return edge


def test_overload_beyond_the_bound_is_refused_at_once_counted_and_accepted_requests_complete(held):
    import httpx

    from mxbai_triton.gateway.app import create_app
    from mxbai_triton.gateway.backend import BackendSettings

    metrics = GatewayMetrics()
    app = create_app(BackendSettings(urls=("127.0.0.1:1",), models=("m",)), metrics=metrics,
                     admission=AdmissionLimits(interactive_requests=3))

    async def run():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                body = {"query": "q", "documents": ["a", "b"]}
                accepted = [asyncio.ensure_future(client.post("/v1/rerank", json=body)) for _ in range(3)]
                while held.arrived < 3:  # the bound is full: three requests wait on Triton
                    await asyncio.sleep(0.01)
                refused = [await client.post("/v1/rerank", json=body) for _ in range(5)]
                health = await client.get("/metrics")
                held.release.set()
                return [await a for a in accepted], refused, health

    accepted, refused, scraped = asyncio.run(run())
    assert [r.status_code for r in refused] == [503] * 5
    assert {r.headers["retry-after"] for r in refused} == {"1"}
    assert refused[0].json()["error"]["type"] == "ServiceUnavailableError"
    assert [r.status_code for r in accepted] == [200] * 3 and held.arrived == 3  # the refused never reached Triton
    assert 'mxbai_gateway_shed_total{bound="requests",class="interactive"} 5.0' in scraped.text
    assert metrics.registry.get_sample_value("mxbai_gateway_admitted_requests", {"class": "interactive"}) == 0
