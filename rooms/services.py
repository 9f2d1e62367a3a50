"""Rooms: membership, messages, and the AI's turns. Knows nothing of sockets.

The AI answers in **turns**. One turn per room at a time, whichever process
runs it: a lease (realtime.locks) on the room, renewed while the turn runs,
so a killed process frees the room within LEASE_TTL_SECONDS. A person's
message that the AI should answer is stored at once and marked pending;
the turn that starts next answers every pending message together. Nothing
is refused or dropped: when a turn ends, its process starts the next one if
messages came in meanwhile. A turn is a run (realtime.runs): its tokens go
into the turn's stream, which every member's socket follows, on any process.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from realtime import llm, locks, ratelimit, runs, wire
from realtime.db import PeriodicSaver, on_db_pool
from realtime.rendering import render_markdown, render_markdown_off_loop
from realtime.runs import Outcome, Run, Status
from rooms import events
from rooms.models import Membership, Room, RoomMessage, new_invite_code

logger = logging.getLogger(__name__)

# Messages of history a turn's prompt is built from (the token budget trims it further).
HISTORY_MESSAGES = 60

# Words of the pages' URLs under /rooms/ (rooms/urls.py) that a room's slug must not take.
RESERVED_SLUGS = frozenset({"new", "join"})


def group_name(room_id: int) -> str:
    """The channel-layer group of a room's sockets."""
    return f"room.{room_id}"


def member_group_name(room_id: int, user_id: int) -> str:
    """One member's sockets in one room (closed when the owner removes them)."""
    return f"room.{room_id}.user.{user_id}"


def turn_key(message_id: int) -> str:
    """The run (and stream) of the AI turn whose message is `message_id`."""
    return f"room-turn:{message_id}"


def lease_key(room_id: int) -> str:
    return f"rt:lease:room-turn:{room_id}"


# --- rooms and membership (pages) ------------------------------------------------------
def create_room(
    *,
    owner,
    name: str,
    is_private: bool,
    ai_mode: str = Room.AiMode.EVERY,
    system_prompt: str = "",
    model: str = "",
) -> Room:
    """A room with its owner as first member; the slug comes from the name."""
    base = slugify(name)[:40] or "room"
    with transaction.atomic():
        for attempt in range(20):
            slug = base if attempt == 0 else f"{base}-{new_invite_code()[:6].lower()}"
            slug = re.sub(r"[^a-z0-9-]", "", slug) or "room"
            if slug in RESERVED_SLUGS or Room.objects.filter(slug=slug).exists():
                continue
            room = Room.objects.create(
                name=name.strip()[:100],
                slug=slug,
                owner=owner,
                is_private=is_private,
                ai_mode=ai_mode,
                system_prompt=system_prompt,
                model=model,
            )
            Membership.objects.create(room=room, user=owner, role=Membership.Role.OWNER)
            return room
    raise IntegrityError("no free slug")


def join(*, room: Room, user) -> Membership:
    """Join a public room (private ones only by invite: `join_by_invite`)."""
    if room.is_private and not Membership.objects.filter(room=room, user=user).exists():
        raise PermissionDenied("This room is private; ask its owner for an invite link.")
    membership, _ = Membership.objects.get_or_create(room=room, user=user)
    return membership


def join_by_invite(*, user, code: str) -> Room:
    """Join the room whose invite link this is; raises Room.DoesNotExist for a revoked one."""
    room = Room.objects.get(invite_code=code)
    Membership.objects.get_or_create(room=room, user=user)
    return room


def _require_owner(room: Room, user) -> None:
    if room.owner_id != user.pk:
        raise PermissionDenied("Only the room's owner can do that.")


def revoke_invite(*, room: Room, by) -> str:
    """A new invite link; the old one stops working. Returns the new code."""
    _require_owner(room, by)
    room.invite_code = new_invite_code()
    room.save(update_fields=["invite_code", "updated_at"])
    return room.invite_code


def remove_member(*, room: Room, by, user_id: int) -> bool:
    """The owner removes a member (not themselves); their open room sockets close."""
    _require_owner(room, by)
    if user_id == room.owner_id:
        raise PermissionDenied("The owner cannot be removed.")
    deleted, _ = Membership.objects.filter(room=room, user_id=user_id).delete()
    if deleted:
        transaction.on_commit(lambda: _close_member_sockets(room.pk, user_id))
    return bool(deleted)


def _close_member_sockets(room_id: int, user_id: int) -> None:
    from asgiref.sync import async_to_sync

    try:
        async_to_sync(get_channel_layer().group_send)(
            member_group_name(room_id, user_id), {"type": "room.removed"}
        )
    except Exception:
        logger.exception("closing a removed member's sockets failed room_id=%s", room_id)


# --- entering and speaking (sockets) -----------------------------------------------------
@on_db_pool(reads=True)
def room_for(*, slug: str, user) -> tuple[Room | None, bool]:
    """(the room, whether `user` may enter it); (None, False) if there is no such room."""
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        return None, False
    if room.is_private:
        return room, Membership.objects.filter(room=room, user=user).exists()
    Membership.objects.get_or_create(room=room, user=user)  # entering a public room joins it
    return room, True


@on_db_pool(reads=True)
def still_member(*, room_id: int, user_id: int) -> bool:
    return Membership.objects.filter(room_id=room_id, user_id=user_id).exists()


@on_db_pool(reads=True)
def snapshot(room: Room, *, limit: int) -> tuple[list[RoomMessage], bool, RoomMessage | None]:
    """The newest messages, whether older ones exist, and the AI message streaming now."""
    newest_first = list(
        room.messages.select_related("author").order_by("-created_at", "-id")[: limit + 1]
    )
    streaming = room.messages.filter(status=RoomMessage.Status.STREAMING).first()
    return newest_first[:limit][::-1], len(newest_first) > limit, streaming


async def post_message(*, room: Room, user, content: str) -> RoomMessage:
    """Store a person's message and tell the room; the AI answers it in its next turn."""
    if not await ratelimit.allow("room", user.pk, limit=settings.ROOM_RATE_LIMIT_PER_MINUTE):
        raise wire.ProtocolError(wire.RATE_LIMITED, "Too many messages; wait a minute.")
    message = await _store_message(room=room, user=user, content=content)
    await get_channel_layer().group_send(
        group_name(room.pk), {"type": "room.event", "event": events.user_message(message)}
    )
    if message.triggers_ai:
        await maybe_start_turn(room.pk)
    return message


@on_db_pool
def _store_message(*, room: Room, user, content: str) -> RoomMessage:
    message = RoomMessage.objects.create(
        room=room,
        author=user,
        role=RoomMessage.Role.USER,
        content=content,
        triggers_ai=room.triggers_ai(content),
    )
    Room.objects.filter(pk=room.pk).update(updated_at=timezone.now())
    message.author = user
    return message


@on_db_pool(reads=True)
def may_stop(*, user, room: Room, message_id: int) -> bool:
    """The owner, or a person whose message this AI message answers, may stop it."""
    if room.owner_id == user.pk:
        return True
    return RoomMessage.objects.filter(
        room=room, answered_by_id=message_id, author_id=user.pk
    ).exists()


async def stop_turn(*, room: Room, user, message_id: int) -> None:
    """Stop a streaming AI reply, on whichever process runs it."""
    if not await may_stop(user=user, room=room, message_id=message_id):
        raise wire.ProtocolError(
            wire.FORBIDDEN,
            "Only the room's owner or the people it answers can stop this reply.",
            retryable=False,
        )
    if not await runs.cancel(turn_key(message_id)):
        raise wire.ProtocolError(wire.NOT_STREAMING, "That reply is not streaming", retryable=False)


@on_db_pool(reads=True)
def ai_message(*, room: Room, message_id: int | None) -> RoomMessage | None:
    """An AI message of the room (the newest one without an id)."""
    query = room.messages.filter(role=RoomMessage.Role.ASSISTANT)
    if message_id is not None:
        return query.filter(pk=message_id).first()
    return query.order_by("-created_at", "-id").first()


async def ended_message(*, room: Room, message_id: int) -> RoomMessage | None:
    """An AI message whose stream is gone: one still `streaming` lost its process."""
    if not await runs.is_live(turn_key(message_id)):
        await _mark_interrupted(message_id)
    return await ai_message(room=room, message_id=message_id)


def stored_terminal_event(message: RoomMessage) -> dict:
    """The terminal event of a finished AI message, rebuilt from the database."""
    if message.status == RoomMessage.Status.COMPLETE:
        return events.ai_complete(
            message_id=message.pk,
            content=message.content,
            html=message.html,
            metrics=message.metrics,
        )
    if message.status == RoomMessage.Status.CANCELLED:
        return events.ai_cancelled(
            message_id=message.pk,
            content=message.content,
            html=message.html,
            metrics=message.metrics,
        )
    return events.ai_error(
        message.error_code or wire.INTERRUPTED,
        message.error_message or "The reply was interrupted; the partial answer is saved.",
        message_id=message.pk,
        content=message.content,
        metrics=message.metrics,
        retryable=True,
    )


# --- turns ---------------------------------------------------------------------------------
async def maybe_start_turn(room_id: int) -> None:
    """Start the AI's next turn if messages wait for it and no turn runs (on any process)."""
    lease = await locks.try_acquire(lease_key(room_id))
    if lease is None:
        return  # a turn runs; its process starts the next one when it ends
    started = False
    try:
        claim = await _claim_pending(room_id)
        if claim is None:
            return
        room, message_id, history = claim
        prompt = llm.build_prompt(
            history,
            system_prompt=room.system_prompt or settings.ROOM_SYSTEM_PROMPT,
            budget_tokens=settings.LLM_CONTEXT_BUDGET_TOKENS,
        )
        metrics = llm.LatencyMetrics()
        model = room.model or settings.OPENAI_MODEL
        upstream = llm.EarlyStream(llm.stream_chat(prompt, model=model, metrics=metrics))
        try:
            lease.keep()
            await runs.start(
                key=turn_key(message_id),
                producer=RoomTurn(room, message_id, upstream, metrics, lease),
                abandon_when_unread=False,
                name=f"room-turn-{message_id}",
            )
            started = True
        except BaseException:
            await upstream.aclose()
            await _mark_interrupted(message_id)
            raise
        await get_channel_layer().group_send(
            group_name(room_id), {"type": "room.turn", "message_id": message_id}
        )
        logger.info("room turn started room_id=%s message_id=%s", room_id, message_id)
    finally:
        if not started:
            await lease.release()


@on_db_pool
def _claim_pending(room_id: int) -> tuple[Room, int, list[dict]] | None:
    """Under the lease: end a dead turn, then the AI message for every pending message.

    Returns (room, the new AI message's id, the prompt's history), or None when
    nothing waits.
    """
    room = Room.objects.get(pk=room_id)
    # A streaming AI message under a free lease belongs to a turn whose process died.
    RoomMessage.objects.filter(room=room, status=RoomMessage.Status.STREAMING).update(
        status=RoomMessage.Status.ERROR, error_code=wire.INTERRUPTED
    )
    with transaction.atomic():
        pending = RoomMessage.objects.filter(
            room=room, role=RoomMessage.Role.USER, triggers_ai=True, answered_by__isnull=True
        )
        if not pending.exists():
            return None
        reply = RoomMessage.objects.create(
            room=room,
            role=RoomMessage.Role.ASSISTANT,
            status=RoomMessage.Status.STREAMING,
            model=room.model or settings.OPENAI_MODEL,
        )
        pending.update(answered_by=reply)
    recent = (
        RoomMessage.objects.filter(room=room)
        .exclude(pk=reply.pk)
        .select_related("author")
        .order_by("-created_at", "-id")[:HISTORY_MESSAGES]
    )
    history = [
        {"role": "user", "content": f"{m.author.get_username()}: {m.content}"}
        if m.role == RoomMessage.Role.USER and m.author_id
        else {"role": "assistant", "content": m.content}
        for m in reversed(list(recent))
        if m.content and m.status in (RoomMessage.Status.COMPLETE, RoomMessage.Status.CANCELLED)
    ]
    return room, reply.pk, history


@on_db_pool
def _mark_interrupted(message_id: int) -> None:
    message = RoomMessage.objects.filter(pk=message_id, status=RoomMessage.Status.STREAMING).first()
    if message is not None:
        RoomMessage.objects.filter(pk=message_id, status=RoomMessage.Status.STREAMING).update(
            status=RoomMessage.Status.ERROR,
            error_code=wire.INTERRUPTED,
            html=render_markdown(message.content),
        )


class RoomTurn:
    """The rooms part of an AI turn's run: `ai_token` events, the saved reply, the next turn."""

    def __init__(
        self,
        room: Room,
        message_id: int,
        tokens: llm.EarlyStream,
        metrics: llm.LatencyMetrics,
        lease: locks.Lease,
    ) -> None:
        self.room = room
        self.message_id = message_id
        self.tokens = tokens
        self.metrics = metrics
        self.lease = lease
        self.parts: list[str] = []
        self.html: str | None = None

    async def produce(self, run: Run) -> None:
        # Saved as it grows, so a killed process leaves the partial answer behind.
        _partials.track(self.message_id, self.parts)
        try:
            by_group = settings.ROOM_FANOUT == "group"
            async for text in self.tokens:
                token = events.ai_token(
                    content=text, index=len(self.parts), message_id=self.message_id
                )
                await run.emit(token)
                if by_group:
                    await get_channel_layer().group_send(
                        group_name(self.room.pk), {"type": "room.event", "event": token}
                    )
                self.parts.append(text)
        finally:
            _partials.forget(self.message_id)
            await self.tokens.aclose()

    async def save(self, run: Run, outcome: Outcome) -> None:
        if self.metrics.total_ms is None:
            self.metrics.finish()
        content = "".join(self.parts)
        self.html = await render_markdown_off_loop(content)
        await _save_reply(
            self.message_id,
            content=content,
            html=self.html,
            outcome=outcome,
            metrics=self.metrics.as_dict(),
        )

    def terminal_event(self, run: Run, outcome: Outcome) -> dict:
        content = "".join(self.parts)
        html = self.html if self.html is not None else render_markdown(content)
        metrics = self.metrics.as_dict()
        logger.info(
            "room turn finished room_id=%s message_id=%s status=%s code=%s tokens=%s",
            self.room.pk,
            self.message_id,
            outcome.status,
            outcome.error_code,
            self.metrics.tokens,
        )
        if outcome.status is Status.COMPLETE:
            return events.ai_complete(
                message_id=self.message_id, content=content, html=html, metrics=metrics
            )
        if outcome.status is Status.CANCELLED:
            return events.ai_cancelled(
                message_id=self.message_id, content=content, html=html, metrics=metrics
            )
        return events.ai_error(
            outcome.error.code,
            outcome.error.message,
            message_id=self.message_id,
            content=content,
            metrics=metrics,
            retryable=outcome.error.retryable,
        )

    async def ended(self, run: Run, outcome: Outcome) -> None:
        """After the terminal event: free the room, and answer what came in meanwhile."""
        await self.lease.release()
        asyncio.get_running_loop().create_task(
            maybe_start_turn(self.room.pk), context=contextvars.Context()
        )


@on_db_pool
def _save_partials(changed: dict[int, tuple[str, int]]) -> None:
    table = connection.ops.quote_name(RoomMessage._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET content = %s, tokens = %s WHERE id = %s AND status = %s",
            [
                (text, tokens, message_id, RoomMessage.Status.STREAMING.value)
                for message_id, (text, tokens) in changed.items()
            ],
        )


_partials: PeriodicSaver[list[str]] = PeriodicSaver(
    snapshot=lambda parts: (("".join(parts), len(parts)), len(parts)),
    save=_save_partials,
    interval_s=lambda: settings.REPLY_PERSIST_INTERVAL_MS / 1000,
)


@on_db_pool
def _save_reply(
    message_id: int, *, content: str, html: str, outcome: Outcome, metrics: dict
) -> None:
    RoomMessage.objects.filter(pk=message_id).update(
        content=content,
        html=html,
        status=outcome.status.value,
        error_code=outcome.error_code,
        error_message=outcome.error.message if outcome.error else "",
        ttft_ms=metrics["ttft_ms"],
        total_ms=metrics["total_ms"],
        tokens=metrics["tokens"],
        tokens_per_second=metrics["tokens_per_second"],
        prompt_tokens=metrics["prompt_tokens"],
        completion_tokens=metrics["completion_tokens"],
        updated_at=timezone.now(),
    )
