"""The ensembles the gateway serves: discovered on every Triton endpoint, narrowed by --model, refreshed while it runs."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from mxbai_triton.client.discovery import DiscoveryError, not_served, served_rerankers_async

from .errors import APIError

log = logging.getLogger(__name__)


class ModelRegistry:
    """The rerank ensembles READY on any endpoint (the union: replicas may load a model at different
    moments), in the order of `wanted` when it is given, else by name; the first answers requests
    that name no model.

    Args:
        probes: An aio gRPC client per Triton endpoint ("host:port" -> client).
        wanted: Names to serve (--model), or () for every rerank ensemble found.
        refresh_every: Seconds between two looks at Triton's repository index.
        on_removed: Called with the names that stopped being served.
    """

    def __init__(self, probes: dict, wanted: tuple[str, ...] = (), *, refresh_every: float = 5.0,
                 on_removed: Callable[[set[str]], None] | None = None):
        self.probes = probes
        self.wanted = wanted
        self.refresh_every = refresh_every
        self.on_removed = on_removed
        # Until Triton first answers: the names asked for, so that requests meet Triton (and its 503)
        # rather than a 404 from a gateway that has not looked yet.
        self.models: tuple[str, ...] = wanted
        self.problem = "Triton has not answered yet"
        self._verdicts: dict[str, dict[str, bool]] = {url: {} for url in probes}
        self._refresh: asyncio.Future | None = None
        self._refreshed_at = -math.inf

    async def resolve(self, name: str | None) -> str:
        """The ensemble a request names, or the default one; APIError 404 (listing the served ones) or 503."""
        if name:
            if name not in self.models:
                await self.refresh(max_age=1.0)  # loaded a moment ago: served now, not after the next poll
            if name not in self.models:
                raise APIError(404, not_served(name, self.models), "model")
            return name
        if not self.models:
            await self.refresh(max_age=1.0)
        if not self.models:
            raise APIError(503, f"no rerank ensemble to serve: {self.problem}")
        return self.models[0]

    async def refresh(self, *, max_age: float = 0.0) -> None:
        """Look at Triton again unless the last look is under `max_age` seconds old; concurrent callers share one look."""
        if time.monotonic() - self._refreshed_at < max_age:
            return
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._discover())
        await asyncio.shield(self._refresh)  # a caller's deadline cancels its wait, not the look the others share

    async def run(self) -> None:
        """Refresh every `refresh_every` seconds until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("model discovery failed")
            await asyncio.sleep(self.refresh_every)

    async def _discover(self) -> None:
        answers = await asyncio.gather(*(
            served_rerankers_async(client, url, self._verdicts[url]) for url, client in self.probes.items()
        ), return_exceptions=True)
        self._refreshed_at = time.monotonic()
        found = [a for a in answers if isinstance(a, set)]
        errors = [a for a in answers if not isinstance(a, set)]
        if found:
            names = set().union(*found)
            models = tuple(m for m in self.wanted if m in names) if self.wanted else tuple(sorted(names))
            where = ", ".join(self.probes)
            self.problem = (f"none of {', '.join(self.wanted)} is READY on Triton at {where}" if self.wanted
                            else f"Triton at {where} serves no rerank ensemble")
        elif self.wanted and any(isinstance(e, DiscoveryError) and e.restricted for e in errors):
            models = self.wanted  # the index is for admin-token holders: serve the names given, as before discovery
        else:
            # No endpoint answered: keep serving what was served; requests retry into a clear 503.
            self.problem = "; ".join(str(e) for e in errors)
            return
        self._set(models)

    def _set(self, models: tuple[str, ...]) -> None:
        if models == self.models:
            return
        removed = set(self.models) - set(models)
        log.info("serving rerank ensembles: %s", ", ".join(models) or "none")
        self.models = models
        if removed and self.on_removed is not None:
            self.on_removed(removed)
