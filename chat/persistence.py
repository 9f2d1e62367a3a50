"""Saving replies while they stream: batched partial text, group-committed final rows.

Writes from the token loop would make each reply wait on the database; here
one prepared statement per interval saves every streaming reply's text
(realtime.db.PeriodicSaver), and replies that finish together are saved in
one write (realtime.db.GroupCommit).
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection, transaction

from chat.models import Message
from realtime.db import GroupCommit, PeriodicSaver, on_db_pool


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


def _partial_snapshot(parts: list[str]) -> tuple[tuple[str, int], int]:
    return ("".join(parts), len(parts)), len(parts)


_partials: PeriodicSaver[list[str]] = PeriodicSaver(
    snapshot=_partial_snapshot,
    save=_save_partials,
    interval_s=lambda: settings.REPLY_PERSIST_INTERVAL_MS / 1000,
)


def track_partial(message_id: int, parts: list[str]) -> None:
    """Save this reply's text (the joined parts) every interval, until forgotten."""
    _partials.track(message_id, parts)


def forget_partial(message_id: int) -> None:
    _partials.forget(message_id)


_FINAL_COLUMNS = (
    "content", "html", "status", "error_code", "error_message", "ttft_ms", "total_ms",
    "tokens", "tokens_per_second", "prompt_tokens", "completion_tokens",
)  # fmt: skip


@on_db_pool
def _save_finals(rows: list[tuple]) -> list[None]:
    table = connection.ops.quote_name(Message._meta.db_table)
    assignments = ", ".join(f"{connection.ops.quote_name(c)} = %s" for c in _FINAL_COLUMNS)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {table} SET {assignments} WHERE id = %s", rows)
    return [None] * len(rows)


# Looked up per batch, so tests can make the database fail.
_finals: GroupCommit[tuple, None] = GroupCommit(lambda rows: _save_finals(rows))


async def save_final(
    message_id: int,
    *,
    content: str,
    html: str,
    status: str,
    error_code: str,
    error_message: str,
    metrics: dict,
) -> None:
    """Save a finished reply; replies finishing meanwhile share the write."""
    await _finals.save(
        (
            content,
            html,
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
