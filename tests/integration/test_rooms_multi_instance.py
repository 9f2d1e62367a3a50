"""Rooms across two daphne processes sharing PostgreSQL and Redis, as behind a load balancer.

Members of one room are connected to different processes; they must see the
same room: the same messages in the same order, the same participants, the
same AI stream, one AI turn at a time, and a room that survives a killed process.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import NamedTuple

import psycopg
import pytest
import redis
from websockets.sync.client import ClientConnection, connect

from tests.support import processes, services

PG_ADMIN_URL = services.PG_ADMIN_URL
DB_NAME = services.pg_database("realtime_rooms_test")
REDIS_URL = services.redis_url("cluster")
SLOW_MODEL = "fakeai:ttft=50,tps=30,tokens=60"
LEASE_TTL_SECONDS = 3


class RoomCluster(NamedTuple):
    first: str
    second: str
    env: dict
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def room_cluster(fakeai_url) -> Iterator[RoomCluster]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DB_NAME}")
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = processes.site_env(
        fakeai_url=fakeai_url,
        database_url=f"{services.PG_URL}/{DB_NAME}",
        extra={
            "REDIS_URL": REDIS_URL,
            "OPENAI_MODEL": SLOW_MODEL,
            "LEASE_TTL_SECONDS": str(LEASE_TTL_SECONDS),
            "PRESENCE_TTL_SECONDS": "3",
            "PRESENCE_HEARTBEAT_SECONDS": "1",
            "ROOM_RATE_LIMIT_PER_MINUTE": "1000",
            "REPLY_PERSIST_INTERVAL_MS": "100",
            "DB_POOL_MAX_SIZE": "6",
        },
    )
    processes.manage("migrate", "--noinput", env=env)
    tokens = {name: processes.create_user_with_token(name, env=env) for name in ("ana", "bo")}
    with processes.daphne(env=env) as first, processes.daphne(env=env) as second:
        yield RoomCluster(first, second, env, tokens)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


_rooms = iter(range(1, 10_000))


def new_room(cluster: RoomCluster, **options) -> str:
    """A public room owned by ana; its slug."""
    name = f"room {next(_rooms)}"
    code = (
        "from django.contrib.auth import get_user_model; from rooms import services; "
        "owner = get_user_model().objects.get(username='ana'); "
        f"print(services.create_room(owner=owner, name={name!r}, is_private=False, "
        f"**{options!r}).slug)"
    )
    return processes.manage("shell", "--no-imports", "-c", code, env=cluster.env).split()[-1]


def enter(url: str, slug: str, token: str) -> tuple[ClientConnection, dict]:
    ws = connect(
        url.replace("http://", "ws://") + f"/ws/room/{slug}/",
        additional_headers={"Authorization": f"Bearer {token}"},
    )
    state = recv(ws)
    assert state["type"] == "room_state"
    return ws, state


def recv(ws: ClientConnection, timeout: float = 20) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def until(
    ws: ClientConnection,
    kind: str,
    *,
    user: str | None = None,
    message_id: int | None = None,
    timeout: float = 20,
) -> list[dict]:
    """Events up to and including the first `kind` about `user` or `message_id` if given."""
    received = []
    while True:
        received.append(recv(ws, timeout=timeout))
        event = received[-1]
        if (
            event["type"] == kind
            and (user is None or event.get("user", {}).get("username") == user)
            and (message_id is None or event.get("message_id") == message_id)
        ):
            return received


def ai_text(events: list[dict]) -> str:
    """The AI reply as a client rebuilds it: token text in index order, no repeats."""
    seen, text = -1, []
    for event in events:
        if event["type"] == "ai_token" and event["index"] > seen:
            text.append(event["content"])
            seen = event["index"]
    return "".join(text)


def test_members_on_two_processes_see_the_same_messages_and_stream(room_cluster):
    slug = new_room(room_cluster)
    ana, _ = enter(room_cluster.first, slug, room_cluster.tokens["ana"])
    bo, _ = enter(room_cluster.second, slug, room_cluster.tokens["bo"])
    until(ana, "participant_joined", user="bo")

    ana.send(json.dumps({"type": "message", "content": "from process one"}))
    bo.send(json.dumps({"type": "message", "content": "from process two"}))
    seen = {}
    for name, ws in (("ana", ana), ("bo", bo)):
        events = until(ws, "ai_complete")
        said = [e["content"] for e in events if e["type"] == "user_message"]
        seen[name] = (said, ai_text(events), events[-1]["content"])
    assert seen["ana"][0] == seen["bo"][0] and len(seen["ana"][0]) == 2
    for _said, streamed, complete in seen.values():
        assert streamed == complete
    assert seen["ana"][2] == seen["bo"][2]
    ana.close()
    bo.close()


def test_presence_agrees_on_both_processes(room_cluster):
    slug = new_room(room_cluster)
    ana, _ = enter(room_cluster.first, slug, room_cluster.tokens["ana"])
    bo, state = enter(room_cluster.second, slug, room_cluster.tokens["bo"])
    assert [p["username"] for p in state["participants"]] == ["ana", "bo"]
    joined = until(ana, "participant_joined", user="bo")[-1]
    assert joined["count"] == 2
    bo_again, state = enter(room_cluster.first, slug, room_cluster.tokens["bo"])
    assert [p["username"] for p in state["participants"]] == ["ana", "bo"]
    bo.close()
    bo_again.close()
    left = until(ana, "participant_left", user="bo")[-1]
    assert left["count"] == 1
    ana.close()


def test_messages_at_the_same_instant_on_both_processes_get_one_turn_at_a_time(room_cluster):
    slug = new_room(room_cluster)
    ana, _ = enter(room_cluster.first, slug, room_cluster.tokens["ana"])
    bo, _ = enter(room_cluster.second, slug, room_cluster.tokens["bo"])
    until(ana, "participant_joined", user="bo")
    ana.send(json.dumps({"type": "message", "content": "same instant A"}))
    bo.send(json.dumps({"type": "message", "content": "same instant B"}))

    # Turns never overlap: each ai_typing true comes after the previous turn's end,
    # and they go on until both messages are answered (together, or one per turn).
    turns, open_turn = [], None
    while not turns or waiting_for_the_ai(slug):
        event = recv(ana, timeout=30)
        if event["type"] == "ai_typing" and event["status"]:
            assert open_turn is None, "a turn started before the previous one ended"
            open_turn = event["message_id"]
        elif event["type"] == "ai_complete":
            assert event["message_id"] == open_turn
            turns.append(event["message_id"])
            open_turn = None
    assert 1 <= len(turns) <= 2
    ana.close()
    bo.close()


def waiting_for_the_ai(slug: str) -> bool:
    """A person's message in the room is unanswered, or a reply is streaming."""
    with psycopg.connect(f"{services.PG_URL}/{DB_NAME}") as db:
        return db.execute(
            "SELECT EXISTS (SELECT 1 FROM rooms_roommessage m JOIN rooms_room r"
            " ON r.id = m.room_id WHERE r.slug = %s AND ((m.role = 'user'"
            " AND m.answered_by_id IS NULL) OR m.status = 'streaming'))",
            (slug,),
        ).fetchone()[0]


def test_a_killed_process_frees_the_room_and_the_partial_reply_stays(room_cluster):
    slug = new_room(room_cluster)
    with processes.daphne(env=room_cluster.env) as doomed:
        ana, _ = enter(doomed, slug, room_cluster.tokens["ana"])
        bo, _ = enter(room_cluster.second, slug, room_cluster.tokens["bo"])
        until(ana, "participant_joined", user="bo")
        ana.send(json.dumps({"type": "message", "content": "before the crash"}))
        tokens = [e for e in until(bo, "ai_token") if e["type"] == "ai_token"]
        while len(tokens) < 8:
            tokens.append(recv(bo))
        os.kill(processes.pid_of(doomed), signal.SIGKILL)
        crashed_turn = tokens[0]["message_id"]

        # Members on the surviving process see ana leave and the reply end as
        # interrupted (each within seconds, in either order).
        ended, left = None, None
        while ended is None or left is None:
            event = recv(bo, timeout=30)
            if event["type"] == "error" and event.get("message_id") == crashed_turn:
                ended = event
            elif event["type"] == "participant_left" and event["user"]["username"] == "ana":
                left = event
        assert ended["code"] == "interrupted"
        assert ended["content"].startswith(ai_text(tokens)[:10])

    # The lease has expired: the next message starts a new turn, answered in full.
    started = time.monotonic()
    bo.send(json.dumps({"type": "message", "content": "after the crash"}))
    complete = until(bo, "ai_complete", timeout=30)[-1]
    assert "after the crash" in complete["content"]
    assert time.monotonic() - started < LEASE_TTL_SECONDS + 15

    # A member who comes back gets the history, the interrupted reply with its text.
    back, state = enter(room_cluster.first, slug, room_cluster.tokens["ana"])
    by_id = {m["id"]: m for m in state["conversation"]}
    assert by_id[crashed_turn]["status"] == "error"
    assert by_id[crashed_turn]["error_code"] == "interrupted"
    assert by_id[crashed_turn]["content"]
    assert state["conversation"][-1]["content"] == complete["content"]
    back.close()
    bo.close()


def test_a_member_who_reads_nothing_does_not_delay_the_others(room_cluster):
    slug = new_room(room_cluster)
    sleeper, _ = enter(room_cluster.first, slug, room_cluster.tokens["bo"])  # never reads
    ana, _ = enter(room_cluster.first, slug, room_cluster.tokens["ana"])
    ana.send(json.dumps({"type": "message", "content": "go"}))
    started = time.monotonic()
    events = until(ana, "ai_complete", timeout=30)
    elapsed = time.monotonic() - started
    # 60 tokens at 30 tokens/s: about two seconds whoever else is in the room.
    assert elapsed < 5, elapsed
    assert ai_text(events) == events[-1]["content"]
    sleeper.close()
    ana.close()
