"""The ensembles the gateway serves: discovered on every Triton endpoint, narrowed by --model, refreshed while it runs."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from mxbai_triton.client.discovery import DiscoveryError, not_served, served_rerankers_async
from mxbai_triton.core.errors import ErrorKind

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
        self._look: asyncio.Future | None = None
        self._look_started = -math.inf

    async def resolve(self, name: str | None) -> str:
        """The ensemble a request names, or the default one; APIError not_found (listing the served ones) or backend_unavailable."""
        asked = time.monotonic()
        if name:
            if name not in self.models:
                await self.refresh(since=asked)  # loaded a moment ago: served now, not after the next poll
            if name not in self.models:
                raise APIError(ErrorKind.NOT_FOUND, not_served(name, self.models), "model")
            return name
        if not self.models:
            await self.refresh(since=asked)
        if not self.models:
            raise APIError(ErrorKind.BACKEND_UNAVAILABLE, "no rerank ensemble to serve",
                           detail=f"no rerank ensemble to serve: {self.problem}")
        return self.models[0]

    async def refresh(self, *, since: float | None = None) -> None:
        """Look at Triton's repository index; concurrent callers share a look.

        With `since` (a monotonic time), only a look that started at or after it will do: a request
        for a model loaded a moment ago must not be answered from a look taken before the load.
        """
        while True:
            look = self._look
            if look is not None and (not look.done() if since is None else self._look_started >= since):
                await asyncio.shield(look)  # a caller's deadline cancels its wait, not the look the others share
                return
            if look is None or look.done():
                self._look_started = time.monotonic()
                self._look = asyncio.ensure_future(self._discover())
            else:
                await asyncio.shield(look)  # an older look in flight: let it end, then decide again

    async def run(self) -> None:
        """Refresh every `refresh_every` seconds until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("model discovery failed")
            await asyncio.sleep(self.refresh_every)

    def close(self) -> None:
        """Cancel a look in flight (shutdown)."""
        if self._look is not None and not self._look.done():
            self._look.cancel()

    async def _discover(self) -> None:
        answers = await asyncio.gather(*(
            served_rerankers_async(client, url, self._verdicts[url]) for url, client in self.probes.items()
        ), return_exceptions=True)
        found = [a for a in answers if isinstance(a, set)]
        errors = [a for a in answers if not isinstance(a, set)]
        if found:
            names = set().union(*found)
            models = tuple(m for m in self.wanted if m in names) if self.wanted else tuple(sorted(names))
            where = ", ".join(self.probes)
            self.problem = (f"none of {', '.join(self.wanted)} is a rerank ensemble READY on Triton at {where}" if self.wanted
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
