"""Hostile frames on the room socket, from many members of one room, against a real daphne.

Each refused frame gets one documented `error` and the socket stays; the
room's other events keep flowing to everyone; nobody crashes the server, and
nothing refused is stored. Runs in both passes (SQLite, then PostgreSQL + Redis).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from realtime.wire import MAX_JSON_DEPTH
from tests.support import processes
from tests.support.fuzz import Hostile, HostileFrames, seed_from_env

pytestmark = [pytest.mark.asyncio, pytest.mark.services]

SOCKETS = 10
CASES_PER_SOCKET = 150
MAX_FRAME_BYTES = 65536
MAX_MESSAGE_CHARS = 4000
PING = json.dumps({"type": "ping"})

# docs/protocol.md: the codes of an `error` that refuses one room frame.
FRAME_ERROR_CODES = {
    "invalid_json", "invalid_event", "unknown_type", "empty_content", "too_large",
    "not_found", "not_streaming", "forbidden", "rate_limited",
}  # fmt: skip
# What a member hears from the room meanwhile (other members' doings, the AI).
ROOM_EVENT_TYPES = {
    "user_message", "user_typing", "participant_joined", "participant_left",
    "ai_typing", "ai_token", "ai_complete", "ai_cancelled", "room_state",
}  # fmt: skip
REPLY_ERROR_CODES = {"rate_limited", "upstream_error", "timeout", "bad_request", "interrupted"}

SEED = """
import json
from django.contrib.auth import get_user_model
from accounts.services import create_api_token
from rooms import services
from rooms.models import RoomMessage
User = get_user_model()
owner = User.objects.create_user("keeper")
secret = services.create_room(owner=owner, name="Secret", is_private=True)
kept = RoomMessage.objects.create(room=secret, author=owner, role="user", content="my secret")
room = services.create_room(owner=owner, name="Fuzz hall", is_private=False, ai_mode="mention")
tokens = [
    create_api_token(user=User.objects.create_user(f"member{i}"), name="fuzz")[1]
    for i in range(COUNT)
]
print(json.dumps({"room": room.slug, "secret": secret.slug, "kept": kept.pk, "tokens": tokens}))
"""

DUMP = """
import json
from rooms.models import RoomMessage
print(json.dumps(list(RoomMessage.objects.values(
    "id", "room__slug", "author__username", "role", "content", "status").order_by("id"))))
"""


@dataclass
class RoomFuzzSite:
    url: str
    env: dict
    log_path: Path
    room: str
    secret: str
    kept: int
    tokens: list[str]

    def messages(self) -> list[dict]:
        return json.loads(processes.manage("shell", "--no-imports", "-c", DUMP, env=self.env))


@pytest.fixture(scope="module")
def room_fuzz_site(tmp_path_factory, fakeai_url) -> Iterator[RoomFuzzSite]:
    tmp = tmp_path_factory.mktemp("room-fuzz")
    extra = {
        "WS_MAX_FRAMES_PER_10S": "1000",
        "ROOM_RATE_LIMIT_PER_MINUTE": "100000",
        "ROOM_TYPING_THROTTLE_SECONDS": "0.05",
        "OPENAI_MODEL": "fakeai:ttft=0,tps=300,tokens=30",
        "LOG_LEVEL": "INFO",
    }
    with processes.site_for_this_pass(
        tmp, fakeai_url=fakeai_url, name="realtime_room_fuzz_test", extra=extra
    ) as (url, env, log_path):
        seeded = json.loads(
            processes.manage(
                "shell", "--no-imports", "-c", SEED.replace("COUNT", str(SOCKETS)), env=env
            )
        )
        yield RoomFuzzSite(url=url, env=env, log_path=log_path, **seeded)


def room_frames(site: RoomFuzzSite) -> list[dict]:
    """One valid example of every room client frame (ping is the test's own marker)."""
    return [
        {"type": "message", "content": "hello room"},
        {"type": "message", "content": "@ai what do you say?"},
        {"type": "typing"},
        {"type": "cancel", "message_id": site.kept},
        {"type": "resume", "after": -1},
        {"type": "resume", "after": 2, "message_id": site.kept},
    ]


@dataclass
class MemberRun:
    violations: list[str] = field(default_factory=list)
    refused: int = 0
    accepted_messages: list[str] = field(default_factory=list)


async def fuzz_member(site: RoomFuzzSite, token: str, cases: list[Hostile]) -> MemberRun:
    run = MemberRun()
    url = site.url.replace("http://", "ws://") + f"/ws/room/{site.room}/"
    async with connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as ws:
        for case in cases:
            try:
                await ws.send(case.payload)
                await ws.send(PING)
                errors = await own_errors_until_pong(ws, run)
            except ConnectionClosed as closed:
                run.violations.append(f"socket closed ({closed.rcvd and closed.rcvd.code}) {case}")
                return run
            check(case, errors, run)
    return run


async def own_errors_until_pong(ws: ClientConnection, run: MemberRun) -> list[dict]:
    """The refusals of this member's frame; the room's own events are checked and set aside."""
    errors = []
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout=20))
        kind = event["type"]
        if kind == "pong":
            return errors
        if kind == "error" and "message_id" not in event:
            errors.append(event)
        elif kind == "error":
            if event["code"] not in REPLY_ERROR_CODES:
                run.violations.append(f"a turn ended with an undocumented error: {event}")
        elif kind not in ROOM_EVENT_TYPES:
            run.violations.append(f"unexpected event {event}")


def check(case: Hostile, errors: list[dict], run: MemberRun) -> None:
    if len(errors) > 1:
        run.violations.append(f"more than one error {errors} for {case}")
    elif errors:
        run.refused += 1
        if errors[0]["code"] not in FRAME_ERROR_CODES:
            run.violations.append(f"undocumented error {errors[0]} for {case}")
    elif case.must_refuse:
        run.violations.append(f"accepted: {case}")
    elif isinstance(case.payload, str) and '"message"' in case.payload:
        try:
            frame = json.loads(case.payload)
        except ValueError:
            return
        if isinstance(frame, dict) and frame.get("type") == "message":
            run.accepted_messages.append(frame["content"])


async def test_fuzzed_room_frames_get_documented_errors_and_never_crash(room_fuzz_site):
    site = room_fuzz_site
    seed = seed_from_env()
    cases = HostileFrames(
        room_frames(site),
        max_frame_bytes=MAX_FRAME_BYTES,
        max_json_depth=MAX_JSON_DEPTH,
        text_limits={"content": MAX_MESSAGE_CHARS},
        seed=seed,
    ).generate(SOCKETS * CASES_PER_SOCKET)

    members = await asyncio.gather(
        *(fuzz_member(site, token, cases[i::SOCKETS]) for i, token in enumerate(site.tokens))
    )

    violations = [v for member in members for v in member.violations]
    assert not violations, f"{len(violations)} violations (FUZZ_SEED={seed}):\n" + "\n".join(
        violations[:15]
    )
    assert sum(member.refused for member in members) > len(cases) // 2
    stored = await asyncio.to_thread(site.messages)
    secret = [m for m in stored if m["room__slug"] == site.secret]
    assert [(m["id"], m["content"]) for m in secret] == [(site.kept, "my secret")]
    people = [m for m in stored if m["room__slug"] == site.room and m["role"] == "user"]
    accepted = sum(len(member.accepted_messages) for member in members)
    assert len(people) == accepted
    log = site.log_path.read_text(errors="replace")
    assert processes.is_running(site.url), "daphne died"
    assert "Traceback" not in log, log[log.find("Traceback") - 300 :][:3000]
    bad = [line for line in log.splitlines() if re.search(r"\b(ERROR|CRITICAL)\b", line)]
    assert not bad, "\n".join(bad[:20])
