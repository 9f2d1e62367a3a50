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
def conversation_messages(*, conversation_id: int, owner_id: int) -> list[tuple]:
    """(id, parent id, chosen at, role, content, status, conversation model, conversation
    system prompt) of every message.

    Every branch: which are on the path shown is chat.branches' business.
    """
    message = connection.ops.quote_name(Message._meta.db_table)
    conversation = connection.ops.quote_name(Conversation._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.id, m.parent_id, m.chosen_at, m.role, m.content, m.status, c.model,"
            " c.system_prompt"
            f" FROM {message} m JOIN {conversation} c ON c.id = m.conversation_id"
            " WHERE m.conversation_id = %s AND c.owner_id = %s",
            [conversation_id, owner_id],
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


def insert_turns(turns: list[tuple]) -> list[tuple | None]:
    """Save (owner, conversation or None, title, content, model, parent) turns, in the transaction.

    Each turn gets its conversation (created, or bumped and titled if untitled),
    its user message (following `parent`, a message id or None) and a
    `streaming` reply to it. Returns per turn its (conversation, user message,
    reply) ids, or None if its conversation is gone. Raises IntegrityError if
    a conversation already has a streaming reply.
    """
    ops = connection.ops
    now = ops.adapt_datetimefield_value(timezone.now())
    conversations = ops.quote_name(Conversation._meta.db_table)
    messages = ops.quote_name(Message._meta.db_table)
    conversation_ids: list[int | None] = []
    with connection.cursor() as cursor:
        for owner_id, conversation_id, title, *_ in turns:
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
        questions = [
            (conversation_id, parent_id, Message.Role.USER.value, content, "complete", "")
            for conversation_id, (*_, content, _, parent_id) in zip(
                conversation_ids, turns, strict=True
            )
            if conversation_id is not None
        ]
        # One user message and one streaming reply per conversation in a batch (else
        # the reply's insert fails): the conversation names each row.
        asked = _insert_messages(cursor, messages, questions, now)
        replies = [
            (conversation_id, asked[conversation_id], "assistant", "", "streaming", model)
            for conversation_id, (*_, model, _) in zip(conversation_ids, turns, strict=True)
            if conversation_id is not None
        ]
        answered = _insert_messages(cursor, messages, replies, now)
    return [
        None
        if conversation_id is None
        else (conversation_id, asked[conversation_id], answered[conversation_id])
        for conversation_id in conversation_ids
    ]


def _insert_messages(cursor, table: str, rows: list[tuple], now) -> dict[int, int]:
    """Insert (conversation, parent, role, content, status, model) rows: {conversation: new id}."""
    if not rows:
        return {}
    values = ", ".join(["(%s, %s, %s, %s, '', %s, '', '', %s, %s, %s, %s)"] * len(rows))
    cursor.execute(
        f"INSERT INTO {table} (conversation_id, parent_id, role, content, html, status,"
        f" error_code, error_message, model, chosen_at, created_at, updated_at) VALUES {values}"
        " RETURNING id, conversation_id",
        [
            value
            for conversation_id, parent_id, role, content, status, model in rows
            for value in (conversation_id, parent_id, role, content, status, model, now, now, now)
        ],
    )
    return {conversation_id: pk for pk, conversation_id in cursor.fetchall()}
