"""Database work from async code: one thread pool, and batched writers for hot paths.

Every ORM call made on behalf of a socket or a run goes through `on_db_pool`:
DB_THREADS threads (PostgreSQL overlaps several calls; SQLite has one writer
at a time and its lock waits back off in long sleeps, so one thread there).
With PostgreSQL each call's connection goes back to psycopg's pool when the
call ends; with SQLite these few threads keep theirs (see `_in_db_thread`).

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

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_executors: dict[str, ThreadPoolExecutor] = {}


def _db_executor(*, reads: bool) -> ThreadPoolExecutor:
    # SQLite (one thread for writes) reads on a thread of its own: in WAL mode
    # a read need not queue behind the writes of every streaming reply.
    # PostgreSQL's DB_THREADS threads serve both.
    kind = "reads" if reads and _pooled() is False and settings.DB_THREADS == 1 else "all"
    executor = _executors.get(kind)
    if executor is None:
        workers = 1 if kind == "reads" else settings.DB_THREADS
        prefix = "db-reads" if kind == "reads" else "db"
        executor = _executors[kind] = ThreadPoolExecutor(workers, thread_name_prefix=prefix)
    return executor


def on_db_pool(
    func: Callable[..., R] | None = None, *, reads: bool = False
) -> Callable[..., Awaitable[R]]:
    """Run blocking ORM code on the database threads (DB_THREADS of them).

    `reads=True` marks code that only reads, which may then run beside writes.
    """
    if func is None:
        return functools.partial(on_db_pool, reads=reads)

    @functools.wraps(func)
    async def call(*args: Any, **kwargs: Any) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            _db_executor(reads=reads), functools.partial(_in_db_thread, func, args, kwargs)
        )

    return call


def _in_db_thread(func: Callable[..., R], args: tuple, kwargs: dict) -> R:
    """One call on a database thread, and what happens to its connection after.

    With PostgreSQL's pool, the connection goes back to the pool after every
    call. SQLite has no pool, and opening a connection (with its PRAGMAs) on
    every call cost more than most calls: these few long-lived threads keep
    theirs, closed only after a database error (it may have broken it).
    """
    try:
        return func(*args, **kwargs)
    except DatabaseError:
        connections.close_all()
        raise
    finally:
        if _pooled():
            close_old_connections()


def _pooled() -> bool:
    return "pool" in settings.DATABASES["default"].get("OPTIONS", {})


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


class ReleaseConnectionsWhileStreaming:
    """Give the request thread's database connection back before a response streams.

    Under ASGI the synchronous middleware and `request.auser()` run on the
    request's own thread, whose connection Django returns only when the
    response ends: for a reply streamed over SSE, that is one pooled
    connection held for the whole answer, and a pool exhausted by a few dozen
    streams. Streaming bodies here read the database through `on_db_pool`.
    Place it before every middleware that may use the database (first, or
    right after RequestIdMiddleware, which does not), so it sees the response
    after them.
    """

    sync_capable = False
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        response = await self.get_response(request)
        if response.streaming:
            await sync_to_async(close_old_connections)()
        return response
