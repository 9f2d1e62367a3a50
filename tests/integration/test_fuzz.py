"""Hostile input against a real daphne: thousands of fuzzed frames and request bodies.

A refused frame gets exactly one `error` with a documented code and the socket
stays open; no socket dies of a crash; the server logs no traceback and no
ERROR line; what is stored is exactly what was accepted. Runs in both passes:
SQLite with the in-memory layer, then PostgreSQL with Redis.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from realtime.wire import MAX_JSON_DEPTH
from tests.support import processes
from tests.support.fuzz import Hostile, HostileFrames, seed_from_env

pytestmark = [pytest.mark.asyncio, pytest.mark.services]

SOCKETS = 20
CASES_PER_SOCKET = 150
HTTP_USERS = 4
HTTP_CASES = 400
# Each case is two frames (the case, then a ping); a socket stays far below this.
FRAMES_PER_10S = 1000
MAX_FRAME_BYTES = 65536
MAX_MESSAGE_CHARS = 8000
PING = json.dumps({"type": "ping"})
# Replies stream for about a fifth of a second: sockets can close while tokens flow.
REPLY_MODEL = "fakeai:ttft=0,tps=300,tokens=60"

# docs/protocol.md: codes of an `error` that refuses one frame or request.
FRAME_ERROR_CODES = {
    "invalid_json", "invalid_event", "unknown_type", "empty_content", "too_large",
    "not_found", "not_streaming", "busy", "rate_limited",
}  # fmt: skip
# ...and of a reply's terminal `error` (it carries the reply's message_id).
REPLY_ERROR_CODES = {"rate_limited", "upstream_error", "timeout", "bad_request", "interrupted"}
HTTP_ERROR_CODES = {
    400: {"invalid_json", "invalid_event", "unknown_type", "empty_content", "invalid_request"},
    404: {"not_found"},
    409: {"busy"},
    413: {"too_large"},
    429: {"rate_limited"},
}
REPLY_EVENT_TYPES = {"progress", "token", "complete", "cancelled"}

SEED_DATA = """
import json
from django.contrib.auth import get_user_model
from accounts.services import create_api_token
from chat.models import Conversation, Message
User = get_user_model()
victim = User.objects.create_user("victim", password="pass-Word-123")
conversation = Conversation.objects.create(owner=victim, title="private")
question = Message.objects.create(conversation=conversation, role="user", content="my secret")
answer = Message.objects.create(conversation=conversation, role="assistant", content="kept")
tokens = [
    create_api_token(user=User.objects.create_user(f"fuzz{i}"), name="fuzz")[1]
    for i in range(COUNT)
]
print(json.dumps({
    "conversation_id": conversation.pk, "answer_id": answer.pk, "tokens": tokens,
}))
"""

DUMP_DATA = """
import json
from chat.models import Message
rows = Message.objects.values(
    "id", "conversation_id", "conversation__owner__username", "role", "content", "html",
    "status", "error_code", "created_at", "updated_at",
).order_by("id")
print(json.dumps([dict(row, owner=row.pop("conversation__owner__username")) for row in rows],
                 default=str))
"""


@dataclass
class FuzzSite:
    url: str
    env: dict
    log_path: Path
    conversation_id: int  # the victim's: nobody else may touch it
    answer_id: int
    tokens: list[str]
    log_offset: int = 0

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws/chat/"

    def messages(self) -> list[dict]:
        return json.loads(processes.manage("shell", "--no-imports", "-c", DUMP_DATA, env=self.env))

    def new_log(self) -> str:
        """What the server logged since the last call."""
        text = self.log_path.read_text(errors="replace")
        new, self.log_offset = text[self.log_offset :], len(text)
        return new


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory, fakeai_url) -> Iterator[FuzzSite]:
    """A daphne on a fresh database (PostgreSQL + Redis in the services pass), its log kept."""
    tmp = tmp_path_factory.mktemp("fuzz")
    extra = {
        "WS_MAX_FRAMES_PER_10S": str(FRAMES_PER_10S),
        "OPENAI_MODEL": REPLY_MODEL,
        "LOG_LEVEL": "INFO",
    }
    with processes.site_for_this_pass(
        tmp, fakeai_url=fakeai_url, name="realtime_fuzz_test", extra=extra
    ) as (url, env, log_path):
        seeded = json.loads(
            processes.manage(
                "shell", "--no-imports", "-c",
                SEED_DATA.replace("COUNT", str(SOCKETS + HTTP_USERS + 2)), env=env,
            )
        )  # fmt: skip
        yield FuzzSite(
            url=url,
            env=env,
            log_path=log_path,
            conversation_id=seeded["conversation_id"],
            answer_id=seeded["answer_id"],
            tokens=seeded["tokens"],
        )


# In a frame, stands for the reply this socket started last (the socket fills it in).
OWN_REPLY = 987654321


def chat_frames(site: FuzzSite) -> list[dict]:
    """One valid example of every chat client frame (ping is the test's own marker)."""
    return [
        {"type": "message", "content": "hello there"},
        {"content": "a bare message"},
        {"type": "message", "content": "into yours", "conversation_id": site.conversation_id},
        {"type": "cancel", "message_id": site.answer_id},
        {"type": "resume", "message_id": site.answer_id, "after": -1},
        {"type": "cancel", "message_id": OWN_REPLY},
        {"type": "resume", "message_id": OWN_REPLY, "after": 3},
    ]


def hostile_frames(site: FuzzSite, seed: int) -> HostileFrames:
    return HostileFrames(
        chat_frames(site),
        max_frame_bytes=MAX_FRAME_BYTES,
        max_json_depth=MAX_JSON_DEPTH,
        text_limits={"content": MAX_MESSAGE_CHARS},
        seed=seed,
    )


def stored_form(content: str) -> str:
    """What the server keeps of a message: NUL dropped, lone surrogates as U+FFFD, trimmed."""
    return re.sub("[\ud800-\udfff]", "\ufffd", content.replace("\x00", "")).strip()


def sent_content(case: Hostile) -> str:
    return json.loads(case.payload)["content"]


# --- the socket fuzz ---------------------------------------------------------------------
@dataclass
class SocketRun:
    """What one fuzzed socket saw."""

    violations: list[str] = field(default_factory=list)
    acks: list[tuple[Hostile, dict]] = field(default_factory=list)
    refused: int = 0


async def fuzz_socket(site: FuzzSite, token: str, cases: list[Hostile]) -> SocketRun:
    """Send each case then a ping; the events before its pong answer that case."""
    run = SocketRun()
    own_reply = str(OWN_REPLY)
    async with connect(
        site.ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
        ping_interval=None,
    ) as ws:
        for case in cases:
            payload = case.payload
            if isinstance(payload, str):
                payload = payload.replace(str(OWN_REPLY), own_reply)
            try:
                await ws.send(payload)
                await ws.send(PING)
                answer = await events_until_pong(ws, run)
            except ConnectionClosed as closed:
                run.violations.append(f"socket closed ({closed.rcvd and closed.rcvd.code}) {case}")
                return run
            check_answer(case, answer, run)
            if answer and answer[0]["type"] == "ack":
                own_reply = str(answer[0]["message_id"])
        await ws.send(PING)
        leftover = await events_until_pong(ws, run)
        if leftover:
            run.violations.append(f"the final ping got more than a pong: {leftover}")
    return run


async def events_until_pong(ws: ClientConnection, run: SocketRun) -> list[dict]:
    """The events that answer one frame; a reply's own events are checked and set aside."""
    answer = []
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout=15))
        if event["type"] == "pong":
            return answer
        if event["type"] in REPLY_EVENT_TYPES:
            continue
        if event["type"] == "error" and "message_id" in event:
            if event["code"] not in REPLY_ERROR_CODES:
                run.violations.append(f"reply ended with an undocumented error: {event}")
            continue
        answer.append(event)


def check_answer(case: Hostile, answer: list[dict], run: SocketRun) -> None:
    errors = [event for event in answer if event["type"] == "error"]
    acks = [event for event in answer if event["type"] == "ack"]
    if len(errors) + len(acks) != len(answer):
        run.violations.append(f"unexpected events {answer} for {case}")
    elif len(errors) > 1 or (errors and acks) or len(acks) > 1:
        run.violations.append(f"more than one answer {answer} for {case}")
    elif errors:
        run.refused += 1
        error = errors[0]
        if error["code"] not in FRAME_ERROR_CODES or not isinstance(error["message"], str):
            run.violations.append(f"undocumented error {error} for {case}")
        if not isinstance(error["retryable"], bool):
            run.violations.append(f"malformed error {error} for {case}")
    elif case.must_refuse:
        run.violations.append(f"accepted {answer or 'silently'}: {case}")
    if acks:
        run.acks.append((case, acks[0]))


def report(violations: list[str], seed: int, limit: int = 15) -> str:
    """The first violations, with the seed that replays them."""
    shown = "\n".join(violations[:limit])
    return f"{len(violations)} violations (FUZZ_SEED={seed}):\n{shown}"


def assert_log_clean(site: FuzzSite) -> None:
    log = site.new_log()
    assert processes.is_running(site.url), "daphne died"
    at = log.find("Traceback")
    assert at < 0, log[max(at - 400, 0) : at + 3000]
    bad_lines = [line for line in log.splitlines() if re.search(r"\b(ERROR|CRITICAL)\b", line)]
    assert not bad_lines, "\n".join(bad_lines[:20])


async def wait_for_replies_to_end(site: FuzzSite, timeout_s: float = 30) -> list[dict]:
    """All stored messages, once no reply is streaming any more."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await asyncio.to_thread(site.messages)
        if not any(row["status"] == "streaming" for row in rows):
            return rows
        assert time.monotonic() < deadline, "replies still streaming"
        await asyncio.sleep(0.5)


async def test_fuzzed_chat_frames_get_documented_errors_and_never_crash(fuzz_site):
    site = fuzz_site
    seed = seed_from_env()
    before = await asyncio.to_thread(site.messages)
    site.new_log()
    cases = hostile_frames(site, seed).generate(SOCKETS * CASES_PER_SOCKET)
    tokens = site.tokens[:SOCKETS]

    runs = await asyncio.gather(
        *(fuzz_socket(site, token, cases[i::SOCKETS]) for i, token in enumerate(tokens))
    )

    violations = [v for run in runs for v in run.violations]
    assert not violations, report(violations, seed)
    assert sum(run.refused for run in runs) > len(cases) // 2  # the fuzz is mostly refused
    acks = [ack for run in runs for ack in run.acks]
    assert acks, "no fuzzed message was accepted"
    after = await wait_for_replies_to_end(site)
    # The victim's conversation is untouched; every accepted message is stored as
    # sent (cleaned), and nothing a refused frame carried is stored at all.
    assert [row for row in after if row["owner"] == "victim"] == [
        row for row in before if row["owner"] == "victim"
    ]
    stored = {row["id"]: row for row in after}
    for case, ack in acks:
        assert stored[ack["user_message_id"]]["content"] == stored_form(sent_content(case)), case
    fuzz_users = {f"fuzz{i}" for i in range(SOCKETS)}
    user_rows = [r for r in after if r["owner"] in fuzz_users and r["role"] == "user"]
    assert len(user_rows) == len(acks)
    replies = [r for r in after if r["owner"] in fuzz_users and r["role"] == "assistant"]
    assert {r["status"] for r in replies} <= {"complete", "cancelled", "error"}
    assert {r["error_code"] for r in replies} <= {"", "abandoned", *REPLY_ERROR_CODES}
    assert_log_clean(site)


async def test_flooding_socket_gets_too_many_frames_then_4429_and_nothing_crashes(fuzz_site):
    site = fuzz_site
    site.new_log()
    async with connect(
        site.ws_url, additional_headers={"Authorization": f"Bearer {site.tokens[-1]}"}
    ) as ws:
        for _ in range(FRAMES_PER_10S + 50):
            await ws.send(PING)
        received = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                received.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=15)))
    assert closed.value.rcvd.code == 4429
    assert [e["type"] for e in received] == ["pong"] * FRAMES_PER_10S + ["error"]
    assert received[-1]["code"] == "too_many_frames"
    assert_log_clean(site)


async def test_sockets_that_hang_up_mid_reply_leave_no_traceback(fuzz_site):
    site = fuzz_site
    site.new_log()

    async def hang_up(token: str, after_tokens: int) -> None:
        async with connect(
            site.ws_url, additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            await ws.send(json.dumps({"type": "message", "content": "long " * 20}))
            seen = 0
            while seen < after_tokens:
                seen += json.loads(await ws.recv())["type"] == "token"
        # Leaving the block closes the socket while the reply still streams to it.

    await asyncio.gather(*(hang_up(token, i % 5) for i, token in enumerate(site.tokens[:20])))
    await wait_for_replies_to_end(site)
    assert_log_clean(site)


# --- the SSE endpoint fuzz -------------------------------------------------------------
CONTENT_TYPES = ["application/json"] * 8 + ["text/plain", "application/x-www-form-urlencoded"]


async def post_case(
    session: aiohttp.ClientSession, site: FuzzSite, token: str, case: Hostile, content_type: str
) -> tuple[list[str], dict | None]:
    """POST one case; return (violations, ack) where ack is set for an accepted stream."""
    body = case.payload.encode() if isinstance(case.payload, str) else case.payload
    if content_type == "application/x-www-form-urlencoded":
        body = b"content=" + quote(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    async with session.post(site.url + "/api/chat/stream", data=body, headers=headers) as response:
        text = (await response.read()).decode()
        if response.status == 200:
            if response.headers["Content-Type"] != "text/event-stream":
                return [f"200 without a stream for {case}"], None
            # SSE lines end at \n only (str.splitlines would also cut at U+2028).
            lines = text.split("\n")
            events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
            if events[0]["type"] != "ack" or events[-1].get("done") is not True:
                return [f"stream {events[:1]}…{events[-1:]} for {case}"], None
            return [], events[0]
        try:
            error = json.loads(text)
        except ValueError:
            return [f"{response.status} not JSON ({text[:80]!r}) for {case}"], None
        expected = HTTP_ERROR_CODES.get(response.status, set())
        if response.headers["Content-Type"] != "application/json" or error.get("type") != "error":
            return [f"{response.status} {error} for {case}"], None
        if error.get("code") not in expected or not isinstance(error.get("retryable"), bool):
            return [f"{response.status} with {error} for {case}"], None
        return [], None


async def test_fuzzed_sse_bodies_get_a_json_4xx_or_a_stream(fuzz_site):
    site = fuzz_site
    seed = seed_from_env()
    rng = random.Random(seed)
    site.new_log()
    frames = HostileFrames(
        chat_frames(site)[:3],
        max_frame_bytes=MAX_FRAME_BYTES,
        max_json_depth=MAX_JSON_DEPTH,
        text_limits={"content": MAX_MESSAGE_CHARS},
        accepts_binary=True,  # a body is bytes anyway
        seed=seed,
    )
    cases = frames.generate(HTTP_CASES)
    # Past Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), not only past the frame limit.
    cases.append(Hostile("huge_body", json.dumps({"content": "x" * 3_000_000}), True))
    tokens = site.tokens[SOCKETS : SOCKETS + HTTP_USERS]
    content_types = [rng.choice(CONTENT_TYPES) for _ in cases]
    limit = asyncio.Semaphore(8)

    async def one(i: int, session: aiohttp.ClientSession) -> tuple[list[str], dict | None]:
        async with limit:
            token = tokens[i % HTTP_USERS]
            return await post_case(session, site, token, cases[i], content_types[i])

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        results = await asyncio.gather(*(one(i, session) for i in range(len(cases))))

    violations = [v for found, _ in results for v in found]
    assert not violations, report(violations, seed)
    accepted = [ack for _, ack in results if ack is not None]
    assert accepted and len(accepted) < len(cases) // 2
    # Form and text bodies carry the case as text; only a JSON body must be refused.
    wrongly_accepted = [
        str(case)
        for case, content_type, (_, ack) in zip(cases, content_types, results, strict=True)
        if case.must_refuse and content_type == "application/json" and ack is not None
    ]
    assert not wrongly_accepted, report(wrongly_accepted, seed)
    after = await wait_for_replies_to_end(site)
    http_users = {f"fuzz{i}" for i in range(SOCKETS, SOCKETS + HTTP_USERS)}
    user_rows = [r for r in after if r["owner"] in http_users and r["role"] == "user"]
    assert sorted(r["id"] for r in user_rows) == sorted(a["user_message_id"] for a in accepted)
    assert_log_clean(site)


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (b'{"type": "\xff"}', True),  # a text frame that is not UTF-8
        (b"x" * (1024 * 1024 + 1), False),  # past daphne's 1 MiB message limit
    ],
)
async def test_frames_the_websocket_layer_refuses_drop_only_that_connection(
    fuzz_site, payload, text
):
    site = fuzz_site
    site.new_log()
    headers = {"Authorization": f"Bearer {site.tokens[-2]}"}
    async with connect(site.ws_url, additional_headers=headers, max_size=None) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send(payload, text=text)
            await asyncio.wait_for(ws.recv(), timeout=15)
    assert closed.value.rcvd is None  # dropped without a close frame: 1006 for the client
    async with connect(site.ws_url, additional_headers=headers) as ws:
        await ws.send(PING)
        assert json.loads(await ws.recv()) == {"type": "pong"}
    assert_log_clean(site)
