"""A blocking chat WebSocket client for tests against live daphne processes."""

from __future__ import annotations

import json

from websockets.sync.client import ClientConnection, connect


def ws_connect(url: str, token: str) -> ClientConnection:
    """Open /ws/chat/ on a live site (http://host:port) with an API token."""
    return connect(
        url.replace("http://", "ws://") + "/ws/chat/",
        additional_headers={"Authorization": f"Bearer {token}"},
    )


def recv(ws: ClientConnection, timeout: float = 15) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def recv_until(ws: ClientConnection, *types: str) -> list[dict]:
    """Events up to and including the first of `types`."""
    received = []
    while True:
        received.append(recv(ws))
        if received[-1]["type"] in types:
            return received
