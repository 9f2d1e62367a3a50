"""Database work from async code: one thread pool, and batched writers for hot paths.

Every ORM call made on behalf of a socket or a run goes through `on_db_pool`:
DB_THREADS threads (PostgreSQL overlaps several calls; SQLite has one writer
at a time and its lock waits back off in long sleeps, so one thread there).
Channels' `database_sync_to_async` wraps each call, so connections are closed
or returned to the pool around it by Django's own rules: none is left open
by a thread once its call is done.

HTTP requests under ASGI are another matter: Django runs a request's sync
code (middleware, sync views) on a thread of its own that ends with the
request, so `close_request_thread_connections` closes that thread's
connections when the request finishes instead of keeping them for
CONN_MAX_AGE in a thread nobody will use again.

Two batched writers keep the database off the token path:
- `PeriodicSaver`: the latest state of many items, saved in one call per
  interval (e.g. the partial text of every streaming reply);
- `GroupCommit`: callers that save while a write is in flight are saved
  together in the next one (e.g. replies that start or finish together).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None


def _db_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=settings.DB_THREADS, thread_name_prefix="db")
    return _executor


def on_db_pool(func: Callable[..., R]) -> Callable[..., Awaitable[R]]:
    """Run blocking ORM code on the database threads (DB_THREADS of them)."""

    runner = None

    async def call(*args: Any, **kwargs: Any) -> R:
        nonlocal runner
        if runner is None:  # built on first use: settings are read then, not at import
            runner = database_sync_to_async(func, thread_sensitive=False, executor=_db_executor())
        return await runner(*args, **kwargs)

    return functools.wraps(func)(call)


def close_request_thread_connections(sender, **kwargs) -> None:
    """request_finished: under ASGI, close the finished request's connections.

    Left open, each lingers until its thread is garbage collected: under a
    burst of requests, dozens of idle PostgreSQL connections, past the
    server's max_connections. (Under WSGI, and in test clients, request
    threads are reused and keep Django's usual rules.)
    """
    if sender is not None and issubclass(sender, ASGIHandler):
        connections.close_all()


class PeriodicSaver(Generic[T]):
    """Saves the changed state of tracked items, all in one call every `interval_s`.

    `snapshot(item)` returns the state to save and a version (e.g. a token
    count); `save(states)` writes {key: state} in one database call. Only items
    whose version changed since their last successful save are written.
    """

    def __init__(
        self,
        *,
        snapshot: Callable[[T], tuple[Any, int]],
        save: Callable[[dict], Awaitable[None]],
        interval_s: Callable[[], float],
    ) -> None:
        self._snapshot = snapshot
        self._save = save
        self._interval_s = interval_s
        self._items: dict[Any, T] = {}
        self._saved: dict[Any, int] = {}
        self._task: asyncio.Task | None = None

    def track(self, key: Any, item: T) -> None:
        self._items[key] = item
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), context=contextvars.Context())

    def forget(self, key: Any) -> None:
        self._items.pop(key, None)
        self._saved.pop(key, None)

    async def _run(self) -> None:
        while self._items:
            await asyncio.sleep(self._interval_s())
            changed: dict[Any, Any] = {}
            versions: dict[Any, int] = {}
            for key, item in list(self._items.items()):
                state, version = self._snapshot(item)
                if version and version != self._saved.get(key):
                    changed[key], versions[key] = state, version
            if not changed:
                continue
            try:
                await self._save(changed)
            except Exception:
                logger.exception("periodic save failed count=%s", len(changed))
                continue
            for key, version in versions.items():
                if key in self._items:
                    self._saved[key] = version


class GroupCommit(Generic[T, R]):
    """Every `save(row)` waiting while a write runs goes into the next write, together.

    `write(rows)` saves a batch in one call and returns one result per row (an
    exception instance as a row's result fails that caller alone).
    Under load many callers share one transaction; alone, a caller waits for
    exactly one write.
    """

    def __init__(self, write: Callable[[list[T]], Awaitable[list[R]]]) -> None:
        self._write_batch = write
        self._waiting: list[tuple[T, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    async def save(self, row: T) -> R:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((row, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), context=contextvars.Context())
        return await done

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                results = await self._write_batch([row for row, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(batch, results, strict=True):
                if done.done():
                    continue
                if isinstance(result, BaseException):
                    done.set_exception(result)
                else:
                    done.set_result(result)
