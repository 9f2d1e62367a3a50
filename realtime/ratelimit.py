"""Rate limits: per user (shared across processes with Redis) and per connection.

Two kinds of shared counters: `allow` counts hits in fixed windows (messages
per minute); the failure counters count failed attempts (logins) that lock a
subject out until `window_s` passed without a new failure, and can be read
without counting.
"""

from __future__ import annotations

import math
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
        self._prune(now)
        return count + 1

    async def fail(self, key: str, window_s: int) -> int:
        now = time.monotonic()
        count, expires = self._counts.get(key, (0, now))
        count = count + 1 if now < expires else 1
        self._counts[key] = (count, now + window_s)
        self._prune(now)
        return count

    async def peek(self, key: str) -> tuple[int, float]:
        count, expires = self._counts.get(key, (0, 0.0))
        left = expires - time.monotonic()
        return (count, left) if left > 0 else (0, 0.0)

    async def clear(self, key: str) -> None:
        self._counts.pop(key, None)

    def _prune(self, now: float) -> None:
        if len(self._counts) > 10_000:
            self._counts = {k: v for k, v in self._counts.items() if v[1] > now}


class _RedisCounter:
    def __init__(self, url: str) -> None:
        self._url = url

    async def hit(self, key: str, window_s: int) -> int:
        async with get_redis(self._url).pipeline(transaction=True) as pipe:
            pipe.incr(f"rt:rl:{key}")
            pipe.expire(f"rt:rl:{key}", window_s, nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def fail(self, key: str, window_s: int) -> int:
        async with get_redis(self._url).pipeline(transaction=True) as pipe:
            pipe.incr(f"rt:rl:{key}")
            pipe.expire(f"rt:rl:{key}", window_s)
            count, _ = await pipe.execute()
        return int(count)

    async def peek(self, key: str) -> tuple[int, float]:
        async with get_redis(self._url).pipeline(transaction=False) as pipe:
            pipe.get(f"rt:rl:{key}")
            pipe.pttl(f"rt:rl:{key}")
            count, left_ms = await pipe.execute()
        if count is None or left_ms < 0:
            return 0, 0.0
        return int(count), left_ms / 1000

    async def clear(self, key: str) -> None:
        await get_redis(self._url).delete(f"rt:rl:{key}")


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


def window_retry_after_s(window_s: int = 60) -> int:
    """Whole seconds until the current `allow` window ends (for a Retry-After header)."""
    return max(1, math.ceil(window_s - time.time() % window_s))


async def record_failure(scope: str, subject: str, *, window_s: int) -> int:
    """Count one failure; the count lapses `window_s` after the latest one. Returns it."""
    return await _get_counter().fail(f"fail:{scope}:{subject}", window_s)


async def lockout_s(scope: str, subject: str, *, limit: int) -> int:
    """Whole seconds `subject` stays locked (`limit` failures or more), else 0; counts nothing."""
    if limit <= 0:
        return 0
    count, left = await _get_counter().peek(f"fail:{scope}:{subject}")
    return max(1, math.ceil(left)) if count >= limit else 0


async def clear_failures(scope: str, subject: str) -> None:
    await _get_counter().clear(f"fail:{scope}:{subject}")


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
