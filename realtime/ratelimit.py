"""Rate limits: per user (shared across processes with Redis) and per connection."""

from __future__ import annotations

import time
from collections import deque

from django.conf import settings

from realtime.redis_clients import get_redis


class _MemoryCounter:
    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}

    async def hit(self, key: str, window_s: int) -> int:
        now = time.monotonic()
        count, expires = self._counts.get(key, (0, now + window_s))
        if now >= expires:
            count, expires = 0, now + window_s
        self._counts[key] = (count + 1, expires)
        if len(self._counts) > 10_000:
            self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        return count + 1


class _RedisCounter:
    def __init__(self, url: str) -> None:
        self._url = url

    async def hit(self, key: str, window_s: int) -> int:
        async with get_redis(self._url).pipeline(transaction=True) as pipe:
            pipe.incr(f"rt:rl:{key}")
            pipe.expire(f"rt:rl:{key}", window_s, nx=True)
            count, _ = await pipe.execute()
        return int(count)


_counter: _MemoryCounter | _RedisCounter | None = None


def _get_counter() -> _MemoryCounter | _RedisCounter:
    global _counter
    if _counter is None:
        _counter = _RedisCounter(settings.REDIS_URL) if settings.REDIS_URL else _MemoryCounter()
    return _counter


def reset() -> None:
    global _counter
    _counter = None


async def allow(scope: str, subject: str | int, *, limit: int, window_s: int = 60) -> bool:
    """Count one hit; False once `limit` hits happened in the current window."""
    if limit <= 0:
        return True
    window = int(time.time() // window_s)
    return await _get_counter().hit(f"{scope}:{subject}:{window}", window_s) <= limit


class FrameRateLimiter:
    """Per-connection sliding window: a client flooding one socket gets closed.

    In process on purpose: a socket lives on one process, and the check runs on
    every frame, so it must cost no round trip.
    """

    def __init__(self, *, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def allow(self, now: float | None = None) -> bool:
        """Count one frame; False once more than `limit` came within the window."""
        if self.limit <= 0:
            return True
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        return len(self._times) <= self.limit
