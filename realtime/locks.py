"""Leases: a lock that expires unless its holder renews it, across processes with Redis.

"One AI turn per room at a time, whichever process runs it" needs a lock
that a killed process cannot keep: a lease of LEASE_TTL_SECONDS, renewed
every third of that while its holder lives (`Lease.keep`). In process
(embedded mode) the same rules hold in memory. Only the holder (its token)
can renew or release a lease.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
import time

from django.conf import settings

from realtime.redis_clients import get_redis

logger = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class _MemoryLeases:
    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}

    def _holder(self, key: str) -> str | None:
        held = self._held.get(key)
        if held is None or held[1] <= time.monotonic():
            self._held.pop(key, None)
            return None
        return held[0]

    async def acquire(self, key: str, token: str, ttl_s: float) -> bool:
        if self._holder(key) is not None:
            return False
        self._held[key] = (token, time.monotonic() + ttl_s)
        return True

    async def renew(self, key: str, token: str, ttl_s: float) -> bool:
        if self._holder(key) != token:
            return False
        self._held[key] = (token, time.monotonic() + ttl_s)
        return True

    async def release(self, key: str, token: str) -> None:
        if self._holder(key) == token:
            del self._held[key]


class _RedisLeases:
    def __init__(self, url: str) -> None:
        self._url = url

    async def acquire(self, key: str, token: str, ttl_s: float) -> bool:
        return bool(await get_redis(self._url).set(key, token, px=int(ttl_s * 1000), nx=True))

    async def renew(self, key: str, token: str, ttl_s: float) -> bool:
        redis = get_redis(self._url)
        return bool(await redis.eval(_RENEW, 1, key, token, int(ttl_s * 1000)))

    async def release(self, key: str, token: str) -> None:
        await get_redis(self._url).eval(_RELEASE, 1, key, token)


_memory = _MemoryLeases()


def _backend() -> _MemoryLeases | _RedisLeases:
    return _RedisLeases(settings.REDIS_URL) if settings.REDIS_URL else _memory


class Lease:
    """A held lease; `keep()` renews it in the background until `release()`."""

    def __init__(self, key: str, token: str, ttl_s: float) -> None:
        self.key = key
        self.token = token
        self.ttl_s = ttl_s
        self.lost = False
        self._keeper: asyncio.Task | None = None

    def keep(self) -> None:
        """Renew every third of the TTL; `lost` turns true if another took the key."""
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(
                self._renew_forever(), name=f"lease:{self.key}", context=contextvars.Context()
            )

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                if not await _backend().renew(self.key, self.token, self.ttl_s):
                    self.lost = True
                    logger.error("lease lost key=%s", self.key)
                    return
            except Exception:
                # Redis down for a moment: the lease may still be ours; try again.
                logger.warning("lease renewal failed key=%s", self.key, exc_info=True)

    async def release(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None
        await _backend().release(self.key, self.token)


async def try_acquire(key: str, *, ttl_s: float | None = None) -> Lease | None:
    """The lease on `key` if nobody holds it (or its holder's lease expired), else None."""
    ttl_s = settings.LEASE_TTL_SECONDS if ttl_s is None else ttl_s
    token = secrets.token_hex(16)
    if await _backend().acquire(key, token, ttl_s):
        return Lease(key, token, ttl_s)
    return None
