"""Account pages: the account page, password change, password reset by email."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from accounts.views import PasswordResetView
from realtime import credentials
from tests.support import processes

pytestmark = pytest.mark.django_db

PASSWORD = "pass-Word-123"
NEW_PASSWORD = "a-New-pass-77"
CHANGE = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
RESET_LINK = re.compile(r"http://testserver(/accounts/reset/[^/\s]+/[^/\s]+/)")


@pytest.fixture
def alice():
    return get_user_model().objects.create_user(
        "alice", email="alice@example.com", password=PASSWORD
    )


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def can_log_in(username: str, password: str) -> bool:
    client = Client()
    client.post("/accounts/login/", {"username": username, "password": password})
    return client.get("/chat/").status_code == 200


def ask_for_reset(email: str, *, address: str = "203.0.113.1"):
    return Client(REMOTE_ADDR=address).post("/accounts/password/reset/", {"email": email})


# --- links ---------------------------------------------------------------------------
def test_the_login_page_links_to_the_password_reset():
    body = Client().get("/accounts/login/").content.decode()
    assert re.search(r'href="/accounts/password/reset/" data-testid="forgot-password-link"', body)


def test_every_page_links_to_the_account_page_and_the_password_change(alice_client):
    body = alice_client.get("/chat/").content.decode()
    assert 'href="/accounts/" data-testid="username"' in body
    assert 'href="/accounts/password/change/" data-testid="nav-change-password"' in body


def test_the_account_page_needs_a_login_and_links_to_the_password_change(alice_client):
    assert Client().get("/accounts/").status_code == 302
    body = alice_client.get("/accounts/").content.decode()
    assert 'data-testid="account-username">alice<' in body
    assert 'href="/accounts/password/change/" data-testid="change-password-link"' in body


def test_the_account_page_saves_the_email_address_reset_links_go_to(alice, alice_client):
    response = alice_client.post("/accounts/", {"email": "new@example.com"})
    assert response.status_code == 302 and response.url == "/accounts/"
    alice.refresh_from_db()
    assert alice.email == "new@example.com"
    bad = alice_client.post("/accounts/", {"email": "not an address"})
    assert bad.status_code == 200 and b"field-error" in bad.content


def test_sign_up_takes_an_optional_email_address():
    fields = {"username": "carol", "password1": "a-Long-pass-42", "password2": "a-Long-pass-42"}
    Client().post("/accounts/signup/", {**fields, "email": "carol@example.com"})
    Client().post("/accounts/signup/", {**fields, "username": "dave"})
    emails = dict(get_user_model().objects.values_list("username", "email"))
    assert emails == {"carol": "carol@example.com", "dave": ""}


# --- password change -----------------------------------------------------------------
def test_password_change_keeps_this_session_and_closes_the_users_session_sockets(
    alice, alice_client, django_capture_on_commit_callbacks
):
    assert alice_client.get("/accounts/password/change/").status_code == 200
    with django_capture_on_commit_callbacks() as callbacks:
        response = alice_client.post("/accounts/password/change/", CHANGE)
    assert response.status_code == 302 and response.url == "/accounts/"
    assert "Your password was changed" in alice_client.get("/accounts/").content.decode()
    assert alice_client.get("/chat/").status_code == 200  # still logged in here
    assert can_log_in("alice", NEW_PASSWORD) and not can_log_in("alice", PASSWORD)
    ended = [(cb.args, cb.keywords) for cb in callbacks if cb.func is credentials.end_from_sync]
    assert ended == [((credentials.user_group(alice.pk),), {"auth_method": credentials.SESSION})]


def test_password_change_needs_the_old_password(alice_client):
    response = alice_client.post("/accounts/password/change/", {**CHANGE, "old_password": "x"})
    assert response.status_code == 200 and b"field-error" in response.content
    assert can_log_in("alice", PASSWORD)


def test_password_change_needs_a_login():
    response = Client().get("/accounts/password/change/")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


# --- password reset ------------------------------------------------------------------
def test_the_reset_flow_sets_a_new_password_from_the_emailed_link_once(alice):
    response = ask_for_reset("ALICE@example.com")  # any case

    assert response.status_code == 302 and response.url == "/accounts/password/reset/sent/"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["alice@example.com"]
    assert message.subject == "Reset your password on testserver"
    assert '"alice"' in message.body
    link = RESET_LINK.search(message.body).group(1)

    browser = Client()
    form = browser.get(link, follow=True)  # Django swaps the token for a session key
    assert form.status_code == 200 and b"password-reset-confirm-form" in form.content
    done = browser.post(
        form.redirect_chain[-1][0],
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert done.status_code == 302 and done.url == "/accounts/reset/done/"
    assert b"password-reset-complete" in browser.get(done.url).content
    assert can_log_in("alice", NEW_PASSWORD) and not can_log_in("alice", PASSWORD)

    again = Client().get(link, follow=True)
    assert b"password-reset-invalid" in again.content


def test_a_reset_for_an_unknown_address_looks_the_same_and_sends_nothing(alice):
    response = ask_for_reset("nobody@example.com")
    assert response.status_code == 302 and response.url == "/accounts/password/reset/sent/"
    assert mail.outbox == []


def test_reset_requests_for_one_email_are_throttled(alice, settings):
    settings.PASSWORD_RESET_MAX_PER_EMAIL = 2
    for address in ("203.0.113.1", "203.0.113.2"):
        assert ask_for_reset("alice@example.com", address=address).status_code == 302

    refused = ask_for_reset("alice@example.com", address="203.0.113.3")

    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= settings.PASSWORD_RESET_WINDOW_SECONDS
    assert "Too many password reset requests. No email was sent" in refused.content.decode()
    assert len(mail.outbox) == 2


def test_reset_requests_from_one_address_are_throttled_whatever_the_email(alice, settings):
    settings.PASSWORD_RESET_MAX_PER_ADDRESS = 3
    for n in range(3):
        assert ask_for_reset(f"guess{n}@example.com").status_code == 302

    assert ask_for_reset("alice@example.com").status_code == 429
    assert mail.outbox == []
    assert ask_for_reset("alice@example.com", address="198.51.100.7").status_code == 302
    assert len(mail.outbox) == 1


def test_the_reset_mail_templates_are_the_sites_own():
    assert PasswordResetView.email_template_name == "registration/password_reset_email.txt"
    body = Client().get("/accounts/password/reset/").content.decode()
    assert 'data-testid="password-reset-form"' in body and 'class="topbar"' in body


# --- email settings ------------------------------------------------------------------
def email_settings(**environment: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_", "DEFAULT_FROM"))}
    env.update(DJANGO_SETTINGS_MODULE="realtime_site.settings", **environment)
    code = (
        "from django.conf import settings as s; "
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_USER,"
        " s.EMAIL_USE_TLS, s.DEFAULT_FROM_EMAIL, sep='|')"
    )
    result = subprocess.run(
        [processes.PYTHON, "-c", code], cwd=processes.ROOT, env=env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.strip().split("|")


def test_mail_goes_to_the_console_by_default():
    assert email_settings()[0] == "django.core.mail.backends.console.EmailBackend"


def test_mail_goes_by_smtp_once_a_host_is_set():
    assert email_settings(
        EMAIL_HOST="smtp.example.com",
        EMAIL_PORT="2525",
        EMAIL_HOST_USER="mailer",
        EMAIL_USE_TLS="false",
        DEFAULT_FROM_EMAIL="chat@example.com",
    ) == [
        "django.core.mail.backends.smtp.EmailBackend",
        "smtp.example.com",
        "2525",
        "mailer",
        "False",
        "chat@example.com",
    ]
