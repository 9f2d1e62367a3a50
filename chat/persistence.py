"""Saving replies while they stream: batched partial text, group-committed final rows.

Writes from the token loop would make each reply wait on the database; here
one prepared statement per interval saves every streaming reply's text
(realtime.db.PeriodicSaver), and replies that finish together are saved in
one write (realtime.db.GroupCommit).
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from chat.models import Conversation, Message
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


# --- starting a reply: on the time-to-first-token path ------------------------------
# Plain SQL: compiling the ORM's queries cost more CPU than running them, on
# the one path every message waits on.
def recent_messages(*, conversation_id: int, owner_id: int, limit: int) -> list[tuple]:
    """(id, role, content, status, conversation model, conversation system prompt) of the
    newest messages, newest first."""
    message = connection.ops.quote_name(Message._meta.db_table)
    conversation = connection.ops.quote_name(Conversation._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.id, m.role, m.content, m.status, c.model, c.system_prompt FROM {message} m"
            f" JOIN {conversation} c ON c.id = m.conversation_id"
            " WHERE m.conversation_id = %s AND c.owner_id = %s"
            " ORDER BY m.created_at DESC, m.id DESC LIMIT %s",
            [conversation_id, owner_id, limit],
        )
        return cursor.fetchall()


def conversation_settings(*, conversation_id: int, owner_id: int) -> tuple[str, str] | None:
    """The conversation's (model, system prompt) ('' for the site defaults), or None if it
    is not the owner's."""
    table = connection.ops.quote_name(Conversation._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT model, system_prompt FROM {table} WHERE id = %s AND owner_id = %s",
            [conversation_id, owner_id],
        )
        row = cursor.fetchone()
    return None if row is None else (row[0], row[1])


def insert_turns(turns: list[tuple[int, int | None, str, str, str]]) -> list[tuple | None]:
    """Save (owner, conversation or None, title, content, model) turns in the open transaction.

    Each turn gets its conversation (created, or bumped and titled if untitled),
    its user message and a `streaming` reply. Returns per turn its
    (conversation, user message, reply) ids, or None if its conversation is
    gone. Raises IntegrityError if a conversation already has a streaming reply.
    """
    ops = connection.ops
    now = ops.adapt_datetimefield_value(timezone.now())
    conversations = ops.quote_name(Conversation._meta.db_table)
    messages = ops.quote_name(Message._meta.db_table)
    conversation_ids: list[int | None] = []
    with connection.cursor() as cursor:
        for owner_id, conversation_id, title, _, _ in turns:
            if conversation_id is None:
                cursor.execute(
                    f"INSERT INTO {conversations} (owner_id, title, model, created_at, updated_at)"
                    " VALUES (%s, %s, '', %s, %s) RETURNING id",
                    [owner_id, title, now, now],
                )
                conversation_id = cursor.fetchone()[0]
            else:
                # Bumps updated_at (the list shows recent first); titles an untitled one.
                # The row stays locked to our commit, so it cannot vanish under the insert.
                cursor.execute(
                    f"UPDATE {conversations} SET updated_at = %s,"
                    " title = CASE WHEN title = '' THEN %s ELSE title END WHERE id = %s",
                    [now, title, conversation_id],
                )
                if cursor.rowcount == 0:
                    conversation_id = None
            conversation_ids.append(conversation_id)
        rows = []
        for conversation_id, (_, _, _, content, model) in zip(conversation_ids, turns, strict=True):
            if conversation_id is not None:
                rows.append((conversation_id, Message.Role.USER.value, content, "complete", ""))
                rows.append((conversation_id, Message.Role.ASSISTANT.value, "", "streaming", model))
        ids: dict[tuple[int, str], int] = {}
        if rows:
            values = ", ".join(["(%s, %s, %s, '', %s, '', '', %s, %s, %s)"] * len(rows))
            cursor.execute(
                f"INSERT INTO {messages} (conversation_id, role, content, html, status,"
                f" error_code, error_message, model, created_at, updated_at) VALUES {values}"
                " RETURNING id, conversation_id, role",
                [value for row in rows for value in (*row, now, now)],
            )
            # One streaming reply per conversation: (conversation, role) names each row.
            ids = {(conversation_id, role): pk for pk, conversation_id, role in cursor.fetchall()}
    return [
        None
        if conversation_id is None
        else (conversation_id, ids[(conversation_id, "user")], ids[(conversation_id, "assistant")])
        for conversation_id in conversation_ids
    ]
