"""Security of the HTTP side: what a bearer token opens, the first admin."""

from __future__ import annotations

import io
import json
import re

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
