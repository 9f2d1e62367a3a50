"""The chat WebSocket: parse, authorize, call chat.services, forward a reply's events.

Every chat socket of a user joins the user's group (chat.events.user_group), so
what one tab or device does (a message, a retry, a rename, a delete) reaches
the others, on every process.
"""

from __future__ import annotations

import time

from django.conf import settings

from chat import events, services
from realtime import wire
from realtime.consumers import RealtimeConsumer

REPLY = "reply"  # the one follower a chat socket has
# channels_redis forgets a group's members after its `group_expiry` (a day by
# default): a socket open that long joins its user's group again on a ping.
USER_GROUP_REJOIN_SECONDS = 3600


class ChatConsumer(RealtimeConsumer):
    """One socket follows at most one reply at a time; the reply outlives the socket."""

    client_types = events.CLIENT_TYPES
    route = "chat"
    following: int | None = None
    user_group: str | None = None

    async def connect(self) -> None:
        self.user_group = events.user_group(self.user.pk)
        await self._join_user_group()

    async def _join_user_group(self) -> None:
        self.joined_at = time.monotonic()
        await self.channel_layer.group_add(self.user_group, self.channel_name)

    async def handle_ping(self, event: events.ClientEvent) -> None:
        await super().handle_ping(event)
        if time.monotonic() - self.joined_at > USER_GROUP_REJOIN_SECONDS:
            await self._join_user_group()

    async def disconnect(self, code: int) -> None:
        await self._stop_following()
        if self.user_group is not None:
            await self.channel_layer.group_discard(self.user_group, self.channel_name)

    async def chat_event(self, message: dict) -> None:
        """A change to the user's conversations; the socket that made it has its own answer."""
        if message["origin"] != self.channel_name:
            await self.send_event(message["event"])

    def parse_event(self, data: dict) -> tuple[str, events.ClientEvent]:
        event = events.client_event(data, max_content_chars=settings.CHAT_MAX_MESSAGE_CHARS)
        return event.type, event

    # --- client events ------------------------------------------------------------
    async def handle_message(self, event: events.ClientEvent) -> None:
        if self.is_following(REPLY):
            raise wire.ProtocolError(wire.BUSY, services.BUSY_MESSAGE)
        handle = await services.start_reply(
            user=self.user,
            content=event.content,
            conversation_id=event.conversation_id,
            origin=self.channel_name,
        )
        await self._started(handle)

    async def handle_retry(self, event: events.ClientEvent) -> None:
        if event.message_id is None:
            raise wire.ProtocolError(wire.INVALID_EVENT, "'retry' needs a 'message_id'")
        if self.is_following(REPLY):
            raise wire.ProtocolError(wire.BUSY, services.BUSY_MESSAGE)
        handle = await services.retry_reply(
            user=self.user, message_id=event.message_id, origin=self.channel_name
        )
        await self._started(handle, replaces=event.message_id)

    async def handle_regenerate(self, event: events.ClientEvent) -> None:
        message_id = self._target(event)
        handle = await services.regenerate_reply(
            user=self.user, message_id=message_id, origin=self.channel_name
        )
        await self._started(handle, version_of=message_id)

    async def handle_edit(self, event: events.ClientEvent) -> None:
        message_id = self._target(event)
        handle = await services.edit_message(
            user=self.user, message_id=message_id, content=event.content, origin=self.channel_name
        )
        await self._started(handle, version_of=message_id)

    async def handle_switch(self, event: events.ClientEvent) -> None:
        if event.message_id is None:
            raise wire.ProtocolError(wire.INVALID_EVENT, "'switch' needs a 'message_id'")
        await self.send_event(
            await services.switch_version(
                user=self.user, message_id=event.message_id, origin=self.channel_name
            )
        )

    def _target(self, event: events.ClientEvent) -> int:
        """The message a regenerate or an edit forks from; busy while following a reply."""
        if event.message_id is None:
            raise wire.ProtocolError(wire.INVALID_EVENT, f"'{event.type}' needs a 'message_id'")
        if self.is_following(REPLY):
            raise wire.ProtocolError(wire.BUSY, services.BUSY_MESSAGE)
        return event.message_id

    async def _started(
        self,
        handle: services.ReplyHandle,
        *,
        replaces: int | None = None,
        version_of: int | None = None,
    ) -> None:
        await self.send_event(
            events.ack(
                message_id=handle.message_id,
                conversation_id=handle.conversation_id,
                user_message_id=handle.user_message_id,
                replaces=replaces,
                version_of=version_of,
                versions=list(handle.versions) if version_of is not None else None,
            )
        )
        await self.send_event(events.progress("thinking", message_id=handle.message_id))
        self._follow(handle.message_id, after=-1)

    async def handle_cancel(self, event: events.ClientEvent) -> None:
        message_id = event.message_id or self.following
        if message_id is None:
            raise wire.ProtocolError(wire.NOT_STREAMING, "No reply is streaming", retryable=False)
        await services.cancel_reply(user=self.user, message_id=message_id)

    async def handle_resume(self, event: events.ClientEvent) -> None:
        if event.message_id is None:
            raise wire.ProtocolError(wire.INVALID_EVENT, "'resume' needs a 'message_id'")
        await services.get_own_reply(user=self.user, message_id=event.message_id)
        await self._stop_following()
        await services.attach_reader(event.message_id)
        self._follow(event.message_id, after=event.after)

    # --- following a reply -----------------------------------------------------------
    def _follow(self, message_id: int, *, after: int) -> None:
        self.following = message_id
        self.start_follower(REPLY, self._forward(message_id, after), message_id=message_id)

    async def _forward(self, message_id: int, after: int) -> None:
        async for _, event in services.follow_reply(message_id, after=after):
            await self.send_event(event)

    async def _stop_following(self) -> None:
        """Stop forwarding; tell the run one reader left if it still runs."""
        if await self.stop_follower(REPLY):
            await services.detach_reader(self.following)
        self.following = None
