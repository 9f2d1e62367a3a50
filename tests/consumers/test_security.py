"""Security of the HTTP side: what a bearer token opens, the first admin."""

from __future__ import annotations

import io
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from accounts.models import ApiToken
from accounts.services import create_api_token

pytestmark = pytest.mark.django_db

PASSWORD = "pass-Word-123"


@pytest.fixture
def admin_token() -> str:
    """A token of a superuser: the most a stolen token could be worth."""
    admin = get_user_model().objects.create_superuser("root", password=PASSWORD)
    _, raw = create_api_token(user=admin, name="script")
    return raw


def bearer(raw: str) -> dict:
    return {"Authorization": f"Bearer {raw}"}


# --- a bearer token opens /api/ and nothing else ------------------------------------------
def test_a_bearer_token_does_not_open_the_admin(admin_token):
    response = Client().get("/admin/", headers=bearer(admin_token))

    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


def test_a_bearer_token_cannot_act_in_the_admin_even_without_csrf(admin_token):
    # The test client enforces no CSRF: only authentication stands in the way.
    response = Client(enforce_csrf_checks=False).post(
        "/admin/auth/user/add/",
        {"username": "intruder", "password1": "a-Long-pass-42", "password2": "a-Long-pass-42"},
        headers=bearer(admin_token),
    )

    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")
    assert not get_user_model().objects.filter(username="intruder").exists()


def test_a_bearer_token_cannot_mint_tokens_on_the_tokens_page(admin_token):
    response = Client().post("/accounts/tokens/", {"name": "more"}, headers=bearer(admin_token))

    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["script"]


def test_a_bearer_token_does_not_open_the_chat_pages(admin_token):
    response = Client().get("/chat/", headers=bearer(admin_token))

    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


def test_a_revoked_token_no_longer_opens_the_api(admin_token):
    def ask():
        return Client().post(
            "/api/chat/stream",
            data=json.dumps({"content": ""}),  # refused as empty, but only once authenticated
            content_type="application/json",
            headers=bearer(admin_token),
        )

    before = ask()
    ApiToken.objects.get().delete()
    after = ask()

    assert before.status_code == 400 and before.json()["code"] == "empty_content"
    assert after.status_code == 401 and after.json()["code"] == "unauthorized"


# --- the first admin ------------------------------------------------------------------------
def ensure_admin() -> str:
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


def printed_password(output: str) -> str:
    match = re.search(r"admin / (\S+)", output)
    assert match, output
    return match.group(1)


def test_ensure_admin_creates_an_admin_with_a_printed_random_password():
    output = ensure_admin()

    password = printed_password(output)
    admin = get_user_model().objects.get()
    assert admin.username == "admin" and admin.is_superuser and admin.is_staff
    assert admin.check_password(password)
    assert len(password) >= 16
    assert Client().login(username="admin", password=password)


def test_ensure_admin_passwords_differ_from_site_to_site():
    first = printed_password(ensure_admin())
    get_user_model().objects.all().delete()
    second = printed_password(ensure_admin())

    assert first != second


def test_ensure_admin_prints_the_password_only_once():
    ensure_admin()
    again = ensure_admin()

    assert again == ""
    assert get_user_model().objects.count() == 1


def test_ensure_admin_does_nothing_when_a_user_exists():
    get_user_model().objects.create_user("alice", password=PASSWORD)

    assert ensure_admin() == ""
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["alice"]


# --- login throttling -------------------------------------------------------------------------
@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def lockout(settings):
    settings.LOGIN_MAX_FAILURES_PER_ACCOUNT = 3
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 5
    settings.LOGIN_LOCKOUT_SECONDS = 300
    return settings


def log_in(username: str, password: str, *, address: str = "203.0.113.1") -> tuple:
    """(response, client) of one login form post from `address`."""
    client = Client(REMOTE_ADDR=address)
    response = client.post("/accounts/login/", {"username": username, "password": password})
    return response, client


def logged_in(client: Client) -> bool:
    return client.get("/chat/").status_code == 200


@pytest.mark.services
def test_failed_logins_below_the_limit_are_ordinary_errors(alice, lockout):
    responses = [log_in("alice", "wrong")[0] for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert all("Retry-After" not in r for r in responses)
    assert "correct username and password" in responses[-1].content.decode()


@pytest.mark.services
def test_an_account_locked_by_failures_refuses_even_the_right_password(alice, lockout):
    for _ in range(3):
        log_in("alice", "wrong")

    response, client = log_in("alice", PASSWORD)

    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 300
    assert "Too many failed logins" in response.content.decode()
    assert "try again in 5 minutes" in response.content.decode()
    assert not logged_in(client)


@pytest.mark.services
def test_the_account_lock_holds_from_any_address(alice, lockout):
    for n in range(3):
        log_in("alice", "wrong", address=f"198.51.100.{n}")

    response, client = log_in("alice", PASSWORD, address="192.0.2.77")

    assert response.status_code == 429
    assert not logged_in(client)


@pytest.mark.services
def test_the_account_lock_ignores_the_case_of_the_username(alice, lockout):
    for name in ("alice", "ALICE", "Alice"):
        log_in(name, "wrong")

    assert log_in("alice", PASSWORD)[0].status_code == 429


@pytest.mark.services
def test_an_address_guessing_many_accounts_is_locked_for_all_of_them(alice, lockout):
    for n in range(5):
        log_in(f"guess{n}", "wrong", address="203.0.113.9")

    locked, _ = log_in("alice", PASSWORD, address="203.0.113.9")
    elsewhere, client = log_in("alice", PASSWORD, address="203.0.113.10")

    assert locked.status_code == 429
    assert elsewhere.status_code == 302 and logged_in(client)


@pytest.mark.services
def test_a_successful_login_clears_the_accounts_failures(alice, lockout):
    for _ in range(2):
        log_in("alice", "wrong")
    assert log_in("alice", PASSWORD)[0].status_code == 302

    for _ in range(2):
        log_in("alice", "wrong")
    response, client = log_in("alice", PASSWORD)

    assert response.status_code == 302 and logged_in(client)


@pytest.mark.services
def test_attempts_while_locked_do_not_extend_the_lock(alice, lockout):
    # Long enough that a busy machine still tries twice within it.
    lockout.LOGIN_LOCKOUT_SECONDS = 3
    for _ in range(3):
        log_in("alice", "wrong")
    assert log_in("alice", PASSWORD)[0].status_code == 429
    assert log_in("alice", "wrong")[0].status_code == 429

    # The lock is a stretch of time: only waiting it out can show it lifting.
    time.sleep(3.2)
    response, client = log_in("alice", PASSWORD)

    assert response.status_code == 302 and logged_in(client)


@pytest.mark.services
def test_the_admin_login_is_throttled_too(alice, lockout):
    alice.is_staff = True
    alice.save()
    for _ in range(3):
        Client().post("/admin/login/", {"username": "alice", "password": "wrong"})

    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "alice", "password": PASSWORD}
    )

    assert "Too many failed logins" in response.content.decode()
    assert client.get("/admin/").status_code == 302  # still sent to the login page


# --- security headers -------------------------------------------------------------------------
def csp_of(response) -> dict[str, list[str]]:
    """The Content-Security-Policy header as {directive: sources}."""
    policy = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *sources = part.split()
        policy[name] = sources
    return policy


def test_pages_carry_a_strict_content_security_policy(alice):
    client = Client()
    client.force_login(alice)

    policy = csp_of(client.get("/chat/"))

    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'", "ws://testserver"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert not any("unsafe" in source for sources in policy.values() for source in sources)


def test_over_https_the_policy_allows_the_secure_socket_of_the_same_host():
    response = Client().get("/accounts/login/", secure=True, headers={"host": "localhost:8443"})

    assert csp_of(response)["connect-src"] == ["'self'", "wss://localhost:8443"]


def test_pages_cannot_be_framed_or_sniffed_and_leak_no_referrer_off_site():
    response = Client().get("/accounts/login/")

    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "'none'" in csp_of(response)["frame-ancestors"]


class InlineCodeFinder(HTMLParser):
    """Collects what a strict CSP would block: style attributes, event handler
    attributes and executable inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        for name in names:
            if name == "style" or name.startswith("on"):
                self.found.append(f"<{tag} {name}=...>")
        if tag == "script" and "src" not in names and names.get("type") != "application/json":
            self.found.append("<script> without src")


def inline_code_in(response) -> list[str]:
    assert response.status_code in (200, 429), response.status_code
    finder = InlineCodeFinder()
    finder.feed(response.content.decode())
    return finder.found


def test_no_page_has_inline_styles_or_scripts(alice):
    from chat.models import Conversation, Message

    conversation = Conversation.objects.create(owner=alice, title="Tables")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="complete",
        content="| left | middle | right |\n|:--|:-:|--:|\n| 1 | 2 | 3 |",
    )
    anonymous, client = Client(), Client()
    client.force_login(alice)
    client.post("/accounts/tokens/", {"name": "laptop"})  # the next GET shows the new key

    pages = {
        "login": anonymous.get("/accounts/login/"),
        "login with errors": anonymous.post("/accounts/login/", {"username": "x"}),
        "signup with errors": anonymous.post("/accounts/signup/", {"username": "x"}),
        "new chat": client.get("/chat/"),
        "conversation": client.get(f"/chat/{conversation.pk}/"),
        "tokens with a new key": client.get("/accounts/tokens/"),
        "voice": client.get("/voice/"),
    }

    assert {name: inline_code_in(page) for name, page in pages.items()} == {
        name: [] for name in pages
    }
    body = pages["conversation"].content.decode()
    assert '<th class="align-left">' in body and '<td class="align-right">' in body


def test_the_stylesheet_aligns_table_columns_by_class():
    css = (Path(__file__).resolve().parents[2] / "static" / "css" / "app.css").read_text()

    for side in ("left", "center", "right"):
        assert re.search(rf"\.align-{side}\s*\{{\s*text-align:\s*{side};", css), side
