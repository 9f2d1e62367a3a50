"""The base of every WebSocket consumer: auth, limits, dispatch, followers.

`RealtimeConsumer` does the plumbing the way Channels' own consumers do
(`websocket_connect` calls an overridable `connect`), so an app's consumer is
short: it lists its client event types and writes one `handle_<type>` per
type. What every socket gets:
- accept, then close 4401 for an anonymous user (a close before accept would
  be an HTTP 403 and the client would never see the code), and close 4401
  later when the socket's credentials end (realtime/credentials.py);
- flood protection: more than `max_frames_per_10s()` frames (WS_MAX_FRAMES_PER_10S
  unless a socket says otherwise) in 10 s is an
  `error {code: too_many_frames}` then close 4429;
- frame validation (size, JSON, nesting, `type`) and dispatch by `type`; every
  refused frame is one `error` event and the socket stays open;
- binary frames go to `receive_binary` (refused unless overridden);
- follower tasks (forwarding a run's stream to the socket) whose failure
  reaches the client as an `error` and the log as a traceback;
- a `socket_id` on its log lines and a place in the open sockets gauge under
  its `route`;
- nothing is sent on a socket that has closed, and a send that races the
  peer's close is dropped quietly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from autobahn.exception import Disconnected
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from realtime import credentials, log_context, metrics, wire
from realtime.ratelimit import FrameRateLimiter

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY_FRAMES = 4429

# What a send raises when it races the peer's close: an OSError by the ASGI
# spec, autobahn's Disconnected under daphne. The disconnect event follows.
SOCKET_GONE = (OSError, Disconnected)


class RealtimeConsumer(AsyncWebsocketConsumer):
    """Subclass it: set `client_types`, write `handle_<type>(event)`, maybe `connect`."""

    # Client event types this socket accepts; `ping` is answered here.
    client_types: frozenset[str] = frozenset({"ping"})
    # Names the socket's route in metrics (open sockets by route).
    route: str = "ws"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        metrics.OPEN_SOCKETS.labels(route=cls.route)  # reported (as 0) before the first socket

    async def __call__(self, scope, receive, send) -> None:
        # Counted from the first event to the last, however the socket ends;
        # its log lines (and its followers') carry its id.
        log_context.bind(socket_id=log_context.new_id())
        opened_at = time.monotonic()
        try:
            with metrics.OPEN_SOCKETS.labels(route=self.route).track_inprogress():
                await super().__call__(scope, receive, send)
        finally:
            logger.info(
                "socket closed route=%s seconds=%.1f", self.route, time.monotonic() - opened_at
            )

    async def websocket_connect(self, message: dict) -> None:
        self.user = self.scope.get("user")
        self.closing = False
        self.followers: dict[Any, asyncio.Task] = {}
        self.frames = FrameRateLimiter(limit=self.max_frames_per_10s(), window_s=10)
        self.credential_groups: list[str] = []
        await self.accept()
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.credential_groups = credentials.groups_for(self.scope)
        for group in [*self.credential_groups, *self.groups]:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.connect()

    async def connect(self) -> None:
        """After auth: join groups, check access (close with 4403), send a first state."""

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        # Frames racing the close are ignored, and nothing more is sent.
        if self.closing:
            return
        self.closing = True
        await super().close(code=code, reason=reason)

    async def dispatch(self, message: dict) -> None:
        # Channels closes old database connections around every message; our
        # database work runs on realtime.db's pool, which does that per call.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict) -> None:
        self.closing = True
        await self.disconnect(message["code"])
        await self.stop_followers()
        for group in [*self.credential_groups, *self.groups]:
            await self.channel_layer.group_discard(group, self.channel_name)
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        """The socket is gone (followers still run): tell runs their reader left."""

    async def credentials_ended(self, message: dict) -> None:
        """Logout, password change, deactivation or a revoked token, on any process."""
        if credentials.closes(message, self.scope):
            await self.close(code=CLOSE_UNAUTHENTICATED)

    # --- frames -------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        if not self.frames.allow():
            # Abuse, not a mistake: say why, then close (documented in docs/protocol.md).
            await self.send_event(wire.error(wire.TOO_MANY_FRAMES, "Too many frames; slow down."))
            await self.close(code=CLOSE_TOO_MANY_FRAMES)
            return
        try:
            if text_data is None:
                await self.receive_binary(bytes_data or b"")
            else:
                data = wire.parse_frame(text_data, max_frame_bytes=self.max_frame_bytes())
                kind, event = self.parse_event(data)
                await getattr(self, f"handle_{kind}")(event)
        except wire.ProtocolError as exc:
            await self.send_event(wire.error_from(exc))
        except Exception:
            # A bug or a failing dependency: the log gets the traceback, the
            # client a clear error, and the socket stays usable.
            logger.exception("handling a frame failed route=%s", self.scope.get("path"))
            await self.send_event(
                wire.error(wire.INTERNAL_ERROR, "Something went wrong on our side; try again.")
            )

    def max_frame_bytes(self) -> int:
        return settings.WS_MAX_FRAME_BYTES

    def max_frames_per_10s(self) -> int:
        """The flood limit; a socket streaming audio sends far more frames than one typing."""
        return settings.WS_MAX_FRAMES_PER_10S

    def parse_event(self, data: dict) -> tuple[str, Any]:
        """The event type and what its handler gets (by default the frame itself)."""
        return wire.event_type(data, allowed=self.client_types), data

    async def receive_binary(self, data: bytes) -> None:
        """A binary frame; sockets that take audio override this."""
        raise wire.ProtocolError(wire.INVALID_EVENT, "Binary frames are not accepted here")

    async def handle_ping(self, event: Any) -> None:
        await self.send_event({"type": "pong"})

    async def send_event(self, event: dict) -> None:
        if self.closing:
            return
        try:
            # Straight to the server's send: Channels' two wrapper layers cost a
            # noticeable share of a streamed token's CPU, for nothing here.
            await self.base_send({"type": "websocket.send", "text": wire.dumps(event)})
        except SOCKET_GONE:
            self.closing = True

    async def send_binary(self, data: bytes) -> None:
        """A binary frame (audio), with the same guards as `send_event`."""
        if self.closing:
            return
        try:
            await self.base_send({"type": "websocket.send", "bytes": data})
        except SOCKET_GONE:
            self.closing = True

    # --- followers -------------------------------------------------------------------
    def start_follower(self, key: Any, work: Awaitable[None], **error_fields: Any) -> None:
        """Run `work` (forwarding a stream) as this socket's follower `key`.

        If it fails, the log gets the traceback and the client an `error`
        carrying `error_fields` (e.g. the message id it was following).
        """
        # Finished followers are dropped here: a long-lived socket follows many.
        self.followers = {k: task for k, task in self.followers.items() if not task.done()}
        self.followers[key] = asyncio.ensure_future(self._guard(work, error_fields))

    def is_following(self, key: Any) -> bool:
        task = self.followers.get(key)
        return task is not None and not task.done()

    async def stop_follower(self, key: Any) -> bool:
        """Cancel follower `key`; True if it was still running."""
        task = self.followers.pop(key, None)
        if task is None or task.done():
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True

    async def stop_followers(self) -> None:
        for key in list(self.followers):
            await self.stop_follower(key)

    async def _guard(self, work: Awaitable[None], error_fields: dict) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("follower failed %s", error_fields)
            await self.send_event(
                wire.error(
                    wire.INTERNAL_ERROR,
                    "Following this stream failed; resume to try again.",
                    **error_fields,
                )
            )
