"""Who may open a socket (origin, token), and sockets ending when their credentials do."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from tests.consumers.conftest import make_user_with_token, raw_socket

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.services]

SITE = b"127.0.0.1:8000"


@pytest.fixture
async def alice():
    return await make_user_with_token("alice")


async def session_cookie(user) -> bytes:
    """A logged-in browser's cookie header for `user`."""
    browser = Client()
    await sync_to_async(browser.force_login)(user)
    return f"sessionid={browser.cookies['sessionid'].value}".encode()


async def browser_socket(cookie: bytes, *, origin: bytes, host: bytes = SITE):
    """(connected, communicator) for a cookie socket sent from `origin` to `host`."""
    communicator = raw_socket([(b"host", host), (b"origin", origin), (b"cookie", cookie)])
    connected, _ = await communicator.connect()
    return connected, communicator


async def answers_ping(communicator) -> bool:
    await communicator.send_to(text_data=json.dumps({"type": "ping"}))
    return json.loads(await communicator.receive_from(timeout=5)) == {"type": "pong"}


# --- origin ---------------------------------------------------------------------------
async def test_a_page_of_the_site_itself_may_open_a_cookie_socket(alice):
    connected, ws = await browser_socket(
        await session_cookie(alice[0]), origin=b"http://127.0.0.1:8000"
    )

    assert connected and await answers_ping(ws)
    await ws.disconnect()


async def test_a_page_on_another_port_of_the_same_host_is_refused(alice):
    connected, ws = await browser_socket(
        await session_cookie(alice[0]), origin=b"http://127.0.0.1:8222"
    )

    assert not connected
    await ws.disconnect()


async def test_a_page_served_over_another_scheme_is_refused(alice):
    # The socket is plain ws:// to :8000; an https page on :8000 is another origin.
    connected, ws = await browser_socket(
        await session_cookie(alice[0]), origin=b"https://127.0.0.1:8000"
    )

    assert not connected
    await ws.disconnect()


async def test_a_cookie_socket_without_an_origin_is_refused(alice):
    communicator = raw_socket([(b"host", SITE), (b"cookie", await session_cookie(alice[0]))])
    connected, _ = await communicator.connect()

    assert not connected
    await communicator.disconnect()


async def test_an_origin_in_csrf_trusted_origins_is_accepted(alice, settings):
    # Behind a proxy the socket's Host may be an internal name; the public origin is trusted.
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com"]
    connected, ws = await browser_socket(
        await session_cookie(alice[0]), origin=b"https://chat.example.com", host=b"testserver"
    )

    assert connected and await answers_ping(ws)
    await ws.disconnect()


async def test_an_origin_not_in_csrf_trusted_origins_is_still_refused(alice, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com"]
    connected, ws = await browser_socket(
        await session_cookie(alice[0]), origin=b"https://evil.example.com", host=b"testserver"
    )

    assert not connected
    await ws.disconnect()


async def test_a_token_client_needs_no_origin(alice):
    _, token = alice
    communicator = raw_socket([(b"authorization", f"Bearer {token}".encode())])
    connected, _ = await communicator.connect()

    assert connected and await answers_ping(communicator)
    await communicator.disconnect()
