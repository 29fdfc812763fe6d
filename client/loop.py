"""A private asyncio loop in a daemon thread: how the synchronous client runs the one (async) implementation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class LoopClosed(RuntimeError):
    """The loop was closed before the call finished (or started): it was cancelled, never left waiting."""


class LoopThread:
    """Runs coroutines on its own event loop from any thread, concurrently when several threads call at once.

    Works from inside a running event loop too (a notebook, an async app calling sync code), where
    asyncio.run would refuse.
    """

    def __init__(self, name: str = "mxbai-triton-client"):
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future] = set()
        self._closing = False
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """`await make()` on the loop; blocks the caller until it is done and returns or raises its outcome.

        `make` is called on the loop, so objects that bind to the running loop (gRPC aio channels) are
        created on it.
        """
        async def call() -> T:
            return await make()

        with self._lock:  # close() cancels what it finds here: a call is either refused or found
            if self._closing:
                raise LoopClosed("closed")
            future = asyncio.run_coroutine_threadsafe(call(), self._loop)
            self._pending.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._closing:
                raise LoopClosed("closed while the call ran") from None
            raise
        except BaseException:
            future.cancel()  # Ctrl-C in the caller: the request stops too
            raise
        finally:
            with self._lock:
                self._pending.discard(future)

    def close(self, last: Callable[[], Awaitable[object]] | None = None) -> None:
        """Cancel the calls still running (their callers get LoopClosed), await `last()` (closing connections),
        then stop the loop and its thread. A call left pending on a stopped loop would block its caller for ever."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a LoopThread cannot be closed from a call running on it")
        with self._lock:
            if self._closing:
                return
            self._closing = True
        try:
            asyncio.run_coroutine_threadsafe(_cancel_others(), self._loop).result()
            if last is not None:
                asyncio.run_coroutine_threadsafe(last(), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            with self._lock:  # what ignored its cancellation: its caller hears LoopClosed, not silence
                for future in self._pending:
                    future.cancel()


async def _cancel_others() -> None:
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=5.0)
