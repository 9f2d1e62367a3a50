"""The room WebSocket: presence, typing, messages, and the AI's turns, live for every member.

People's messages, typing and presence travel through the room's
channel-layer group (a few per second). The AI's tokens do not: each socket
follows the turn's stream (realtime.runs), which reaches each process once
(one Redis reader per stream per process) and is read there by every local
socket at its own pace; one that falls behind gets its backlog in one frame.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from django.conf import settings

from realtime import runs, wire
from realtime.consumers import CLOSE_FORBIDDEN, RealtimeConsumer
from realtime.streams import StreamGone
from rooms import events, presence, services

logger = logging.getLogger(__name__)


def turn_follower(message_id: int) -> str:
    """The follower of one AI turn: a socket may still be finishing one as the next starts."""
    return f"turn:{message_id}"


class RoomConsumer(RealtimeConsumer):
    """One member's socket in one room."""

    route = "room"
    client_types = events.CLIENT_TYPES

    async def connect(self) -> None:
        slug = self.scope["url_route"]["kwargs"]["slug"]
        room, allowed = await services.room_for(slug=slug, user=self.user)
        if room is None or not allowed:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.room = room
        self.connection_id = secrets.token_hex(8)
        self.person = events.user_ref(self.user)
        self.typing_told_at = 0.0
        self.room_group = services.group_name(room.pk)
        self.member_group = services.member_group_name(room.pk, self.user.pk)
        await self.channel_layer.group_add(self.room_group, self.channel_name)
        await self.channel_layer.group_add(self.member_group, self.channel_name)
        change = await presence.join(
            room_id=room.pk,
            user_id=self.user.pk,
            connection=self.connection_id,
            name=self.person["username"],
        )
        await self.send_room_state()
        await self._announce(change)
        self.heartbeat = asyncio.ensure_future(self._keep_present())

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "room"):
            return
        self.heartbeat.cancel()
        change = await presence.leave(
            room_id=self.room.pk, user_id=self.user.pk, connection=self.connection_id
        )
        await self._announce(change)
        await self.channel_layer.group_discard(self.room_group, self.channel_name)
        await self.channel_layer.group_discard(self.member_group, self.channel_name)

    def parse_event(self, data: dict) -> tuple[str, events.ClientEvent]:
        event = events.client_event(data, max_content_chars=settings.ROOM_MAX_MESSAGE_CHARS)
        return event.type, event

    async def send_room_state(self) -> None:
        """The room as it is now; if the AI is answering, its reply streams in from the start."""
        messages, has_more, streaming = await services.snapshot(
            self.room, limit=settings.ROOM_PAGE_MESSAGES
        )
        await self.send_event(
            events.room_state(
                room=self.room,
                messages=messages,
                has_more=has_more,
                participants=await presence.people(self.room.pk),
                ai_turn={"message_id": streaming.pk} if streaming else None,
            )
        )
        if streaming is not None:
            await self._follow(streaming.pk, after=-1, announce=False)

    # --- client events ------------------------------------------------------------
    async def handle_message(self, event: events.ClientEvent) -> None:
        await services.post_message(room=self.room, user=self.user, content=event.content)

    async def handle_typing(self, event: events.ClientEvent) -> None:
        now = time.monotonic()
        if now - self.typing_told_at < settings.ROOM_TYPING_THROTTLE_SECONDS:
            return  # told recently enough
        self.typing_told_at = now
        await self.channel_layer.group_send(
            self.room_group,
            {"type": "room.event", "event": events.user_typing(user=self.person)},
        )

    async def handle_cancel(self, event: events.ClientEvent) -> None:
        message_id = event.message_id
        if message_id is None:
            current = await services.ai_message(room=self.room, message_id=None)
            message_id = current.pk if current is not None else None
        if message_id is None:
            raise wire.ProtocolError(wire.NOT_STREAMING, "No reply is streaming", retryable=False)
        await services.stop_turn(room=self.room, user=self.user, message_id=message_id)

    async def handle_resume(self, event: events.ClientEvent) -> None:
        message = await services.ai_message(room=self.room, message_id=event.message_id)
        if message is None:
            raise wire.ProtocolError(wire.NOT_FOUND, "No such reply in this room")
        await self._follow(message.pk, after=event.after, announce=False)

    # --- the room's group --------------------------------------------------------------
    async def room_event(self, message: dict) -> None:
        await self.send_event(message["event"])

    async def room_turn(self, message: dict) -> None:
        await self._follow(message["message_id"], after=-1, announce=True)

    async def room_removed(self, message: dict) -> None:
        await self.close(code=CLOSE_FORBIDDEN)

    # --- presence ------------------------------------------------------------------------
    async def _keep_present(self) -> None:
        while True:
            await asyncio.sleep(settings.PRESENCE_HEARTBEAT_SECONDS)
            try:
                change = await presence.beat(
                    room_id=self.room.pk,
                    user_id=self.user.pk,
                    connection=self.connection_id,
                    name=self.person["username"],
                )
                await self._announce(change)
            except Exception:
                logger.warning("presence heartbeat failed room_id=%s", self.room.pk, exc_info=True)

    async def _announce(self, change: presence.Change) -> None:
        """Tell the room who arrived or left: this call's change, so exactly once."""
        layer = self.channel_layer
        if change.arrived:
            event = events.participant_joined(user=self.person, count=change.count)
            await layer.group_send(self.room_group, {"type": "room.event", "event": event})
        for user_id in change.left:
            name = await presence.name_of(self.room.pk, user_id)
            event = events.participant_left(
                user={"id": user_id, "username": name}, count=change.count
            )
            await layer.group_send(self.room_group, {"type": "room.event", "event": event})

    # --- the AI's turn -------------------------------------------------------------------
    async def _follow(self, message_id: int, *, after: int, announce: bool) -> None:
        # A follower of an earlier turn goes on to its end: its last events may
        # reach this process after the next turn has started.
        key = turn_follower(message_id)
        await self.stop_follower(key)
        self.start_follower(
            key, self._forward(message_id, after=after, announce=announce), message_id=message_id
        )

    async def _forward(self, message_id: int, *, after: int, announce: bool) -> None:
        if announce:
            await self.send_event(events.ai_typing(status=True, message_id=message_id))
        # With ROOM_FANOUT "group" the tokens come through the room's group instead.
        by_stream = settings.ROOM_FANOUT == "streams" or after >= 0
        try:
            async for batch in runs.follow(services.turn_key(message_id), after=after):
                tokens = [event for _, event in batch if event["type"] == "ai_token"]
                if tokens and by_stream:
                    await self.send_event(events.merge_tokens(tokens))
                last = batch[-1][1]
                if events.is_terminal(last):
                    await self.send_event(last)
        except StreamGone:
            # Finished a while ago, or its process died: the database answers.
            message = await services.ended_message(room=self.room, message_id=message_id)
            await self.send_event(services.stored_terminal_event(message))
        await self.send_event(events.ai_typing(status=False, message_id=message_id))
