"""Saving replies while they stream: batched partial text, group-committed final rows.

Writes from the token loop would make each reply wait on the database; here
one prepared statement per interval saves every streaming reply's text, and
replies that finish together are saved in one write.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection, transaction

from chat.models import Message

logger = logging.getLogger(__name__)


_db_threads = ThreadPoolExecutor(max_workers=settings.DB_THREADS, thread_name_prefix="db")


def on_db_pool(func):
    """Run blocking ORM code on the reply database threads (DB_THREADS of them).

    One shared thread for every database call of the process queued each
    reply's reads and writes behind all others; with PostgreSQL most of a call
    is waiting on the server, which several threads overlap. SQLite has one
    writer at a time and its lock waits back off in long sleeps, so there the
    setting defaults to one thread.
    """
    return database_sync_to_async(func, thread_sensitive=False, executor=_db_threads)


class _PartialSaver:
    """Saves the text of every streaming reply of this process, in one query per interval.

    Writing from the token loop would make each reply wait on the database
    thread; one batched UPDATE every REPLY_PERSIST_INTERVAL_MS keeps what a
    crash loses small at a cost that does not grow with tokens.
    """

    def __init__(self) -> None:
        self._parts: dict[int, list[str]] = {}
        self._saved_tokens: dict[int, int] = {}
        self._task: asyncio.Task | None = None

    def track(self, message_id: int, parts: list[str]) -> None:
        self._parts[message_id] = parts
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), context=contextvars.Context())

    def forget(self, message_id: int) -> None:
        self._parts.pop(message_id, None)
        self._saved_tokens.pop(message_id, None)

    async def _run(self) -> None:
        while self._parts:
            await asyncio.sleep(settings.REPLY_PERSIST_INTERVAL_MS / 1000)
            changed = {
                message_id: ("".join(parts), len(parts))
                for message_id, parts in list(self._parts.items())
                if parts and len(parts) != self._saved_tokens.get(message_id)
            }
            if not changed:
                continue
            try:
                await _save_partials(changed)
            except Exception:
                logger.exception("saving partial replies failed count=%s", len(changed))
                continue
            for message_id, (_, tokens) in changed.items():
                if message_id in self._parts:
                    self._saved_tokens[message_id] = tokens


_partials = _PartialSaver()


@on_db_pool
def _save_partials(changed: dict[int, tuple[str, int]]) -> None:
    # One prepared statement for all rows: building ORM expressions per row cost
    # more than the writes. Only rows still streaming: a reply that finished
    # meanwhile keeps its final text.
    table = connection.ops.quote_name(Message._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET content = %s, tokens = %s WHERE id = %s AND status = %s",
            [
                (text, tokens, message_id, Message.Status.STREAMING.value)
                for message_id, (text, tokens) in changed.items()
            ],
        )


class _FinalSaver:
    """Group commit for finished replies: every save waiting meanwhile goes in one write.

    A reply's terminal event is published only after its row is final, so a
    reload never shows older state than the socket did; batching keeps that
    cheap when many replies finish at once.
    """

    def __init__(self) -> None:
        self._waiting: list[tuple[tuple, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    async def save(self, row: tuple) -> None:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((row, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), context=contextvars.Context())
        await done

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await _save_finals([row for row, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)


_finals = _FinalSaver()

_FINAL_COLUMNS = (
    "content", "status", "error_code", "error_message", "ttft_ms", "total_ms",
    "tokens", "tokens_per_second", "prompt_tokens", "completion_tokens",
)  # fmt: skip


async def save_final(
    message_id: int,
    *,
    content: str,
    status: str,
    error_code: str,
    error_message: str,
    metrics: dict,
) -> None:
    await _finals.save(
        (
            content,
            status,
            error_code,
            error_message,
            metrics["ttft_ms"],
            metrics["total_ms"],
            metrics["tokens"],
            metrics["tokens_per_second"],
            metrics["prompt_tokens"],
            metrics["completion_tokens"],
            message_id,
        )
    )


@on_db_pool
def _save_finals(rows: list[tuple]) -> None:
    table = connection.ops.quote_name(Message._meta.db_table)
    assignments = ", ".join(f"{connection.ops.quote_name(c)} = %s" for c in _FINAL_COLUMNS)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {table} SET {assignments} WHERE id = %s", rows)


def track_partial(message_id: int, parts: list[str]) -> None:
    """Save this reply's text (the joined parts) at the next interval, until forgotten."""
    _partials.track(message_id, parts)


def forget_partial(message_id: int) -> None:
    _partials.forget(message_id)
