"""The lean relay: what relaying a streamed reply over a WebSocket costs Python at its least.

    python -m bench.lean_relay --port 8100 --upstream http://127.0.0.1:8001/v1

One aiohttp process. A client frame `{"type": "message", "content": ...}`
becomes one streamed `/chat/completions` request on a raw aiohttp client
session; every content delta goes back as a `token` frame shaped exactly like
ours, then a `complete` frame. No auth, no storage, no history, no SDK objects,
one reply at a time per socket. bench.chat_load runs the same clients against
it and against our site in the same invocation and reports ours / lean.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

SYSTEM_PROMPT = "You are a helpful assistant. Answer clearly; use Markdown for code and lists."
MAX_FRAME_BYTES = 65536
MAX_OUTPUT_TOKENS = 1024
# As many upstream connections as our site allows by default (LLM_MAX_CONNECTIONS):
# aiohttp's default of 100 would queue requests at 200 concurrent streams.
MAX_UPSTREAM_CONNECTIONS = 1000
UPSTREAM_CONNECT_TIMEOUT_S = 5.0
UPSTREAM_READ_TIMEOUT_S = 30.0


# --- wire: pure, unit-tested ---------------------------------------------------------
def _dumps(event: dict) -> str:
    # The same encoding as our site's frames, so a client parses both alike.
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def message_content(raw: str) -> str | None:
    """The content of a client `message` frame (a bare `{content}` too); None if it is not one."""
    try:
        frame = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(frame, dict) or frame.get("type", "message") != "message":
        return None
    content = frame.get("content")
    return content if isinstance(content, str) and content.strip() else None


def content_deltas(line: bytes) -> list[str] | None:
    """The content deltas carried by one SSE line of a chat completions stream.

    None marks the end of the stream (`data: [DONE]`); other lines (blank,
    comments, the role and usage chunks) carry no content: [].
    """
    if not line.startswith(b"data:"):
        return []
    data = line[5:].strip()
    if data == b"[DONE]":
        return None
    chunk = json.loads(data)
    return [
        text
        for choice in chunk.get("choices") or ()
        if (text := (choice.get("delta") or {}).get("content"))
    ]


def token_frame(content: str, index: int, timestamp_ms: int) -> str:
    return _dumps({"type": "token", "content": content, "index": index, "timestamp": timestamp_ms})


def complete_frame(content: str, total_tokens: int, ttft_ms: float | None) -> str:
    return _dumps(
        {
            "type": "complete",
            "content": content,
            "total_tokens": total_tokens,
            "metrics": {"ttft_ms": None if ttft_ms is None else round(ttft_ms, 2)},
        }
    )


def error_frame(code: str, message: str) -> str:
    return _dumps({"type": "error", "code": code, "message": message, "retryable": True})


# --- the server ----------------------------------------------------------------------
@dataclass(frozen=True)
class Upstream:
    completions_url: str
    model: str
    headers: dict[str, str]


UPSTREAM = web.AppKey("upstream", Upstream)
SESSION = web.AppKey("session", aiohttp.ClientSession)


async def relay_reply(ws: web.WebSocketResponse, app: web.Application, content: str) -> None:
    """Stream one reply from the upstream to the socket, token by token."""
    upstream = app[UPSTREAM]
    body = {
        "model": upstream.model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": content},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": MAX_OUTPUT_TOKENS,
    }
    started = time.perf_counter()
    ttft_ms = None
    parts: list[str] = []
    try:
        async with app[SESSION].post(
            upstream.completions_url, json=body, headers=upstream.headers
        ) as response:
            if response.status != 200:
                await ws.send_str(
                    error_frame("upstream_error", f"The model answered HTTP {response.status}.")
                )
                return
            async for line in response.content:
                deltas = content_deltas(line)
                if deltas is None:
                    break
                for text in deltas:
                    if ttft_ms is None:
                        ttft_ms = (time.perf_counter() - started) * 1000
                    await ws.send_str(token_frame(text, len(parts), int(time.time() * 1000)))
                    parts.append(text)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        if not ws.closed:  # else the failure was the client's socket: nobody to tell
            await ws.send_str(error_frame("upstream_error", "The model's stream failed."))
        return
    await ws.send_str(complete_frame("".join(parts), len(parts), ttft_ms))


async def chat_socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    try:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            content = message_content(message.data)
            if content is None:
                await ws.send_str(error_frame("bad_request", "Send a message with content."))
                continue
            await relay_reply(ws, request.app, content)
    except ConnectionError:
        pass  # the client went away mid-reply; leaving the `async with` closed the upstream
    return ws


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app(upstream_url: str, *, model: str = "fakeai", api_key: str = "") -> web.Application:
    """The relay for an OpenAI-compatible base URL ending in /v1."""
    app = web.Application()
    app[UPSTREAM] = Upstream(
        completions_url=upstream_url.rstrip("/") + "/chat/completions",
        model=model,
        headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
    )

    async def upstream_session(app: web.Application):
        app[SESSION] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_UPSTREAM_CONNECTIONS),
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=UPSTREAM_CONNECT_TIMEOUT_S,
                sock_read=UPSTREAM_READ_TIMEOUT_S,
            ),
        )
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(upstream_session)
    app.router.add_get("/ws/chat/", chat_socket)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lean_relay", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--upstream", required=True, help="OpenAI-compatible base URL, /v1")
    parser.add_argument("--model", default="fakeai")
    parser.add_argument("--api-key", default="")
    args = parser.parse_args(argv)
    # The benchmark counts " ERROR " lines in this log, as in daphne's.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    web.run_app(
        create_app(args.upstream, model=args.model, api_key=args.api_key),
        host=args.host,
        port=args.port,
        backlog=2048,
        access_log=None,  # a log line per request would be most of the CPU under load
        print=None,
        shutdown_timeout=1.0,
    )


if __name__ == "__main__":
    main()
