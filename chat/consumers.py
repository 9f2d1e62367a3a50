"""The chat WebSocket: parse, authorize, call chat.services, forward events."""

from __future__ import annotations

import asyncio
import logging

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat import services
from realtime_site import events
from realtime_site.ratelimit import FrameRateLimiter

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_MANY_FRAMES = 4429


class ChatConsumer(AsyncWebsocketConsumer):
    """One socket follows at most one reply at a time; the reply outlives the socket."""

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.follower: asyncio.Task | None = None
        self.following: int | None = None
        self.frames = FrameRateLimiter(limit=settings.WS_MAX_FRAMES_PER_10S, window_s=10)
        self.closing = False
        # Accept first: a close before accept becomes an HTTP 403 and the code is lost.
        await self.accept()
        if self.user is None or not self.user.is_authenticated:
            self.closing = True  # frames racing the close are ignored
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def disconnect(self, code: int) -> None:
        await self._stop_following()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        if not self.frames.allow():
            # Abuse, not a mistake: say why, then close (documented in docs/protocol.md).
            self.closing = True
            await self.send_event(
                events.error(events.TOO_MANY_FRAMES, "Too many frames; slow down.")
            )
            await self.close(code=CLOSE_TOO_MANY_FRAMES)
            return
        try:
            event = events.parse_client_event(
                text_data,
                max_frame_bytes=settings.CHAT_MAX_FRAME_BYTES,
                max_content_chars=settings.CHAT_MAX_MESSAGE_CHARS,
            )
            await getattr(self, f"handle_{event.type}")(event)
        except events.ProtocolError as exc:
            await self.send_event(events.error_from(exc))

    async def send_event(self, event: dict) -> None:
        await self.send(text_data=events.dumps(event))

    # --- client events ------------------------------------------------------------
    async def handle_message(self, event: events.ClientEvent) -> None:
        if self._is_following():
            raise events.ProtocolError(events.BUSY, services.BUSY_MESSAGE)
        handle = await services.start_reply(
            user=self.user, content=event.content, conversation_id=event.conversation_id
        )
        await self.send_event(
            events.ack(
                message_id=handle.message_id,
                conversation_id=handle.conversation_id,
                user_message_id=handle.user_message_id,
            )
        )
        await self.send_event(events.progress("thinking", message_id=handle.message_id))
        self._follow(handle.message_id, after=-1)

    async def handle_cancel(self, event: events.ClientEvent) -> None:
        message_id = event.message_id or self.following
        if message_id is None:
            raise events.ProtocolError("not_streaming", "No reply is streaming", retryable=False)
        await services.cancel_reply(user=self.user, message_id=message_id)

    async def handle_resume(self, event: events.ClientEvent) -> None:
        if event.message_id is None:
            raise events.ProtocolError(events.INVALID_EVENT, "'resume' needs a 'message_id'")
        await services.get_own_reply(user=self.user, message_id=event.message_id)
        await self._stop_following()
        await services.attach_reader(event.message_id)
        self._follow(event.message_id, after=event.after)

    async def handle_ping(self, event: events.ClientEvent) -> None:
        await self.send_event({"type": "pong"})

    # --- following a reply -----------------------------------------------------------
    def _is_following(self) -> bool:
        return self.follower is not None and not self.follower.done()

    def _follow(self, message_id: int, *, after: int) -> None:
        self.following = message_id
        self.follower = asyncio.create_task(self._forward(message_id, after))

    async def _forward(self, message_id: int, after: int) -> None:
        async for _, event in services.follow_reply(message_id, after=after):
            await self.send_event(event)

    async def _stop_following(self) -> None:
        """Stop forwarding; tell the generator one reader left if it still runs."""
        if self._is_following():
            self.follower.cancel()
            await asyncio.gather(self.follower, return_exceptions=True)
            await services.detach_reader(self.following)
        self.follower = None
        self.following = None
