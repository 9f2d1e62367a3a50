"""Benchmark clients: one message, one user, over our WebSocket or straight from the model."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from time import perf_counter

import openai
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.stats import ms

# Fewer simultaneous handshakes than Twisted's listen backlog (50).
CONNECT_CONCURRENCY = 25
CONNECT_TIMEOUT_S = 30.0
# Token frames start with this (events.dumps: compact separators, "type" first),
# so they are counted without json.loads.
TOKEN_PREFIX = '{"type":"token"'
INDEX_FIELD = ',"index":'
SYSTEM_PROMPT = "You are a helpful assistant. Answer clearly; use Markdown for code and lists."


@dataclass
class MessageResult:
    status: str = "not_run"  # ok | error:<code> | timeout | disconnect | run_timeout | ...
    sent: float | None = None
    ack: float | None = None
    first: float | None = None
    last: float | None = None
    done: float | None = None
    tokens: int = 0
    first_tokens: int = 0  # tokens the first frame carried
    frames: int = 0
    server_ttft_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def ttft_ms(self) -> float | None:
        return ms(self.first - self.sent) if self.first is not None else None

    @property
    def total_ms(self) -> float | None:
        return ms(self.done - self.sent) if self.done is not None else None

    @property
    def ack_ms(self) -> float | None:
        return ms(self.ack - self.sent) if self.ack is not None else None

    @property
    def tokens_per_s(self) -> float | None:
        """Tokens delivered after the first frame, per second from the first frame to the last."""
        if self.last is None or self.last <= self.first or self.tokens <= self.first_tokens:
            return None
        return (self.tokens - self.first_tokens) / (self.last - self.first)

    def received(self, tokens: int, at: float) -> None:
        """A frame arrived; `tokens`: how many the reply has delivered so far."""
        if self.first is None:
            self.first, self.first_tokens = at, tokens
        self.last, self.tokens = at, tokens
        self.frames += 1


class Ramp:
    """Every client reports in (connected or failed); then all start together."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.arrived = 0
        self.all_arrived = asyncio.Event()
        self.start = asyncio.Event()

    def arrive(self) -> None:
        self.arrived += 1
        if self.arrived >= self.expected:
            self.all_arrived.set()


def token_index(frame: str) -> int:
    """The `index` of a `token` frame, without parsing its JSON.

    A frame carries one token, or a late reader's backlog, and `index` is its
    last token's. Quotes inside `content` are escaped, so the last `,"index":`
    is the field itself.
    """
    start = frame.rfind(INDEX_FIELD)
    if start < 0:
        return json.loads(frame)["index"]
    start += len(INDEX_FIELD)
    end = start
    while end < len(frame) and frame[end].isdigit():
        end += 1
    return int(frame[start:end])


def prompt_for(index: int) -> str:
    return f"Benchmark message {index + 1}: tell me something short."


async def ws_message(
    ws, result: MessageResult, index: int, conversation_id: int | None, timeout_s: float
) -> int | None:
    """Send one message and read until its terminal event; returns the conversation id."""
    payload = {"type": "message", "content": prompt_for(index)}
    if conversation_id is not None:
        payload["conversation_id"] = conversation_id
    frame = json.dumps(payload)
    result.status = "sent"
    try:
        async with asyncio.timeout(timeout_s):
            result.sent = perf_counter()
            await ws.send(frame)
            while True:
                raw = await ws.recv()
                now = perf_counter()
                if raw.startswith(TOKEN_PREFIX):
                    result.received(token_index(raw) + 1, now)
                    continue
                event = json.loads(raw)
                kind = event.get("type")
                if kind == "ack":
                    result.ack = now
                    conversation_id = event.get("conversation_id", conversation_id)
                elif kind == "complete":
                    result.done = now
                    result.server_ttft_ms = (event.get("metrics") or {}).get("ttft_ms")
                    result.status = "ok" if result.tokens else "error:no_tokens"
                    return conversation_id
                elif kind in ("error", "cancelled"):
                    result.done = now
                    result.status = f"error:{event.get('code', kind)}"
                    return conversation_id
    except TimeoutError:
        result.status = "timeout"
    except ConnectionClosed:
        result.status = "disconnect"
    except asyncio.CancelledError:
        result.status = "run_timeout"
        raise
    return conversation_id


async def open_socket(url: str, token: str | None):
    """A benchmark WebSocket: no compression or keepalive, so the client stays cheap."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return await connect(
        url,
        additional_headers=headers,
        compression=None,  # keep client CPU low; daphne would negotiate it otherwise
        ping_interval=None,  # no keepalive failures caused by a busy client loop
        open_timeout=CONNECT_TIMEOUT_S,
        close_timeout=2,
        max_size=None,
    )


async def ws_user(
    url: str,
    token: str | None,
    results: list[MessageResult],
    ramp: Ramp,
    connect_slots: asyncio.Semaphore,
    *,
    start_offset_s: float,
    timeout_s: float,
) -> None:
    """Connect, wait for the ramp, then send the messages one after another."""
    try:
        async with connect_slots:
            ws = await open_socket(url, token)
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        for result in results:
            result.status = f"connect_failed:{type(exc).__name__}"
        ramp.arrive()
        return
    ramp.arrive()
    try:
        await ramp.start.wait()
        await asyncio.sleep(start_offset_s)
        conversation_id = None
        for index, result in enumerate(results):
            conversation_id = await ws_message(ws, result, index, conversation_id, timeout_s)
            if result.status in ("timeout", "disconnect"):
                break
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(ws.close())


async def direct_message(
    client: openai.AsyncOpenAI, result: MessageResult, index: int, *, timeout_s: float
) -> None:
    """One reply streamed straight from the model with the openai SDK."""
    result.status = "sent"
    try:
        async with asyncio.timeout(timeout_s):
            result.sent = perf_counter()
            stream = await client.chat.completions.create(
                model="fakeai",
                messages=[
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": prompt_for(index)},
                ],
                stream=True,
                stream_options={"include_usage": True},
                max_completion_tokens=1024,
            )
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            result.received(result.tokens + 1, perf_counter())
            result.done = perf_counter()
            result.status = "ok" if result.tokens else "error:no_tokens"
    except TimeoutError:
        result.status = "timeout"
    except openai.APIError as exc:
        result.status = f"error:{type(exc).__name__}"
    except asyncio.CancelledError:
        result.status = "run_timeout"
        raise


async def direct_user(
    client: openai.AsyncOpenAI,
    results: list[MessageResult],
    ramp: Ramp,
    *,
    start_offset_s: float,
    timeout_s: float,
) -> None:
    ramp.arrive()
    await ramp.start.wait()
    await asyncio.sleep(start_offset_s)
    for index, result in enumerate(results):
        await direct_message(client, result, index, timeout_s=timeout_s)
