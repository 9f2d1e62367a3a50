"""The process's Redis clients (reply streams, rate limits): one per event loop and pool.

redis.asyncio pools are bound to the loop that first used them, so each running
loop gets its own. They are `BlockingConnectionPool`s: when all
REDIS_MAX_CONNECTIONS connections are busy a command waits for one (up to
REDIS_POOL_TIMEOUT_SECONDS) instead of failing at once with
MaxConnectionsError, as redis-py's default pool does.
"""

from __future__ import annotations

import asyncio

from django.conf import settings

# Short commands: stream writes, rate limits, lookups.
COMMANDS = "commands"
# XREAD BLOCK: a crowd of parked readers must not starve the writes.
BLOCKING_READS = "blocking-reads"

# Longer than any blocking read (XREAD BLOCK 2 s): redis-py 8's default of 5 s is
# too close, and None would hang on a dead server.
SOCKET_TIMEOUT_SECONDS = 10

_clients: dict[asyncio.AbstractEventLoop, dict[tuple[str, str], object]] = {}


def get_redis(url: str, *, pool: str = COMMANDS):
    """The client for `url` on the running loop (decoded responses)."""
    import redis.asyncio as aioredis

    loop = asyncio.get_running_loop()
    clients = _clients.get(loop)
    if clients is None:
        for closed in [other for other in _clients if other.is_closed()]:
            del _clients[closed]
        clients = _clients[loop] = {}
    client = clients.get((url, pool))
    if client is None:
        connections = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            timeout=settings.REDIS_POOL_TIMEOUT_SECONDS,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            decode_responses=True,
        )
        client = clients[(url, pool)] = aioredis.Redis.from_pool(connections)
    return client
