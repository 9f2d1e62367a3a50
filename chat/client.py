"""A terminal chat client: `python -m chat.client --url http://127.0.0.1:8000 --token rt_...`.

Reads lines from stdin, sends each as a message over the chat WebSocket,
prints tokens as they stream and, after each answer, its time to first token
and tokens per second. Ctrl-C while an answer streams stops that answer;
Ctrl-C at the prompt (or end of input) quits. The token can also come from
the REALTIME_TOKEN environment variable. Pure client code: no Django.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from typing import TextIO

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

CLOSE_UNAUTHENTICATED = 4401


def ws_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return base + "/ws/chat/"


def format_stats(metrics: dict, client_ttft_ms: float | None) -> str:
    parts = []
    if client_ttft_ms is not None:
        parts.append(f"TTFT {client_ttft_ms:.0f} ms")
    if metrics.get("ttft_ms") is not None:
        parts.append(f"(server {metrics['ttft_ms']:.0f} ms)")
    if metrics.get("tokens_per_second"):
        parts.append(f"{metrics['tokens_per_second']:.1f} tokens/s")
    if metrics.get("tokens") is not None:
        parts.append(f"{metrics['tokens']} tokens")
    return "[" + " · ".join(parts) + "]"


class TerminalChat:
    """One conversation over one socket; prints to `out`."""

    def __init__(self, ws: ClientConnection, out: TextIO) -> None:
        self.ws = ws
        self.out = out
        self.conversation_id: int | None = None
        self.message_id: int | None = None

    async def ask(self, text: str) -> dict:
        """Send one message and print the answer as it streams; return the last event."""
        frame = {"type": "message", "content": text}
        if self.conversation_id is not None:
            frame["conversation_id"] = self.conversation_id
        sent_at = time.perf_counter()
        await self.ws.send(json.dumps(frame))
        first_token_at = None
        while True:
            event = json.loads(await self.ws.recv())
            kind = event["type"]
            if kind == "ack":
                self.conversation_id = event["conversation_id"]
                self.message_id = event["message_id"]
            elif kind == "token":
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                self.out.write(event["content"])
                self.out.flush()
            elif kind in ("complete", "cancelled", "error"):
                if kind != "error" or "message_id" in event or first_token_at is None:
                    break
        ttft = None if first_token_at is None else (first_token_at - sent_at) * 1000
        self.out.write("\n")
        if kind == "error":
            self.out.write(f"[error {event['code']}: {event['message']}]\n")
        else:
            if kind == "cancelled":
                self.out.write("[stopped]\n")
            self.out.write(format_stats(event.get("metrics", {}), ttft) + "\n")
        self.out.flush()
        self.message_id = None
        return event

    async def cancel(self) -> None:
        if self.message_id is not None:
            await self.ws.send(json.dumps({"type": "cancel", "message_id": self.message_id}))


async def read_line(prompt: str) -> str | None:
    """input() off the event loop; None at end of input."""
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None


async def run(url: str, token: str, *, out: TextIO = sys.stdout, prompt: str = "you> ") -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(ws_url(url), additional_headers=headers, max_size=2**22) as ws:
        chat = TerminalChat(ws, out)
        loop = asyncio.get_running_loop()
        while True:
            line = await read_line(prompt)
            if line is None:
                return 0
            if not line.strip():
                continue
            answer = asyncio.create_task(chat.ask(line))
            # Ctrl-C during an answer stops the answer, not the client.
            try:
                loop.add_signal_handler(signal.SIGINT, lambda: asyncio.create_task(chat.cancel()))
            except (NotImplementedError, RuntimeError):
                pass
            try:
                await answer
            finally:
                try:
                    loop.remove_signal_handler(signal.SIGINT)
                except (NotImplementedError, RuntimeError):
                    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chat.client", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", default=os.environ.get("REALTIME_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("REALTIME_TOKEN"))
    args = parser.parse_args(argv)
    if not args.token:
        parser.error(
            "an API token is required (--token or REALTIME_TOKEN); create one at /chat/tokens/"
        )
    try:
        return asyncio.run(run(args.url, args.token, prompt="you> " if sys.stdin.isatty() else ""))
    except KeyboardInterrupt:
        return 130
    except ConnectionClosed as exc:
        if exc.rcvd is not None and exc.rcvd.code == CLOSE_UNAUTHENTICATED:
            print("the server refused the token (4401): create a new one", file=sys.stderr)
        else:
            print(f"the connection closed: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot connect to {args.url}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # websockets' InvalidStatus etc.: say it plainly
        print(f"connection failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
