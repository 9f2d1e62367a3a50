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


# --- sockets end when their credentials do ---------------------------------------------
CLOSED_UNAUTHENTICATED = {"type": "websocket.close", "code": 4401}


class Browser:
    """A logged-in browser: its own session, its test client and one chat socket."""

    def __init__(self, client: Client, ws) -> None:
        self.client = client
        self.ws = ws

    @classmethod
    async def open(cls, user) -> Browser:
        client = Client()
        await sync_to_async(client.force_login)(user)
        cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
        connected, ws = await browser_socket(cookie, origin=b"http://127.0.0.1:8000")
        assert connected
        return cls(client, ws)


async def token_socket(token: str):
    communicator = raw_socket([(b"authorization", f"Bearer {token}".encode())])
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def closed_as_unauthenticated(communicator) -> bool:
    return await communicator.receive_output(timeout=5) == CLOSED_UNAUTHENTICATED


@sync_to_async
def change_user(user, **changes) -> None:
    password = changes.pop("password", None)
    if password is not None:
        user.set_password(password)
    for name, value in changes.items():
        setattr(user, name, value)
    user.save()


async def test_logging_out_closes_the_sockets_of_that_session_only(alice):
    user, token = alice
    leaving, staying = await Browser.open(user), await Browser.open(user)
    script = await token_socket(token)

    response = await sync_to_async(leaving.client.post)("/accounts/logout/")

    assert response.status_code == 302
    assert await closed_as_unauthenticated(leaving.ws)
    assert await answers_ping(staying.ws)
    assert await answers_ping(script)
    for ws in (leaving.ws, staying.ws, script):
        await ws.disconnect()


async def test_a_password_change_closes_every_browser_socket_of_the_user(alice):
    user, token = alice
    laptop, phone = await Browser.open(user), await Browser.open(user)
    script = await token_socket(token)

    await change_user(user, password="a-New-pass-77")

    assert await closed_as_unauthenticated(laptop.ws)
    assert await closed_as_unauthenticated(phone.ws)
    # API tokens outlive a password change (revoke them on the tokens page).
    assert await answers_ping(script)
    for ws in (laptop.ws, phone.ws, script):
        await ws.disconnect()


async def test_saving_a_user_without_credential_changes_closes_nothing(alice):
    user, token = alice
    browser = await Browser.open(user)

    await change_user(user, first_name="Alice")

    assert await answers_ping(browser.ws)
    await browser.ws.disconnect()


async def test_deactivating_a_user_closes_all_their_sockets_and_no_one_elses(alice):
    user, token = alice
    bob, bob_token = await make_user_with_token("bob")
    browser = await Browser.open(user)
    script = await token_socket(token)
    bystander = await token_socket(bob_token)

    await change_user(user, is_active=False)

    assert await closed_as_unauthenticated(browser.ws)
    assert await closed_as_unauthenticated(script)
    assert await answers_ping(bystander)
    for ws in (browser.ws, script, bystander):
        await ws.disconnect()


async def test_deleting_a_user_closes_all_their_sockets(alice):
    user, token = alice
    browser = await Browser.open(user)
    script = await token_socket(token)

    await user.adelete()

    assert await closed_as_unauthenticated(browser.ws)
    assert await closed_as_unauthenticated(script)
    for ws in (browser.ws, script):
        await ws.disconnect()


async def test_revoking_a_token_closes_the_sockets_of_that_token_only(alice):
    from accounts.models import ApiToken
    from accounts.services import create_api_token

    user, token = alice
    _, other_token = await sync_to_async(create_api_token)(user=user, name="other")
    browser = await Browser.open(user)
    revoked, kept = await token_socket(token), await token_socket(other_token)
    revoked_id = await ApiToken.objects.filter(name="test").values_list("pk", flat=True).aget()

    response = await sync_to_async(browser.client.post)("/accounts/tokens/", {"revoke": revoked_id})

    assert response.status_code == 302
    assert await closed_as_unauthenticated(revoked)
    assert await answers_ping(kept)
    assert await answers_ping(browser.ws)
    for ws in (browser.ws, revoked, kept):
        await ws.disconnect()
