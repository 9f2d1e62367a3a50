"""In-process consumer tests: the real ASGI app, a real fakeai process upstream."""

from __future__ import annotations

import json

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.db import connection, connections

from accounts.services import create_api_token
from realtime import channel_layer, llm, ratelimit, runs, streams
from realtime_site.asgi import application


@pytest.fixture(scope="session", autouse=True)
def release_test_database(django_db_setup, django_db_blocker):
    """End connections left in worker-pool threads before the test database is dropped.

    Database calls run on pool threads, each with its own connection, which
    outlive the test's event loop; PostgreSQL refuses to drop a database in use.
    """
    yield
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(autouse=True)
def site_settings(settings, fakeai_url):
    """Point the LLM at fakeai; start every test with fresh process state."""
    settings.OPENAI_BASE_URL = fakeai_url
    settings.OPENAI_API_KEY = "test-key"
    settings.OPENAI_MODEL = "fakeai"
    settings.LLM_RETRY_BASE_SECONDS = 0.01
    settings.LLM_TIMEOUT_SECONDS = 5
    llm.reset_clients()
    streams.reset_streams()
    ratelimit.reset()
    # Each test has its own event loop; the Redis layer binds its receiver to one.
    channel_layers.backends.clear()
    if settings.REDIS_URL:
        # Database ids restart per run, so Redis keys of an earlier run could collide.
        redis.Redis.from_url(settings.REDIS_URL).flushdb()
    yield settings
    llm.reset_clients()
    streams.reset_streams()
    ratelimit.reset()


@pytest.fixture
async def drain_replies():
    """Wait for replies started by a test, so none outlives it."""
    yield
    await runs.wait_all(timeout_s=10)


@pytest.fixture(autouse=True)
async def close_connections():
    """Close the model client and the DB connections opened in worker threads.

    Otherwise PostgreSQL refuses to drop the test database at the end of the run.
    """
    yield
    await llm.close_client()
    await database_sync_to_async(connections.close_all)()
    # The Redis layer's reader stops by message before this test's loop closes.
    await channel_layer.stop_reader()


@sync_to_async
def make_user_with_token(username: str):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username, password="pass-Word-123")
    _, raw = create_api_token(user=user, name="test")
    return user, raw


class ChatClient:
    """A WebSocket client that speaks the chat protocol against the real app."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator

    async def send(self, frame: dict | str) -> None:
        await self.ws.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def receive(self, timeout: float = 5) -> dict:
        return json.loads(await self.ws.receive_from(timeout=timeout))

    async def receive_until(self, *types: str, timeout: float = 10) -> list[dict]:
        """Events up to and including the first of `types`."""
        received = []
        while True:
            event = await self.receive(timeout=timeout)
            received.append(event)
            if event["type"] in types:
                return received

    async def close(self) -> None:
        await self.ws.disconnect()


def raw_socket(headers: list, path: str = "/ws/chat/") -> WebsocketCommunicator:
    """A socket on the real app, not yet connected, for handshake-level tests.

    Like a browser it sends a Host header (testserver unless given).
    """
    if not any(name == b"host" for name, _ in headers):
        headers = [(b"host", b"testserver"), *headers]
    return WebsocketCommunicator(application, path, headers=headers)


async def connect(token: str | None = None, *, headers: list | None = None) -> ChatClient:
    all_headers = list(headers or [])
    if token is not None:
        all_headers.append((b"authorization", f"Bearer {token}".encode()))
    communicator = raw_socket(all_headers)
    connected, _ = await communicator.connect()
    assert connected
    return ChatClient(communicator)
