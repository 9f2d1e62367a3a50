"""channels_redis's Redis layer, with process-local receives that a cancel cannot lose.

Upstream, the sockets of a process take turns popping the process's one
queue in Redis (`specific.<process>!`): whichever `receive()` holds the lock
pops for all of them. Cancelling that receive, as Channels does for every
socket that closes, can lose a message already popped for another socket
(django/channels_redis#366). Here one reader task per event loop pops and
routes, and is stopped by a message, never cancelled, while its loop runs; a
`receive()` waits only on its own channel's buffer, so cancelling it loses
nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from channels.layers import get_channel_layer
from channels_redis import core

logger = logging.getLogger(__name__)

READ_RETRY_SECONDS = 1.0
STOP_SECONDS = 5.0


class RedisChannelLayer(core.RedisChannelLayer):
    """`channels_redis.core.RedisChannelLayer` with one reader per loop, stopped by message."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._readers: dict[asyncio.AbstractEventLoop, tuple[asyncio.Task, str]] = {}
        # Each reader's stop requests come on a channel of its own, so one that
        # came too late for its reader cannot stop the next loop's.
        self._stop_prefix = f"specific.{self.client_prefix}!reader-stop-"

    async def receive(self, channel: str) -> dict:
        if "!" not in channel:
            return await super().receive(channel)
        assert self.require_valid_channel_name(channel)
        self._ensure_reader(self.non_local_name(channel))
        queue = self.receive_buffer[channel]
        try:
            return await queue.get()
        finally:
            # An empty buffer goes (a closed socket leaves none behind); the
            # reader makes a new one for the channel's next message.
            if queue.empty() and self.receive_buffer.get(channel) is queue:
                del self.receive_buffer[channel]

    async def stop_reader(self, timeout_s: float = STOP_SECONDS) -> None:
        """Stop this loop's reader by a message, before the loop closes (tests do).

        A cancel can land where redis-py does not pass it on, leaving the reader
        blocked on Redis; the message wakes it instead. It is cancelled only if
        the message does not reach it in time.
        """
        reader, stop_channel = self._readers.pop(asyncio.get_running_loop(), (None, ""))
        if reader is not None:
            await stop_by_message(
                self,
                reader,
                stop_channel,
                {"type": "layer.reader.stop"},
                timeout_s=timeout_s,
                what="the channel layer reader",
            )

    def _ensure_reader(self, process_channel: str) -> None:
        loop = asyncio.get_running_loop()
        reader, _ = self._readers.get(loop, (None, ""))
        if reader is None or reader.done():
            stop_channel = self._stop_prefix + uuid.uuid4().hex
            reader = loop.create_task(
                self._read(process_channel, stop_channel), name="channel-layer-reader"
            )
            self._readers[loop] = (reader, stop_channel)

    async def _read(self, process_channel: str, stop_channel: str) -> None:
        """Pop the process's queue until told to stop; hand out each message."""
        while True:
            try:
                channels, message = await self.receive_single(process_channel)
            except Exception:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # redis-py can turn a cancel into a closed connection's error.
                    raise asyncio.CancelledError from None
                # Redis away: the sockets wait, and get their messages once it is back.
                logger.warning("channel layer read failed; retrying", exc_info=True)
                await asyncio.sleep(READ_RETRY_SECONDS)
                continue
            for name in channels if isinstance(channels, list) else [channels]:
                if name == stop_channel:
                    return
                if not name.startswith(self._stop_prefix):  # an earlier reader's
                    self.receive_buffer[name].put_nowait(message)


async def stop_by_message(
    layer, task: asyncio.Task, channel: str, message: dict, *, timeout_s: float, what: str
) -> None:
    """Send `message` to `channel` and wait for `task` to end on it; cancel it only if
    it has not within `timeout_s`.

    For tasks that receive from the layer: cancelling a receive is what loses
    messages with channels_redis's own layer (see the module docstring).
    """
    if task.done():
        return
    try:
        async with asyncio.timeout(timeout_s):
            await layer.send(channel, message)
            await asyncio.shield(task)
    except Exception:
        logger.warning("%s did not stop by message; cancelling it", what)
        task.cancel()


async def stop_reader() -> None:
    """Stop the default layer's reader on this loop, if it has one (process shutdown)."""
    stop = getattr(get_channel_layer(), "stop_reader", None)
    if stop is not None:
        await stop()
