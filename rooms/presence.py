"""Who is in a room: one answer for every process, from Redis (or memory when embedded).

Every open socket of a room is a **connection** with an expiry that its
socket renews every PRESENCE_HEARTBEAT_SECONDS; a person is present while
they have at least one live connection. So several tabs count once, and the
connections of a killed process expire within PRESENCE_TTL_SECONDS. Each
change reports who arrived or left, computed atomically (a Lua script in
Redis), so exactly one socket, on one process, announces each arrival and
departure. Any call prunes expired connections first, and reports the people
they took away.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.conf import settings

from realtime.redis_clients import get_redis


@dataclass
class Change:
    """What one call changed: people who arrived or left, and how many are present."""

    arrived: bool = False
    left: list[int] = field(default_factory=list)
    count: int = 0


# KEYS: connections (zset member "user:conn" -> expiry ms), people (hash user -> live
# connections), names (hash user -> display name).
# ARGV: now ms, then per op: "join"|"beat"|"leave", user, connection, expiry ms, name.
_SCRIPT = """
local now = tonumber(ARGV[1])
local op, user, member = ARGV[2], ARGV[3], ARGV[3] .. ':' .. ARGV[4]
local left = {}
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('ZREM', KEYS[1], gone)
  local who = string.match(gone, '^([^:]+):')
  if redis.call('HINCRBY', KEYS[2], who, -1) <= 0 then
    redis.call('HDEL', KEYS[2], who)
    table.insert(left, who)
  end
end
local arrived = 0
if op == 'join' or op == 'beat' then
  local added = redis.call('ZADD', KEYS[1], ARGV[5], member)
  if added == 1 then
    if redis.call('HINCRBY', KEYS[2], user, 1) == 1 then arrived = 1 end
    redis.call('HSET', KEYS[3], user, ARGV[6])
  end
elseif op == 'leave' then
  if redis.call('ZREM', KEYS[1], member) == 1 then
    if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
      redis.call('HDEL', KEYS[2], user)
      table.insert(left, user)
    end
  end
end
local ttl = math.ceil(tonumber(ARGV[7]) / 1000) * 4
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
return {arrived, redis.call('HLEN', KEYS[2]), left}
"""


class _MemoryPresence:
    def __init__(self) -> None:
        self._connections: dict[int, dict[tuple[int, str], float]] = {}
        self.names: dict[int, dict[int, str]] = {}

    def change(
        self, op: str, room_id: int, user_id: int, connection: str, name: str, ttl_s: float
    ) -> Change:
        now = time.monotonic()
        connections = self._connections.setdefault(room_id, {})
        before = {user for user, _ in connections}
        for key in [key for key, expiry in connections.items() if expiry <= now]:
            del connections[key]
        if op in ("join", "beat"):
            connections[(user_id, connection)] = now + ttl_s
            self.names.setdefault(room_id, {})[user_id] = name
        else:
            connections.pop((user_id, connection), None)
        after = {user for user, _ in connections}
        return Change(
            arrived=user_id in after and user_id not in before,
            left=sorted(before - after),
            count=len(after),
        )

    def people(self, room_id: int) -> list[tuple[int, str]]:
        now = time.monotonic()
        users = {u for (u, _), expiry in self._connections.get(room_id, {}).items() if expiry > now}
        names = self.names.get(room_id, {})
        return sorted((user, names.get(user, "")) for user in users)


_memory = _MemoryPresence()


def _keys(room_id: int) -> list[str]:
    return [f"rt:presence:{room_id}:{part}" for part in ("connections", "people", "names")]


async def _change(op: str, *, room_id: int, user_id: int, connection: str, name: str) -> Change:
    ttl_s = settings.PRESENCE_TTL_SECONDS
    if not settings.REDIS_URL:
        return _memory.change(op, room_id, user_id, connection, name, ttl_s)
    now_ms = int(time.time() * 1000)
    arrived, count, left = await get_redis(settings.REDIS_URL).eval(
        _SCRIPT,
        3,
        *_keys(room_id),
        now_ms,
        op,
        user_id,
        connection,
        now_ms + int(ttl_s * 1000),
        name,
        int(ttl_s * 1000),
    )
    return Change(arrived=bool(arrived), left=[int(user) for user in left], count=int(count))


async def join(*, room_id: int, user_id: int, connection: str, name: str) -> Change:
    """A socket entered; `arrived` if it is its person's first live connection."""
    return await _change("join", room_id=room_id, user_id=user_id, connection=connection, name=name)


async def beat(*, room_id: int, user_id: int, connection: str, name: str) -> Change:
    """A socket is still here (and re-enters if its entry had expired meanwhile)."""
    return await _change("beat", room_id=room_id, user_id=user_id, connection=connection, name=name)


async def leave(*, room_id: int, user_id: int, connection: str) -> Change:
    """A socket left; its person is in `left` if it was their last connection."""
    return await _change("leave", room_id=room_id, user_id=user_id, connection=connection, name="")


async def people(room_id: int) -> list[dict]:
    """Everyone present, as {id, username}, by id."""
    if not settings.REDIS_URL:
        return [{"id": user, "username": name} for user, name in _memory.people(room_id)]
    redis = get_redis(settings.REDIS_URL)
    connections_key, people_key, names_key = _keys(room_id)
    users = sorted(int(user) for user in await redis.hkeys(people_key))
    names = await redis.hmget(names_key, [str(user) for user in users]) if users else []
    return [{"id": user, "username": name or ""} for user, name in zip(users, names, strict=True)]


async def name_of(room_id: int, user_id: int) -> str:
    if not settings.REDIS_URL:
        return _memory.names.get(room_id, {}).get(user_id, "")
    return await get_redis(settings.REDIS_URL).hget(_keys(room_id)[2], str(user_id)) or ""


def reset() -> None:
    """Forget in-memory presence (tests)."""
    _memory._connections.clear()
    _memory.names.clear()
