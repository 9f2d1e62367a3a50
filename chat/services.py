"""Chat replies: start one, produce it, end it; follow, resume, cancel. Knows nothing of sockets.

A reply is a run (realtime.runs): a task that belongs to no connection, that
emits token events into the reply's stream and persists the message as it
goes, so a dropped connection loses nothing: any reader, on any process, can
resume the stream from the last token it saw. `Reply` is the chat part of
it: what a token event is, how the text is saved while it streams and when it
ends, and which terminal event readers get.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import branches, events, persistence
from chat.models import Conversation, Message
from realtime import llm, ratelimit, runs, wire
from realtime.db import GroupCommit, on_db_pool
from realtime.rendering import render_markdown, render_markdown_off_loop
from realtime.runs import Outcome, Run, Status
from realtime.streams import StreamGone

logger = logging.getLogger(__name__)

HISTORY_MAX_MESSAGES = 400
_Loaded = TypeVar("_Loaded")
BUSY_MESSAGE = "A reply is still streaming; stop it or wait for it to finish."


@dataclass(frozen=True)
class ReplyHandle:
    conversation_id: int
    user_message_id: int
    message_id: int
    # After a regenerate or an edit: the forked message's versions, the new one last.
    versions: tuple[int, ...] = ()


def stream_key(message_id: int) -> str:
    return f"reply:{message_id}"


def title_from(content: str) -> str:
    line = content.strip().splitlines()[0] if content.strip() else ""
    return line[:60] + ("…" if len(line) > 60 else "")


# --- start -------------------------------------------------------------------------
async def start_reply(
    *, user, content: str, conversation_id: int | None = None, origin: str | None = None
) -> ReplyHandle:
    """Save the user's message after the path shown and start generating the assistant's reply.

    The user's other chat sockets are told (`user_message`); `origin`, the
    sending socket's channel name, is left out: it has its `ack`.

    Raises ProtocolError: rate_limited, not_found (someone else's or no such
    conversation), busy (a reply is still streaming in this conversation).
    """
    handle = await _start_turn(
        user=user,
        content=content,
        conversation_id=conversation_id,
        load=lambda: _load_context(user=user, conversation_id=conversation_id),
    )
    await notify_user(
        user.pk,
        events.user_message(
            conversation_id=handle.conversation_id,
            title=title_from(content),
            user_message_id=handle.user_message_id,
            content=content,
            message_id=handle.message_id,
        ),
        origin=origin,
    )
    return handle


async def edit_message(
    *, user, message_id: int, content: str, origin: str | None = None
) -> ReplyHandle:
    """Send `content` as a new version of user message `message_id`, and answer it.

    The new message is a sibling of the old one (same parent) and is shown;
    what followed the old one stays on its branch. The model sees the path
    down to the new message only. Other sockets are told (`message_edited`).

    Raises ProtocolError: rate_limited, not_found (no such user message of
    yours), busy (a reply is streaming in the conversation).
    """
    conversation_id = await _conversation_of(
        user=user, message_id=message_id, role=Message.Role.USER
    )
    handle = await _start_turn(
        user=user,
        content=content,
        conversation_id=conversation_id,
        load=lambda: _load_context(user=user, conversation_id=conversation_id, editing=message_id),
    )
    await notify_user(
        user.pk,
        events.message_edited(
            conversation_id=handle.conversation_id,
            user_message_id=handle.user_message_id,
            content=content,
            message_id=handle.message_id,
            version_of=message_id,
            versions=list(handle.versions),
        ),
        origin=origin,
    )
    return handle


async def _start_turn(
    *, user, content: str, conversation_id: int | None, load: Callable[[], Awaitable[_Context]]
) -> ReplyHandle:
    """Rate limit, read the context (`load`), start the model request, save the turn."""
    context = _NEW_CONVERSATION
    if conversation_id is not None:
        context = await _checked(user, load)
    else:
        _refuse_unless(await _rate_check(user))
    prompt = llm.build_prompt(
        [*context.history, {"role": "user", "content": content}],
        system_prompt=context.system_prompt or settings.LLM_SYSTEM_PROMPT,
        budget_tokens=settings.LLM_CONTEXT_BUDGET_TOKENS,
    )
    model = context.model or settings.OPENAI_MODEL
    handle = await _start_run(
        prompt,
        model=model,
        save=lambda: _save_turn(
            user=user,
            content=content,
            conversation_id=conversation_id,
            model=model,
            parent_id=context.parent_id,
        ),
    )
    if context.siblings:
        handle = replace(handle, versions=(*context.siblings, handle.user_message_id))
    return handle


async def _checked(user, load: Callable[[], Awaitable[_Loaded]]) -> _Loaded:
    """`load()`, with the rate limit checked meanwhile; busy if a live reply streams.

    A reply whose generator died (its process was killed) is marked
    interrupted first, and does not make the conversation busy.
    """
    # A round trip in Redis mode: let it overlap the read.
    rate_check = _rate_check(user)
    try:
        try:
            loaded = await load()
        except _StillStreaming as streaming:
            await _expire_dead_replies(streaming.message_ids)
            try:
                loaded = await load()
            except _StillStreaming:  # another reply started meanwhile
                raise wire.ProtocolError(wire.BUSY, BUSY_MESSAGE) from None
    finally:
        allowed = await rate_check
    _refuse_unless(allowed)
    return loaded


async def _start_run(
    prompt: list[dict], *, model: str, save: Callable[[], Awaitable[tuple[int, int, int]]]
) -> ReplyHandle:
    """Start the model request, `save` the rows (conversation, user message, reply), start the run.

    The model request starts before the rows are written, so the database
    write overlaps the model's time to first token instead of adding to it.
    """
    metrics = llm.LatencyMetrics()
    upstream = llm.EarlyStream(llm.stream_chat(prompt, model=model, metrics=metrics))
    message_id = None
    try:
        conversation_id, user_message_id, message_id = await save()
        await runs.start(
            key=stream_key(message_id),
            producer=Reply(message_id, upstream, metrics),
            name=f"reply-{message_id}",
        )
    except BaseException:
        # Nothing will read the early request: close it, and end a reply saved
        # as streaming that no run will finish.
        await upstream.aclose()
        if message_id is not None:
            await _mark_interrupted(message_id)
        raise
    logger.info("reply started message_id=%s conversation_id=%s", message_id, conversation_id)
    return ReplyHandle(
        conversation_id=conversation_id, user_message_id=user_message_id, message_id=message_id
    )


def _rate_check(user) -> asyncio.Future[bool]:
    return asyncio.ensure_future(
        ratelimit.allow("chat", user.pk, limit=settings.CHAT_RATE_LIMIT_PER_MINUTE)
    )


def _refuse_unless(allowed: bool) -> None:
    if not allowed:
        raise wire.ProtocolError(
            wire.RATE_LIMITED, "Too many messages; wait a minute and try again."
        )


@dataclass(frozen=True)
class _Context:
    history: list[dict]
    model: str  # '' for the site defaults
    system_prompt: str = ""  # '' for the site default
    parent_id: int | None = None  # the message the new user message follows
    siblings: tuple[int, ...] = ()  # an edit: the versions of the edited message


_NEW_CONVERSATION = _Context(history=[], model="", system_prompt="")


@on_db_pool(reads=True)
def _load_context(*, user, conversation_id: int, editing: int | None = None) -> _Context:
    """The path the new message follows: after the path shown, or beside message `editing`.

    Raises not_found or _StillStreaming. One query: it is on the
    time-to-first-token path.
    """
    rows = persistence.conversation_messages(conversation_id=conversation_id, owner_id=user.pk)
    if not rows:
        own = persistence.conversation_settings(conversation_id=conversation_id, owner_id=user.pk)
        if own is None or editing is not None:
            raise wire.ProtocolError(wire.NOT_FOUND, "No such conversation")
        return _Context(history=[], model=own[0], system_prompt=own[1])
    if streaming := [row[0] for row in rows if row[5] == Message.Status.STREAMING]:
        raise _StillStreaming(streaming)
    tree = branches.Tree(row[:3] for row in rows)
    if editing is None:
        parent_id, siblings = tree.leaf(), ()
    elif editing in tree:
        parent_id, siblings = tree.parent[editing], tuple(tree.versions(editing))
    else:  # deleted meanwhile, with its conversation
        raise wire.ProtocolError(wire.NOT_FOUND, "No such message")
    path = tree.ancestry(parent_id) if parent_id is not None else []
    return _Context(
        history=_history(rows, path),
        model=rows[0][6],
        system_prompt=rows[0][7],
        parent_id=parent_id,
        siblings=siblings,
    )


def _history(rows: list[tuple], path: list[int]) -> list[dict]:
    """The model's messages for `path` (message ids, first to last), newest capped."""
    by_id = {row[0]: row for row in rows}
    return [
        {"role": by_id[pk][3], "content": by_id[pk][4]}
        for pk in path[-HISTORY_MAX_MESSAGES:]
        if by_id[pk][4] and by_id[pk][5] in (Message.Status.COMPLETE, Message.Status.CANCELLED)
    ]


@on_db_pool(reads=True)
def _conversation_of(*, user, message_id: int, role: str) -> int:
    """The conversation of the user's message `message_id` in `role`; raises not_found."""
    conversation_id = (
        Message.objects.filter(pk=message_id, role=role, conversation__owner=user)
        .values_list("conversation_id", flat=True)
        .first()
    )
    if conversation_id is None:
        raise wire.ProtocolError(wire.NOT_FOUND, "No such message")
    return conversation_id


@dataclass(frozen=True)
class _Turn:
    user: object
    content: str
    conversation_id: int | None
    model: str
    parent_id: int | None

    def row(self) -> tuple[int, int | None, str, str, str, int | None]:
        return (
            self.user.pk,
            self.conversation_id,
            title_from(self.content),
            self.content,
            self.model,
            self.parent_id,
        )


async def _save_turn(
    *, user, content: str, conversation_id: int | None, model: str, parent_id: int | None = None
) -> tuple[int, int, int]:
    """Save the user's message and the streaming reply: (conversation, user message, reply) ids.

    Turns starting together are saved in one transaction (`_turns`). The
    unique constraint on streaming replies makes this the real busy check:
    two messages racing into one conversation, on any processes, cannot both
    start a reply.
    """
    return await _turns.save(
        _Turn(
            user=user,
            content=content,
            conversation_id=conversation_id,
            model=model,
            parent_id=parent_id,
        )
    )


@on_db_pool
def _save_turns(turns: list[_Turn]) -> list[tuple[int, int, int] | Exception]:
    """All turns in one transaction; if one is refused, each on its own savepoint."""
    try:
        with transaction.atomic():
            saved = persistence.insert_turns([turn.row() for turn in turns])
        return [ids or _not_found() for ids in saved]
    except IntegrityError:
        if len(turns) == 1:
            return [_refusal(turns[0])]
    results: list[tuple[int, int, int] | Exception] = []
    with transaction.atomic():
        for turn in turns:
            try:
                with transaction.atomic():
                    results.append(persistence.insert_turns([turn.row()])[0] or _not_found())
            except IntegrityError:
                results.append(_refusal(turn))
    return results


# Looked up per batch, so tests can make the database fail.
_turns: GroupCommit[_Turn, tuple[int, int, int]] = GroupCommit(lambda turns: _save_turns(turns))


def _not_found() -> wire.ProtocolError:
    return wire.ProtocolError(wire.NOT_FOUND, "No such conversation")


def _refusal(turn: _Turn) -> wire.ProtocolError:
    """Why a turn's insert broke a constraint: the conversation is gone, or busy."""
    if not Conversation.objects.filter(pk=turn.conversation_id, owner=turn.user).exists():
        return _not_found()
    return wire.ProtocolError(wire.BUSY, BUSY_MESSAGE)


class _StillStreaming(Exception):
    def __init__(self, message_ids: list[int]) -> None:
        super().__init__(message_ids)
        self.message_ids = message_ids


async def _expire_dead_replies(message_ids: list[int]) -> None:
    """Mark replies whose generator died (process killed) as interrupted; else busy."""
    alive = False
    for message_id in message_ids:
        if await runs.is_live(stream_key(message_id)):
            alive = True
        else:
            await _mark_interrupted(message_id)
    if alive:
        raise wire.ProtocolError(wire.BUSY, BUSY_MESSAGE)


@on_db_pool
def _mark_interrupted(message_id: int) -> None:
    """End a reply left `streaming` by a run that is gone; its partial text stays."""
    message = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).first()
    if message is None:
        return
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        status=Message.Status.ERROR,
        error_code=wire.INTERRUPTED,
        html=render_markdown(message.content),
    )


# --- answering again: retry, regenerate -------------------------------------------------
RETRYABLE_STATUSES = (Message.Status.ERROR, Message.Status.CANCELLED)


async def retry_reply(*, user, message_id: int, origin: str | None = None) -> ReplyHandle:
    """Answer the same user message again, in place of reply `message_id`.

    The reply must be the user's, failed or stopped, and followed by nothing.
    Its row is deleted and a new streaming reply saved in the same
    transaction, so the question never keeps a failed answer. The user's
    other sockets are told (`reply_retried`).

    Raises ProtocolError: rate_limited, not_found (no such reply of yours, or
    another tab retried it first), invalid_event (not a failed or stopped
    reply, or followed by other messages), busy (a reply is streaming).
    """
    handle = await _answer_again(user=user, message_id=message_id, retry=True)
    await notify_user(
        user.pk,
        events.reply_retried(
            conversation_id=handle.conversation_id,
            user_message_id=handle.user_message_id,
            message_id=handle.message_id,
            replaces=message_id,
        ),
        origin=origin,
    )
    return handle


async def regenerate_reply(*, user, message_id: int, origin: str | None = None) -> ReplyHandle:
    """Answer the user message that reply `message_id` answers again, as a new version.

    The old reply (complete, stopped or failed) stays, with whatever followed
    it, as another branch; the new one is shown. The model sees the path down
    to the user message only. Other sockets are told (`reply_regenerated`).

    Raises ProtocolError: rate_limited, not_found (no such reply of yours),
    busy (a reply is streaming in the conversation).
    """
    handle = await _answer_again(user=user, message_id=message_id, retry=False)
    await notify_user(
        user.pk,
        events.reply_regenerated(
            conversation_id=handle.conversation_id,
            user_message_id=handle.user_message_id,
            message_id=handle.message_id,
            version_of=message_id,
            versions=list(handle.versions),
        ),
        origin=origin,
    )
    return handle


async def _answer_again(*, user, message_id: int, retry: bool) -> ReplyHandle:
    conversation_id = await _conversation_of(
        user=user, message_id=message_id, role=Message.Role.ASSISTANT
    )
    # Busy unless its process died: then it is marked interrupted, and retryable.
    target = await _checked(
        user,
        lambda: _load_answer(
            user=user, conversation_id=conversation_id, message_id=message_id, retry=retry
        ),
    )
    prompt = llm.build_prompt(
        target.history,
        system_prompt=target.system_prompt or settings.LLM_SYSTEM_PROMPT,
        budget_tokens=settings.LLM_CONTEXT_BUDGET_TOKENS,
    )
    model = target.model or settings.OPENAI_MODEL
    handle = await _start_run(
        prompt,
        model=model,
        save=lambda: _save_answer(target=target, model=model, replace=retry),
    )
    versions = [pk for pk in target.versions if not (retry and pk == message_id)]
    return replace(handle, versions=(*versions, handle.message_id))


@dataclass(frozen=True)
class _AnswerTarget:
    message_id: int  # the reply answered again
    conversation_id: int
    user_message_id: int
    history: list[dict]  # ends with the user message being answered again
    model: str
    system_prompt: str
    versions: tuple[int, ...]  # the reply's versions, itself included


@on_db_pool(reads=True)
def _load_answer(*, user, conversation_id: int, message_id: int, retry: bool) -> _AnswerTarget:
    rows = persistence.conversation_messages(conversation_id=conversation_id, owner_id=user.pk)
    status = {row[0]: row[5] for row in rows}
    if message_id not in status:  # deleted meanwhile, with its conversation
        raise wire.ProtocolError(wire.NOT_FOUND, "No such message")
    if status[message_id] == Message.Status.STREAMING:
        raise _StillStreaming([message_id])
    tree = branches.Tree(row[:3] for row in rows)
    if retry:
        if status[message_id] not in RETRYABLE_STATUSES:
            raise wire.ProtocolError(
                wire.INVALID_EVENT, "Only a failed or stopped reply can be retried"
            )
        if tree.children.get(message_id):
            raise wire.ProtocolError(wire.INVALID_EVENT, "Only the newest reply can be retried")
    question = tree.parent[message_id]
    if question is None:
        raise wire.ProtocolError(wire.INVALID_EVENT, "That reply answers no message")
    if streaming := [pk for pk, value in status.items() if value == Message.Status.STREAMING]:
        raise _StillStreaming(streaming)
    return _AnswerTarget(
        message_id=message_id,
        conversation_id=conversation_id,
        user_message_id=question,
        history=_history(rows, tree.ancestry(question)),
        model=rows[0][6],
        system_prompt=rows[0][7],
        versions=tuple(tree.versions(message_id)),
    )


@on_db_pool
def _save_answer(*, target: _AnswerTarget, model: str, replace: bool) -> tuple[int, int, int]:
    """Save a streaming reply to the target's question (deleting the target if `replace`).

    Returns (conversation, user message, reply) ids.
    """
    try:
        with transaction.atomic():
            if replace:
                deleted, _ = Message.objects.filter(
                    pk=target.message_id, status__in=RETRYABLE_STATUSES
                ).delete()
                if not deleted:  # another tab retried it first
                    raise wire.ProtocolError(wire.NOT_FOUND, "That reply was already retried")
            reply = Message.objects.create(
                conversation_id=target.conversation_id,
                parent_id=target.user_message_id,
                role=Message.Role.ASSISTANT,
                status=Message.Status.STREAMING,
                model=model,
            )
            Conversation.objects.filter(pk=target.conversation_id).update(updated_at=timezone.now())
    except IntegrityError:  # a reply started meanwhile (one streaming per conversation)
        raise wire.ProtocolError(wire.BUSY, BUSY_MESSAGE) from None
    return target.conversation_id, target.user_message_id, reply.pk


# --- switching versions ------------------------------------------------------------------
async def switch_version(*, user, message_id: int, origin: str | None = None) -> dict:
    """Show message `message_id` instead of its siblings; returns the `version_switched` event.

    The path below it is the one chosen there last. Other sockets are told.
    Raises ProtocolError: not_found (no such message of yours), busy (a reply
    is streaming in the conversation: the path it extends must stay shown).
    """
    conversation_id = await _choose(user=user, message_id=message_id)
    event = events.version_switched(conversation_id=conversation_id, message_id=message_id)
    await notify_user(user.pk, event, origin=origin)
    return event


@on_db_pool
def _choose(*, user, message_id: int) -> int:
    message = (
        Message.objects.filter(pk=message_id, conversation__owner=user)
        .values("conversation_id")
        .first()
    )
    if message is None:
        raise wire.ProtocolError(wire.NOT_FOUND, "No such message")
    conversation_id = message["conversation_id"]
    if Message.objects.filter(
        conversation_id=conversation_id, status=Message.Status.STREAMING
    ).exists():
        raise wire.ProtocolError(wire.BUSY, BUSY_MESSAGE)
    Message.objects.filter(pk=message_id).update(chosen_at=timezone.now())
    return conversation_id


# --- the user's other sockets ----------------------------------------------------------
async def notify_user(user_id: int, event: dict, *, origin: str | None = None) -> None:
    """Send `event` to every chat socket of the user, on every process, but `origin`.

    Never raises: what changed is stored, and a tab that missed it shows it on
    its next load.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(
            events.user_group(user_id), events.to_user_sockets(event, origin=origin)
        )
    except Exception:
        logger.exception("could not tell the sockets of user %s about %s", user_id, event["type"])


def rename_conversation(*, conversation: Conversation, title: str) -> None:
    """Rename (an empty title clears it); every open tab of the owner shows the new title."""
    conversation.title = title.strip()[:200]
    conversation.save(update_fields=["title", "updated_at"])
    async_to_sync(notify_user)(
        conversation.owner_id,
        events.conversation_renamed(conversation_id=conversation.pk, title=conversation.title),
    )


def delete_conversation(*, conversation: Conversation) -> None:
    """Delete with its messages; stop its streaming reply; every open tab of the owner is told."""
    conversation_id, owner_id = conversation.pk, conversation.owner_id
    streaming = list(
        conversation.messages.filter(status=Message.Status.STREAMING).values_list("pk", flat=True)
    )
    conversation.delete()
    async_to_sync(_after_delete)(owner_id, conversation_id, streaming)


async def _after_delete(owner_id: int, conversation_id: int, streaming: list[int]) -> None:
    for message_id in streaming:
        # Nothing is left to save it into: stop paying for the model's answer.
        await runs.cancel(stream_key(message_id))
    await notify_user(owner_id, events.conversation_deleted(conversation_id=conversation_id))


# --- the run -------------------------------------------------------------------------
class Reply:
    """The chat part of a reply's run: token events, saved text, the terminal event."""

    def __init__(
        self, message_id: int, tokens: llm.EarlyStream, metrics: llm.LatencyMetrics
    ) -> None:
        self.message_id = message_id
        self.tokens = tokens
        self.metrics = metrics
        self.parts: list[str] = []
        self.html: str | None = None

    async def produce(self, run: Run) -> None:
        # The saver reads `parts` as it grows: registered once, not per token.
        persistence.track_partial(self.message_id, self.parts)
        try:
            async for text in self.tokens:
                await run.emit(events.token(content=text, index=len(self.parts)))
                self.parts.append(text)
        finally:
            persistence.forget_partial(self.message_id)
            # Closes the upstream HTTP stream on cancel: the provider stops generating.
            await self.tokens.aclose()

    async def save(self, run: Run, outcome: Outcome) -> None:
        """Render once and save the final row; if this fails, the row keeps its
        last partial text and is marked interrupted when next looked at."""
        if self.metrics.total_ms is None:
            self.metrics.finish()  # a cancel cut the stream's own cleanup short
        content = "".join(self.parts)
        self.html = await render_markdown_off_loop(content)
        await persistence.save_final(
            self.message_id,
            content=content,
            html=self.html,
            status=outcome.status.value,
            error_code=outcome.error_code,
            error_message=outcome.error.message if outcome.error else "",
            metrics=self.metrics.as_dict(),
        )

    def terminal_event(self, run: Run, outcome: Outcome) -> dict:
        content = "".join(self.parts)
        html = self.html if self.html is not None else render_markdown(content)
        metrics = self.metrics.as_dict()
        logger.info(
            "reply finished message_id=%s status=%s code=%s ttft_ms=%s tokens=%s total_ms=%s",
            self.message_id,
            outcome.status,
            outcome.error_code,
            self.metrics.ttft_ms,
            self.metrics.tokens,
            self.metrics.total_ms,
        )
        if outcome.status is Status.COMPLETE:
            return events.complete(
                message_id=self.message_id,
                content=content,
                html=html,
                total_tokens=self.metrics.tokens,
                metrics=metrics,
            )
        if outcome.status is Status.CANCELLED:
            return events.cancelled(
                message_id=self.message_id, content=content, html=html, metrics=metrics
            )
        return events.reply_error(
            outcome.error.code,
            outcome.error.message,
            retryable=outcome.error.retryable,
            message_id=self.message_id,
            content=content,
            metrics=metrics,
        )


# --- follow, resume, cancel ----------------------------------------------------------
async def follow_reply(message_id: int, *, after: int = -1) -> AsyncIterator[tuple[int, dict]]:
    """Yield (seq, event) for a reply: tokens after `after`, then its terminal event.

    Tokens that piled up while the reader was behind come as one `token`
    frame (events.merge_tokens). Adds the `progress` events a client shows.
    If the stream is gone (finished a while ago, or its process died), the
    database answers.
    """
    try:
        async for batch in runs.follow(stream_key(message_id), after=after):
            if batch[0][0] == 0 and batch[0][1]["type"] == "token":
                yield 0, events.progress("generating", message_id=message_id)
            tokens = [event for _, event in batch if event["type"] == "token"]
            if tokens:
                yield tokens[-1]["index"], events.merge_tokens(tokens)
            seq, last = batch[-1]
            if events.is_terminal(last):
                yield seq, events.progress("complete", message_id=message_id)
                yield seq, last
    except StreamGone:
        await _mark_interrupted(message_id)
        yield -1, stored_terminal_event(await _message(message_id))


@on_db_pool(reads=True)
def _message(message_id: int) -> Message:
    return Message.objects.get(pk=message_id)


def stored_terminal_event(message: Message) -> dict:
    """The terminal event for a finished message, rebuilt from the database."""
    if message.status == Message.Status.COMPLETE:
        return events.complete(
            message_id=message.pk,
            content=message.content,
            html=message.html,
            total_tokens=message.tokens or 0,
            metrics=message.metrics,
        )
    if message.status == Message.Status.CANCELLED:
        return events.cancelled(
            message_id=message.pk,
            content=message.content,
            html=message.html,
            metrics=message.metrics,
        )
    return events.reply_error(
        message.error_code or wire.UPSTREAM_ERROR,
        message.error_text,
        message_id=message.pk,
        content=message.content,
        metrics=message.metrics,
    )


@on_db_pool(reads=True)
def get_own_reply(*, user, message_id: int) -> Message:
    """The assistant message, if it belongs to one of the user's conversations."""
    message = Message.objects.filter(
        pk=message_id, role=Message.Role.ASSISTANT, conversation__owner=user
    ).first()
    if message is None:
        raise wire.ProtocolError(wire.NOT_FOUND, "No such message")
    return message


async def cancel_reply(*, user, message_id: int) -> None:
    """Ask the reply's run, on whichever process, to stop."""
    await get_own_reply(user=user, message_id=message_id)
    if not await runs.cancel(stream_key(message_id)):
        raise wire.ProtocolError(wire.NOT_STREAMING, "That reply is not streaming", retryable=False)


async def attach_reader(message_id: int) -> None:
    await runs.attach(stream_key(message_id))


async def detach_reader(message_id: int) -> None:
    await runs.detach(stream_key(message_id))
